// File: tests/gpu/threaded_device_comm.h
//
// A T x S grid of LLM ranks as threads of one process sharing one GPU, for testing the GPU's tensor- and sequence-
// parallel paths on a machine with one GPU and no MPI (the lent GPU machine). Each thread's DeviceComm moves its
// peers' buffers with cudaMemcpy (device or host: unified addressing). As under NCCL, each group (every TP row, every
// SP column, all the LLM ranks) is a communicator of its own: its members must make the same calls in the same
// order, and meet at the group's own barrier, while another group's members may be elsewhere. A rank that fails
// calls Abort, and a barrier that waits longer than a minute gives up: its peers' calls then fail instead of hanging.
//   ThreadedWorld world(/*tp=*/1, /*sp=*/2);
//   ThreadedDeviceComm comm(world, /*tp_rank=*/0, /*sp_rank=*/1);   // in thread (0, 1)
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "parallel/device_comm.h"

namespace ixc::testing {

class ThreadedWorld {
 public:
  // Barriers: one per TP row (sp of them), one per SP column (tp), one of every rank.
  ThreadedWorld(int tp, int sp) : tp(tp), sp(sp), barriers_(sp + tp + 1) {
    for (int kind = 0; kind < 3; ++kind) {
      slots[kind].resize(tp * sp);
      calls[kind].resize(tp * sp);
    }
  }

  // The barrier of group `barrier` (BarrierOf), `size` members: waits until all have arrived; false once a rank
  // has aborted or the wait has passed a minute.
  bool ArriveAndWait(int barrier, int size) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (aborted_) return false;
    Barrier& b = barriers_[barrier];
    const int64_t round = b.round;
    if (++b.arrived == size) {
      b.arrived = 0;
      ++b.round;
      changed_.notify_all();
      return true;
    }
    if (!changed_.wait_for(lock, std::chrono::minutes(1), [&] { return b.round != round || aborted_; })) {
      aborted_ = true;  // a peer is gone without a word: release everyone
      changed_.notify_all();
    }
    return b.round != round;
  }
  static int KindOf(parallel::Group group) {
    return group == parallel::Group::kTensor ? 0 : group == parallel::Group::kSequence ? 1 : 2;
  }
  int BarrierOf(parallel::Group group, int tp_rank, int sp_rank) const {
    const int kind = KindOf(group);
    return kind == 0 ? sp_rank : kind == 1 ? sp + tp_rank : sp + tp;
  }
  // A rank that stops early: every wait, now and later, returns false.
  void Abort() {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
    changed_.notify_all();
  }

  const int tp, sp;
  // What each rank offers its group's peers in its current call of a group kind (TP, SP, all: a ring transfer may be
  // in flight over SP while a TP call runs), by kind and LLM index sp_rank * tp + tp_rank, and the call itself
  // ("AllGather of 4"), the same for every member of the group.
  std::vector<const float*> slots[3];
  std::vector<std::string> calls[3];

 private:
  struct Barrier {
    int arrived = 0;
    int64_t round = 0;
  };
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Barrier> barriers_;
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

  // Each call takes part in every barrier of its round even after a failure, so the rounds stay aligned; it copies
  // nothing once it has failed.
  absl::Status AllReduceSum(float* data, int64_t count, parallel::Group group) override {
    absl::Status status = Publish(data, absl::StrCat("AllReduceSum of ", count), group);
    std::vector<float> sum(count, 0.f), part(count);
    for (int member : Members(group)) {
      if (status.ok()) status = Copy(part.data(), Slot(group, member), count);
      for (int64_t i = 0; i < count; ++i) sum[i] += part[i];
    }
    status.Update(Meet(group));  // every peer has read `data`
    if (status.ok()) status = Copy(data, sum.data(), count);
    return status;
  }
  // NCCL's stream order, kept by waiting for the stream: the model's path for a data plane that orders on streams.
  bool OrdersOnStreams() const override { return true; }
  absl::Status AllReduceSumOnStream(float* data, int64_t count, parallel::Group group, void* stream) override {
    const cudaError_t synced = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    absl::Status status = AllReduceSum(data, count, group);  // takes part in the round's barriers in any case
    if (synced != cudaSuccess) {
      status.Update(absl::InternalError(absl::StrCat("threaded comm stream: ", cudaGetErrorString(synced))));
    }
    return status;
  }
  absl::Status AllGather(const float* send, int64_t count, float* gathered, parallel::Group group) override {
    absl::Status status = Publish(send, absl::StrCat("AllGather of ", count), group);
    const std::vector<int> members = Members(group);
    for (size_t r = 0; r < members.size(); ++r) {
      if (status.ok()) status = Copy(gathered + r * count, Slot(group, members[r]), count);
    }
    status.Update(Meet(group));  // every peer has read `send`
    return status;
  }
  // The receive happens here; Wait is the round's second barrier, after which `send` may change.
  absl::Status StartSendRecv(const float* send, int64_t, int, float* recv, int64_t recv_count, int recv_peer,
                             parallel::Group group) override {
    in_flight_ = group;
    absl::Status status = Publish(send, "SendRecv", group);
    if (status.ok()) status = Copy(recv, Slot(group, Members(group)[recv_peer]), recv_count);
    return status;
  }
  absl::Status Wait() override { return Meet(in_flight_); }
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
  absl::Status Meet(parallel::Group group) {
    if (world_.ArriveAndWait(world_.BarrierOf(group, tp_rank_, sp_rank_), GroupSize(group))) return absl::OkStatus();
    return absl::AbortedError("a peer rank failed or stopped answering");
  }
  // This round's offer, visible to every peer once all have arrived. The group's members must be making the same
  // call: one that is not means the ranks' collectives have gone out of step, which NCCL would not notice.
  absl::Status Publish(const float* data, std::string call, parallel::Group group) {
    const int kind = ThreadedWorld::KindOf(group);
    world_.slots[kind][Index()] = data;
    world_.calls[kind][Index()] = std::move(call);
    absl::Status status = Meet(group);
    const std::vector<std::string>& calls = world_.calls[kind];
    for (int member : Members(group)) {
      if (status.ok() && calls[member] != calls[Index()]) {
        status = absl::FailedPreconditionError(absl::StrCat("collectives out of step: rank ", Index(), " calls ",
                                                            calls[Index()], ", rank ", member, " ", calls[member]));
      }
    }
    return status;
  }
  const float* Slot(parallel::Group group, int member) const {
    return world_.slots[ThreadedWorld::KindOf(group)][member];
  }
  // Finished when it returns (a device-to-device cudaMemcpy does not wait), so the owner may reuse `from` after
  // the round's barrier.
  static absl::Status Copy(float* to, const float* from, int64_t count) {
    cudaError_t error = cudaMemcpy(to, from, count * sizeof(float), cudaMemcpyDefault);
    if (error == cudaSuccess) error = cudaStreamSynchronize(nullptr);
    if (error == cudaSuccess) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("threaded comm copy: ", cudaGetErrorString(error)));
  }
  static absl::Status Unused(const char* op) {
    return absl::UnimplementedError(absl::StrCat("ThreadedDeviceComm::", op, " is not used by the GPU paths"));
  }

  ThreadedWorld& world_;
  int tp_rank_, sp_rank_;
  parallel::Group in_flight_ = parallel::Group::kSequence;  // the group of the StartSendRecv that Wait finishes
};

}  // namespace ixc::testing
