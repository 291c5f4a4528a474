// File: tests/fuzz/fuzz_file.h
//
// For the fuzz targets whose code under test reads a path: the input written to a file of this process's own in
// /dev/shm (memory, not disk), overwritten by each input.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ixc::fuzz {

inline std::string WriteInput(const std::string& kind, const uint8_t* data, size_t size) {
  const std::string path = "/dev/shm/ixc_fuzz_" + kind + "_" + std::to_string(::getpid());
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr || std::fwrite(data, 1, size, file) != size || std::fclose(file) != 0) std::abort();
  return path;
}

}  // namespace ixc::fuzz
