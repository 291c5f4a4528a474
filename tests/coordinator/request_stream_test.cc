// RequestStream hands each waiter only what came after the tokens it has seen, with their log-probabilities, then
// the end; a wait with nothing new times out.
#include <chrono>
#include <thread>

#include "coordinator/request_stream.h"
#include "gtest/gtest.h"

namespace ixc::coordinator {
namespace {

using std::chrono::milliseconds;

TEST(RequestStreamTest, WaitsHandOverWhatCameAfterTheSeenTokens) {
  RequestStream stream;
  RequestStream::Update update;
  EXPECT_FALSE(stream.Wait(0, milliseconds(1), &update));  // nothing yet
  EXPECT_TRUE(update.tokens.empty());
  EXPECT_EQ(update.total, 0u);
  stream.Push(10, TokenLogprobs{-0.5f, {10}, {-0.5f}});
  stream.Push(11, TokenLogprobs{-1.5f, {12}, {-0.2f}});
  stream.Push(12, TokenLogprobs{-2.5f, {}, {}});
  ASSERT_TRUE(stream.Wait(1, milliseconds(1), &update));
  EXPECT_EQ(update.tokens, (std::vector<int32_t>{11, 12}));
  ASSERT_EQ(update.logprobs.size(), 2u);
  EXPECT_FLOAT_EQ(update.logprobs[0].chosen, -1.5f);
  EXPECT_EQ(update.total, 3u);
  EXPECT_FALSE(update.finished);
  EXPECT_FALSE(stream.Wait(3, milliseconds(1), &update));  // seen them all
  EXPECT_TRUE(update.tokens.empty());
  // A waiter on another thread wakes at the end.
  std::thread finisher([&] {
    std::this_thread::sleep_for(milliseconds(20));
    stream.Finish("length", "");
  });
  EXPECT_TRUE(stream.Wait(3, std::chrono::seconds(10), &update));
  finisher.join();
  EXPECT_TRUE(update.finished);
  EXPECT_EQ(update.finish_reason, "length");
  stream.Finish("abort", "late");  // the first end stays
  stream.Wait(0, milliseconds(1), &update);
  EXPECT_EQ(update.finish_reason, "length");
  EXPECT_EQ(update.tokens.size(), 3u);
}

TEST(RequestStreamTest, TokensWithoutLogprobsLeaveThemEmpty) {
  RequestStream stream;
  stream.Push(1);
  stream.Push(2);
  RequestStream::Update update;
  ASSERT_TRUE(stream.Wait(0, milliseconds(1), &update));
  EXPECT_EQ(update.tokens.size(), 2u);
  EXPECT_TRUE(update.logprobs.empty());
}

}  // namespace
}  // namespace ixc::coordinator
