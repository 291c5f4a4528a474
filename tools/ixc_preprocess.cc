// ixc-preprocess: shows what IXC-2.5 makes of one image or video before the language model, as JSON.
//
//   ixc-preprocess --image dubai.png [--hd-num 24] [--dump-pixels crops.npy]
//   ixc-preprocess --video clip.mp4 [--dump-pixels crops.npy]
//   ixc-preprocess --image cars1.jpg --model DIR --dump-vision-embeds embeds.npy
//
// Prints the original, resized and padded sizes, the tile grid (rows, cols) and the number of LLM positions the
// image takes. --dump-pixels writes the normalized crops (1 + rows * cols, 3, tile, tile), the global view first;
// --dump-vision-embeds runs the vision component of the checkpoint and writes (tokens, hidden).
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "coordinator/media/vision_input.h"
#include "core/command_line.h"
#include "core/flags.h"
#include "core/npy.h"
#include "core/status_macros.h"
#include "model/vision_encoder.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, image, "", "an image file (JPEG, PNG, WebP, GIF, BMP)");
ABSL_FLAG(std::string, video, "", "a video file (mp4, webm, mkv, avi, ...)");
ABSL_FLAG(int32_t, hd_num, 24, "tiles at most (24: one image in chat(); 6: each of several)");
ABSL_FLAG(std::string, model, "", "checkpoint directory: its vision tile size, and the weights for embeddings");
ABSL_FLAG(std::string, dump_pixels, "", "write the normalized crops to this .npy");
ABSL_FLAG(std::string, dump_vision_embeds, "", "write the projected vision embeddings to this .npy (needs --model)");
ABSL_FLAG(std::string, label_font, ixc::coordinator::kDefaultLabelFont, "TrueType font of the video frame labels");
ABSL_FLAG(int64_t, max_image_pixels, 89'478'485, "larger images are refused before decoding");

namespace ixc {
namespace {

absl::Status Run() {
  const std::string image = absl::GetFlag(FLAGS_image), video = absl::GetFlag(FLAGS_video);
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (image.empty() == video.empty()) return absl::InvalidArgumentError("give exactly one of --image and --video");
  if (absl::GetFlag(FLAGS_hd_num) < 1) return absl::InvalidArgumentError("--hd-num must be >= 1");
  if (!absl::GetFlag(FLAGS_dump_vision_embeds).empty() && model_dir.empty()) {
    return absl::InvalidArgumentError("--dump-vision-embeds needs --model");
  }
  model::VisionConfig vision_config;
  if (!model_dir.empty()) {
    IXC_ASSIGN_OR_RETURN(vision_config, model::LoadVisionConfig(model_dir));
  }
  const int tile = vision_config.image_size;

  nlohmann::json out;
  coordinator::PreparedVision prepared;
  if (!image.empty()) {
    coordinator::ImageLimits limits;
    limits.max_pixels = absl::GetFlag(FLAGS_max_image_pixels);
    IXC_ASSIGN_OR_RETURN(prepared, coordinator::PrepareImage(image, absl::GetFlag(FLAGS_hd_num), tile, limits));
    out["input"] = image;
    out["kind"] = "image";
    out["hd_num"] = absl::GetFlag(FLAGS_hd_num);
  } else {
    IXC_ASSIGN_OR_RETURN(auto font, coordinator::LabelFont::Load(absl::GetFlag(FLAGS_label_font), 40));
    IXC_ASSIGN_OR_RETURN(coordinator::VideoFrames frames, coordinator::LoadVideoFrames(video, tile, {}));
    const coordinator::Image composite = coordinator::CompositeFrames(frames.frames, *font);
    prepared.crops = coordinator::MakeCrops(coordinator::VideoTransform(composite, tile, &prepared.geometry), tile);
    out["input"] = video;
    out["kind"] = "video";
    out["fps"] = frames.fps;
    out["total_frames"] = frames.total_frames;
    out["frame_indices"] = frames.indices;
    out["composite_size"] = {composite.width, composite.height};
  }
  const coordinator::HdGeometry& g = prepared.geometry;
  out["original_size"] = {g.original_width, g.original_height};
  out["resized_size"] = {g.resized_width, g.resized_height};
  out["padded_size"] = {g.padded_width, g.padded_height};
  out["tile"] = tile;
  out["grid"] = {g.rows, g.cols};
  out["crops"] = prepared.crops.count();
  out["tokens"] = coordinator::VisionTokenCount(g.rows, g.cols, vision_config.merged_side());

  if (!absl::GetFlag(FLAGS_dump_pixels).empty()) {
    IXC_RETURN_IF_ERROR(WriteNpyF32(absl::GetFlag(FLAGS_dump_pixels), {prepared.crops.count(), 3, tile, tile},
                                    prepared.crops.pixels.data()));
  }
  if (!absl::GetFlag(FLAGS_dump_vision_embeds).empty()) {
    IXC_ASSIGN_OR_RETURN(model::LlmConfig llm, model::LoadLlmConfig(model_dir));
    IXC_ASSIGN_OR_RETURN(model::VisionWeights weights, model::LoadVisionWeights(model_dir, llm.hidden_size));
    IXC_ASSIGN_OR_RETURN(std::vector<float> embeds,
                         model::EmbedImage(weights, prepared.crops.pixels.data(), g.rows, g.cols));
    const int64_t rows = static_cast<int64_t>(embeds.size()) / llm.hidden_size;
    IXC_RETURN_IF_ERROR(WriteNpyF32(absl::GetFlag(FLAGS_dump_vision_embeds), {rows, llm.hidden_size}, embeds.data()));
  }
  std::cout << out.dump() << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace ixc

int main(int argc, char** argv) {
  ixc::CommandLine line(argc, argv);  // dashes or underscores in flag names
  ixc::ParseFlags(line, "ixc-preprocess (--image PATH [--hd-num N] | --video PATH) [--dump-pixels FILE.npy] "
                        "[--dump-vision-embeds FILE.npy --model DIR]");
  const absl::Status status = ixc::Run();
  if (!status.ok()) {
    std::cerr << "ixc-preprocess: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
