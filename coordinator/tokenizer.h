// File: coordinator/tokenizer.h
//
// The IXC-2.5 tokenizer: SentencePiece BPE over `tokenizer.model` (92,544 pieces, byte fallback, no dummy prefix;
// spec 5.1). User-defined pieces such as `[UNUSED_TOKEN_146]` are matched whole, so template markers encode to
// their single ids.
//
// This header is free of abseil and SentencePiece types on purpose: Debian's SentencePiece header declares
// `absl::string_view` itself and cannot share a translation unit with abseil (toolchain.md 7.2).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ixc::coordinator {

class Tokenizer {
 public:
  // Loads `path`; on failure returns null and sets `error` to a message naming the file.
  static std::unique_ptr<Tokenizer> Load(const std::string& path, std::string* error);
  virtual ~Tokenizer() = default;

  // Token ids of `text`, with BOS first when `add_bos` (the reference adds BOS, never EOS).
  virtual std::vector<int32_t> Encode(const std::string& text, bool add_bos) const = 0;
  // Text of `ids`; user-defined pieces come out verbatim, BOS/EOS as nothing.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t PieceToId(const std::string& piece) const = 0;  // unk id when absent
  virtual std::string IdToPiece(int32_t id) const = 0;
  // The bytes `id` adds to a decoded text: a byte-fallback piece its one byte (maybe part of a character), `▁` as a
  // space, BOS/EOS nothing. A text's ids' bytes concatenate to its Decode.
  virtual std::string TokenBytes(int32_t id) const = 0;
  virtual int vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
};

}  // namespace ixc::coordinator
