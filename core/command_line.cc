#include "core/command_line.h"

#include <algorithm>

namespace ixc {

CommandLine::CommandLine(int argc, char** argv, const std::vector<std::string>& repeated) {
  for (const std::string& name : repeated) repeated_[name];
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && arg.rfind("--", 0) == 0) {
      const size_t equals = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + equals, '-', '_');
      if (arg.rfind("--no_", 0) == 0) arg.erase(4, 1);  // --no-name: absl's --noname
      const std::string name = arg.substr(2, std::min(arg.find('='), arg.size()) - 2);
      given_.insert(name);
      if (name.rfind("no", 0) == 0) given_.insert(name.substr(2));  // --noname names "name" (or is "no..." itself)
      auto it = repeated_.find(arg.substr(2, equals - 2));
      if (it != repeated_.end()) {
        if (equals < arg.size()) {
          it->second.push_back(arg.substr(equals + 1));
          continue;
        }
        if (i + 1 < argc) {
          it->second.push_back(argv[++i]);
          continue;
        }
      }
    }
    args_.push_back(std::move(arg));
  }
  for (std::string& arg : args_) pointers_.push_back(arg.data());
}

const std::vector<std::string>& CommandLine::Repeated(const std::string& name) const {
  static const std::vector<std::string> kNone;
  auto it = repeated_.find(name);
  return it == repeated_.end() ? kNone : it->second;
}

}  // namespace ixc
