// The tokenizer and chat template against tests/data/tokenizer_golden.json (tools/reference/tokenizer_goldens.py:
// template strings written from the spec, ids from SentencePiece's Python package on the real tokenizer.model).
#include <fstream>

#include "coordinator/chat_template.h"
#include "coordinator/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ixc::coordinator {
namespace {

const std::string kTokenizerPath = std::string(IXC_SOURCE_DIR) + "/tests/data/tokenizer.model";

std::unique_ptr<Tokenizer> LoadRealTokenizer() {
  std::string error;
  auto tokenizer = Tokenizer::Load(kTokenizerPath, &error);
  EXPECT_NE(tokenizer, nullptr) << error;
  return tokenizer;
}

TEST(TokenizerTest, SpecialIdsOfTheRealModel) {
  auto tokenizer = LoadRealTokenizer();
  EXPECT_EQ(tokenizer->vocab_size(), 92544);
  EXPECT_EQ(tokenizer->PieceToId("<unk>"), 0);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->PieceToId("<s>"), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->PieceToId("</s>"), 2);
  EXPECT_EQ(tokenizer->PieceToId("[UNUSED_TOKEN_145]"), kEndOfTurnId);
  EXPECT_EQ(tokenizer->PieceToId("[UNUSED_TOKEN_146]"), kStartOfTurnId);
  // User-defined markers encode whole, and no dummy-prefix space is added.
  EXPECT_EQ(tokenizer->Encode("[UNUSED_TOKEN_146]user\n", /*add_bos=*/false).front(), kStartOfTurnId);
  EXPECT_EQ(tokenizer->IdToPiece(tokenizer->Encode("Hello", false).front()).rfind("\u2581", 0), std::string::npos);
}

TEST(TokenizerTest, DecodeRoundTripsTextAndKeepsMarkers) {
  auto tokenizer = LoadRealTokenizer();
  const std::string text = "naïve 🚗 浦语·灵笔\n  two spaces";
  EXPECT_EQ(tokenizer->Decode(tokenizer->Encode(text, /*add_bos=*/true)), text);
  EXPECT_EQ(tokenizer->Decode({kEndOfTurnId}), "[UNUSED_TOKEN_145]");
}

// Each token's bytes, concatenated, spell the decoded text: byte-fallback pieces (the emoji and rare characters
// come as several) give their bytes, word boundaries spaces, BOS nothing.
TEST(TokenizerTest, TokenBytesConcatenateToTheDecode) {
  auto tokenizer = LoadRealTokenizer();
  const std::string text = "naïve 🚗 浦语·灵笔\n  two spaces [UNUSED_TOKEN_145] 𝔘";
  const std::vector<int32_t> ids = tokenizer->Encode(text, /*add_bos=*/true);
  std::string bytes;
  int partial = 0;  // tokens whose bytes are not whole characters
  for (int32_t id : ids) {
    const std::string token = tokenizer->TokenBytes(id);
    bytes += token;
    partial += token.size() == 1 && static_cast<unsigned char>(token[0]) >= 0x80;
  }
  EXPECT_EQ(bytes, tokenizer->Decode(ids));
  EXPECT_EQ(bytes, text);
  EXPECT_GT(partial, 0);  // the byte fallback was exercised
  EXPECT_EQ(tokenizer->TokenBytes(tokenizer->eos_id()), "");
  EXPECT_EQ(tokenizer->TokenBytes(-1), "");
}

TEST(TokenizerTest, MissingFileNamesThePath) {
  std::string error;
  EXPECT_EQ(Tokenizer::Load("/nonexistent/tokenizer.model", &error), nullptr);
  EXPECT_NE(error.find("/nonexistent/tokenizer.model"), std::string::npos) << error;
}

TEST(ChatTemplateTest, MatchesGoldenStringsAndIds) {
  auto tokenizer = LoadRealTokenizer();
  std::ifstream file(std::string(IXC_SOURCE_DIR) + "/tests/data/tokenizer_golden.json");
  const nlohmann::json cases = nlohmann::json::parse(file);
  ASSERT_GE(cases.size(), 7u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::string prompt;
    if (c["chat"].is_null()) {
      prompt = c["text"].get<std::string>();
    } else {
      ChatRequest request;
      request.query = c["chat"]["query"].get<std::string>();
      request.use_meta = c["chat"].value("use_meta", false);
      for (const auto& turn : c["chat"].value("history", nlohmann::json::array())) {
        request.history.push_back({turn[0].get<std::string>(), turn[1].get<std::string>()});
      }
      prompt = BuildChatPrompt(request);
    }
    const int images = c["images"].get<int>();
    auto segments = TokenizeInterleaved(*tokenizer, prompt, images);
    ASSERT_TRUE(segments.ok()) << segments.status();
    std::vector<std::vector<int32_t>> pieces;
    int image_slots = 0;
    for (const PromptSegment& segment : *segments) {
      if (segment.image >= 0) {
        EXPECT_EQ(segment.image, image_slots++);
      } else {
        pieces.push_back(segment.ids);
      }
    }
    EXPECT_EQ(image_slots, images);
    EXPECT_EQ(pieces, c["pieces"].get<std::vector<std::vector<int32_t>>>());
    if (images != 1) {
      EXPECT_EQ(prompt, c["prompt"].get<std::string>());
    } else {
      EXPECT_EQ(kImagePlaceholder + prompt, c["prompt"].get<std::string>());
    }
  }
}

TEST(ChatTemplateTest, SegmentOrderPutsImagesBetweenPieces) {
  auto tokenizer = LoadRealTokenizer();
  auto segments = TokenizeInterleaved(*tokenizer, "<ImageHere>a<ImageHere><ImageHere>b", 3);
  ASSERT_TRUE(segments.ok());
  // "" (BOS only), image 0, "a", image 1, image 2 (empty piece between skipped), "b".
  ASSERT_EQ(segments->size(), 6u);
  EXPECT_EQ((*segments)[0].ids, std::vector<int32_t>{1});
  EXPECT_EQ((*segments)[1].image, 0);
  EXPECT_EQ((*segments)[3].image, 1);
  EXPECT_EQ((*segments)[4].image, 2);
  EXPECT_EQ((*segments)[5].ids, tokenizer->Encode("b", /*add_bos=*/false));
}

TEST(ChatTemplateTest, PlaceholderCountMismatchIsAnError) {
  auto tokenizer = LoadRealTokenizer();
  auto segments = TokenizeInterleaved(*tokenizer, "one <ImageHere> two <ImageHere>", 3);
  ASSERT_FALSE(segments.ok());
  EXPECT_NE(segments.status().message().find("2 <ImageHere> placeholders for 3 images"), std::string::npos)
      << segments.status();
}

}  // namespace
}  // namespace ixc::coordinator
