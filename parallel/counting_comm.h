// File: parallel/counting_comm.h
//
// A DeviceComm that forwards every call to another and counts it: calls, the caller's seconds in them and the bytes
// moved, by group, operation and path (mpi, nccl). Several wrappers may share one CommCounter (a worker's MPI comm and
// its NCCL comm); the worker takes the totals since its last report with each step result (core/rank_report.h).
//   CommCounter counter;
//   CountingComm counted(*mpi, "mpi", counter);   // use `counted` wherever `*mpi` was used
//   report.comm = counter.Take();
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/rank_report.h"
#include "parallel/device_comm.h"

namespace ixc::parallel {

class CommCounter {
 public:
  void Add(Group group, const char* op, const std::string& path, double seconds, int64_t bytes);
  // The totals since the last Take, and zero again.
  std::vector<CommTotal> Take();

 private:
  std::mutex mutex_;
  std::map<std::tuple<Group, std::string, std::string>, CommTotal> totals_;
};

// "tp", "sp", "llm", "world".
const char* GroupName(Group group);

class CountingComm : public DeviceComm {
 public:
  CountingComm(DeviceComm& inner, std::string path, CommCounter& counter)
      : inner_(inner), path_(std::move(path)), counter_(counter) {}

  int GroupSize(Group group) const override { return inner_.GroupSize(group); }
  int GroupRank(Group group) const override { return inner_.GroupRank(group); }
  absl::Status AllReduceSum(float* data, int64_t count, Group group) override;
  absl::Status AllGather(const float* send, int64_t count, float* gathered, Group group) override;
  absl::Status ReduceScatterSum(const float* send, float* recv, int64_t count, Group group) override;
  absl::Status Broadcast(float* data, int64_t count, int root, Group group) override;
  absl::Status Send(const float* data, int64_t count, int peer, Group group) override;
  absl::Status Recv(float* data, int64_t count, int peer, Group group) override;
  absl::Status SendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                        int recv_peer, Group group) override;
  absl::Status StartSendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                             int recv_peer, Group group) override;
  absl::Status Wait() override;
  bool OrdersOnStreams() const override { return inner_.OrdersOnStreams(); }
  absl::Status AllReduceSumOnStream(float* data, int64_t count, Group group, void* stream) override;

 private:
  DeviceComm& inner_;
  std::string path_;
  CommCounter& counter_;
  // The transfer in flight (StartSendRecv until Wait): its group, its bytes and the seconds spent starting it.
  bool pending_ = false;
  Group pending_group_ = Group::kSequence;
  int64_t pending_bytes_ = 0;
  double pending_seconds_ = 0;
};

}  // namespace ixc::parallel
