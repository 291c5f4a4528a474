// A request line into a Request (coordinator/request.h): the fields and their defaults, and every malformed line
// answered by an error naming the field, never an exception (the coordinator does not catch one) nor a value
// truncated, wrapped around or out of range.
#include "coordinator/request.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>

#include "coordinator/chat_template.h"

namespace ixc::coordinator {
namespace {

class RequestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string error;
    tokenizer_ = Tokenizer::Load(IXC_SOURCE_DIR "/tests/data/tokenizer.model", &error).release();
    ASSERT_NE(tokenizer_, nullptr) << error;
  }
  static void TearDownTestSuite() { delete tokenizer_; }

  absl::StatusOr<Request> Parse(const std::string& line) {
    RequestDefaults defaults;
    defaults.max_context = 4096;
    defaults.vocab_size = 92544;
    return ParseRequest(line, /*number=*/7, tokenizer_, defaults);
  }
  // The error of a line that must be refused.
  std::string Error(const std::string& line) {
    const absl::StatusOr<Request> request = Parse(line);
    EXPECT_FALSE(request.ok()) << line;
    return request.ok() ? "" : std::string(request.status().message());
  }

  static Tokenizer* tokenizer_;
};

Tokenizer* RequestTest::tokenizer_ = nullptr;

TEST_F(RequestTest, ReadsEveryFieldAndTheDefaults) {
  absl::StatusOr<Request> request = Parse(
      R"({"id": "a", "prompt_ids": [1, 92543], "max_new_tokens": 5, "temperature": 0.7, "top_p": 0.8, "top_k": 50,)"
      R"( "repetition_penalty": 1.05, "seed": 18446744073709551615, "arrive_after_ms": 1500, "lora_mode": "write",)"
      R"( "ignore_eos": true, "dump_logits": "a.npy"})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->id, "a");
  EXPECT_EQ(request->prompt, (std::vector<int32_t>{1, 92543}));
  EXPECT_EQ(request->max_new_tokens, 5);
  EXPECT_FLOAT_EQ(request->sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(request->sampling.top_p, 0.8f);
  EXPECT_EQ(request->sampling.top_k, 50);
  EXPECT_FLOAT_EQ(request->sampling.repetition_penalty, 1.05f);
  EXPECT_EQ(request->seed, 18446744073709551615ull);
  EXPECT_DOUBLE_EQ(request->arrive_after_s, 1.5);
  EXPECT_EQ(request->lora, model::LoraMode::kWrite);
  EXPECT_TRUE(request->stop_ids.empty());
  EXPECT_EQ(request->dump_logits, "a.npy");

  request = Parse(R"({"prompt": "Hello", "chat": true})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->id, "7");  // the line's number
  EXPECT_EQ(request->max_new_tokens, 32);
  EXPECT_EQ(request->sampling.temperature, 0.f);
  EXPECT_EQ(request->sampling.top_p, 1.f);
  EXPECT_EQ(request->sampling.top_k, 0);
  EXPECT_EQ(request->seed, 0u);
  EXPECT_EQ(request->lora, model::LoraMode::kBase);
  EXPECT_EQ(request->stop_ids, (std::vector<int32_t>{2, kEndOfTurnId}));
  EXPECT_EQ(request->prompt, tokenizer_->Encode(BuildChatPrompt({.history = {}, .query = "Hello"}), /*add_bos=*/true));
}

TEST_F(RequestTest, NumbersOfTheWrongKindOrRangeAreRefusedNamingTheField) {
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "max_new_tokens": 2.5})"), "field 'max_new_tokens': must be an integer");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "max_new_tokens": 1e30})"), "field 'max_new_tokens': must be an integer");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "max_new_tokens": "8"})"), "field 'max_new_tokens': must be an integer");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "max_new_tokens": 0})"), "field 'max_new_tokens': must be in [1, 2147483647]");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "max_new_tokens": 4294967297})"),
            "field 'max_new_tokens': must be in [1, 2147483647]");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "top_k": -1})"), "field 'top_k': must be in [0, 2147483647]");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "seed": -1})"), "field 'seed': must be a non-negative integer");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "temperature": "hot"})"), "field 'temperature': must be a number");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "temperature": 1e400})"),
            "not valid JSON (or a number out of a double's range)");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "temperature": 1e39})"), "field 'temperature': must be a finite number");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "temperature": -0.5})"), "field 'temperature': must be >= 0");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "top_p": 0})"), "field 'top_p': must be in (0, 1]");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "repetition_penalty": 0})"), "field 'repetition_penalty': must be > 0");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "arrive_after_ms": -1})"), "field 'arrive_after_ms': must be >= 0");
}

