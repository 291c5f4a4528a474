#include "coordinator/media/video.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include <ft2build.h>
#include FT_FREETYPE_H
#include FT_ADVANCES_H

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "coordinator/media/resize.h"

namespace ixc::coordinator {
namespace {

std::string AvError(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

// Owners of the FFmpeg objects, released on every path.
struct FormatContext {
  AVFormatContext* context = nullptr;
  ~FormatContext() { avformat_close_input(&context); }
};
struct CodecContext {
  AVCodecContext* context = nullptr;
  ~CodecContext() { avcodec_free_context(&context); }
};
struct Packet {
  AVPacket* packet = av_packet_alloc();
  ~Packet() { av_packet_free(&packet); }
};
struct Frame {
  AVFrame* frame = av_frame_alloc();
  ~Frame() { av_frame_free(&frame); }
};
struct Scaler {
  SwsContext* context = nullptr;
  ~Scaler() { sws_freeContext(context); }
};

absl::Status Bad(const std::string& path, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", why));
}

absl::Status Open(const std::string& path, FormatContext& format, int* stream_index) {
  int code = avformat_open_input(&format.context, path.c_str(), nullptr, nullptr);
  if (code < 0) {
    return code == AVERROR(ENOENT) ? absl::NotFoundError(absl::StrCat(path, ": cannot open"))
                                   : Bad(path, absl::StrCat("not a readable video: ", AvError(code)));
  }
  if ((code = avformat_find_stream_info(format.context, nullptr)) < 0) {
    return Bad(path, absl::StrCat("cannot read stream information: ", AvError(code)));
  }
  *stream_index = av_find_best_stream(format.context, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (*stream_index < 0) return Bad(path, "has no video stream");
  return absl::OkStatus();
}

// Demuxes without decoding: the frame count (decord's len()) and a check that frames are evenly spaced.
absl::StatusOr<int64_t> CountFrames(const std::string& path, const VideoLimits& limits, double fps) {
  FormatContext format;
  int stream_index = -1;
  if (auto status = Open(path, format, &stream_index); !status.ok()) return status;
  const AVStream* stream = format.context->streams[stream_index];
  const double ticks_per_frame = 1.0 / (fps * av_q2d(stream->time_base));
  std::vector<int64_t> timestamps;
  Packet packet;
  int64_t frames = 0;
  while (av_read_frame(format.context, packet.packet) >= 0) {
    if (packet.packet->stream_index == stream_index) {
      if (++frames > limits.max_stream_frames) {
        av_packet_unref(packet.packet);
        return Bad(path, absl::StrCat("more than ", limits.max_stream_frames, " frames"));
      }
      if (packet.packet->pts != AV_NOPTS_VALUE) timestamps.push_back(packet.packet->pts);
    }
    av_packet_unref(packet.packet);
  }
  // Constant frame rate: consecutive presentation times one frame apart (1 tick or 2% of a frame of slack for
  // rounded time bases such as milliseconds at 29.97 fps).
  std::sort(timestamps.begin(), timestamps.end());
  for (size_t i = 1; i < timestamps.size(); ++i) {
    const double step = static_cast<double>(timestamps[i] - timestamps[i - 1]);
    if (std::fabs(step - ticks_per_frame) > std::max(1.0, 0.02 * ticks_per_frame)) {
      return Bad(path, absl::StrCat("variable frame rate (frame ", i, " is ", step * av_q2d(stream->time_base),
                                    " s after the previous one, the average rate says ", 1.0 / fps,
                                    " s); re-encode it at a constant rate"));
    }
  }
  return frames;
}

// The frames kept: one per second from frame 0, then at most max_frames of those.
std::vector<int64_t> PickFrames(int64_t total, double fps, int max_frames) {
  const int64_t stride = std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(fps)));  // Python's round()
  std::vector<int64_t> picked;
  for (int64_t i = 0; i < total; i += stride) picked.push_back(i);
  if (static_cast<int>(picked.size()) > max_frames) {
    const double step = static_cast<double>(picked.size()) / (max_frames + 1);
    std::vector<int64_t> fewer;
    for (int i = 0; i < max_frames; ++i) fewer.push_back(picked[static_cast<size_t>(i * step)]);
    picked = fewer;
  }
  return picked;
}

// Long side to 2 * tile, the other int(2 * tile / ratio) (frame2img). A frame that leaves the short side 0 pixels is
// an error (the reference's resize fails alike).
absl::StatusOr<Image> ResizeFrame(const Image& frame, int tile, const std::string& path) {
  const double ratio = static_cast<double>(frame.width) / frame.height;
  const bool landscape = frame.width > frame.height;
  const int width = landscape ? 2 * tile : static_cast<int>(2 * tile * ratio);
  const int height = landscape ? static_cast<int>(2 * tile / ratio) : 2 * tile;
  if (width < 1 || height < 1) {
    return Bad(path, absl::StrCat("frames of ", frame.width, "x", frame.height,
                                  " pixels are too narrow: their short side would be resized to 0 pixels"));
  }
  return ResizeBilinear(frame, width, height);
}

}  // namespace

absl::StatusOr<VideoFrames> LoadVideoFrames(const std::string& path, int tile, const VideoLimits& limits) {
  FormatContext format;
  int stream_index = -1;
  if (auto status = Open(path, format, &stream_index); !status.ok()) return status;
  AVStream* stream = format.context->streams[stream_index];
  const AVRational rate = stream->avg_frame_rate;
  if (rate.num <= 0 || rate.den <= 0) return Bad(path, "zero or missing frame rate");
  VideoFrames video;
  video.fps = av_q2d(rate);
  const AVCodecParameters* parameters = stream->codecpar;
  if (static_cast<int64_t>(parameters->width) * parameters->height > limits.max_frame_pixels) {
    return Bad(path, absl::StrCat("frames of ", parameters->width, "x", parameters->height, " exceed the limit of ",
                                  limits.max_frame_pixels, " pixels"));
  }
  auto total = CountFrames(path, limits, video.fps);
  if (!total.ok()) return total.status();
  if (*total == 0) return Bad(path, "the video stream has no frames");
  video.total_frames = *total;
  video.indices = PickFrames(video.total_frames, video.fps, limits.max_frames);

  const AVCodec* codec = avcodec_find_decoder(parameters->codec_id);
  if (codec == nullptr) return Bad(path, absl::StrCat("no decoder for codec ", avcodec_get_name(parameters->codec_id)));
  CodecContext decoder;
  decoder.context = avcodec_alloc_context3(codec);
  avcodec_parameters_to_context(decoder.context, parameters);
  decoder.context->thread_count = 1;  // as decord(num_threads=1); frames come out in presentation order either way
  if (int code = avcodec_open2(decoder.context, codec, nullptr); code < 0) {
    return Bad(path, absl::StrCat("cannot open the decoder: ", AvError(code)));
  }
  Packet packet;
  Frame frame;
  Scaler scaler;
  int64_t decoded = 0;
  size_t next = 0;
  absl::Status error;
  auto take_frames = [&]() {
    while (next < video.indices.size()) {
      const int code = avcodec_receive_frame(decoder.context, frame.frame);
      if (code == AVERROR(EAGAIN) || code == AVERROR_EOF) return;
      if (code < 0) {
        error = Bad(path, absl::StrCat("corrupt video data: ", AvError(code)));
        return;
      }
      if (decoded++ == video.indices[next]) {
        const int width = frame.frame->width, height = frame.frame->height;
        if (static_cast<int64_t>(width) * height > limits.max_frame_pixels || width <= 0 || height <= 0) {
          error = Bad(path, absl::StrCat("frame of ", width, "x", height, " pixels"));
          return;
        }
        scaler.context = sws_getCachedContext(scaler.context, width, height,
                                              static_cast<AVPixelFormat>(frame.frame->format), width, height,
                                              AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr, nullptr, nullptr);
        Image rgb;
        rgb.width = width;
        rgb.height = height;
        rgb.rgb.resize(static_cast<size_t>(width) * height * 3);
        uint8_t* planes[1] = {rgb.rgb.data()};
        const int strides[1] = {width * 3};
        sws_scale(scaler.context, frame.frame->data, frame.frame->linesize, 0, height, planes, strides);
        absl::StatusOr<Image> resized = ResizeFrame(rgb, tile, path);
        if (!resized.ok()) {
          error = resized.status();
          return;
        }
        video.frames.push_back(*std::move(resized));
        ++next;
      }
      av_frame_unref(frame.frame);
    }
  };
  while (error.ok() && next < video.indices.size() && av_read_frame(format.context, packet.packet) >= 0) {
    if (packet.packet->stream_index == stream_index) {
      const int code = avcodec_send_packet(decoder.context, packet.packet);
      if (code < 0 && code != AVERROR(EAGAIN)) error = Bad(path, absl::StrCat("corrupt video data: ", AvError(code)));
      take_frames();
    }
    av_packet_unref(packet.packet);
  }
  if (error.ok() && next < video.indices.size()) {
    avcodec_send_packet(decoder.context, nullptr);  // drain
    take_frames();
  }
  if (!error.ok()) return error;
  if (video.frames.empty()) return Bad(path, "no frame could be decoded");
  // A stream that ends early (truncated file): keep what was decoded, as decord would fail; we say so instead.
  if (video.frames.size() < video.indices.size()) {
    return Bad(path, absl::StrCat("only ", decoded, " of ", video.total_frames, " frames could be decoded"));
  }
  return video;
}

namespace {

// Pillow's PIXEL(): 26.6 fixed point to the nearest whole pixel.
int Pixel(FT_Pos value) { return static_cast<int>(((value + 32) & -64) >> 6); }

class FreeTypeLabelFont : public LabelFont {
 public:
  ~FreeTypeLabelFont() override {
    if (face_ != nullptr) FT_Done_Face(face_);
    if (library_ != nullptr) FT_Done_FreeType(library_);
  }

