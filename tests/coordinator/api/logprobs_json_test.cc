// The OpenAI shapes of generated tokens' log-probabilities, on the real IXC-2.5 tokenizer: a character that comes as
// several byte-fallback pieces shows U+FFFD per piece while its bytes join to the character; the completions shape's
// offsets follow the bytes; every body serializes (strict UTF-8 JSON).
#include <cmath>
#include <limits>

#include "coordinator/api/logprobs_json.h"
#include "gtest/gtest.h"
#include "tests/coordinator/real_tokenizer.h"

namespace ixc::coordinator {
namespace {

using ::ixc::testing::RealTokenizer;

// Made-up log-probabilities for `ids`: each token's own, and its neighbours' as the likeliest two.
std::vector<TokenLogprobs> Invented(const std::vector<int32_t>& ids) {
  std::vector<TokenLogprobs> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    out.push_back({-0.25f * static_cast<float>(i), {ids[i], ids[(i + 1) % ids.size()]}, {-0.1f, -2.5f}});
  }
  return out;
}

TEST(LogprobsJsonTest, ChatEntriesCarryTextBytesAndAlternatives) {
  const std::string text = "The 🚗 浦语";
  const std::vector<int32_t> ids = RealTokenizer().Encode(text, /*add_bos=*/false);
  std::vector<TokenLogprobs> logprobs = Invented(ids);
  logprobs[0].top_logprobs[1] = -std::numeric_limits<float>::infinity();
  const nlohmann::json content = ChatLogprobs(RealTokenizer(), ids, logprobs);
  ASSERT_EQ(content.size(), ids.size());
  std::string joined;
  int replaced = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const nlohmann::json& entry = content[i];
    EXPECT_FLOAT_EQ(entry["logprob"].get<float>(), logprobs[i].chosen);
    for (int byte : entry["bytes"]) joined += static_cast<char>(byte);
    replaced += entry["token"] == "\xEF\xBF\xBD";
    ASSERT_EQ(entry["top_logprobs"].size(), 2u);
    EXPECT_EQ(entry["top_logprobs"][0]["token"], entry["token"]);
    EXPECT_FLOAT_EQ(entry["top_logprobs"][0]["logprob"].get<float>(), -0.1f);
  }
  EXPECT_EQ(joined, text);   // the bytes rebuild the text
  EXPECT_GT(replaced, 0);    // the emoji's pieces
  EXPECT_EQ(content[0]["top_logprobs"][1]["logprob"], -9999.0);  // -inf, which JSON cannot hold
  EXPECT_NO_THROW(content.dump());
}

TEST(LogprobsJsonTest, CompletionShapeOffsetsFollowTheBytes) {
  const std::vector<int32_t> ids = RealTokenizer().Encode("red car", /*add_bos=*/false);
  ASSERT_GE(ids.size(), 2u);
  std::vector<TokenLogprobs> logprobs = Invented(ids);
  logprobs[1].top_ids = {ids[0], ids[0]};  // the same text twice: the likelier stays
  const nlohmann::json out = CompletionLogprobs(RealTokenizer(), ids, logprobs, /*first_offset=*/10);
  ASSERT_EQ(out["tokens"].size(), ids.size());
  int64_t offset = 10;
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(out["text_offset"][i], offset);
    const std::string token = out["tokens"][i];
    offset += static_cast<int64_t>(token.size());
    text += token;
    EXPECT_FLOAT_EQ(out["token_logprobs"][i].get<float>(), logprobs[i].chosen);
  }
  EXPECT_EQ(text, "red car");
  EXPECT_EQ(out["top_logprobs"][1].size(), 1u);
  EXPECT_FLOAT_EQ(out["top_logprobs"][1][out["tokens"][0].get<std::string>()].get<float>(), -0.1f);
}

TEST(LogprobsJsonTest, ValidUtf8ReplacesEveryStrayByte) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(ValidUtf8("caf\xC3\xA9 \xF0\x9F\x9A\x97"), "caf\xC3\xA9 \xF0\x9F\x9A\x97");
  EXPECT_EQ(ValidUtf8("\xE2\x82"), fffd + fffd);              // cut short
  EXPECT_EQ(ValidUtf8("\xC0\x80"), fffd + fffd);              // overlong
  EXPECT_EQ(ValidUtf8("\xED\xA0\x80"), fffd + fffd + fffd);   // a surrogate
  EXPECT_EQ(ValidUtf8("\xF4\x90\x80\x80").size(), 4 * fffd.size());  // past U+10FFFF
  EXPECT_EQ(ValidUtf8("a\x80" "b"), "a" + fffd + "b");
}

}  // namespace
}  // namespace ixc::coordinator
