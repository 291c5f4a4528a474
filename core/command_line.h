// File: core/command_line.h
//
// The command line as absl flags want it. Our flags are documented with dashes (--max-new-tokens) but absl spells
// them with underscores, so both are accepted; a boolean flag is turned off by --no-name (vLLM's spelling, as
// --no-enable-prefix-caching) as well as absl's --noname; and a flag that may repeat (--image a --image b), which
// absl flags cannot express, is taken out with its values in order.
//
//   CommandLine line(argc, argv, {"image"});
//   absl::ParseCommandLine(line.argc(), line.argv());
//   for (const std::string& path : line.Repeated("image")) ...
#pragma once

#include <map>
#include <string>
#include <set>
#include <vector>

namespace ixc {

class CommandLine {
 public:
  CommandLine(int argc, char** argv, const std::vector<std::string>& repeated = {});

  int argc() const { return static_cast<int>(pointers_.size()); }
  char** argv() { return pointers_.data(); }
  // The values of repeatable flag `name` (underscore spelling), in the order given.
  const std::vector<std::string>& Repeated(const std::string& name) const;
  // Whether flag `name` (underscore spelling) was given, in any of its forms: where a default is someone else's
  // (a preset's) unless the user says otherwise.
  bool Given(const std::string& name) const { return given_.contains(name); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> pointers_;
  std::map<std::string, std::vector<std::string>> repeated_;
  std::set<std::string> given_;
};

}  // namespace ixc
