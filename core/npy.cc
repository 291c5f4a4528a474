#include "core/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/dtype.h"

namespace ixc {
namespace {

absl::Status WriteNpy(const std::string& path, const std::string& descr, const std::vector<int64_t>& shape,
                      const void* data, int64_t element_size) {
  std::string shape_text = absl::StrJoin(shape, ", ");
  if (shape.size() == 1) shape_text += ",";
  std::string header = absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", shape_text, "), }");
  // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot open for writing"));
  const uint16_t header_len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&header_len), 2);
  out << header;
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  out.write(static_cast<const char*>(data), count * element_size);
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteNpyF32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  return WriteNpy(path, "<f4", shape, data, 4);
}

absl::Status WriteNpyI32(const std::string& path, const std::vector<int64_t>& shape, const int32_t* data) {
  return WriteNpy(path, "<i4", shape, data, 4);
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  char magic[8];
  uint16_t header_len = 0;
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0 || magic[6] != 1 ||
      !in.read(reinterpret_cast<char*>(&header_len), 2)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a version-1 .npy file"));
  }
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) return absl::InvalidArgumentError(absl::StrCat(path, ": truncated header"));
  std::smatch descr, shape;
  if (!std::regex_search(header, descr, std::regex("'descr': *'([<|])([a-z])([0-9])'")) ||
      !std::regex_search(header, shape, std::regex("'shape': *\\(([0-9, ]*)\\)")) ||
      header.find("'fortran_order': False") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported header ", header));
  }
  NpyArray array;
  int64_t count = 1;
  const std::regex number("[0-9]+");
  const std::string dims = shape[1].str();
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
    array.shape.push_back(std::stoll(it->str()));
    count *= array.shape.back();
  }
  const char kind = descr[2].str()[0];
  const int size = descr[3].str()[0] - '0';
  std::vector<char> raw(count * size);
  if (!in.read(raw.data(), raw.size())) return absl::InvalidArgumentError(absl::StrCat(path, ": truncated data"));
  if (kind == 'f' && size == 4) {
    array.floats.resize(count);
    std::memcpy(array.floats.data(), raw.data(), raw.size());
  } else if (kind == 'f' && size == 2) {
    array.floats.resize(count);
    for (int64_t i = 0; i < count; ++i) array.floats[i] = F16ToF32(reinterpret_cast<const uint16_t*>(raw.data())[i]);
  } else if ((kind == 'i' && (size == 4 || size == 8)) || ((kind == 'u' || kind == 'b') && size == 1)) {
    array.ints.resize(count);
    for (int64_t i = 0; i < count; ++i) {
      const char* p = raw.data() + i * size;
      if (size == 8) array.ints[i] = *reinterpret_cast<const int64_t*>(p);
      else if (size == 4) array.ints[i] = *reinterpret_cast<const int32_t*>(p);
      else array.ints[i] = static_cast<uint8_t>(*p);
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported dtype ", descr[0].str()));
  }
  return array;
}

}  // namespace ixc
