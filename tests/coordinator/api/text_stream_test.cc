// TextStream against the tokenizer's decode of all the ids at once, on the real IXC-2.5 tokenizer: Chinese text (whose
// characters often come as several byte-fallback pieces), emoji, spaces and user-defined pieces, fed one id at a
// time and in random runs; stop strings cut the text exactly where the whole decode shows them.
#include <random>

#include "coordinator/api/text_stream.h"
#include "gtest/gtest.h"
#include "tests/coordinator/real_tokenizer.h"

namespace ixc::coordinator {
namespace {

using ::ixc::testing::RealTokenizer;

// The deltas of `ids` fed in runs of 1..max_run ids, and the whole text they make.
std::vector<std::string> Deltas(const std::vector<int32_t>& ids, std::vector<std::string> stops, int max_run,
                                uint64_t seed, std::string* whole) {
  TextStream stream(RealTokenizer(), std::move(stops));
  std::mt19937_64 rng(seed);
  std::vector<std::string> deltas;
  for (size_t i = 0; i < ids.size();) {
    const size_t run = std::min(ids.size() - i, 1 + static_cast<size_t>(rng() % max_run));
    deltas.push_back(stream.Add(std::span<const int32_t>(ids.data() + i, run)));
    i += run;
  }
  deltas.push_back(stream.Finish());
  whole->clear();
  for (const std::string& delta : deltas) *whole += delta;
  EXPECT_EQ(*whole, stream.text());
  return deltas;
}

TEST(TextStreamTest, DeltasConcatenateToTheWholeDecode) {
  const Tokenizer& tokenizer = RealTokenizer();
  const std::vector<std::string> texts = {
      "The skyline of Dubai at night, 浦语·灵笔 and 上海人工智能实验室 😀🚗 café naïve  double  spaces\n\nend",
      "鲠批评 DataFrame 个人 vida 在哪 🙂 [UNUSED_TOKEN_146]user\n",
      "  leading spaces and a tab\tthen 中文。"};
  for (const std::string& text : texts) {
    const std::vector<int32_t> ids = tokenizer.Encode(text, /*add_bos=*/false);
    for (int max_run : {1, 3}) {
      std::string whole;
      const std::vector<std::string> deltas = Deltas(ids, {}, max_run, 7, &whole);
      EXPECT_EQ(whole, tokenizer.Decode(ids)) << text;
      for (const std::string& delta : deltas) EXPECT_EQ(delta.find("\xEF\xBF\xBD"), std::string::npos) << delta;
    }
  }
}

TEST(TextStreamTest, RandomIdsConcatenateToTheWholeDecode) {
  // Random ids, byte pieces (3..258) among them: characters cut short must still come out as the decoder shows them.
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 60; ++i) ids.push_back(rng() % 3 == 0 ? 3 + rng() % 256 : 259 + rng() % 90000);
    std::string whole;
    Deltas(ids, {}, 1 + trial % 4, trial, &whole);
    EXPECT_EQ(whole, RealTokenizer().Decode(ids)) << "trial " << trial;
  }
}

TEST(TextStreamTest, StopStringsCutWhereTheWholeTextShowsThem) {
  const Tokenizer& tokenizer = RealTokenizer();
  const std::string text = "One car, two cars. Three cars! 四辆车。 The end.";
  const std::vector<int32_t> ids = tokenizer.Encode(text, false);
  const std::string decoded = tokenizer.Decode(ids);
  for (const std::string& stop : {std::string("cars!"), std::string("四辆"), std::string("."), std::string("end.")}) {
    for (int max_run : {1, 2, 5}) {
      std::string whole;
      TextStream stream(tokenizer, {stop, "never appears"});
      for (size_t i = 0; i < ids.size(); i += max_run) {
        whole += stream.Add(std::span<const int32_t>(ids.data() + i, std::min<size_t>(max_run, ids.size() - i)));
      }
      whole += stream.Finish();
      EXPECT_TRUE(stream.stopped()) << stop;
      EXPECT_EQ(whole, decoded.substr(0, decoded.find(stop))) << stop << " in runs of " << max_run;
    }
  }
  std::string whole;
  Deltas(ids, {"absent"}, 2, 3, &whole);
  EXPECT_EQ(whole, decoded);  // a stop string that never comes holds nothing back at the end
}

TEST(TextStreamTest, HoldsBackWhatMayBeginAStopString) {
  const Tokenizer& tokenizer = RealTokenizer();
  TextStream stream(tokenizer, {"cars!"});
  const std::vector<int32_t> ids = tokenizer.Encode("two ca", false);
  const std::string sent = stream.Add(ids);
  EXPECT_EQ(sent.find("ca"), std::string::npos) << sent;  // "ca" may start "cars!"
  const std::vector<int32_t> more = tokenizer.Encode("t", false);
  std::string whole = sent + stream.Add(more);
  whole += stream.Finish();
  EXPECT_EQ(whole, tokenizer.Decode(ids) + tokenizer.Decode(more));
}

}  // namespace
}  // namespace ixc::coordinator
