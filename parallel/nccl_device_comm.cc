#include "parallel/nccl_device_comm.h"

#include <mpi.h>
#include <nccl.h>

#include <array>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace ixc::parallel {
namespace {

absl::Status NcclStatus(ncclResult_t result, const char* what, const std::string& who) {
  if (result == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " failed on ", who, ": ", ncclGetErrorString(result), " (",
                                          ncclGetLastError(nullptr), ")"));
}

absl::Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " failed: ", cudaGetErrorString(error)));
}

class NcclDeviceComm : public DeviceComm {
 public:
  explicit NcclDeviceComm(std::string name) : name_(std::move(name)) {}
  ~NcclDeviceComm() override {
    for (ncclComm_t comm : comms_) {
      if (comm != nullptr) ncclCommDestroy(comm);
    }
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (ring_stream_ != nullptr) cudaStreamDestroy(ring_stream_);
  }

  // The world group counts by world rank: its members are the ranks from world_offset_ on.
  int GroupSize(Group group) const override {
    int size = 0;
    if (comm(group) != nullptr) ncclCommCount(comm(group), &size);
    return size + Offset(group);
  }
  int GroupRank(Group group) const override {
    int rank = -1;
    if (comm(group) == nullptr) return rank;
    ncclCommUserRank(comm(group), &rank);
    return rank + Offset(group);
  }

  absl::Status AllReduceSum(float* data, int64_t count, Group group) override {
    IXC_RETURN_IF_ERROR(Joined(group));
    return Sync(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm(group), stream_), "ncclAllReduce");
  }
  bool OrdersOnStreams() const override { return true; }
  absl::Status AllReduceSumOnStream(float* data, int64_t count, Group group, void* stream) override {
    IXC_RETURN_IF_ERROR(Joined(group));
    return NcclStatus(
        ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm(group), static_cast<cudaStream_t>(stream)),
        "ncclAllReduce", name_);
  }
  absl::Status AllGather(const float* send, int64_t count, float* gathered, Group group) override {
    IXC_RETURN_IF_ERROR(Joined(group));
    return Sync(ncclAllGather(send, gathered, count, ncclFloat32, comm(group), stream_), "ncclAllGather");
  }
  absl::Status ReduceScatterSum(const float* send, float* recv, int64_t count, Group group) override {
    IXC_RETURN_IF_ERROR(Joined(group));
    return Sync(ncclReduceScatter(send, recv, count, ncclFloat32, ncclSum, comm(group), stream_), "ncclReduceScatter");
  }
  absl::Status Broadcast(float* data, int64_t count, int root, Group group) override {
    IXC_RETURN_IF_ERROR(Joined(group));
    return Sync(ncclBroadcast(data, data, count, ncclFloat32, root - Offset(group), comm(group), stream_),
                "ncclBroadcast");
  }
  absl::Status Send(const float* data, int64_t count, int peer, Group group) override {
    IXC_RETURN_IF_ERROR(Joined(group));
    return Sync(ncclSend(data, count, ncclFloat32, peer - Offset(group), comm(group), stream_), "ncclSend");
  }
  absl::Status Recv(float* data, int64_t count, int peer, Group group) override {
    IXC_RETURN_IF_ERROR(Joined(group));
    return Sync(ncclRecv(data, count, ncclFloat32, peer - Offset(group), comm(group), stream_), "ncclRecv");
  }
  absl::Status SendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                        int recv_peer, Group group) override {
    if (auto s = StartSendRecv(send, send_count, send_peer, recv, recv_count, recv_peer, group); !s.ok()) return s;
    return Wait();
  }
  absl::Status StartSendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                             int recv_peer, Group group) override {
    IXC_RETURN_IF_ERROR(Joined(group));
    IXC_RETURN_IF_ERROR(NcclStatus(ncclGroupStart(), "ncclGroupStart", name_));
    ncclSend(send, send_count, ncclFloat32, send_peer - Offset(group), comm(group), ring_stream_);
    ncclRecv(recv, recv_count, ncclFloat32, recv_peer - Offset(group), comm(group), ring_stream_);
    return NcclStatus(ncclGroupEnd(), "ncclSend/ncclRecv", name_);
  }
  absl::Status Wait() override { return CudaStatus(cudaStreamSynchronize(ring_stream_), "ring transfer"); }

  std::array<ncclComm_t, 4> comms_ = {nullptr, nullptr, nullptr, nullptr};  // by Group; null where not a member
  int world_offset_ = 0;  // the world rank of the world group's member 0
  cudaStream_t stream_ = nullptr;
  cudaStream_t ring_stream_ = nullptr;
  const std::string name_;  // in errors

 private:
  ncclComm_t comm(Group group) const { return comms_[static_cast<int>(group)]; }
  int Offset(Group group) const { return group == Group::kWorld ? world_offset_ : 0; }
  absl::Status Joined(Group group) const {
    if (comm(group) != nullptr) return absl::OkStatus();
    if (group == Group::kWorld) {
      return absl::FailedPreconditionError(absl::StrCat(
          name_,
          ": this NCCL comm joins the LLM ranks alone; transfers with other ranks (the vision handoff) go over "
          "MPI"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat(name_, ": a vision rank's NCCL comm has the world group (the vision handoff) alone"));
  }
  // The CPU path's callers read results right after a call; the GPU executor will chain on the stream instead.
  absl::Status Sync(ncclResult_t result, const char* what) {
    if (auto s = NcclStatus(result, what, name_); !s.ok()) return s;
    return CudaStatus(cudaStreamSynchronize(stream_), what);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const NcclRank& rank, const ShareNcclId& share_id) {
  IXC_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(rank.device), "cudaSetDevice"));
  auto comm = std::make_unique<NcclDeviceComm>(rank.name);
  IXC_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&comm->stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
  IXC_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&comm->ring_stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
  ncclUniqueId id;
  if (rank.index == 0) IXC_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId", rank.name));
  IXC_RETURN_IF_ERROR(share_id(&id, sizeof(id)));
  ncclComm_t members = nullptr;
  IXC_RETURN_IF_ERROR(
      NcclStatus(ncclCommInitRank(&members, rank.ranks, id, rank.index), "ncclCommInitRank", rank.name));
  ncclComm_t& llm = comm->comms_[static_cast<int>(Group::kLlm)];
  if (rank.first_world_rank < 0) {
    llm = members;
  } else {
    comm->comms_[static_cast<int>(Group::kWorld)] = members;
    comm->world_offset_ = rank.first_world_rank;
    // Every member takes part in the split; the vision ranks get no LLM comm.
    IXC_RETURN_IF_ERROR(NcclStatus(ncclCommSplit(members, rank.llm ? 0 : NCCL_SPLIT_NOCOLOR, rank.index, &llm, nullptr),
                                   "ncclCommSplit (LLM ranks)", rank.name));
  }
  if (!rank.llm) return comm;
  // The tp group: same sp, ordered by tp; the sp group: same tp, ordered by sp (as the MPI comm's).
  IXC_RETURN_IF_ERROR(NcclStatus(ncclCommSplit(llm, rank.sp_rank, rank.tp_rank,
                                               &comm->comms_[static_cast<int>(Group::kTensor)], nullptr),
                                 "ncclCommSplit (tp)", rank.name));
  IXC_RETURN_IF_ERROR(NcclStatus(ncclCommSplit(llm, rank.tp_rank, rank.sp_rank,
                                               &comm->comms_[static_cast<int>(Group::kSequence)], nullptr),
                                 "ncclCommSplit (sp)", rank.name));
  return comm;
}

absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const Mapping& mapping, int device,
                                                                 bool vision_handoff) {
  if (mapping.role() == Role::kCoordinator || (!vision_handoff && mapping.role() != Role::kLlm)) {
    return absl::FailedPreconditionError(absl::StrCat(mapping.ToString(), " takes no part in the NCCL comm (",
                                                      vision_handoff ? "the workers'" : "the LLM ranks'", ")"));
  }
  // Members: the LLM ranks, or every worker; they are the world ranks from `first` on.
  const int first = vision_handoff ? mapping.layout().coordinators : mapping.first_llm_rank();
  NcclRank rank;
  rank.ranks = mapping.world_size() - first;
  rank.index = mapping.rank() - first;
  rank.llm = mapping.role() == Role::kLlm;
  rank.tp_rank = rank.llm ? mapping.tp_rank() : 0;
  rank.sp_rank = rank.llm ? mapping.sp_rank() : 0;
  rank.device = device;
  rank.first_world_rank = vision_handoff ? first : -1;
  rank.name = mapping.ToString();
  // The first member sends the id to the others.
  return CreateNcclDeviceComm(rank, [&](void* id, size_t bytes) -> absl::Status {
    constexpr int kIdTag = 7411;
    if (rank.index == 0) {
      for (int peer = first + 1; peer < mapping.world_size(); ++peer) {
        if (MPI_Send(id, static_cast<int>(bytes), MPI_BYTE, peer, kIdTag, MPI_COMM_WORLD) != MPI_SUCCESS) {
          return absl::InternalError(absl::StrCat("sending the NCCL id to rank ", peer, " failed"));
        }
      }
    } else if (MPI_Recv(id, static_cast<int>(bytes), MPI_BYTE, first, kIdTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE) !=
               MPI_SUCCESS) {
      return absl::InternalError(absl::StrCat("receiving the NCCL id from rank ", first, " failed"));
    }
    return absl::OkStatus();
  });
}

}  // namespace ixc::parallel
