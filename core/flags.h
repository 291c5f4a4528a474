// File: core/flags.h
//
// Parses a program's flags with absl (CommandLine's dash spellings first) and answers --help itself: the program's
// usage line, then this project's flags with their help and defaults, and exit 0. absl's own --help lists only flags
// defined in a file named after the program (none of ours), and in a binary that also links SentencePiece, whose
// library carries a shim of absl's flags, it printed XML or crashed under the sanitizers.
//   CommandLine line(argc, argv);
//   ParseFlags(line, "ixc-generate --model DIR --prompt TEXT [flags]");
#pragma once

#include "core/command_line.h"

namespace ixc {

// Whether the arguments ask for help (--help, --helpfull, -h): a program calls ParseFlags before anything else (MPI
// among it) starts, and ParseFlags prints the help and exits.
bool AsksForHelp(int argc, char** argv);

void ParseFlags(CommandLine& line, const char* usage);

}  // namespace ixc
