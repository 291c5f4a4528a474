#include "coordinator/media/resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ixc::coordinator {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's fixed-point precision for 8-bit images

// Pillow's filter taps for one axis: for each output index, the first input index, the tap count and the taps.
struct Taps {
  int max_taps = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;  // (out, max_taps) fixed point
};

Taps BilinearTaps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;  // the triangle filter's support is 1
  Taps taps;
  taps.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<size_t>(out_size) * taps.max_taps, 0);
  std::vector<double> k(taps.max_taps);
  for (int out = 0; out < out_size; ++out) {
    const double center = (out + 0.5) * scale;
    const double inv_filter_scale = 1.0 / filter_scale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int n = hi - lo;
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
      const double x = std::fabs((i + lo - center + 0.5) * inv_filter_scale);
      k[i] = x < 1.0 ? 1.0 - x : 0.0;
      total += k[i];
    }
    for (int i = 0; i < n; ++i) {
      const double w = total != 0.0 ? k[i] / total : k[i];
      taps.weights[static_cast<size_t>(out) * taps.max_taps + i] =
          static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    taps.first[out] = lo;
    taps.count[out] = n;
  }
  return taps;
}

inline uint8_t Clip8(int64_t value) {
  if (value >= (int64_t{1} << kPrecisionBits << 8)) return 255;
  if (value <= 0) return 0;
  return static_cast<uint8_t>(value >> kPrecisionBits);
}

}  // namespace

Image ResizeBilinear(const Image& image, int width, int height) {
  if (width == image.width && height == image.height) return image;  // Pillow returns a copy
  const Taps horizontal = BilinearTaps(image.width, width);
  const Taps vertical = BilinearTaps(image.height, height);
  // Only the source rows the vertical pass reads go through the horizontal pass (as in Pillow).
  const int row_first = vertical.first.front();
  const int row_last = vertical.first.back() + vertical.count.back();
  Image wide;
  const Image* source = &image;
  int row_offset = 0;
  if (width != image.width) {
    wide.width = width;
    wide.height = row_last - row_first;
    wide.rgb.resize(static_cast<size_t>(wide.width) * wide.height * 3);
    for (int y = 0; y < wide.height; ++y) {
      for (int x = 0; x < width; ++x) {
        const int32_t* k = horizontal.weights.data() + static_cast<size_t>(x) * horizontal.max_taps;
        int64_t sums[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
        for (int i = 0; i < horizontal.count[x]; ++i) {
          const uint8_t* p = image.pixel(horizontal.first[x] + i, y + row_first);
          for (int c = 0; c < 3; ++c) sums[c] += static_cast<int64_t>(p[c]) * k[i];
        }
        for (int c = 0; c < 3; ++c) wide.pixel(x, y)[c] = Clip8(sums[c]);
      }
    }
    source = &wide;
    row_offset = row_first;
  }
  if (height == image.height) return *source;
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    const int32_t* k = vertical.weights.data() + static_cast<size_t>(y) * vertical.max_taps;
    for (int x = 0; x < width; ++x) {
      int64_t sums[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
      for (int i = 0; i < vertical.count[y]; ++i) {
        const uint8_t* p = source->pixel(x, vertical.first[y] - row_offset + i);
        for (int c = 0; c < 3; ++c) sums[c] += static_cast<int64_t>(p[c]) * k[i];
      }
      for (int c = 0; c < 3; ++c) out.pixel(x, y)[c] = Clip8(sums[c]);
    }
  }
  return out;
}

namespace {

// Keys' cubic convolution with a = -0.75 at fraction t: the weights of the taps at -1, 0, 1, 2 (torch's order).
void CubicWeights(float t, float w[4]) {
  constexpr float a = -0.75f;
  auto near = [](float x) { return ((a + 2) * x - (a + 3)) * x * x + 1; };         // |x| <= 1
  auto far = [](float x) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; };  // 1 < |x| < 2
  w[0] = far(t + 1.0f);
  w[1] = near(t);
  w[2] = near(1.0f - t);
  w[3] = far((1.0f - t) + 1.0f);
}

struct CubicAxis {
  std::vector<int> index;     // (out, 4) clamped source indices
  std::vector<float> weight;  // (out, 4)
};

CubicAxis CubicTaps(int in_size, int out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  CubicAxis axis;
  axis.index.resize(static_cast<size_t>(out_size) * 4);
  axis.weight.resize(static_cast<size_t>(out_size) * 4);
  for (int out = 0; out < out_size; ++out) {
    const float real = scale * (static_cast<float>(out) + 0.5f) - 0.5f;
    const float floor_real = std::floor(real);
    const int base = static_cast<int>(floor_real);
    CubicWeights(real - floor_real, &axis.weight[static_cast<size_t>(out) * 4]);
    for (int k = 0; k < 4; ++k) axis.index[static_cast<size_t>(out) * 4 + k] = std::clamp(base - 1 + k, 0, in_size - 1);
  }
  return axis;
}

}  // namespace

std::vector<float> ResizeBicubic(const std::vector<float>& planes, int channels, int height, int width,
                                 int out_height, int out_width) {
  const CubicAxis rows = CubicTaps(height, out_height), cols = CubicTaps(width, out_width);
  std::vector<float> out(static_cast<size_t>(channels) * out_height * out_width);
  for (int c = 0; c < channels; ++c) {
    const float* plane = planes.data() + static_cast<size_t>(c) * height * width;
    for (int y = 0; y < out_height; ++y) {
      for (int x = 0; x < out_width; ++x) {
        // Along width inside, along height outside, accumulated in tap order, as torch's generic upsample kernel.
        float value = 0.f;
        for (int j = 0; j < 4; ++j) {
          const float* row = plane + static_cast<size_t>(rows.index[y * 4 + j]) * width;
          float inner = row[cols.index[x * 4]] * cols.weight[x * 4];
          for (int i = 1; i < 4; ++i) inner += row[cols.index[x * 4 + i]] * cols.weight[x * 4 + i];
          value = j == 0 ? inner * rows.weight[y * 4] : value + inner * rows.weight[y * 4 + j];
        }
        out[(static_cast<size_t>(c) * out_height + y) * out_width + x] = value;
      }
    }
  }
  return out;
}

}  // namespace ixc::coordinator
