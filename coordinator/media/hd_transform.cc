#include "coordinator/media/hd_transform.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "coordinator/media/resize.h"

namespace ixc::coordinator {
namespace {

// OpenAI CLIP's normalization constants, as the reference passes them to torchvision (f32).
constexpr float kMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

// Pillow's Image.TRANSPOSE: pixel (x, y) moves to (y, x).
Image Transpose(const Image& image) {
  Image out;
  out.width = image.height;
  out.height = image.width;
  out.rgb.resize(image.rgb.size());
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) std::memcpy(out.pixel(y, x), image.pixel(x, y), 3);
  }
  return out;
}

// White rows below the image up to `height`.
Image PadBottom(Image image, int height) {
  image.rgb.resize(static_cast<size_t>(image.width) * height * 3, 255);
  image.height = height;
  return image;
}

// The geometry of a transform of `original` that resized it, in landscape orientation, to (width, height) and
// ended as `padded` (original orientation).
HdGeometry Geometry(const Image& original, bool transposed, int width, int height, const Image& padded, int tile) {
  HdGeometry geometry;
  geometry.original_width = original.width;
  geometry.original_height = original.height;
  geometry.resized_width = transposed ? height : width;
  geometry.resized_height = transposed ? width : height;
  geometry.padded_width = padded.width;
  geometry.padded_height = padded.height;
  geometry.rows = padded.height / tile;
  geometry.cols = padded.width / tile;
  return geometry;
}

}  // namespace

absl::StatusOr<Image> HdTransform(const Image& image, int hd_num, int tile, HdGeometry* geometry) {
  const bool transposed = image.width < image.height;
  Image work = transposed ? Transpose(image) : image;
  const double ratio = static_cast<double>(work.width) / work.height;
  int scale = 1;
  while (scale * std::ceil(scale / ratio) <= hd_num) ++scale;
  scale -= 1;
  scale = static_cast<int>(std::min<double>(std::ceil(static_cast<double>(work.width) / tile), scale));
  const int new_width = scale * tile;
  const int new_height = static_cast<int>(new_width / ratio);
  if (new_height < 1) {
    return absl::InvalidArgumentError(absl::StrCat("a ", image.width, "x", image.height,
                                                   " image is too narrow for the HD transform: its short side would "
                                                   "be resized to 0 pixels (its long side to ",
                                                   new_width, ")"));
  }
  work = ResizeBilinear(work, new_width, new_height);
  const int resized_width = work.width, resized_height = work.height;
  work = PadBottom(std::move(work), static_cast<int>(std::ceil(static_cast<double>(new_height) / tile)) * tile);
  if (transposed) work = Transpose(work);
  *geometry = Geometry(image, transposed, resized_width, resized_height, work, tile);
  return work;
}

Image VideoTransform(const Image& image, int tile, HdGeometry* geometry) {
  const bool transposed = image.width < image.height;
  Image work = transposed ? Transpose(image) : image;
  const double ratio = static_cast<double>(work.width) / work.height;
  const int new_width = static_cast<int>(tile * ratio);
  work = ResizeBilinear(work, new_width, tile);
  const int resized_width = work.width;
  // The strip is padded along its long side: transpose so that side is the height, pad the bottom, transpose back.
  work = Transpose(work);
  work = PadBottom(std::move(work), static_cast<int>(std::ceil(static_cast<double>(new_width) / tile)) * tile);
  work = Transpose(work);
  if (transposed) work = Transpose(work);
  *geometry = Geometry(image, transposed, resized_width, tile, work, tile);
  return work;
}

VisionCrops MakeCrops(const Image& padded, int tile) {
  const int height = padded.height, width = padded.width;
  const size_t plane = static_cast<size_t>(height) * width;
  std::vector<float> normalized(3 * plane);  // (3, H, W)
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const uint8_t* p = padded.pixel(x, y);
      for (int c = 0; c < 3; ++c) {
        // ToTensor divides by 255; Normalize subtracts the mean, then divides by the std, each in f32.
        normalized[c * plane + static_cast<size_t>(y) * width + x] = (p[c] / 255.f - kMean[c]) / kStd[c];
      }
    }
  }
  VisionCrops crops;
  crops.tile = tile;
  crops.rows = height / tile;
  crops.cols = width / tile;
  const size_t crop_size = 3 * static_cast<size_t>(tile) * tile;
  crops.pixels.resize(crops.count() * crop_size);
  const std::vector<float> global = ResizeBicubic(normalized, 3, height, width, tile, tile);
  std::copy(global.begin(), global.end(), crops.pixels.begin());
  for (int r = 0; r < crops.rows; ++r) {
    for (int col = 0; col < crops.cols; ++col) {
      float* crop = crops.pixels.data() + (1 + r * crops.cols + col) * crop_size;
      for (int c = 0; c < 3; ++c) {
        for (int y = 0; y < tile; ++y) {
          const float* src = normalized.data() + c * plane + static_cast<size_t>(r * tile + y) * width + col * tile;
          std::memcpy(crop + (static_cast<size_t>(c) * tile + y) * tile, src, tile * sizeof(float));
        }
      }
    }
  }
  return crops;
}

int VisionTokenCount(int rows, int cols, int side) {
  return (rows * cols + 1) * side * side + 1 + (rows + 1) * side;
}

}  // namespace ixc::coordinator
