// The NCCL DeviceComm on the one GPU of the lent machines, as a lone LLM rank (NCCL takes one rank per GPU in a
// communicator): the communicator and its tp and sp splits come up, and every call moves device buffers as a group
// of one must (a sum or a gather of one is a copy, a send to oneself arrives). The multi-rank layouts run as threads
// in parallel_cuda_test (ThreadedDeviceComm), the job's id exchange over MPI in the cluster. A lone worker brings up
// the comm of the vision handoff too (every worker a member, peers by world rank). Skipped without a GPU.
#include "parallel/nccl_device_comm.h"
#include "tests/gpu/cuda_test_util.h"

namespace ixc::parallel {
namespace {

using ixc::testing::CudaTest;
using ixc::testing::DeviceBuffer;

TEST_F(CudaTest, LoneNcclRankMovesDeviceBuffers) {
  auto comm = CreateNcclDeviceComm(NcclRank{}, [](void*, size_t) { return absl::OkStatus(); });
  ASSERT_TRUE(comm.ok()) << comm.status();
  DeviceComm& nccl = **comm;
  for (Group group : {Group::kTensor, Group::kSequence, Group::kLlm}) {
    EXPECT_EQ(nccl.GroupSize(group), 1);
    EXPECT_EQ(nccl.GroupRank(group), 0);
  }
  const std::vector<float> values = {1.5f, -2.f, 3.25f, 4.f, 0.f, 7.f};
  const int64_t n = static_cast<int64_t>(values.size());
  DeviceBuffer<float> a(values), b(values.size(), NAN);
  ASSERT_TRUE(nccl.AllReduceSum(a.data, n, Group::kTensor).ok());
  EXPECT_EQ(a.Read(), values);
  ASSERT_TRUE(nccl.AllGather(a.data, n, b.data, Group::kSequence).ok());
  EXPECT_EQ(b.Read(), values);
  DeviceBuffer<float> c(values.size(), NAN);
  ASSERT_TRUE(nccl.ReduceScatterSum(a.data, c.data, n, Group::kLlm).ok());
  EXPECT_EQ(c.Read(), values);
  ASSERT_TRUE(nccl.Broadcast(a.data, n, 0, Group::kTensor).ok());
  EXPECT_EQ(a.Read(), values);
  DeviceBuffer<float> d(values.size(), NAN), e(values.size(), NAN);
  ASSERT_TRUE(nccl.SendRecv(a.data, n, 0, d.data, n, 0, Group::kSequence).ok());
  EXPECT_EQ(d.Read(), values);
  ASSERT_TRUE(nccl.StartSendRecv(a.data, n, 0, e.data, n, 0, Group::kTensor).ok());
  ASSERT_TRUE(nccl.Wait().ok());
  EXPECT_EQ(e.Read(), values);
  // The world (vision handoff) stays on MPI: a clear refusal, not a crash.
  const absl::Status world = nccl.Send(a.data, n, 0, Group::kWorld);
  EXPECT_EQ(world.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(world.message().find("over MPI"), std::string::npos) << world;
}

// With the vision handoff over NCCL every worker is a member and Group::kWorld counts by world rank: here a lone
// worker at world rank 1 (after the coordinator), as an LLM rank and as a vision rank (which has no LLM groups).
TEST_F(CudaTest, LoneWorkerMovesImageRowsByWorldRank) {
  const std::vector<float> values = {0.5f, -1.f, 2.f, 8.f};
  const int64_t n = static_cast<int64_t>(values.size());
  for (bool llm : {true, false}) {
    NcclRank rank;
    rank.llm = llm;
    rank.first_world_rank = 1;
    rank.name = llm ? "LLM worker" : "vision worker";
    auto comm = CreateNcclDeviceComm(rank, [](void*, size_t) { return absl::OkStatus(); });
    ASSERT_TRUE(comm.ok()) << comm.status();
    DeviceComm& nccl = **comm;
    EXPECT_EQ(nccl.GroupSize(Group::kWorld), 2) << rank.name;  // the coordinator counts, though no member
    EXPECT_EQ(nccl.GroupRank(Group::kWorld), 1) << rank.name;
    DeviceBuffer<float> a(values), b(values.size(), NAN);
    ASSERT_TRUE(nccl.SendRecv(a.data, n, 1, b.data, n, 1, Group::kWorld).ok()) << rank.name;
    EXPECT_EQ(b.Read(), values) << rank.name;
    if (llm) {
      EXPECT_EQ(nccl.GroupSize(Group::kLlm), 1);
      ASSERT_TRUE(nccl.AllReduceSum(a.data, n, Group::kTensor).ok());
      EXPECT_EQ(a.Read(), values);
    } else {
      const absl::Status tp = nccl.AllReduceSum(a.data, n, Group::kTensor);
      EXPECT_EQ(tp.code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_NE(tp.message().find("world group (the vision handoff) alone"), std::string::npos) << tp;
    }
  }
}

}  // namespace
}  // namespace ixc::parallel
