#include "coordinator/media/vision_input.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace ixc::coordinator {

absl::StatusOr<PreparedVision> PrepareImage(const std::string& path, int hd_num, int tile, const ImageLimits& limits) {
  IXC_ASSIGN_OR_RETURN(Image image, DecodeImageFile(path, limits));
  PreparedVision prepared;
  absl::StatusOr<Image> padded = HdTransform(image, hd_num, tile, &prepared.geometry);
  if (!padded.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", padded.status().message()));
  prepared.crops = MakeCrops(*padded, tile);
  return prepared;
}

absl::StatusOr<PreparedVision> PrepareVideo(const std::string& path, int tile, const LabelFont& font,
                                            const VideoLimits& limits) {
  IXC_ASSIGN_OR_RETURN(VideoFrames video, LoadVideoFrames(path, tile, limits));
  const Image composite = CompositeFrames(video.frames, font);
  PreparedVision prepared;
  prepared.crops = MakeCrops(VideoTransform(composite, tile, &prepared.geometry), tile);
  return prepared;
}

}  // namespace ixc::coordinator
