// The OpenAI bodies into prompts: the roles onto IXC-2.5's template with history (spec 5.2), where images go, the
// sampling fields and their refusals, each error naming its field.
#include "coordinator/api/openai_request.h"

#include "coordinator/chat_template.h"
#include "gtest/gtest.h"

namespace ixc::coordinator {
namespace {

const std::string kCars = std::string(IXC_SOURCE_DIR) + "/tests/data/images/cars1.jpg";

ApiLimits Limits() {
  ApiLimits limits;
  limits.media.allowed_roots = {std::string(IXC_SOURCE_DIR) + "/tests/data"};
  return limits;
}

nlohmann::json Image(const std::string& url) { return {{"type", "image_url"}, {"image_url", {{"url", url}}}}; }
nlohmann::json Text(const std::string& text) { return {{"type", "text"}, {"text", text}}; }

TEST(OpenAiRequestTest, RolesMapOntoTheTemplateWithHistory) {
  const nlohmann::json body = {{"messages",
                                {{{"role", "system"}, {"content", "Be brief."}},
                                 {{"role", "user"}, {"content", "Q1"}},
                                 {{"role", "assistant"}, {"content", {Text("A1")}}},
                                 {{"role", "user"}, {"content", "Q2a"}},
                                 {{"role", "user"}, {"content", "Q2b"}}}}};
  auto request = ParseChatRequest(body, Limits());
  ASSERT_TRUE(request.ok()) << request.status();
  ChatRequest chat;
  chat.use_meta = true;
  chat.meta_instruction = "Be brief.";
  chat.history = {{"Q1", "A1"}};
  chat.query = "Q2a\nQ2b";
  EXPECT_EQ(request->prompts[0].text, BuildChatPrompt(chat));
  EXPECT_TRUE(request->prompts[0].media.empty());
  EXPECT_EQ(request->sampling.temperature, 1.0f);  // OpenAI's defaults
  EXPECT_EQ(request->sampling.top_p, 1.0f);
}

TEST(OpenAiRequestTest, WhereImagesGo) {
  // One image and no placeholder: none is written (the reference puts it first); in an earlier turn too.
  auto one = ParseChatRequest({{"messages", {{{"role", "user"}, {"content", {Image(kCars), Text("What?")}}},
                                             {{"role", "assistant"}, {"content", "A car."}},
                                             {{"role", "user"}, {"content", "Colour?"}}}}},
                              Limits());
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->prompts[0].text.find(kImagePlaceholder), std::string::npos);
  EXPECT_EQ(one->prompts[0].media.size(), 1u);
  EXPECT_FALSE(one->prompts[0].media[0].bytes.empty());  // read at once
  // Several: "ImageK <ImageHere>; " where each stands.
  auto two = ParseChatRequest({{"messages", {{{"role", "user"}, {"content", {Text("A "), Image(kCars), Image(kCars),
                                                                              Text("compare")}}}}}},
                              Limits());
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_NE(two->prompts[0].text.find("A Image1 <ImageHere>; Image2 <ImageHere>; compare"), std::string::npos)
      << two->prompts[0].text;
  // The user's own placeholders are kept as written.
  auto own = ParseChatRequest({{"messages", {{{"role", "user"}, {"content", {Text("x <ImageHere> y <ImageHere>"),
                                                                              Image(kCars), Image(kCars)}}}}}},
                              Limits());
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_NE(own->prompts[0].text.find("x <ImageHere> y <ImageHere>"), std::string::npos);
  EXPECT_EQ(own->prompts[0].text.find("Image1"), std::string::npos);
}

TEST(OpenAiRequestTest, ErrorsNameTheirField) {
  const nlohmann::json ok = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}};
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {{{"temperature", -1}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},
      {{{"top_k", 2.5}}, "top_k"},
      {{{"max_tokens", 0}}, "max_tokens"},
      {{{"n", 9}}, "n"},
      {{{"stop", {1}}}, "stop"},
      {{{"seed", "x"}}, "seed"},
      {{{"logprobs", 1}}, "logprobs"},
      {{{"top_logprobs", 2}}, "top_logprobs"},
      {{{"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs"},
      {{{"logprobs", true}, {"top_logprobs", -1}}, "top_logprobs"},
      {{{"presence_penalty", 0.5}}, "presence_penalty"},
      {{{"lora_mode", "poetry"}}, "lora_mode"},
      {{{"stream_options", {{"include_usage", true}}}}, "stream_options"},
      {{{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "user"}, {"content", {Image("http://x/a.jpg")}}}}}}, "messages[0].content[0].image_url"},
      {{{"messages", {{{"role", "user"}, {"content", {Image("/etc/passwd")}}}}}}, "messages[0].content[0].image_url"},
      {{{"messages", {{{"role", "assistant"}, {"content", "x"}}}}}, "messages[0].role"},
  };
  for (const auto& [change, param] : cases) {
    nlohmann::json body = ok;
    body.update(change);
    auto request = ParseChatRequest(body, Limits());
    ASSERT_FALSE(request.ok()) << body.dump();
    EXPECT_EQ(ParamOf(request.status()), param) << body.dump() << ": " << request.status();
    EXPECT_NE(std::string(request.status().message()).find(param), std::string::npos) << request.status();
  }
}

TEST(OpenAiRequestTest, LogprobsAsEachEndpointAsksForThem) {
  const nlohmann::json hi = {{"role", "user"}, {"content", "Hi"}};
  auto none = ParseChatRequest({{"messages", {hi}}, {"logprobs", false}}, Limits());
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->top_logprobs, -1);
  auto chosen = ParseChatRequest({{"messages", {hi}}, {"logprobs", true}}, Limits());
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(chosen->top_logprobs, 0);  // the chosen token's alone
  auto top = ParseChatRequest({{"messages", {hi}}, {"logprobs", true}, {"top_logprobs", 20}}, Limits());
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_EQ(top->top_logprobs, 20);
  auto completion = ParseCompletionRequest({{"prompt", "x"}, {"logprobs", 5}}, Limits());
  ASSERT_TRUE(completion.ok()) << completion.status();
  EXPECT_EQ(completion->top_logprobs, 5);
  EXPECT_EQ(ParamOf(ParseCompletionRequest({{"prompt", "x"}, {"logprobs", true}}, Limits()).status()), "logprobs");
  EXPECT_EQ(ParamOf(ParseCompletionRequest({{"prompt", "x"}, {"logprobs", 21}}, Limits()).status()), "logprobs");
}

TEST(OpenAiRequestTest, CompletionPrompts) {
  auto text = ParseCompletionRequest({{"prompt", "The city"}, {"top_k", -1}, {"seed", -3}}, Limits());
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->prompts[0].text, "The city");  // no template
  EXPECT_EQ(text->sampling.top_k, 0);            // -1: off, as vLLM
  EXPECT_EQ(*text->seed, static_cast<uint64_t>(-3));
  auto batch = ParseCompletionRequest({{"prompt", {{1, 2, 3}, "b"}}}, Limits());
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->prompts.size(), 2u);
  EXPECT_EQ(*batch->prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(batch->prompts[1].text, "b");
  EXPECT_EQ(ParamOf(ParseCompletionRequest({{"prompt", {1, -2}}}, Limits()).status()), "prompt");
}

}  // namespace
}  // namespace ixc::coordinator
