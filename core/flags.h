// File: core/flags.h
//
// Parses a program's flags with absl (CommandLine's dash spellings first) and makes --help useful: it lists this
// project's flags (absl's default lists only those defined in a file named after the program, which matches none of
// ours) under the program's usage line, and exits (with 1, as absl's programs do).
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
