#include "coordinator/media/vision_input.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace ixc::coordinator {

namespace {

// What a medium's crops depend on: its kind, the decoded pixels and the transform's settings.
ContentKey KeyOf(const Image& image, bool video, int hd_num, int tile) {
  ContentHasher hasher;
  hasher.AddInt(video).AddInt(image.width).AddInt(image.height).AddInt(hd_num).AddInt(tile).Add(image.rgb);
  return hasher.Finish();
}

absl::StatusOr<PreparedVision> Transform(const Image& image, const std::string& name, int hd_num, int tile) {
  PreparedVision prepared;
  absl::StatusOr<Image> padded = HdTransform(image, hd_num, tile, &prepared.geometry);
  if (!padded.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", padded.status().message()));
  prepared.crops = MakeCrops(*padded, tile);
  prepared.key = KeyOf(image, /*video=*/false, hd_num, tile);
  return prepared;
}

}  // namespace

absl::StatusOr<PreparedVision> PrepareImage(const std::string& path, int hd_num, int tile, const ImageLimits& limits) {
  IXC_ASSIGN_OR_RETURN(Image image, DecodeImageFile(path, limits));
  return Transform(image, path, hd_num, tile);
}

absl::StatusOr<PreparedVision> PrepareImageBytes(std::span<const uint8_t> bytes, const std::string& name, int hd_num,
                                                 int tile, const ImageLimits& limits) {
  IXC_ASSIGN_OR_RETURN(Image image, DecodeImage(bytes, name, limits));
  return Transform(image, name, hd_num, tile);
}

absl::StatusOr<PreparedVision> PrepareVideo(const std::string& path, int tile, const LabelFont& font,
                                            const VideoLimits& limits) {
  IXC_ASSIGN_OR_RETURN(VideoFrames video, LoadVideoFrames(path, tile, limits));
  const Image composite = CompositeFrames(video.frames, font);
  PreparedVision prepared;
  prepared.crops = MakeCrops(VideoTransform(composite, tile, &prepared.geometry), tile);
  prepared.video_frames = static_cast<int>(video.frames.size());
  prepared.key = KeyOf(composite, /*video=*/true, /*hd_num=*/0, tile);
  return prepared;
}

absl::StatusOr<PreparedVision> PrepareVideoBytes(std::span<const uint8_t> bytes, const std::string& name, int tile,
                                                 const LabelFont& font, const VideoLimits& limits) {
  std::string path = (std::filesystem::temp_directory_path() / "ixc-video-XXXXXX").string();
  const int fd = mkstemp(path.data());
  if (fd < 0) return absl::InternalError(absl::StrCat(name, ": cannot create a temporary file for the video"));
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + written, bytes.size() - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  close(fd);
  absl::StatusOr<PreparedVision> prepared =
      written == bytes.size() ? PrepareVideo(path, tile, font, limits)
                              : absl::InternalError(absl::StrCat(name, ": cannot write the video's temporary file"));
  unlink(path.c_str());
  if (!prepared.ok() && prepared.status().code() == absl::StatusCode::kInvalidArgument) {
    // Errors name the temporary path; the client knows its video by `name`.
    std::string message(prepared.status().message());
    for (size_t at; (at = message.find(path)) != std::string::npos;) message.replace(at, path.size(), name);
    return absl::InvalidArgumentError(message);
  }
  return prepared;
}

}  // namespace ixc::coordinator
