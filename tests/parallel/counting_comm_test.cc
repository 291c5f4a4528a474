// CountingComm forwards every call to the comm it wraps, unchanged, and counts calls, bytes and time by group,
// operation and path; an overlapped transfer counts once, at its Wait; Take hands the totals over and starts again.
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "parallel/counting_comm.h"

namespace ixc::parallel {
namespace {

// A group of 4 whose calls only record their names (and add 1 where they sum).
class FakeComm : public DeviceComm {
 public:
  int GroupSize(Group) const override { return 4; }
  int GroupRank(Group) const override { return 1; }
  absl::Status AllReduceSum(float* data, int64_t, Group) override { return Called("all_reduce", data); }
  absl::Status AllGather(const float*, int64_t, float*, Group) override { return Called("all_gather"); }
  absl::Status ReduceScatterSum(const float*, float*, int64_t, Group) override { return Called("reduce_scatter"); }
  absl::Status Broadcast(float*, int64_t, int, Group) override { return Called("broadcast"); }
  absl::Status Send(const float*, int64_t, int, Group) override { return Called("send"); }
  absl::Status Recv(float*, int64_t, int, Group) override { return absl::UnavailableError("peer gone"); }
  absl::Status SendRecv(const float*, int64_t, int, float*, int64_t, int, Group) override { return Called("sr"); }
  absl::Status StartSendRecv(const float*, int64_t, int, float*, int64_t, int, Group) override {
    return Called("start");
  }
  absl::Status Wait() override { return Called("wait"); }

  std::map<std::string, int> calls;

 private:
  absl::Status Called(const std::string& name, float* data = nullptr) {
    ++calls[name];
    if (data != nullptr) data[0] += 1;
    return absl::OkStatus();
  }
};

CommTotal Find(const std::vector<CommTotal>& totals, const std::string& group, const std::string& op) {
  for (const CommTotal& total : totals) {
    if (total.group == group && total.op == op) return total;
  }
  ADD_FAILURE() << "no " << group << " " << op;
  return {};
}

TEST(CountingCommTest, ForwardsAndCountsByGroupOpAndPath) {
  FakeComm inner;
  CommCounter counter;
  CountingComm comm(inner, "mpi", counter);
  float data[8] = {};
  ASSERT_TRUE(comm.AllReduceSum(data, 8, Group::kTensor).ok());
  ASSERT_TRUE(comm.AllReduceSum(data, 8, Group::kTensor).ok());
  EXPECT_EQ(data[0], 2.f);  // the inner comm did the work
  float gathered[32];
  ASSERT_TRUE(comm.AllGather(data, 8, gathered, Group::kSequence).ok());
  ASSERT_TRUE(comm.Send(data, 8, 2, Group::kWorld).ok());
  EXPECT_EQ(comm.Recv(data, 8, 2, Group::kWorld).code(), absl::StatusCode::kUnavailable);  // errors pass through
  ASSERT_TRUE(comm.StartSendRecv(data, 8, 0, data, 8, 2, Group::kSequence).ok());
  ASSERT_TRUE(comm.Wait().ok());
  ASSERT_TRUE(comm.Wait().ok());  // nothing in flight: not counted
  EXPECT_EQ(inner.calls["all_reduce"], 2);
  EXPECT_EQ(inner.calls["start"], 1);
  EXPECT_EQ(inner.calls["wait"], 2);

  const std::vector<CommTotal> totals = counter.Take();
  EXPECT_EQ(totals.size(), 5u);
  const CommTotal reduce = Find(totals, "tp", "all_reduce");
  EXPECT_EQ(reduce.calls, 2);
  EXPECT_EQ(reduce.bytes, 2 * 2 * 8 * 4);  // each way, each call
  EXPECT_EQ(reduce.path, "mpi");
  EXPECT_GE(reduce.seconds, 0);
  EXPECT_EQ(Find(totals, "sp", "all_gather").bytes, 4 * 8 * 4);  // the group's blocks
  EXPECT_EQ(Find(totals, "world", "send").bytes, 8 * 4);
  EXPECT_EQ(Find(totals, "world", "recv").calls, 1);  // a failed call counts too
  const CommTotal ring = Find(totals, "sp", "send_recv");
  EXPECT_EQ(ring.calls, 1);
  EXPECT_EQ(ring.bytes, 2 * 8 * 4);
  EXPECT_TRUE(counter.Take().empty());  // handed over
}

TEST(CountingCommTest, TwoCommsShareOneCounter) {
  FakeComm mpi, nccl;
  CommCounter counter;
  CountingComm counted_mpi(mpi, "mpi", counter), counted_nccl(nccl, "nccl", counter);
  float data[4] = {};
  ASSERT_TRUE(counted_mpi.Broadcast(data, 4, 0, Group::kTensor).ok());
  ASSERT_TRUE(counted_nccl.Broadcast(data, 4, 0, Group::kTensor).ok());
  const std::vector<CommTotal> totals = counter.Take();
  ASSERT_EQ(totals.size(), 2u);
  EXPECT_NE(totals[0].path, totals[1].path);
}

}  // namespace
}  // namespace ixc::parallel