TEST_F(RequestTest, FlagsAndTextsOfTheWrongTypeAreRefusedNamingTheField) {
  EXPECT_EQ(Error(R"({"prompt": "Hi", "chat": "yes"})"), "field 'chat': must be true or false");
  EXPECT_EQ(Error(R"({"prompt": "Hi", "chat": true, "use_meta": 1})"), "field 'use_meta': must be true or false");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "ignore_eos": "no"})"), "field 'ignore_eos': must be true or false");
  EXPECT_EQ(Error(R"({"prompt": "Hi", "video": 5})"), "field 'video': must be a string");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "dump_logits": ["a"]})"), "field 'dump_logits': must be a string");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "lora_mode": null})"), "field 'lora_mode': must be a string");
  EXPECT_NE(Error(R"({"prompt_ids": [1], "lora_mode": "poetry"})").find("poetry"), std::string::npos);
  EXPECT_EQ(Error(R"({"prompt": "Hi", "images": "a.jpg"})"), "field 'images': must be a list of paths");
  EXPECT_EQ(Error(R"({"prompt": 5})"), "field 'prompt': missing (or prompt_ids)");
  EXPECT_EQ(Error(R"(["prompt"])"), "not a JSON object");
  EXPECT_EQ(Error(R"({"prompt": "Hi")"), "not valid JSON (or a number out of a double's range)");
}

TEST_F(RequestTest, PromptIdsAreCheckedAgainstTheVocabularyBeforeNarrowing) {
  EXPECT_EQ(Error(R"({"prompt_ids": [1, 4294967297]})"),
            "field 'prompt_ids': token id 4294967297 is outside the vocabulary [0, 92544)");
  EXPECT_EQ(Error(R"({"prompt_ids": [92544]})"),
            "field 'prompt_ids': token id 92544 is outside the vocabulary [0, 92544)");
  EXPECT_EQ(Error(R"({"prompt_ids": [-1]})"), "field 'prompt_ids': token id -1 is outside the vocabulary [0, 92544)");
  EXPECT_EQ(Error(R"({"prompt_ids": [1.0]})"), "field 'prompt_ids': must be a list of integers");
  EXPECT_EQ(Error(R"({"prompt_ids": 1})"), "field 'prompt_ids': must be a list of integers");
  EXPECT_EQ(Error(R"({"prompt_ids": []})"), "field 'prompt': is empty");
  EXPECT_EQ(Error(R"({"prompt_ids": [1], "images": ["a.jpg"]})"),
            "field 'prompt_ids': images and video need a text prompt");
}

TEST_F(RequestTest, ImagesAreReadAndBadOnesNamed) {
  absl::StatusOr<Request> request =
      Parse(R"({"prompt": "What is <ImageHere>?", "images": [")" IXC_SOURCE_DIR R"(/tests/data/images/cars1.jpg"]})");
  ASSERT_TRUE(request.ok()) << request.status();
  ASSERT_EQ(request->images.size(), 1u);
  EXPECT_EQ(request->images[0].tag, -1);  // no image cache entry until the engine dispatches it
  EXPECT_FALSE(request->images[0].prepared.key.empty());
  EXPECT_GT(request->images[0].rows, 0);
  EXPECT_NE(Error(R"({"prompt": "What is <ImageHere>?", "images": ["/nonexistent.jpg"]})").find("/nonexistent.jpg"),
            std::string::npos);
}

// An image's content key (the prefix and image caches' name for it) follows its decoded pixels and hd_num: the same
// pixels under another file name share it; other pixels, or the same file transformed with another hd_num, do not.
TEST_F(RequestTest, ImageKeysFollowThePixelsAndHdNum) {
  const std::string images = IXC_SOURCE_DIR "/tests/data/images/";
  const std::string copy = ::testing::TempDir() + "/cars1-copy.jpg";
  {
    std::ifstream in(images + "cars1.jpg", std::ios::binary);
    std::ofstream out(copy, std::ios::binary);
    out << in.rdbuf();
  }
  auto key_of = [&](const std::string& files, int index) {
    const int count = static_cast<int>(std::count(files.begin(), files.end(), ','));
    std::string prompt;
    for (int i = 0; i <= count; ++i) prompt += "<ImageHere>";
    absl::StatusOr<Request> request = Parse(R"({"prompt": ")" + prompt + R"(", "images": [)" + files + "]}");
    EXPECT_TRUE(request.ok()) << request.status();
    return request.ok() ? request->images[index].prepared.key : ContentKey{};
  };
  const std::string cars1 = "\"" + images + "cars1.jpg\"", cars2 = "\"" + images + "cars2.jpg\"";
  const ContentKey one = key_of(cars1, 0);
  EXPECT_FALSE(one.empty());
  EXPECT_EQ(key_of("\"" + copy + "\"", 0), one);               // the same pixels, another file
  EXPECT_NE(key_of(cars2, 0), one);                             // other pixels
  EXPECT_NE(key_of(cars1 + "," + cars2, 0), one);               // two images: hd_num 6, not 24
  EXPECT_EQ(key_of(cars2 + "," + cars1, 1), key_of(cars1 + "," + cars2, 0));  // hd_num 6 both
}

TEST_F(RequestTest, APromptTheContextCannotHoldIsRefused) {
  std::string words;
  for (int i = 0; i < 5000; ++i) words += "a ";
  const std::string message = Error(R"({"prompt": ")" + words + R"("})");
  EXPECT_NE(message.find("the context holds 4096"), std::string::npos) << message;
}

}  // namespace
}  // namespace ixc::coordinator
