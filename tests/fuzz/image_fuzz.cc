// libFuzzer target: any bytes as an uploaded image (JPEG, PNG, WebP, GIF, BMP), decoded, then through the HD
// transform and into crops (at a small tile: the same arithmetic, less work). A decoded image must hold exactly
// width x height RGB pixels and its crops the grid's; anything else must be an error, never a crash or undefined
// behaviour.
#include <cstdint>
#include <span>

#include "coordinator/media/hd_transform.h"
#include "coordinator/media/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ixc::coordinator::ImageLimits limits;
  limits.max_pixels = 4'000'000;  // a larger decode only takes longer
  const auto image = ixc::coordinator::DecodeImage(std::span<const uint8_t>(data, size), "fuzz", limits);
  if (!image.ok()) return 0;
  if (image->rgb.size() != static_cast<size_t>(image->width) * image->height * 3) __builtin_trap();
  constexpr int kTile = 28;
  ixc::coordinator::HdGeometry geometry;
  const auto padded = ixc::coordinator::HdTransform(*image, 6, kTile, &geometry);
  if (!padded.ok()) return 0;
  const ixc::coordinator::VisionCrops crops = ixc::coordinator::MakeCrops(*padded, kTile);
  if (geometry.rows * geometry.cols > 6 ||
      crops.pixels.size() != static_cast<size_t>(crops.count()) * 3 * kTile * kTile) {
    __builtin_trap();
  }
  return 0;
}
