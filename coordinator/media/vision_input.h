// File: coordinator/media/vision_input.h
//
// From a file to the vision component's input, as the reference's chat() does it: images through the HD transform
// with hd_num 24 when the prompt has one image and 6 each when it has several (spec 3.3, 5.2); a video through the
// one-per-second frames, the labelled composite and Video_transform (spec 4). A video counts as one image.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "core/content_hash.h"
#include "coordinator/media/hd_transform.h"
#include "coordinator/media/video.h"

namespace ixc::coordinator {

struct PreparedVision {
  HdGeometry geometry;
  VisionCrops crops;
  int video_frames = 0;  // a video's frames kept in its composite; 0 for an image
  // The decoded pixels (an image's, or a video's labelled composite) with what the transform took: equal keys give
  // equal crops, whatever the file was called (the prefix and image-embedding caches, coordinator/prefix_cache.h).
  ContentKey key;
};

// The reference's rule: one image 24, several 6 each.
inline int HdNumFor(int images_in_prompt) { return images_in_prompt == 1 ? 24 : 6; }

absl::StatusOr<PreparedVision> PrepareImage(const std::string& path, int hd_num, int tile, const ImageLimits& limits);
// The same from the encoded bytes of an image; `name` identifies it in errors.
absl::StatusOr<PreparedVision> PrepareImageBytes(std::span<const uint8_t> bytes, const std::string& name, int hd_num,
                                                 int tile, const ImageLimits& limits);
absl::StatusOr<PreparedVision> PrepareVideo(const std::string& path, int tile, const LabelFont& font,
                                            const VideoLimits& limits);
// The same from a video file's bytes (FFmpeg reads them from a private temporary file, removed after).
absl::StatusOr<PreparedVision> PrepareVideoBytes(std::span<const uint8_t> bytes, const std::string& name, int tile,
                                                 const LabelFont& font, const VideoLimits& limits);

}  // namespace ixc::coordinator
