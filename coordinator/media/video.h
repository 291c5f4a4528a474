// File: coordinator/media/video.h
//
// IXC-2.5's video input (spec 4): frames at one per second (stride round(avg_fps), from frame 0), at most 32 (when
// more, 32 picked at int(i * n / 33) of the n one-per-second frames), each resized so its long side is two tiles
// (1120 px, Pillow bilinear), then one composite image: frames stacked top to bottom (landscape; the last frame
// decides) under 40-px label bands reading "<IMAGE i>", 2-px black separators, white canvas; portrait frames side by
// side under one band. The composite then goes through VideoTransform (a 1 x n strip of tiles).
//
// Decoding uses FFmpeg's libraries (mp4, webm, mkv, avi, ...). The labels are drawn with FreeType from a free font
// (DejaVu Sans by default): the reference draws them with SimHei, which cannot be redistributed, so the label pixels
// are the one place where our input can differ from the reference's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/media/image.h"

namespace ixc::coordinator {

inline constexpr char kDefaultLabelFont[] = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

struct VideoLimits {
  int max_frames = 32;
  int64_t max_frame_pixels = 8192ll * 8192;
  int64_t max_stream_frames = 2'000'000;  // about 18 hours at 30 fps
};

struct VideoFrames {
  double fps = 0;
  int64_t total_frames = 0;
  std::vector<int64_t> indices;  // the frames kept, in stream order
  std::vector<Image> frames;     // already resized to a long side of 2 * tile
};

// `tile` is the vision tile (560); frames are resized to a long side of 2 * tile.
absl::StatusOr<VideoFrames> LoadVideoFrames(const std::string& path, int tile, const VideoLimits& limits);

// FreeType text drawing in the manner of Pillow's ImageDraw.text(anchor="la"): black on white.
class LabelFont {
 public:
  static absl::StatusOr<std::unique_ptr<LabelFont>> Load(const std::string& path, int pixel_size);
  virtual ~LabelFont() = default;
  // Draws `text` with its left edge at x and its ascender line at y.
  virtual void Draw(Image& image, int x, int y, const std::string& text) const = 0;
};

// The composite of frame2img (spec 4).
Image CompositeFrames(const std::vector<Image>& frames, const LabelFont& font);

}  // namespace ixc::coordinator
