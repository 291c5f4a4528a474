// Image decoders behind DecodeImage: one function per format, each converting to RGB with Pillow's rules.
#include "coordinator/media/image.h"

// clang-format off
#include <cstdio>  // jpeglib.h needs FILE
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <gif_lib.h>
#include <png.h>
#include <stb_image.h>
#include <webp/decode.h>

#include <csetjmp>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

namespace ixc::coordinator {
namespace {

absl::Status Invalid(const std::string& name, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", why));
}

absl::Status CheckSize(int64_t width, int64_t height, const std::string& name, const ImageLimits& limits) {
  if (width <= 0 || height <= 0) return Invalid(name, absl::StrCat("image has no pixels (", width, "x", height, ")"));
  if (width > limits.max_pixels / height) {  // not width * height: a header's sizes (2^32 each) overflow it
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", width, "x", height,
                                                   " pixels, more than the limit of ", limits.max_pixels));
  }
  return absl::OkStatus();
}

// ---- JPEG (libjpeg-turbo, islow IDCT and fancy upsampling: Pillow's defaults) ----

struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated = false;  // the data ended before the image did
};

void JpegErrorExit(j_common_ptr info) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(info->err);
  info->err->format_message(info, manager->message);
  std::longjmp(manager->jump, 1);
}

absl::StatusOr<Image> DecodeJpeg(std::span<const uint8_t> bytes, const std::string& name, const ImageLimits& limits) {
  jpeg_decompress_struct info{};
  JpegErrorManager error{};
  info.err = jpeg_std_error(&error.base);
  error.base.error_exit = JpegErrorExit;
  error.base.output_message = [](j_common_ptr) {};  // warnings (corrupt data) are not fatal, as in Pillow
  // A premature end is: Pillow's load() raises "image file is truncated" (LOAD_TRUNCATED_IMAGES is off by default).
  error.base.emit_message = [](j_common_ptr info, int level) {
    if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) {
      reinterpret_cast<JpegErrorManager*>(info->err)->truncated = true;
    }
  };
  Image image;
  std::vector<uint8_t> cmyk;
  // Nothing with a destructor may be created between setjmp and the last libjpeg call.
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&info);
    return Invalid(name, absl::StrCat("corrupt JPEG: ", error.message));
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, bytes.data(), bytes.size());
  jpeg_read_header(&info, TRUE);
  if (absl::Status size = CheckSize(info.image_width, info.image_height, name, limits); !size.ok()) {
    jpeg_destroy_decompress(&info);
    return size;
  }
  const bool is_cmyk = info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK;
  info.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
  info.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&info);
  image.width = static_cast<int>(info.output_width);
  image.height = static_cast<int>(info.output_height);
  image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
  cmyk.resize(is_cmyk ? static_cast<size_t>(image.width) * 4 : 0);
  while (info.output_scanline < info.output_height) {
    const int y = static_cast<int>(info.output_scanline);
    JSAMPROW row = is_cmyk ? cmyk.data() : image.pixel(0, y);
    jpeg_read_scanlines(&info, &row, 1);
    if (is_cmyk) {
      // Adobe writes inverted CMYK; Pillow reads it as "CMYK;I", then converts with
      // R = (255 - K) - C * (255 - K) / 255 (rounded), and likewise G from M, B from Y.
      const bool inverted = info.saw_Adobe_marker;
      for (int x = 0; x < image.width; ++x) {
        uint8_t c[4];
        for (int i = 0; i < 4; ++i) c[i] = inverted ? 255 - cmyk[x * 4 + i] : cmyk[x * 4 + i];
        const int not_k = 255 - c[3];
        for (int i = 0; i < 3; ++i) {
          const int product = c[i] * not_k + 128;
          image.pixel(x, y)[i] = static_cast<uint8_t>(not_k - ((product + (product >> 8)) >> 8));
        }
      }
    }
  }
  const bool truncated = error.truncated;  // before jpeg_finish_decompress, which may see the end again
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  if (truncated) return Invalid(name, "truncated JPEG: the data ends before the image (Pillow: image file is truncated)");
  return image;
}

// ---- PNG (libpng) ----

struct PngReader {
  std::span<const uint8_t> bytes;
  size_t offset = 0;
  char message[256] = "";
};