  // Glyph shapes are hinted (FT_LOAD_DEFAULT), but pen positions advance by the unhinted design advances plus
  // kerning, each glyph placed at the pen rounded to a pixel: what Pillow's default (Raqm/HarfBuzz) layout does.
  void Draw(Image& image, int x, int y, const std::string& text) const override {
    FT_Pos pen = 0;  // 26.6
    FT_UInt previous = 0;
    const int baseline = y + Pixel(face_->size->metrics.ascender);
    auto scaled = [&](FT_Pos units) {
      return static_cast<FT_Pos>(std::lround(static_cast<double>(units) * pixel_size_ * 64 / face_->units_per_EM));
    };
    for (unsigned char ch : text) {
      const FT_UInt glyph = FT_Get_Char_Index(face_, ch);
      if (previous != 0 && FT_HAS_KERNING(face_)) {
        FT_Vector kerning;
        if (FT_Get_Kerning(face_, previous, glyph, FT_KERNING_UNSCALED, &kerning) == 0) pen += scaled(kerning.x);
      }
      previous = glyph;
      FT_Fixed advance = 0;
      FT_Get_Advance(face_, glyph, FT_LOAD_NO_SCALE, &advance);
      if (FT_Load_Glyph(face_, glyph, FT_LOAD_DEFAULT) == 0 &&
          FT_Render_Glyph(face_->glyph, FT_RENDER_MODE_NORMAL) == 0) {
        DrawBitmap(image, x + Pixel(pen) + face_->glyph->bitmap_left, baseline - face_->glyph->bitmap_top);
      }
      pen += scaled(advance);
    }
  }

