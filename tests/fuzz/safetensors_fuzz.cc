// libFuzzer target: any bytes as a safetensors file (it is memory-mapped, so they go to a file first). Every tensor of
// a file that opens must lie inside it with the bytes its shape needs.
#include <cstdint>
#include <string>

#include "core/safetensors.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ixc::fuzz::WriteInput("safetensors", data, size);
  const auto file = ixc::SafetensorsFile::Open(path);
  if (!file.ok()) return 0;
  for (const auto& [name, entry] : (*file)->entries()) {
    const auto view = (*file)->Tensor(name);
    if (view.ok() && view->nbytes() != static_cast<int64_t>(entry.end - entry.begin)) __builtin_trap();
  }
  return 0;
}
