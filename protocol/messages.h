// File: protocol/messages.h
//
// Encoding and checked decoding of the control-plane messages of protocol/control.fbs (FlatBuffers), and the
// ZeroMQ channel they travel on: the coordinator binds a ROUTER socket, each worker connects a DEALER whose routing
// id is its world rank. Every receive has a timeout, so nothing waits forever.
//
//   Channel worker = *Channel::Connect(endpoint, rank);
//   IXC_RETURN_IF_ERROR(worker.Send(0, EncodeStepResult(rank, step, {{request_id, token}})));
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/rank_report.h"
#include "core/token_logprobs.h"
#include "protocol/control_generated.h"

namespace ixc::protocol {

inline constexpr uint16_t kProtocolVersion = 4;  // 4: SequenceWork.generated of a beam no longer starts with BOS

// A request's images and videos, at most (one fewer than this).
inline constexpr int kMaxImagesPerRequest = 64;

using Bytes = std::vector<uint8_t>;

// Verifies the buffer and the version; the returned pointer reads from `bytes`.
absl::StatusOr<const Envelope*> Decode(const Bytes& bytes);

// A request that failed alone in a step (StepResult's failures).
struct RequestFailure {
  uint64_t request_id = 0;
  std::string message;
};

// A sequence's token from a step, and its log-probabilities where the request asked; or, for a beam, its candidates
// (the token then means nothing).
struct SampledToken {
  uint64_t request_id = 0;
  int32_t token = 0;
  std::optional<TokenLogprobs> logprobs = std::nullopt;
  std::optional<BeamCandidates> candidates = std::nullopt;
};

Bytes EncodeStepResult(int rank, uint64_t step, const std::vector<SampledToken>& sampled,
                       const std::vector<RequestFailure>& failures = {}, const ixc::RankReport* report = nullptr);
// The sender's report in a StepResult (empty where it sent none).
ixc::RankReport ReportOf(const StepResult& result);
// The tokens of a StepResult (the pairs its vectors agree on; logprobs and candidates at out-of-range indices are
// dropped).
std::vector<SampledToken> SampledTokens(const StepResult& result);
// A worker's ready message (the StepResult of step 0): an LLM rank's KV pool blocks, 0 from a vision rank.
Bytes EncodeReady(int rank, int kv_blocks);
Bytes EncodeError(int rank, const std::string& message, uint64_t request_id = 0);
Bytes EncodeShutdown(int rank);
// Builds an envelope around a body made with `builder` (for the plan and vision tasks, built field by field).
Bytes Finish(flatbuffers::FlatBufferBuilder& builder, int rank, Body type, flatbuffers::Offset<void> body);

Bytes EncodeHeartbeat(int rank);

class Channel {
 public:
  // The coordinator's side: binds tcp://HOST:* and reports the endpoint workers connect to.
  static absl::StatusOr<std::unique_ptr<Channel>> Bind(const std::string& host);
  // A worker's side; the coordinator sees `rank` as the sender. The heartbeat socket is a second connection of the
  // same rank.
  static absl::StatusOr<std::unique_ptr<Channel>> Connect(const std::string& endpoint, int rank);
  static absl::StatusOr<std::unique_ptr<Channel>> ConnectHeartbeat(const std::string& endpoint, int rank);
  ~Channel();

  const std::string& endpoint() const { return endpoint_; }
  // Coordinator: to worker `rank`; worker: to the coordinator (rank ignored).
  absl::Status Send(int rank, const Bytes& message);
  // The next message and its sender's rank; DeadlineExceeded after `timeout`.
  absl::StatusOr<std::pair<int, Bytes>> Receive(std::chrono::milliseconds timeout);

 private:
  Channel() = default;
  static absl::StatusOr<std::unique_ptr<Channel>> ConnectAs(const std::string& endpoint, const std::string& identity);
  struct Sockets;
  std::unique_ptr<Sockets> sockets_;
  bool router_ = false;
  std::string endpoint_;
};

// A worker's wait for the coordinator's next message, decoded into `storage`. The coordinator may idle between
// steps (arrivals, vision work): after four step timeouts of silence the worker gives up, naming itself (`who`).
absl::StatusOr<const Envelope*> AwaitCoordinator(Channel& channel, const std::string& who, int step_timeout_s,
                                                 Bytes* storage);

// Sends a heartbeat to the coordinator every second from its own thread and socket, until destroyed.
class HeartbeatSender {
 public:
  static absl::StatusOr<std::unique_ptr<HeartbeatSender>> Start(const std::string& endpoint, int rank);
  ~HeartbeatSender();

 private:
  HeartbeatSender() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ixc::protocol
