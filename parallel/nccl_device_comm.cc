#include "parallel/nccl_device_comm.h"

#include <mpi.h>
#include <nccl.h>

#include <array>

#include "absl/strings/str_cat.h"

namespace ixc::parallel {
namespace {

absl::Status NcclStatus(ncclResult_t result, const char* what) {
  if (result == ncclSuccess) return absl::OkStatus();
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return absl::InternalError(absl::StrCat(what, " failed on rank ", rank, ": ", ncclGetErrorString(result), " (",
                                          ncclGetLastError(nullptr), ")"));
}

absl::Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " failed: ", cudaGetErrorString(error)));
}

class NcclDeviceComm : public DeviceComm {
 public:
  ~NcclDeviceComm() override {
    for (ncclComm_t comm : comms_) {
      if (comm != nullptr) ncclCommDestroy(comm);
    }
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (ring_stream_ != nullptr) cudaStreamDestroy(ring_stream_);
  }

  int GroupSize(Group group) const override {
    int size = 0;
    ncclCommCount(comm(group), &size);
    return size;
  }
  int GroupRank(Group group) const override {
    int rank = 0;
    ncclCommUserRank(comm(group), &rank);
    return rank;
  }

  absl::Status AllReduceSum(float* data, int64_t count, Group group) override {
    return Sync(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm(group), stream_), "ncclAllReduce");
  }
  absl::Status AllGather(const float* send, int64_t count, float* gathered, Group group) override {
    return Sync(ncclAllGather(send, gathered, count, ncclFloat32, comm(group), stream_), "ncclAllGather");
  }
  absl::Status ReduceScatterSum(const float* send, float* recv, int64_t count, Group group) override {
    return Sync(ncclReduceScatter(send, recv, count, ncclFloat32, ncclSum, comm(group), stream_), "ncclReduceScatter");
  }
  absl::Status Broadcast(float* data, int64_t count, int root, Group group) override {
    return Sync(ncclBroadcast(data, data, count, ncclFloat32, root, comm(group), stream_), "ncclBroadcast");
  }
  absl::Status Send(const float* data, int64_t count, int peer, Group group) override {
    return Sync(ncclSend(data, count, ncclFloat32, peer, comm(group), stream_), "ncclSend");
  }
  absl::Status Recv(float* data, int64_t count, int peer, Group group) override {
    return Sync(ncclRecv(data, count, ncclFloat32, peer, comm(group), stream_), "ncclRecv");
  }
  absl::Status SendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                        int recv_peer, Group group) override {
    if (auto s = StartSendRecv(send, send_count, send_peer, recv, recv_count, recv_peer, group); !s.ok()) return s;
    return Wait();
  }
  absl::Status StartSendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                             int recv_peer, Group group) override {
    if (auto s = NcclStatus(ncclGroupStart(), "ncclGroupStart"); !s.ok()) return s;
    ncclSend(send, send_count, ncclFloat32, send_peer, comm(group), ring_stream_);
    ncclRecv(recv, recv_count, ncclFloat32, recv_peer, comm(group), ring_stream_);
    return NcclStatus(ncclGroupEnd(), "ncclSend/ncclRecv");
  }
  absl::Status Wait() override { return CudaStatus(cudaStreamSynchronize(ring_stream_), "ring transfer"); }

  std::array<ncclComm_t, 4> comms_ = {nullptr, nullptr, nullptr, nullptr};
  cudaStream_t stream_ = nullptr;
  cudaStream_t ring_stream_ = nullptr;

 private:
  ncclComm_t comm(Group group) const { return comms_[static_cast<int>(group)]; }
  // The CPU path's callers read results right after a call; the GPU executor will chain on the stream instead.
  absl::Status Sync(ncclResult_t result, const char* what) {
    if (auto s = NcclStatus(result, what); !s.ok()) return s;
    return CudaStatus(cudaStreamSynchronize(stream_), what);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const Mapping& mapping, int device) {
  if (auto s = CudaStatus(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) return s;
  auto comm = std::make_unique<NcclDeviceComm>();
  if (auto s = CudaStatus(cudaStreamCreateWithFlags(&comm->stream_, cudaStreamNonBlocking), "cudaStreamCreate");
      !s.ok()) {
    return s;
  }
  if (auto s = CudaStatus(cudaStreamCreateWithFlags(&comm->ring_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
      !s.ok()) {
    return s;
  }
  ncclUniqueId id;
  if (mapping.rank() == 0) {
    if (auto s = NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId"); !s.ok()) return s;
  }
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t world = nullptr;
  if (auto s = NcclStatus(ncclCommInitRank(&world, mapping.world_size(), id, mapping.rank()), "ncclCommInitRank");
      !s.ok()) {
    return s;
  }
  comm->comms_[static_cast<int>(Group::kWorld)] = world;
  const bool llm = mapping.role() == Role::kLlm;
  // Same colors and keys as the MPI comm: ranks outside the LLM grid pass NCCL_SPLIT_NOCOLOR.
  const int colors[3] = {llm ? mapping.sp_rank() : NCCL_SPLIT_NOCOLOR, llm ? mapping.tp_rank() : NCCL_SPLIT_NOCOLOR,
                         llm ? 0 : NCCL_SPLIT_NOCOLOR};
  const int keys[3] = {llm ? mapping.tp_rank() : 0, llm ? mapping.sp_rank() : 0, mapping.rank()};
  for (int i = 0; i < 3; ++i) {
    if (auto s = NcclStatus(ncclCommSplit(world, colors[i], keys[i], &comm->comms_[i], nullptr), "ncclCommSplit");
        !s.ok()) {
      return s;
    }
  }
  return comm;
}

}  // namespace ixc::parallel
