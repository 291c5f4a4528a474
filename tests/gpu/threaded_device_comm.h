// File: tests/gpu/threaded_device_comm.h
//
// A T x S grid of LLM ranks as threads of one process sharing one GPU, for testing the GPU's tensor- and sequence-
// parallel paths on a machine with one GPU and no MPI (the lent GPU machine). Each thread's DeviceComm moves its
// peers' buffers with cudaMemcpy (device or host: unified addressing). Every rank must make the same collective
// calls in the same order, as under MPI or NCCL: each call meets at a barrier of all T x S threads, so the groups of
// one kind (every TP row, every SP column) run their collectives in the same rounds. A rank that fails calls
// Abort, and a barrier that waits longer than a minute gives up: its peers' calls then fail instead of hanging.
//   ThreadedWorld world(/*tp=*/1, /*sp=*/2);
//   ThreadedDeviceComm comm(world, /*tp_rank=*/0, /*sp_rank=*/1);   // in thread (0, 1)
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "parallel/device_comm.h"

namespace ixc::testing {

class ThreadedWorld {
 public:
  ThreadedWorld(int tp, int sp) : tp(tp), sp(sp), slots(tp * sp) {}

  // Waits until every rank has arrived; false once a rank has aborted or the wait has passed a minute.
  bool ArriveAndWait() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (aborted_) return false;
    const int64_t round = round_;
    if (++arrived_ == tp * sp) {
      arrived_ = 0;
      ++round_;
      changed_.notify_all();
      return true;
    }
    if (!changed_.wait_for(lock, std::chrono::minutes(1), [&] { return round_ != round || aborted_; })) {
      aborted_ = true;  // a peer is gone without a word: release everyone
      changed_.notify_all();
    }
    return round_ != round;
  }
  // A rank that stops early: every wait, now and later, returns false.
  void Abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
    changed_.notify_all();
  }

  const int tp, sp;
  std::vector<const float*> slots;  // what each rank offers its peers this round, by LLM index sp_rank * tp + tp_rank

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  int64_t round_ = 0;
  bool aborted_ = false;
};

class ThreadedDeviceComm : public parallel::DeviceComm {
 public:
  ThreadedDeviceComm(ThreadedWorld& world, int tp_rank, int sp_rank)
      : world_(world), tp_rank_(tp_rank), sp_rank_(sp_rank) {}

  int GroupSize(parallel::Group group) const override { return static_cast<int>(Members(group).size()); }
  int GroupRank(parallel::Group group) const override {
    switch (group) {
      case parallel::Group::kTensor:
        return tp_rank_;
      case parallel::Group::kSequence:
        return sp_rank_;
      default:
        return Index();
    }
  }

  // Each call takes part in every barrier of its round even after a failed copy, so the rounds stay aligned.
  absl::Status AllReduceSum(float* data, int64_t count, parallel::Group group) override {
    absl::Status status = Publish(data);
    std::vector<float> sum(count, 0.f), part(count);
    for (int member : Members(group)) {
      status.Update(Copy(part.data(), world_.slots[member], count));
      for (int64_t i = 0; i < count; ++i) sum[i] += part[i];
    }
    status.Update(Meet());  // every peer has read `data`
    if (status.ok()) status = Copy(data, sum.data(), count);
    return status;
  }
  absl::Status AllGather(const float* send, int64_t count, float* gathered, parallel::Group group) override {
    absl::Status status = Publish(send);
    const std::vector<int> members = Members(group);
    for (size_t r = 0; r < members.size(); ++r) {
      status.Update(Copy(gathered + r * count, world_.slots[members[r]], count));
    }
    status.Update(Meet());  // every peer has read `send`
    return status;
  }
  // The receive happens here; Wait is the round's second barrier, after which `send` may change.
  absl::Status StartSendRecv(const float* send, int64_t, int, float* recv, int64_t recv_count, int recv_peer,
                             parallel::Group group) override {
    absl::Status status = Publish(send);
    status.Update(Copy(recv, world_.slots[Members(group)[recv_peer]], recv_count));
    return status;
  }
  absl::Status Wait() override { return Meet(); }
  absl::Status SendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                        int recv_peer, parallel::Group group) override {
    absl::Status status = StartSendRecv(send, send_count, send_peer, recv, recv_count, recv_peer, group);
    status.Update(Wait());
    return status;
  }
  // Not used by the model's GPU paths.
  absl::Status ReduceScatterSum(const float*, float*, int64_t, parallel::Group) override {
    return Unused("ReduceScatterSum");
  }
  absl::Status Broadcast(float*, int64_t, int, parallel::Group) override { return Unused("Broadcast"); }
  absl::Status Send(const float*, int64_t, int, parallel::Group) override { return Unused("Send"); }
  absl::Status Recv(float*, int64_t, int, parallel::Group) override { return Unused("Recv"); }

 private:
  int Index() const { return sp_rank_ * world_.tp + tp_rank_; }
  std::vector<int> Members(parallel::Group group) const {
    std::vector<int> members;
    for (int s = 0; s < world_.sp; ++s) {
      for (int t = 0; t < world_.tp; ++t) {
        const bool in = group == parallel::Group::kTensor     ? s == sp_rank_
                        : group == parallel::Group::kSequence ? t == tp_rank_
                                                              : group == parallel::Group::kLlm;
        if (in) members.push_back(s * world_.tp + t);
      }
    }
    return members;
  }
  absl::Status Meet() {
    if (world_.ArriveAndWait()) return absl::OkStatus();
    return absl::AbortedError("a peer rank failed or stopped answering");
  }
  // This round's offer, visible to every peer once all have arrived.
  absl::Status Publish(const float* data) {
    world_.slots[Index()] = data;
    return Meet();
  }
  static absl::Status Copy(float* to, const float* from, int64_t count) {
    const cudaError_t error = cudaMemcpy(to, from, count * sizeof(float), cudaMemcpyDefault);
    if (error == cudaSuccess) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("threaded comm copy: ", cudaGetErrorString(error)));
  }
  static absl::Status Unused(const char* op) {
    return absl::UnimplementedError(absl::StrCat("ThreadedDeviceComm::", op, " is not used by the GPU paths"));
  }

  ThreadedWorld& world_;
  int tp_rank_, sp_rank_;
};

}  // namespace ixc::testing
