// libFuzzer target: any bytes as a request line (JSON) for the real tokenizer. A request that parses must have a
// prompt inside the vocabulary and the context; anything else must be an error naming the problem, never an
// exception (the coordinator does not catch one) or undefined behaviour.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "coordinator/request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<ixc::coordinator::Tokenizer> tokenizer = [] {
    std::string error;
    auto loaded = ixc::coordinator::Tokenizer::Load(IXC_SOURCE_DIR "/tests/data/tokenizer.model", &error);
    if (loaded == nullptr) std::abort();
    return loaded;
  }();
  ixc::coordinator::RequestDefaults defaults;
  defaults.max_context = 4096;
  defaults.vocab_size = 92544;
  const std::string line(reinterpret_cast<const char*>(data), size);
  const auto request = ixc::coordinator::ParseRequest(line, 1, tokenizer.get(), defaults);
  if (!request.ok()) return 0;
  if (request->prompt.empty() || static_cast<int64_t>(request->prompt.size()) >= defaults.max_context) __builtin_trap();
  for (int32_t id : request->prompt) {
    if (id < 0 || id >= defaults.vocab_size) __builtin_trap();
  }
  return 0;
}
