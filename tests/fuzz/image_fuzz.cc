// libFuzzer target: any bytes as an uploaded image (JPEG, PNG, WebP, GIF, BMP). A decoded image must hold exactly
// width x height RGB pixels; anything else must be an error, never a crash or undefined behaviour.
#include <cstdint>
#include <span>

#include "coordinator/media/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ixc::coordinator::ImageLimits limits;
  limits.max_pixels = 4'000'000;  // a larger decode only takes longer
  const auto image = ixc::coordinator::DecodeImage(std::span<const uint8_t>(data, size), "fuzz", limits);
  if (image.ok() && image->rgb.size() != static_cast<size_t>(image->width) * image->height * 3) __builtin_trap();
  return 0;
}
