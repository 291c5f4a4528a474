// File: coordinator/media/image.h
//
// Decoding images into 8-bit RGB exactly as the reference's Pillow `Image.open(...).convert('RGB')` does: alpha is
// dropped (not composited), grey is replicated, palettes are expanded, 16-bit samples keep their high byte, EXIF
// orientation is ignored. JPEG (libjpeg-turbo, as Pillow), PNG (libpng), WebP (libwebp), GIF (giflib, first frame),
// BMP (stb_image).
//
//   IXC_ASSIGN_OR_RETURN(Image image, DecodeImageFile("cars1.jpg", ImageLimits{}));
//
// The pixel limit is checked from the header, before decoding allocates; every error names the input.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ixc::coordinator {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // (height, width, 3)

  uint8_t* pixel(int x, int y) { return rgb.data() + (static_cast<int64_t>(y) * width + x) * 3; }
  const uint8_t* pixel(int x, int y) const { return rgb.data() + (static_cast<int64_t>(y) * width + x) * 3; }
};

struct ImageLimits {
  int64_t max_pixels = 89'478'485;  // Pillow's decompression-bomb threshold
  int64_t max_bytes = 256ll << 20;  // encoded size
};

// `name` identifies the input in errors (a path, "image 2 of the request").
absl::StatusOr<Image> DecodeImage(std::span<const uint8_t> bytes, const std::string& name, const ImageLimits& limits);
absl::StatusOr<Image> DecodeImageFile(const std::string& path, const ImageLimits& limits);

}  // namespace ixc::coordinator
