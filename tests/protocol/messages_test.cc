// The control-plane messages: every kind round-trips through FlatBuffers with its fields; a wrong version and
// corrupt bytes are refused with a message; the ZeroMQ channel carries them between a coordinator and a worker.
#include <thread>

#include "absl/strings/str_cat.h"
#include "protocol/messages.h"
#include "tests/test_util.h"

namespace ixc::protocol {
namespace {

TEST(MessagesTest, StepPlanRoundTrips) {
  flatbuffers::FlatBufferBuilder builder;
  const std::vector<int32_t> tokens = {1, 2, 3};
  std::vector<flatbuffers::Offset<ImageRef>> images = {CreateImageRef(builder, 4, 128, 1, 2)};
  const auto sampling = CreateSampling(builder, 0.7f, 40, 0.8f, 1.05f, 9);
  const auto work = CreateSequenceWork(builder, 7, true, builder.CreateVector(tokens), builder.CreateVector(images),
                                       builder.CreateVector(std::vector<int32_t>{5}), 1, sampling,
                                       builder.CreateString("x.npy"), /*cached_tokens=*/16, /*first_block=*/0,
                                       builder.CreateVector(std::vector<int32_t>{4, 9}));
  const auto plan = CreateStepPlan(builder, 42, builder.CreateVector(std::vector{work}),
                                   builder.CreateVector(std::vector<uint64_t>{3}),
                                   builder.CreateVector(std::vector<int32_t>{2}));
  const Bytes bytes = Finish(builder, 0, Body::StepPlan, plan.Union());
  auto envelope = Decode(bytes);
  ASSERT_TRUE(envelope.ok()) << envelope.status();
  const StepPlan* decoded = (*envelope)->body_as_StepPlan();
  ASSERT_NE(decoded, nullptr);
  EXPECT_EQ(decoded->step(), 42u);
  EXPECT_EQ(decoded->release()->Get(0), 3u);
  EXPECT_EQ(decoded->drop_images()->Get(0), 2);
  const SequenceWork* w = decoded->work()->Get(0);
  EXPECT_EQ(w->request_id(), 7u);
  EXPECT_TRUE(w->prefill());
  EXPECT_EQ(std::vector<int32_t>(w->tokens()->begin(), w->tokens()->end()), tokens);
  EXPECT_EQ(w->images()->Get(0)->tag(), 128);
  EXPECT_EQ(w->cached_tokens(), 16);
  EXPECT_EQ(std::vector<int32_t>(w->blocks()->begin(), w->blocks()->end()), (std::vector<int32_t>{4, 9}));
  EXPECT_FLOAT_EQ(w->sampling()->top_p(), 0.8f);
  EXPECT_EQ(w->sampling()->seed(), 9u);
  EXPECT_EQ(w->dump_logits()->str(), "x.npy");
}

TEST(MessagesTest, SmallMessagesRoundTrip) {
  // Decode reads from the bytes it is given: they must outlive the envelope.
  const Bytes result_bytes = EncodeStepResult(3, 5, {{11, 100}, {12, 200, TokenLogprobs{-0.5f, {200, 7}, {-0.5f, -1.f}}}});
  auto result = Decode(result_bytes);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ((*result)->sender_rank(), 3);
  EXPECT_EQ((*result)->body_as_StepResult()->tokens()->Get(1), 200);
  const std::vector<SampledToken> sampled = SampledTokens(*(*result)->body_as_StepResult());
  ASSERT_EQ(sampled.size(), 2u);
  EXPECT_EQ(sampled[0].request_id, 11u);
  EXPECT_FALSE(sampled[0].logprobs.has_value());  // only where asked
  ASSERT_TRUE(sampled[1].logprobs.has_value());
  EXPECT_EQ(sampled[1].token, 200);
  EXPECT_FLOAT_EQ(sampled[1].logprobs->chosen, -0.5f);
  EXPECT_EQ(sampled[1].logprobs->top_ids, (std::vector<int32_t>{200, 7}));
  EXPECT_EQ(sampled[1].logprobs->top_logprobs, (std::vector<float>{-0.5f, -1.f}));
  const Bytes error_bytes = EncodeError(2, "out of memory", 9);
  auto error = Decode(error_bytes);
  ASSERT_TRUE(error.ok());
  EXPECT_EQ((*error)->body_as_ErrorReport()->message()->str(), "out of memory");
  const Bytes shutdown = EncodeShutdown(0);
  EXPECT_EQ((*Decode(shutdown))->body_type(), Body::Shutdown);
  const Bytes ready_bytes = EncodeReady(4, 57772);
  auto ready = Decode(ready_bytes);
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ((*ready)->body_as_StepResult()->step(), 0u);
  EXPECT_EQ((*ready)->body_as_StepResult()->kv_blocks(), 57772);
  EXPECT_EQ((*result)->body_as_StepResult()->kv_blocks(), 0);  // a step's result says nothing of the pool
  EXPECT_EQ((*result)->body_as_StepResult()->failed_request_ids(), nullptr);
  const Bytes failed_bytes = EncodeStepResult(1, 6, {{11, 100}, {12, 200}}, {{12, "dump_logits: x.npy: cannot open"}});
  auto failed = Decode(failed_bytes);
  ASSERT_TRUE(failed.ok());
  const StepResult* with_failure = (*failed)->body_as_StepResult();
  ASSERT_EQ(with_failure->failed_request_ids()->size(), 1u);
  EXPECT_EQ(with_failure->failed_request_ids()->Get(0), 12u);
  EXPECT_EQ(with_failure->failures()->Get(0)->str(), "dump_logits: x.npy: cannot open");
}

TEST(MessagesTest, BeamCandidatesRoundTrip) {
  SampledToken beam{7, 0, std::nullopt, BeamCandidates{{5, 2, 9}, {-0.1f, -0.2f, -3.f}}};
  const Bytes bytes = EncodeStepResult(1, 3, {{6, 40}, beam});
  auto decoded = Decode(bytes);
  ASSERT_TRUE(decoded.ok());
  const std::vector<SampledToken> sampled = SampledTokens(*(*decoded)->body_as_StepResult());
  ASSERT_EQ(sampled.size(), 2u);
  EXPECT_FALSE(sampled[0].candidates.has_value());
  ASSERT_TRUE(sampled[1].candidates.has_value());
  EXPECT_EQ(sampled[1].request_id, 7u);
  EXPECT_EQ(sampled[1].candidates->ids, (std::vector<int32_t>{5, 2, 9}));
  EXPECT_EQ(sampled[1].candidates->logprobs, (std::vector<float>{-0.1f, -0.2f, -3.f}));
}

TEST(MessagesTest, RankReportsRoundTrip) {
  RankReport report;
  report.steps = 3;
  report.compute_seconds = 0.25;
  report.comm = {{"tp", "all_reduce", "nccl", 12, 0.01, 4096}, {"world", "send", "mpi", 1, 0.5, 1 << 20}};
  report.device_memory_used = int64_t{70} << 30;
  report.device_memory_total = int64_t{80} << 30;
  report.vit_pass_seconds = {0.1, 0.2};
  report.vit_crops = 50;
  const Bytes bytes = EncodeStepResult(2, 9, {}, {}, &report);
  auto decoded = Decode(bytes);
  ASSERT_TRUE(decoded.ok());
  const RankReport back = ReportOf(*(*decoded)->body_as_StepResult());
  EXPECT_EQ(back.steps, 3);
  EXPECT_DOUBLE_EQ(back.compute_seconds, 0.25);
  ASSERT_EQ(back.comm.size(), 2u);
  EXPECT_EQ(back.comm[1].group, "world");
  EXPECT_EQ(back.comm[1].op, "send");
  EXPECT_EQ(back.comm[1].path, "mpi");
  EXPECT_EQ(back.comm[1].bytes, 1 << 20);
  EXPECT_EQ(back.comm[0].calls, 12);
  EXPECT_EQ(back.device_memory_used, int64_t{70} << 30);
  EXPECT_EQ(back.vit_pass_seconds, (std::vector<double>{0.1, 0.2}));
  EXPECT_EQ(back.vit_crops, 50);
  // A result without a report reads as an empty one.
  const Bytes plain = EncodeStepResult(2, 9, {});
  EXPECT_EQ(ReportOf(*(*Decode(plain))->body_as_StepResult()).steps, 0);
}

TEST(MessagesTest, WrongVersionAndCorruptBytesAreRefused) {
  flatbuffers::FlatBufferBuilder builder;
  builder.Finish(CreateEnvelope(builder, kProtocolVersion + 1, 4, Body::Shutdown, CreateShutdown(builder).Union()));
  const Bytes future(builder.GetBufferPointer(), builder.GetBufferPointer() + builder.GetSize());
  auto decoded = Decode(future);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find(absl::StrCat("protocol version ", kProtocolVersion + 1, " from rank 4")),
            std::string::npos)
      << decoded.status();
  Bytes corrupt = EncodeStepResult(1, 1, {{1, 1}});
  corrupt.resize(corrupt.size() / 2);
  EXPECT_EQ(Decode(corrupt).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(Decode(Bytes{1, 2, 3}).ok());
}

TEST(ChannelTest, CoordinatorAndWorkerExchangeMessages) {
  auto coordinator = Channel::Bind("127.0.0.1");
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  auto worker = Channel::Connect((*coordinator)->endpoint(), 5);
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE((*worker)->Send(0, EncodeStepResult(5, 0, {})).ok());  // the worker speaks first: now routable
  auto hello = (*coordinator)->Receive(std::chrono::seconds(5));
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->first, 5);
  ASSERT_TRUE((*coordinator)->Send(5, EncodeShutdown(0)).ok());
  auto reply = (*worker)->Receive(std::chrono::seconds(5));
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ((*Decode(reply->second))->body_type(), Body::Shutdown);
  // Silence is a timeout, not a hang; a worker that never connected cannot be sent to.
  EXPECT_EQ((*worker)->Receive(std::chrono::milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE((*coordinator)->Send(9, EncodeShutdown(0)).ok());
}

}  // namespace
}  // namespace ixc::protocol