absl::StatusOr<Image> DecodePng(std::span<const uint8_t> bytes, const std::string& name, const ImageLimits& limits) {
  // The size from IHDR (always the first chunk) before libpng reads on: a bomb is refused even with nothing after it.
  if (bytes.size() < 24) return Invalid(name, "corrupt PNG: truncated header");
  auto big_endian = [&](size_t offset) {
    return (uint32_t{bytes[offset]} << 24) | (uint32_t{bytes[offset + 1]} << 16) | (uint32_t{bytes[offset + 2]} << 8) |
           bytes[offset + 3];
  };
  if (auto size = CheckSize(big_endian(16), big_endian(20), name, limits); !size.ok()) return size;
  PngReader reader{bytes};
  png_structp png = png_create_read_struct(
      PNG_LIBPNG_VER_STRING, &reader,
      [](png_structp p, png_const_charp message) {
        auto* r = static_cast<PngReader*>(png_get_error_ptr(p));
        std::snprintf(r->message, sizeof(r->message), "%s", message);
        png_longjmp(p, 1);
      },
      [](png_structp, png_const_charp) {});
  png_infop info = png_create_info_struct(png);
  Image image;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return Invalid(name, absl::StrCat("corrupt PNG: ", reader.message));
  }
  png_set_read_fn(png, &reader, [](png_structp p, png_bytep out, png_size_t length) {
    auto* r = static_cast<PngReader*>(png_get_io_ptr(p));
    if (r->offset + length > r->bytes.size()) png_error(p, "truncated file");
    std::memcpy(out, r->bytes.data() + r->offset, length);
    r->offset += length;
  });
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  if (absl::Status size = CheckSize(width, height, name, limits); !size.ok()) {
    png_destroy_read_struct(&png, &info, nullptr);
    return size;
  }
  const int color = png_get_color_type(png, info);
  png_set_strip_16(png);  // keep the high byte, as Pillow's "RGB;16B" unpacker
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);  // tRNS stays ignored, as convert('RGB')
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) {
    png_set_expand_gray_1_2_4_to_8(png);
    png_set_gray_to_rgb(png);
  }
  png_set_strip_alpha(png);  // also the alpha that expanding a tRNS chunk adds
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != width * 3) {
    png_destroy_read_struct(&png, &info, nullptr);
    return Invalid(name, "unsupported PNG pixel layout");
  }
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = image.pixel(0, static_cast<int>(y));
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  return image;
}

// ---- WebP (libwebp, fancy upsampling as Pillow) ----

absl::StatusOr<Image> DecodeWebp(std::span<const uint8_t> bytes, const std::string& name, const ImageLimits& limits) {
  WebPBitstreamFeatures features;
  if (WebPGetFeatures(bytes.data(), bytes.size(), &features) != VP8_STATUS_OK) {
    return Invalid(name, "corrupt WebP header");
  }
  if (auto size = CheckSize(features.width, features.height, name, limits); !size.ok()) return size;
  Image image;
  image.width = features.width;
  image.height = features.height;
  image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
  if (WebPDecodeRGBInto(bytes.data(), bytes.size(), image.rgb.data(), image.rgb.size(), image.width * 3) == nullptr) {
    return Invalid(name, "corrupt or animated WebP data");
  }
  return image;
}

// ---- GIF (giflib): the first frame through its palette; transparency ignored, as convert('RGB') of mode P ----

absl::StatusOr<Image> DecodeGif(std::span<const uint8_t> bytes, const std::string& name, const ImageLimits& limits) {
  struct Source {
    std::span<const uint8_t> bytes;
    size_t offset = 0;
  } source{bytes};
  int error = 0;
  GifFileType* gif = DGifOpen(&source, [](GifFileType* g, GifByteType* out, int length) {
    auto* s = static_cast<Source*>(g->UserData);
    const int n = static_cast<int>(std::min<size_t>(length, s->bytes.size() - s->offset));
    std::memcpy(out, s->bytes.data() + s->offset, n);
    s->offset += n;
    return n;
  }, &error);
  if (gif == nullptr) return Invalid(name, absl::StrCat("corrupt GIF: ", GifErrorString(error)));
  auto close = [&] { DGifCloseFile(gif, &error); };
  if (auto size = CheckSize(gif->SWidth, gif->SHeight, name, limits); !size.ok()) {
    close();
    return size;
  }
  // Read records up to the first image only.
  GifRecordType record;
  do {
    if (DGifGetRecordType(gif, &record) == GIF_ERROR) {
      close();
      return Invalid(name, "corrupt GIF: no image");
    }
    if (record == EXTENSION_RECORD_TYPE) {
      int code;
      GifByteType* extension;
      if (DGifGetExtension(gif, &code, &extension) == GIF_ERROR) break;
      while (extension != nullptr && DGifGetExtensionNext(gif, &extension) != GIF_ERROR) {
      }
    }
  } while (record != IMAGE_DESC_RECORD_TYPE && record != TERMINATE_RECORD_TYPE);
  if (record != IMAGE_DESC_RECORD_TYPE || DGifGetImageDesc(gif) == GIF_ERROR) {
    close();
    return Invalid(name, "corrupt GIF: no image");
  }
  const GifImageDesc& desc = gif->Image;
  const ColorMapObject* palette = desc.ColorMap ? desc.ColorMap : gif->SColorMap;
  if (palette == nullptr || desc.Left + desc.Width > gif->SWidth || desc.Top + desc.Height > gif->SHeight ||
      desc.Width <= 0 || desc.Height <= 0) {
    close();
    return Invalid(name, "corrupt GIF: frame outside the screen or no palette");
  }
  std::vector<GifPixelType> indices(static_cast<size_t>(desc.Width) * desc.Height);
  // Interlaced frames arrive in four passes; giflib hands rows in file order.
  std::vector<int> row_order;
  if (desc.Interlace) {
    for (auto [start, step] : {std::pair{0, 8}, {4, 8}, {2, 4}, {1, 2}}) {
      for (int y = start; y < desc.Height; y += step) row_order.push_back(y);
    }
  } else {
    for (int y = 0; y < desc.Height; ++y) row_order.push_back(y);
  }
  for (int y : row_order) {
    if (DGifGetLine(gif, indices.data() + static_cast<size_t>(y) * desc.Width, desc.Width) == GIF_ERROR) {
      close();
      return Invalid(name, "corrupt GIF: truncated image data");
    }
  }
  Image image;
  image.width = gif->SWidth;
  image.height = gif->SHeight;
  image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
  auto color_of = [&](int index) {
    const GifColorType& c = palette->Colors[index < palette->ColorCount ? index : 0];
    return std::array<uint8_t, 3>{c.Red, c.Green, c.Blue};
  };
  const auto background = color_of(gif->SBackGroundColor);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) std::memcpy(image.pixel(x, y), background.data(), 3);
  }
  for (int y = 0; y < desc.Height; ++y) {
    for (int x = 0; x < desc.Width; ++x) {
      const auto c = color_of(indices[static_cast<size_t>(y) * desc.Width + x]);
      std::memcpy(image.pixel(desc.Left + x, desc.Top + y), c.data(), 3);
    }
  }
  close();
  return image;
}