  // Black ink over each pixel with the glyph's coverage as alpha (Pillow's BLEND, DIV255 rounding).
  void DrawBitmap(Image& image, int left, int top) const {
    const FT_Bitmap& bitmap = face_->glyph->bitmap;
    for (unsigned row = 0; row < bitmap.rows; ++row) {
      for (unsigned col = 0; col < bitmap.width; ++col) {
        const int px = left + static_cast<int>(col), py = top + static_cast<int>(row);
        if (px < 0 || py < 0 || px >= image.width || py >= image.height) continue;
        const int coverage = bitmap.buffer[row * bitmap.pitch + col];
        uint8_t* p = image.pixel(px, py);
        for (int c = 0; c < 3; ++c) {
          const int mixed = p[c] * (255 - coverage) + 128;
          p[c] = static_cast<uint8_t>((mixed + (mixed >> 8)) >> 8);
        }
      }
    }
  }

  int pixel_size_ = 0;
  FT_Library library_ = nullptr;
  FT_Face face_ = nullptr;
};

void FillBlack(Image& image, int x0, int y0, int x1, int y1) {
  for (int y = std::max(0, y0); y < std::min(image.height, y1); ++y) {
    for (int x = std::max(0, x0); x < std::min(image.width, x1); ++x) std::memset(image.pixel(x, y), 0, 3);
  }
}

void Paste(Image& canvas, const Image& image, int x0, int y0) {
  for (int y = 0; y < image.height; ++y) {
    std::memcpy(canvas.pixel(x0, y0 + y), image.pixel(0, y), static_cast<size_t>(image.width) * 3);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<LabelFont>> LabelFont::Load(const std::string& path, int pixel_size) {
  auto font = std::make_unique<FreeTypeLabelFont>();
  if (FT_Init_FreeType(&font->library_) != 0) return absl::InternalError("FreeType failed to start");
  if (FT_New_Face(font->library_, path.c_str(), 0, &font->face_) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot load the label font"));
  }
  FT_Set_Pixel_Sizes(font->face_, 0, pixel_size);
  font->pixel_size_ = pixel_size;
  return font;
}

Image CompositeFrames(const std::vector<Image>& frames, const LabelFont& font) {
  constexpr int kBand = 40, kGap = 10;
  Image canvas;
  const bool landscape = frames.back().width > frames.back().height;  // the reference tests the last frame
  if (landscape) {
    for (const Image& frame : frames) {
      canvas.width = std::max(canvas.width, frame.width);
      canvas.height += frame.height + kGap + kBand;
    }
  } else {
    for (const Image& frame : frames) {
      canvas.width += frame.width + kGap;
      canvas.height = std::max(canvas.height, frame.height);
    }
    canvas.height += kBand;
  }
  canvas.rgb.assign(static_cast<size_t>(canvas.width) * canvas.height * 3, 255);
  int offset = 0;
  for (size_t i = 0; i < frames.size(); ++i) {
    const Image& frame = frames[i];
    const std::string label = absl::StrCat("<IMAGE ", i, ">");
    const bool last = i + 1 == frames.size();
    if (landscape) {
      Paste(canvas, frame, 0, kBand + offset);
      font.Draw(canvas, 0, offset, label);
      // Pillow draws a 2-px line at y as rows y and y + 1.
      if (!last) FillBlack(canvas, 0, kBand + offset + frame.height + 5, canvas.width, kBand + offset + frame.height + 7);
      offset += frame.height + kGap + kBand;
    } else {
      Paste(canvas, frame, offset, kBand);
      font.Draw(canvas, offset, 0, label);
      if (!last) FillBlack(canvas, offset + frame.width + 5, 0, offset + frame.width + 7, canvas.height);
      offset += frame.width + kGap;
    }
  }
  return canvas;
}

}  // namespace ixc::coordinator
