// File: parallel/device_comm.h
//
// The data plane (architecture section 2): collectives and point-to-point transfers of f32 data between ranks, each
// call naming its group. Implementations: MPI on host buffers (CPU backend, CI; parallel/mpi_device_comm.h) and, in
// the cuda preset, NCCL on device buffers. Every call returns a Status; none aborts.
//
//   IXC_RETURN_IF_ERROR(comm.AllReduceSum(partial.data(), partial.size(), Group::kTensor));
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace ixc::parallel {

enum class Group {
  kTensor,    // this rank's TP group (same sp)
  kSequence,  // this rank's SP group (same tp)
  kLlm,       // every LLM rank
  kWorld,     // every rank of the job, by world rank: the vision -> LLM handoff
};

class DeviceComm {
 public:
  virtual ~DeviceComm() = default;

  virtual int GroupSize(Group group) const = 0;
  virtual int GroupRank(Group group) const = 0;

  // data (count) <- sum over the group, on every member.
  virtual absl::Status AllReduceSum(float* data, int64_t count, Group group) = 0;
  // gathered (group size, count) <- every member's `send` (count), in group-rank order.
  virtual absl::Status AllGather(const float* send, int64_t count, float* gathered, Group group) = 0;
  // recv (count) <- the sum over members of their `send` block for this rank: send is (group size, count).
  virtual absl::Status ReduceScatterSum(const float* send, float* recv, int64_t count, Group group) = 0;
  // data (count) <- the value at group rank `root`.
  virtual absl::Status Broadcast(float* data, int64_t count, int root, Group group) = 0;
  // Blocking transfers to/from a group rank.
  virtual absl::Status Send(const float* data, int64_t count, int peer, Group group) = 0;
  virtual absl::Status Recv(float* data, int64_t count, int peer, Group group) = 0;
  // Simultaneous send to one peer and receive from another: one step of a ring.
  virtual absl::Status SendRecv(const float* send, int64_t send_count, int send_peer, float* recv,
                                int64_t recv_count, int recv_peer, Group group) = 0;

  // The same, started now and finished by Wait, so that the caller computes while the data moves (the ring
  // attention's overlap). Buffers stay untouched until Wait returns. One transfer in flight per object.
  virtual absl::Status StartSendRecv(const float* send, int64_t send_count, int send_peer, float* recv,
                                     int64_t recv_count, int recv_peer, Group group) = 0;
  virtual absl::Status Wait() = 0;

  // Whether AllReduceSumOnStream is there: the data plane moves device buffers on CUDA streams (NCCL).
  virtual bool OrdersOnStreams() const { return false; }
  // AllReduceSum enqueued on the caller's CUDA stream (a cudaStream_t): after the work already there and before what
  // the caller enqueues next, with no wait on the host, so that a forward pass's tensor-parallel sums cost no round
  // trip through the host each. The calls above, on the data plane's own streams, see it done only once the caller
  // has synchronized that stream.
  virtual absl::Status AllReduceSumOnStream(float* data, int64_t count, Group group, void* stream) {
    return absl::UnimplementedError("this data plane does not order collectives on CUDA streams");
  }
};

}  // namespace ixc::parallel