// ---- BMP (stb_image) ----

uint32_t ReadLittleEndian(std::span<const uint8_t> bytes, size_t offset, int size) {
  uint32_t value = 0;
  for (int i = size - 1; i >= 0; --i) value = (value << 8) | bytes[offset + i];
  return value;
}

absl::StatusOr<Image> DecodeBmp(std::span<const uint8_t> bytes, const std::string& name, const ImageLimits& limits) {
  int width = 0, height = 0, channels = 0;
  if (bytes.size() < 34 ||
      !stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &channels)) {
    return Invalid(name, absl::StrCat("corrupt BMP: ", bytes.size() < 34 ? "truncated header" : stbi_failure_reason()));
  }
  if (auto size = CheckSize(width, height, name, limits); !size.ok()) return size;
  // stb_image reads past a truncated uncompressed BMP as zeros; Pillow refuses it, and so do we.
  const uint32_t data_offset = ReadLittleEndian(bytes, 10, 4), bits = ReadLittleEndian(bytes, 28, 2);
  const uint32_t compression = ReadLittleEndian(bytes, 30, 4);
  const uint64_t stride = (static_cast<uint64_t>(width) * bits + 31) / 32 * 4;
  if (compression == 0 && bytes.size() < data_offset + stride * height) {
    return Invalid(name, absl::StrCat("truncated BMP: ", bytes.size(), " bytes, the pixels need ",
                                      data_offset + stride * height));
  }
  uint8_t* pixels = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &channels, 3);
  if (pixels == nullptr) return Invalid(name, absl::StrCat("corrupt BMP: ", stbi_failure_reason()));
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.assign(pixels, pixels + static_cast<size_t>(width) * height * 3);
  stbi_image_free(pixels);
  return image;
}

bool StartsWith(std::span<const uint8_t> bytes, std::initializer_list<int> magic, size_t offset = 0) {
  if (bytes.size() < offset + magic.size()) return false;
  size_t i = offset;
  for (int b : magic) {
    if (bytes[i++] != b) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<Image> DecodeImage(std::span<const uint8_t> bytes, const std::string& name, const ImageLimits& limits) {
  if (bytes.empty()) return Invalid(name, "empty input, no image");
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes) {
    return Invalid(name, absl::StrCat(bytes.size(), " bytes, more than the limit of ", limits.max_bytes));
  }
  if (StartsWith(bytes, {0xFF, 0xD8, 0xFF})) return DecodeJpeg(bytes, name, limits);
  if (StartsWith(bytes, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) return DecodePng(bytes, name, limits);
  if (StartsWith(bytes, {'R', 'I', 'F', 'F'}) && StartsWith(bytes, {'W', 'E', 'B', 'P'}, 8)) {
    return DecodeWebp(bytes, name, limits);
  }
  if (StartsWith(bytes, {'G', 'I', 'F', '8'})) return DecodeGif(bytes, name, limits);
  if (StartsWith(bytes, {'B', 'M'})) return DecodeBmp(bytes, name, limits);
  return Invalid(name, "not an image in a supported format (JPEG, PNG, WebP, GIF, BMP)");
}

absl::StatusOr<Image> DecodeImageFile(const std::string& path, const ImageLimits& limits) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const std::streamoff size = in.tellg();
  if (size > limits.max_bytes) return Invalid(path, absl::StrCat(size, " bytes, more than the limit of ", limits.max_bytes));
  in.seekg(0);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    return absl::DataLossError(absl::StrCat(path, ": read failed"));
  }
  return DecodeImage(bytes, path, limits);
}

}  // namespace ixc::coordinator
