// File: coordinator/media/resize.h
//
// The two resamplers of the reference's image path, reimplemented to match them:
//   ResizeBilinear: Pillow's Image.resize(BILINEAR) on 8-bit RGB (what torchvision's resize does to a PIL image):
//     a separable triangle filter whose support widens by the scale when shrinking (Pillow's built-in antialias),
//     coefficients in 22-bit fixed point, horizontal pass first, each pass rounded and clipped to 8 bits.
//   ResizeBicubic: torch's F.interpolate(mode='bicubic', align_corners=False, antialias=False) on f32 planes:
//     Keys' cubic with a = -0.75 at source coordinate scale * (dst + 0.5) - 0.5, edge indices clamped, in f32.
#pragma once

#include <vector>

#include "coordinator/media/image.h"

namespace ixc::coordinator {

Image ResizeBilinear(const Image& image, int width, int height);

// planes (channels, height, width) -> (channels, out_height, out_width).
std::vector<float> ResizeBicubic(const std::vector<float>& planes, int channels, int height, int width,
                                 int out_height, int out_width);

}  // namespace ixc::coordinator
