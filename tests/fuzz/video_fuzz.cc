// libFuzzer target: any bytes as an uploaded video (FFmpeg's probing decides the container). Frames that come back
// must hold exactly width x height RGB pixels; anything else must be an error, never a crash.
#include <cstdint>

#include "coordinator/media/video.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ixc::coordinator::VideoLimits limits;
  limits.max_frames = 4;
  limits.max_frame_pixels = 1 << 20;
  const auto frames = ixc::coordinator::LoadVideoFrames(ixc::fuzz::WriteInput("video", data, size), 56, limits);
  if (!frames.ok()) return 0;
  for (const auto& frame : frames->frames) {
    if (frame.rgb.size() != static_cast<size_t>(frame.width) * frame.height * 3) __builtin_trap();
  }
  return 0;
}
