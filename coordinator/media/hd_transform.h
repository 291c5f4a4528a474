// File: coordinator/media/hd_transform.h
//
// IXC-2.5's high-resolution image path up to the vision encoder (spec 3.1, 3.3):
//   1. HdTransform (Pillow side): landscape orientation (transpose portrait images), the largest scale s with
//      s * ceil(s / ratio) <= hd_num, capped at ceil(W / tile); bilinear resize to (s * tile, int(s * tile / ratio));
//      white padding at the bottom to a multiple of tile; transpose back. Portrait images end up padded on the right.
//   2. MakeCrops (torch side): ToTensor + OpenAI-CLIP normalization; a global view by bicubic resize of the normalized
//      image to (tile, tile); then the tiles, row-major. Crop 0 is the global view, as the reference's ViT batch.
// `tile` is the vision encoder's image size: 560 for IXC-2.5 (smaller for the tiny test models).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/media/image.h"

namespace ixc::coordinator {

inline constexpr int kIxcTileSize = 560;

struct HdGeometry {
  int original_width = 0, original_height = 0;
  int resized_width = 0, resized_height = 0;  // after the resize, before padding (original orientation)
  int padded_width = 0, padded_height = 0;
  int rows = 0, cols = 0;  // the tile grid (h, w)
};

// Steps 1: the padded RGB image and its geometry. An image too narrow for it (resized to a short side of 0 pixels,
// 100000 x 1 for one: the reference's resize fails alike) is an error naming both sizes.
absl::StatusOr<Image> HdTransform(const Image& image, int hd_num, int tile, HdGeometry* geometry);

struct VisionCrops {
  int tile = 0;
  int rows = 0, cols = 0;
  std::vector<float> pixels;  // (1 + rows * cols, 3, tile, tile): the global view, then the tiles row-major
  int count() const { return 1 + rows * cols; }
};

// Step 2 on a padded image whose sides are multiples of `tile`.
VisionCrops MakeCrops(const Image& padded, int tile);

// Tokens one image takes in the LLM (spec 3.5) for a (rows, cols) grid, with `side` merged tokens per crop side
// (20 for IXC-2.5: 40x40 patches merged 2x2): (rows * cols + 1) * side^2 + 1 + (rows + 1) * side.
int VisionTokenCount(int rows, int cols, int side);

// Landscape video composites are cut differently (spec 4, Video_transform): the short side set to `tile`, the long
// side padded at its end to a multiple of `tile`, giving a 1 x n (or n x 1) strip.
Image VideoTransform(const Image& image, int tile, HdGeometry* geometry);

}  // namespace ixc::coordinator
