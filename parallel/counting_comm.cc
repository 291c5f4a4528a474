#include "parallel/counting_comm.h"

#include <chrono>

namespace ixc::parallel {
namespace {

constexpr int64_t kFloat = sizeof(float);

// Runs `call` and counts it.
template <typename Call>
absl::Status Counted(CommCounter& counter, Group group, const char* op, const std::string& path, int64_t bytes,
                     Call call) {
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = call();
  counter.Add(group, op, path, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), bytes);
  return status;
}

}  // namespace

const char* GroupName(Group group) {
  switch (group) {
    case Group::kTensor: return "tp";
    case Group::kSequence: return "sp";
    case Group::kLlm: return "llm";
    case Group::kWorld: return "world";
  }
  return "unknown";
}

void CommCounter::Add(Group group, const char* op, const std::string& path, double seconds, int64_t bytes) {
  std::lock_guard lock(mutex_);
  CommTotal& total = totals_[{group, op, path}];
  if (total.calls == 0) total = {GroupName(group), op, path};
  ++total.calls;
  total.seconds += seconds;
  total.bytes += bytes;
}

std::vector<CommTotal> CommCounter::Take() {
  std::lock_guard lock(mutex_);
  std::vector<CommTotal> taken;
  for (auto& [key, total] : totals_) taken.push_back(std::move(total));
  totals_.clear();
  return taken;
}

// Bytes count what this rank sends and receives: a sum or gather over a group of n moves about (n - 1) / n of the
// data each way in a ring, counted here as the data's size once each way.
absl::Status CountingComm::AllReduceSum(float* data, int64_t count, Group group) {
  return Counted(counter_, group, "all_reduce", path_, 2 * count * kFloat,
                 [&] { return inner_.AllReduceSum(data, count, group); });
}

absl::Status CountingComm::AllGather(const float* send, int64_t count, float* gathered, Group group) {
  return Counted(counter_, group, "all_gather", path_, count * kFloat * GroupSize(group),
                 [&] { return inner_.AllGather(send, count, gathered, group); });
}

absl::Status CountingComm::ReduceScatterSum(const float* send, float* recv, int64_t count, Group group) {
  return Counted(counter_, group, "reduce_scatter", path_, count * kFloat * GroupSize(group),
                 [&] { return inner_.ReduceScatterSum(send, recv, count, group); });
}

absl::Status CountingComm::Broadcast(float* data, int64_t count, int root, Group group) {
  return Counted(counter_, group, "broadcast", path_, count * kFloat,
                 [&] { return inner_.Broadcast(data, count, root, group); });
}

absl::Status CountingComm::Send(const float* data, int64_t count, int peer, Group group) {
  return Counted(counter_, group, "send", path_, count * kFloat, [&] { return inner_.Send(data, count, peer, group); });
}

absl::Status CountingComm::Recv(float* data, int64_t count, int peer, Group group) {
  return Counted(counter_, group, "recv", path_, count * kFloat, [&] { return inner_.Recv(data, count, peer, group); });
}

absl::Status CountingComm::SendRecv(const float* send, int64_t send_count, int send_peer, float* recv,
                                    int64_t recv_count, int recv_peer, Group group) {
  return Counted(counter_, group, "send_recv", path_, (send_count + recv_count) * kFloat, [&] {
    return inner_.SendRecv(send, send_count, send_peer, recv, recv_count, recv_peer, group);
  });
}

absl::Status CountingComm::StartSendRecv(const float* send, int64_t send_count, int send_peer, float* recv,
                                         int64_t recv_count, int recv_peer, Group group) {
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = inner_.StartSendRecv(send, send_count, send_peer, recv, recv_count, recv_peer, group);
  pending_ = true;
  pending_group_ = group;
  pending_bytes_ = (send_count + recv_count) * kFloat;
  pending_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return status;
}

// The overlapped transfer counts the caller's time starting it and waiting for it, not the compute between.
absl::Status CountingComm::Wait() {
  const auto start = std::chrono::steady_clock::now();
  const absl::Status status = inner_.Wait();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (pending_) counter_.Add(pending_group_, "send_recv", path_, pending_seconds_ + waited, pending_bytes_);
  pending_ = false;
  pending_bytes_ = 0;
  pending_seconds_ = 0;
  return status;
}

absl::Status CountingComm::AllReduceSumOnStream(float* data, int64_t count, Group group, void* stream) {
  return Counted(counter_, group, "all_reduce", path_, 2 * count * kFloat,
                 [&] { return inner_.AllReduceSumOnStream(data, count, group, stream); });
}

}  // namespace ixc::parallel
