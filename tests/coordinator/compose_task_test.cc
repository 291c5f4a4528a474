// The composition tasks (coordinator/compose_task.h): each task's prompt ids against the reference's template written
// out from the spec (sections 5.2 and 7) and tokenized with the real tokenizer; the settings of spec 5.3; the
// post-processing and the resume's script splice.
#include "coordinator/compose_task.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "coordinator/chat_template.h"
#include "tests/coordinator/real_tokenizer.h"

namespace ixc::coordinator {
namespace {

// The ids of `text`, tokenized as one piece after BOS: the reference's interleav_wrap_chat for a prompt without
// images (its first piece carries BOS).
std::vector<int32_t> Ids(const std::string& text) { return testing::RealTokenizer().Encode(text, /*add_bos=*/true); }

std::vector<int32_t> TaskIds(ComposeTask task, const std::string& input, int images = 0) {
  auto segments = TokenizeInterleaved(testing::RealTokenizer(), TaskPrompt(TaskQuery(task, input)), images);
  EXPECT_TRUE(segments.ok()) << segments.status();
  std::vector<int32_t> ids;
  for (const PromptSegment& segment : *segments) {
    if (segment.image >= 0) ids.push_back(-1);  // the image's place
    ids.insert(ids.end(), segment.ids.begin(), segment.ids.end());
  }
  return ids;
}

constexpr char kUser[] = "[UNUSED_TOKEN_146]user\n";
constexpr char kAssistant[] = "[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n";

TEST(ComposeTaskTest, PromptsAreTheReferenceFunctionsTurns) {
  const std::string inst = "A website for Research institutions. The name is Shanghai AI lab.";
  EXPECT_EQ(TaskIds(ComposeTask::kWriteWebpage, inst), Ids(kUser + inst + kAssistant));
  EXPECT_EQ(TaskIds(ComposeTask::kWriteArticle, inst), Ids(kUser + inst + kAssistant));
  const std::string resume = "# Jane Doe\n\n## Experience\n- Engineer";
  EXPECT_EQ(TaskIds(ComposeTask::kResumeToWebpage, resume),
            Ids(std::string(kUser) + " Generate a personal page using the content in the resume:" + resume +
                kAssistant));
  EXPECT_EQ(TaskQuery(ComposeTask::kResumeToWebpage, resume).substr(0, 1), " ") << "the reference's leading space";
  // The screenshot's query is ignored; its image goes first, right after BOS, before the user turn.
  std::vector<int32_t> screen = {1, -1};
  const std::vector<int32_t> turn = testing::RealTokenizer().Encode(
      std::string(kUser) + " Generate the HTML code of this web image with Tailwind CSS." + kAssistant, false);
  screen.insert(screen.end(), turn.begin(), turn.end());
  EXPECT_EQ(TaskIds(ComposeTask::kScreenToWebpage, "anything at all", /*images=*/1), screen);
  EXPECT_EQ(ScriptQuery("<html></html>"), " Generate JavaScript events for the html code:<html></html>");
}

TEST(ComposeTaskTest, SettingsAreTheReferenceFunctionsDefaults) {
  for (ComposeTask task : {ComposeTask::kWriteWebpage, ComposeTask::kScreenToWebpage, ComposeTask::kResumeToWebpage}) {
    const TaskSettings web = SettingsOf(task);
    EXPECT_EQ(web.lora, model::LoraMode::kWeb);
    EXPECT_EQ(web.num_beams, 2);
    EXPECT_FLOAT_EQ(web.sampling.repetition_penalty, 3.f);
    EXPECT_EQ(web.sampling.temperature, 0.f) << "beam search, no sampling";
    EXPECT_EQ(web.max_new_tokens, 4800);
    EXPECT_EQ(web.needs_image, task == ComposeTask::kScreenToWebpage);
  }
  const TaskSettings write = SettingsOf(ComposeTask::kWriteArticle);
  EXPECT_EQ(write.lora, model::LoraMode::kWrite);
  EXPECT_EQ(write.num_beams, 1);
  EXPECT_FLOAT_EQ(write.sampling.temperature, 1.f);
  EXPECT_FLOAT_EQ(write.sampling.top_p, 0.8f);
  EXPECT_EQ(write.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(write.sampling.repetition_penalty, 1.005f);
  EXPECT_EQ(write.max_total_tokens, 8192);
  EXPECT_EQ(*ComposeTaskFromName("resume_2_webpage"), ComposeTask::kResumeToWebpage);
  EXPECT_NE(ComposeTaskFromName("webpage").status().message().find("write_webpage, screen_2_webpage"),
            std::string::npos);
}

TEST(ComposeTaskTest, ARequestsOwnSettingsWin) {
  TaskSettings own;
  own.num_beams = 1;
  own.sampling.repetition_penalty = 1.f;
  own.max_new_tokens = 6;
  const std::set<std::string> given = {"num_beams", "repetition_penalty", "max_new_tokens"};
  const TaskSettings merged = MergeSettings(SettingsOf(ComposeTask::kWriteArticle), own,
                                            [&](absl::string_view name) { return given.contains(std::string(name)); });
  EXPECT_EQ(merged.num_beams, 1);
  EXPECT_EQ(merged.sampling.repetition_penalty, 1.f);
  EXPECT_EQ(merged.max_new_tokens, 6);
  EXPECT_EQ(merged.max_total_tokens, 0) << "a request's max_new_tokens lifts the task's total";
  EXPECT_EQ(merged.lora, model::LoraMode::kWrite) << "not given: the task's";
  EXPECT_EQ(merged.sampling.top_k, 40);
  const TaskSettings untouched = MergeSettings(SettingsOf(ComposeTask::kWriteArticle), own,
                                               [](absl::string_view) { return false; });
  EXPECT_EQ(untouched.max_total_tokens, 8192);
  EXPECT_EQ(untouched.sampling.repetition_penalty, 1.005f);
}

TEST(ComposeTaskTest, PostProcessingStripsTurnMarkersAndRewritesUnsplash) {
  const std::string page =
      "<img src=\"https://source.unsplash.com/random/800x600/?nature,water\">[UNUSED_TOKEN_145]"
      "<img src='https://source.unsplash.com/random/40x40/?face'>[UNUSED_TOKEN_146]";
  EXPECT_EQ(PostProcess(ComposeTask::kWriteWebpage, page),
            "<img src=\"https://picsum.photos/800/600\"><img src='https://picsum.photos/40/40'>");
  EXPECT_EQ(PostProcess(ComposeTask::kWriteArticle, "An essay.[UNUSED_TOKEN_145]"), "An essay.");
  EXPECT_EQ(PostProcess(ComposeTask::kWriteArticle, "https://source.unsplash.com/random/8x6/?a\""),
            "https://source.unsplash.com/random/8x6/?a\"")
      << "articles keep their URLs, as write_artical does";
}

TEST(ComposeTaskTest, TheResumesScriptIsSplicedIntoThePage) {
  const std::string reply = "Here: <script>document.title = 'a';</script> and <script>go();</script>";
  EXPECT_EQ(SpliceScript("<html><script>init();</script></html>", reply),
            "<html><script>init();\ndocument.title = 'a';go();\n</script></html>");
  EXPECT_EQ(SpliceScript("<html><body></body></html>", "<script>x();</script>"),
            "<html><body></body>\n<script>x();</script>\n</html>");
  EXPECT_EQ(SpliceScript("<div>no page end</div>", "<script>x();</script>"), "<div>no page end</div>");
}

}  // namespace
}  // namespace ixc::coordinator
