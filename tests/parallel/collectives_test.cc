// The MPI data plane on integer-valued data (exact in f32), checked for exact equality on every rank:
// each rank contributes values built from its group rank, so every expected result is known in closed form.
//   mpirun -np 4 collectives_test            (IXC_TEST_LAYOUT=0,0,2,2 for TP and SP groups of 2)
#include <numeric>

#include "parallel/bootstrap.h"
#include "parallel/mpi_device_comm.h"
#include "tests/parallel/mpi_test_main.h"

namespace ixc::parallel {
namespace {

class CollectivesTest : public ::testing::TestWithParam<Group> {
 protected:
  void SetUp() override {
    mapping_ = std::make_unique<Mapping>(testing::WorldMapping());
    auto comm = CreateMpiDeviceComm(*mapping_);
    ASSERT_TRUE(comm.ok()) << comm.status();
    comm_ = std::move(*comm);
    if (mapping_->role() != Role::kLlm) GTEST_SKIP() << "not an LLM rank";
  }
  std::unique_ptr<Mapping> mapping_;
  std::unique_ptr<DeviceComm> comm_;
};

TEST_P(CollectivesTest, AllReduceSumIsExact) {
  const Group group = GetParam();
  const int n = comm_->GroupSize(group), r = comm_->GroupRank(group);
  std::vector<float> data(1001);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>((r + 1) * (i % 97));
  ASSERT_TRUE(comm_->AllReduceSum(data.data(), data.size(), group).ok());
  for (size_t i = 0; i < data.size(); ++i) ASSERT_EQ(data[i], static_cast<float>(n * (n + 1) / 2 * (i % 97))) << i;
}

TEST_P(CollectivesTest, AllGatherKeepsGroupRankOrder) {
  const Group group = GetParam();
  const int n = comm_->GroupSize(group), r = comm_->GroupRank(group);
  const std::vector<float> mine = {static_cast<float>(r), static_cast<float>(10 * r), 7.f};
  std::vector<float> all(3 * n);
  ASSERT_TRUE(comm_->AllGather(mine.data(), 3, all.data(), group).ok());
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(all[3 * k], k);
    EXPECT_EQ(all[3 * k + 1], 10 * k);
    EXPECT_EQ(all[3 * k + 2], 7);
  }
}

TEST_P(CollectivesTest, ReduceScatterSumGivesEachRankItsBlock) {
  const Group group = GetParam();
  const int n = comm_->GroupSize(group), r = comm_->GroupRank(group);
  std::vector<float> send(5 * n);  // block k, element j: (r + 1) * (k * 5 + j)
  for (int k = 0; k < n; ++k) {
    for (int j = 0; j < 5; ++j) send[k * 5 + j] = static_cast<float>((r + 1) * (k * 5 + j));
  }
  std::vector<float> recv(5);
  ASSERT_TRUE(comm_->ReduceScatterSum(send.data(), recv.data(), 5, group).ok());
  for (int j = 0; j < 5; ++j) EXPECT_EQ(recv[j], static_cast<float>(n * (n + 1) / 2 * (r * 5 + j)));
}

TEST_P(CollectivesTest, BroadcastAndRingSendRecv) {
  const Group group = GetParam();
  const int n = comm_->GroupSize(group), r = comm_->GroupRank(group);
  std::vector<float> data(4, static_cast<float>(r));
  ASSERT_TRUE(comm_->Broadcast(data.data(), 4, n - 1, group).ok());
  EXPECT_EQ(data, std::vector<float>(4, static_cast<float>(n - 1)));
  // One ring step: send to the next rank, receive from the previous.
  const float mine = static_cast<float>(100 + r);
  float from_previous = -1;
  ASSERT_TRUE(comm_->SendRecv(&mine, 1, (r + 1) % n, &from_previous, 1, (r + n - 1) % n, group).ok());
  EXPECT_EQ(from_previous, static_cast<float>(100 + (r + n - 1) % n));
  if (n > 1) {
    if (r == 0) {
      ASSERT_TRUE(comm_->Send(&mine, 1, 1, group).ok());
    } else if (r == 1) {
      float got = -1;
      ASSERT_TRUE(comm_->Recv(&got, 1, 0, group).ok());
      EXPECT_EQ(got, 100.f);
    }
  }
}

// Where each worker sits on its machine (the input of WorkerGpu). Every rank of a test job runs on this one
// machine, so the workers are numbered in world order, the coordinators left out, and all are counted.
TEST(NodeLocalWorkersTest, NumbersTheWorkersOfThisMachine) {
  const Mapping mapping = testing::WorldMapping();
  const Layout& layout = mapping.layout();
  auto node = NodeLocalWorkers(mapping);
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->index, mapping.rank() < layout.coordinators ? -1 : mapping.rank() - layout.coordinators);
  EXPECT_EQ(node->count, mapping.world_size() - layout.coordinators);
  EXPECT_EQ(node->vision, layout.vision);
}

// The workers agree among themselves, without the coordinator (which here goes on to the next test): true only
// where every worker says so.
TEST(OnEveryWorkerTest, IsTrueWhereEveryWorkerSaysSo) {
  const Mapping mapping = testing::WorldMapping();
  const int first_worker = mapping.layout().coordinators;
  if (mapping.role() == Role::kCoordinator) {
    EXPECT_FALSE(OnEveryWorker(mapping, true).ok());  // a clear refusal, not a hang
    GTEST_SKIP() << "the coordinator takes no part";
  }
  auto all = OnEveryWorker(mapping, true);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(*all);
  auto one_says_no = OnEveryWorker(mapping, mapping.rank() != first_worker);
  ASSERT_TRUE(one_says_no.ok()) << one_says_no.status();
  EXPECT_FALSE(*one_says_no);
  auto last_says_no = OnEveryWorker(mapping, mapping.rank() != mapping.world_size() - 1);
  ASSERT_TRUE(last_says_no.ok()) << last_says_no.status();
  EXPECT_FALSE(*last_says_no);
}

INSTANTIATE_TEST_SUITE_P(Groups, CollectivesTest, ::testing::Values(Group::kTensor, Group::kSequence, Group::kLlm),
                         [](const auto& info) {
                           return std::string(info.param == Group::kTensor     ? "Tensor"
                                              : info.param == Group::kSequence ? "Sequence"
                                                                               : "Llm");
                         });

}  // namespace
}  // namespace ixc::parallel

IXC_MPI_TEST_MAIN()
