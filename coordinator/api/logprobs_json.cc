#include "coordinator/api/logprobs_json.h"

#include <algorithm>
#include <string>

namespace ixc::coordinator {
namespace {

double Clamped(float logprob) { return std::max<double>(logprob, -9999.0); }

nlohmann::json Bytes(const std::string& bytes) {
  nlohmann::json list = nlohmann::json::array();
  for (char c : bytes) list.push_back(static_cast<unsigned char>(c));
  return list;
}

nlohmann::json ChatEntry(const Tokenizer& tokenizer, int32_t id, float logprob) {
  const std::string bytes = tokenizer.TokenBytes(id);
  return {{"token", ValidUtf8(bytes)}, {"logprob", Clamped(logprob)}, {"bytes", Bytes(bytes)}};
}

// The length of the well-formed UTF-8 character that starts at text[i] (Unicode's table 3-7: no overlong forms, no
// surrogates, nothing past U+10FFFF), or 0 where none does.
size_t CharacterAt(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  const size_t length = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3
                        : lead >= 0xF0 && lead <= 0xF4                                    ? 4
                                                                                          : 0;
  if (length == 0 || i + length > text.size()) return 0;
  // The second byte's range depends on the lead; the others are any continuation byte.
  const unsigned char second = byte(i + 1);
  const unsigned char low = lead == 0xE0 ? 0xA0 : lead == 0xF0 ? 0x90 : 0x80;
  const unsigned char high = lead == 0xED ? 0x9F : lead == 0xF4 ? 0x8F : 0xBF;
  if (second < low || second > high) return 0;
  for (size_t k = 2; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  return length;
}

}  // namespace

std::string ValidUtf8(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const size_t length = CharacterAt(text, i);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(text, i, length);
      i += length;
    }
  }
  return out;
}

nlohmann::json ChatLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> ids,
                            std::span<const TokenLogprobs> logprobs) {
  nlohmann::json content = nlohmann::json::array();
  for (size_t i = 0; i < ids.size() && i < logprobs.size(); ++i) {
    nlohmann::json entry = ChatEntry(tokenizer, ids[i], logprobs[i].chosen);
    nlohmann::json top = nlohmann::json::array();
    for (size_t k = 0; k < logprobs[i].top_ids.size(); ++k) {
      top.push_back(ChatEntry(tokenizer, logprobs[i].top_ids[k], logprobs[i].top_logprobs[k]));
    }
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return content;
}

nlohmann::json CompletionLogprobs(const Tokenizer& tokenizer, std::span<const int32_t> ids,
                                  std::span<const TokenLogprobs> logprobs, int64_t first_offset) {
  nlohmann::json tokens = nlohmann::json::array(), values = nlohmann::json::array();
  nlohmann::json tops = nlohmann::json::array(), offsets = nlohmann::json::array();
  int64_t offset = first_offset;
  for (size_t i = 0; i < ids.size() && i < logprobs.size(); ++i) {
    const std::string bytes = tokenizer.TokenBytes(ids[i]);
    tokens.push_back(ValidUtf8(bytes));
    values.push_back(Clamped(logprobs[i].chosen));
    offsets.push_back(offset);
    offset += static_cast<int64_t>(bytes.size());
    nlohmann::json top = nlohmann::json::object();
    for (size_t k = 0; k < logprobs[i].top_ids.size(); ++k) {
      const std::string token = ValidUtf8(tokenizer.TokenBytes(logprobs[i].top_ids[k]));
      if (!top.contains(token)) top[token] = Clamped(logprobs[i].top_logprobs[k]);  // the likelier of equal texts
    }
    tops.push_back(std::move(top));
  }
  return {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

}  // namespace ixc::coordinator
