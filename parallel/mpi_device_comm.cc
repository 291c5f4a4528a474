#include "parallel/mpi_device_comm.h"

#include <mpi.h>

#include <array>

#include "absl/strings/str_cat.h"

namespace ixc::parallel {
namespace {

absl::Status MpiStatus(int code, const char* what) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return absl::InternalError(absl::StrCat(what, " failed on rank ", rank, ": ", std::string(text, length)));
}

class MpiDeviceComm : public DeviceComm {
 public:
  ~MpiDeviceComm() override {
    for (MPI_Comm& comm : comms_) {
      if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
    }
  }

  int GroupSize(Group group) const override {
    int size = 0;
    MPI_Comm_size(comm(group), &size);
    return size;
  }
  int GroupRank(Group group) const override {
    int rank = 0;
    MPI_Comm_rank(comm(group), &rank);
    return rank;
  }

  absl::Status AllReduceSum(float* data, int64_t count, Group group) override {
    return MpiStatus(MPI_Allreduce(MPI_IN_PLACE, data, Count(count), MPI_FLOAT, MPI_SUM, comm(group)),
                     "MPI_Allreduce");
  }
  absl::Status AllGather(const float* send, int64_t count, float* gathered, Group group) override {
    return MpiStatus(MPI_Allgather(send, Count(count), MPI_FLOAT, gathered, Count(count), MPI_FLOAT, comm(group)),
                     "MPI_Allgather");
  }
  absl::Status ReduceScatterSum(const float* send, float* recv, int64_t count, Group group) override {
    return MpiStatus(MPI_Reduce_scatter_block(send, recv, Count(count), MPI_FLOAT, MPI_SUM, comm(group)),
                     "MPI_Reduce_scatter_block");
  }
  absl::Status Broadcast(float* data, int64_t count, int root, Group group) override {
    return MpiStatus(MPI_Bcast(data, Count(count), MPI_FLOAT, root, comm(group)), "MPI_Bcast");
  }
  absl::Status Send(const float* data, int64_t count, int peer, Group group) override {
    return MpiStatus(MPI_Send(data, Count(count), MPI_FLOAT, peer, kTag, comm(group)), "MPI_Send");
  }
  absl::Status Recv(float* data, int64_t count, int peer, Group group) override {
    return MpiStatus(MPI_Recv(data, Count(count), MPI_FLOAT, peer, kTag, comm(group), MPI_STATUS_IGNORE), "MPI_Recv");
  }
  absl::Status SendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                        int recv_peer, Group group) override {
    return MpiStatus(MPI_Sendrecv(send, Count(send_count), MPI_FLOAT, send_peer, kTag, recv, Count(recv_count),
                                  MPI_FLOAT, recv_peer, kTag, comm(group), MPI_STATUS_IGNORE),
                     "MPI_Sendrecv");
  }

  absl::Status StartSendRecv(const float* send, int64_t send_count, int send_peer, float* recv, int64_t recv_count,
                             int recv_peer, Group group) override {
    if (in_flight_) return absl::FailedPreconditionError("StartSendRecv: a transfer is already in flight");
    if (auto s = MpiStatus(MPI_Irecv(recv, Count(recv_count), MPI_FLOAT, recv_peer, kRingTag, comm(group),
                                     &requests_[0]),
                           "MPI_Irecv");
        !s.ok()) {
      return s;
    }
    in_flight_ = true;
    return MpiStatus(MPI_Isend(send, Count(send_count), MPI_FLOAT, send_peer, kRingTag, comm(group), &requests_[1]),
                     "MPI_Isend");
  }
  absl::Status Wait() override {
    if (!in_flight_) return absl::OkStatus();
    in_flight_ = false;
    return MpiStatus(MPI_Waitall(2, requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  }

  std::array<MPI_Comm, 4> comms_ = {MPI_COMM_NULL, MPI_COMM_NULL, MPI_COMM_NULL, MPI_COMM_NULL};

 private:
  static constexpr int kTag = 17;
  static constexpr int kRingTag = 18;
  std::array<MPI_Request, 2> requests_ = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  bool in_flight_ = false;
  // MPI counts are int; every buffer we move is far below 2^31 elements.
  static int Count(int64_t count) { return static_cast<int>(count); }
  MPI_Comm comm(Group group) const { return comms_[static_cast<int>(group)]; }
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceComm>> CreateMpiDeviceComm(const Mapping& mapping) {
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != mapping.world_size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the mapping is for ", mapping.world_size(), " ranks but MPI_COMM_WORLD has ", world));
  }
  auto comm = std::make_unique<MpiDeviceComm>();
  const bool llm = mapping.role() == Role::kLlm;
  // Colors: ranks outside the LLM grid take MPI_UNDEFINED and get MPI_COMM_NULL. Keys order members by group rank.
  const int colors[3] = {llm ? mapping.sp_rank() : MPI_UNDEFINED, llm ? mapping.tp_rank() : MPI_UNDEFINED,
                         llm ? 0 : MPI_UNDEFINED};
  const int keys[3] = {llm ? mapping.tp_rank() : 0, llm ? mapping.sp_rank() : 0, mapping.rank()};
  for (int i = 0; i < 3; ++i) {
    if (auto status = MpiStatus(MPI_Comm_split(MPI_COMM_WORLD, colors[i], keys[i], &comm->comms_[i]), "MPI_Comm_split");
        !status.ok()) {
      return status;
    }
  }
  if (auto status = MpiStatus(MPI_Comm_dup(MPI_COMM_WORLD, &comm->comms_[3]), "MPI_Comm_dup"); !status.ok()) {
    return status;
  }
  return comm;
}

}  // namespace ixc::parallel
