#include "core/flags.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"

namespace ixc {
namespace {

// "--max_new_tokens (the most tokens to generate); default: 32", ours alone (not absl's), by name.
void PrintHelp(const char* usage) {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!absl::StrContains(flag->Filename(), "absl/")) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(), [](auto* a, auto* b) { return a->Name() < b->Name(); });
  std::cout << usage << "\n\nFlags (dashes or underscores alike):\n";
  for (const absl::CommandLineFlag* flag : flags) {
    std::cout << "  --" << flag->Name() << " (" << flag->Help() << "); default: " << flag->DefaultValue() << "\n";
  }
}

}  // namespace

bool AsksForHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "--helpfull") == 0 ||
        std::strcmp(argv[i], "-h") == 0) {
      return true;
    }
  }
  return false;
}

void ParseFlags(CommandLine& line, const char* usage) {
  if (AsksForHelp(line.argc(), line.argv())) {
    PrintHelp(usage);
    std::exit(0);
  }
  absl::ParseCommandLine(line.argc(), line.argv());
}

}  // namespace ixc
