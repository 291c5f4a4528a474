// SentencePiece behind the Tokenizer interface. No abseil header may be included here (see tokenizer.h).
#include "coordinator/tokenizer.h"

#include <sentencepiece_processor.h>

namespace ixc::coordinator {
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> Encode(const std::string& text, bool add_bos) const override {
    std::vector<int> pieces;
    processor_.Encode(text, &pieces);
    std::vector<int32_t> ids;
    ids.reserve(pieces.size() + 1);
    if (add_bos) ids.push_back(processor_.bos_id());
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    return ids;
  }

  std::string Decode(const std::vector<int32_t>& ids) const override {
    std::string text;
    processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    return text;
  }

  int32_t PieceToId(const std::string& piece) const override { return processor_.PieceToId(piece); }
  std::string IdToPiece(int32_t id) const override { return processor_.IdToPiece(id); }

  std::string TokenBytes(int32_t id) const override {
    if (id < 0 || id >= processor_.GetPieceSize() || processor_.IsControl(id)) return "";
    const std::string piece = processor_.IdToPiece(id);
    if (processor_.IsByte(id)) return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
    std::string bytes;
    constexpr char kSpace[] = "\xe2\x96\x81";  // U+2581, SentencePiece's word boundary
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, 3, kSpace) == 0) {
        bytes += ' ';
        i += 3;
      } else {
        bytes += piece[i++];
      }
    }
    return bytes;
  }
  int vocab_size() const override { return processor_.GetPieceSize(); }
  int32_t bos_id() const override { return processor_.bos_id(); }
  int32_t eos_id() const override { return processor_.eos_id(); }

  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::Load(const std::string& path, std::string* error) {
  auto tokenizer = std::make_unique<SentencePieceTokenizer>();
  const auto status = tokenizer->processor_.Load(path);
  if (!status.ok()) {
    *error = path + ": cannot load SentencePiece model: " + status.ToString();
    return nullptr;
  }
  return tokenizer;
}

}  // namespace ixc::coordinator
