#include "protocol/messages.h"

#include <zmq.hpp>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"

namespace ixc::protocol {

absl::StatusOr<const Envelope*> Decode(const Bytes& bytes) {
  flatbuffers::Verifier verifier(bytes.data(), bytes.size());
  if (!VerifyEnvelopeBuffer(verifier)) {
    return absl::DataLossError(absl::StrCat("control message of ", bytes.size(), " bytes fails verification"));
  }
  const Envelope* envelope = GetEnvelope(bytes.data());
  if (envelope->version() != kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat("control message of protocol version ", envelope->version(),
                                                      " from rank ", envelope->sender_rank(), "; this build speaks ",
                                                      kProtocolVersion));
  }
  return envelope;
}

Bytes Finish(flatbuffers::FlatBufferBuilder& builder, int rank, Body type, flatbuffers::Offset<void> body) {
  builder.Finish(CreateEnvelope(builder, kProtocolVersion, rank, type, body));
  return Bytes(builder.GetBufferPointer(), builder.GetBufferPointer() + builder.GetSize());
}

Bytes EncodeStepResult(int rank, uint64_t step, const std::vector<SampledToken>& sampled,
                       const std::vector<RequestFailure>& failures, const ixc::RankReport* report) {
  flatbuffers::FlatBufferBuilder builder;
  std::vector<uint64_t> request_ids, failed_ids;
  std::vector<int32_t> tokens;
  std::vector<flatbuffers::Offset<SampledLogprobs>> logprobs;
  std::vector<flatbuffers::Offset<BeamSequenceCandidates>> beams;
  for (size_t i = 0; i < sampled.size(); ++i) {
    request_ids.push_back(sampled[i].request_id);
    tokens.push_back(sampled[i].token);
    if (const std::optional<TokenLogprobs>& l = sampled[i].logprobs) {
      logprobs.push_back(CreateSampledLogprobs(builder, static_cast<int32_t>(i), l->chosen,
                                               builder.CreateVector(l->top_ids), builder.CreateVector(l->top_logprobs)));
    }
    if (const std::optional<BeamCandidates>& c = sampled[i].candidates) {
      beams.push_back(CreateBeamSequenceCandidates(builder, static_cast<int32_t>(i), builder.CreateVector(c->ids),
                                                   builder.CreateVector(c->logprobs)));
    }
  }
  std::vector<flatbuffers::Offset<flatbuffers::String>> messages;
  for (const RequestFailure& failure : failures) {
    failed_ids.push_back(failure.request_id);
    messages.push_back(builder.CreateString(failure.message));
  }
  flatbuffers::Offset<WorkerReport> report_offset = 0;
  if (report != nullptr) {
    std::vector<flatbuffers::Offset<CommCount>> comm;
    for (const ixc::CommTotal& total : report->comm) {
      comm.push_back(CreateCommCount(builder, builder.CreateString(total.group), builder.CreateString(total.op),
                                     builder.CreateString(total.path), total.calls, total.seconds, total.bytes));
    }
    report_offset = CreateWorkerReport(builder, report->steps, report->compute_seconds, builder.CreateVector(comm),
                                     report->device_memory_used, report->device_memory_total,
                                     builder.CreateVector(report->vit_pass_seconds), report->vit_crops);
  }
  const auto body = CreateStepResult(builder, step, builder.CreateVector(request_ids), builder.CreateVector(tokens),
                                     /*kv_blocks=*/0, failures.empty() ? 0 : builder.CreateVector(failed_ids),
                                     failures.empty() ? 0 : builder.CreateVector(messages),
                                     logprobs.empty() ? 0 : builder.CreateVector(logprobs), report_offset,
                                     beams.empty() ? 0 : builder.CreateVector(beams));
  return Finish(builder, rank, Body::StepResult, body.Union());
}

ixc::RankReport ReportOf(const StepResult& result) {
  ixc::RankReport report;
  const WorkerReport* sent = result.report();
  if (sent == nullptr) return report;
  report.steps = sent->steps();
  report.compute_seconds = sent->compute_seconds();
  report.device_memory_used = sent->device_memory_used();
  report.device_memory_total = sent->device_memory_total();
  report.vit_crops = sent->vit_crops();
  if (sent->vit_pass_seconds() != nullptr) {
    report.vit_pass_seconds.assign(sent->vit_pass_seconds()->begin(), sent->vit_pass_seconds()->end());
  }
  if (sent->comm() != nullptr) {
    for (const CommCount* total : *sent->comm()) {
      auto text = [](const flatbuffers::String* s) { return s == nullptr ? std::string() : s->str(); };
      report.comm.push_back({text(total->group()), text(total->op()), text(total->path()), total->calls(),
                             total->seconds(), total->bytes()});
    }
  }
  return report;
}

std::vector<SampledToken> SampledTokens(const StepResult& result) {
  std::vector<SampledToken> sampled;
  if (result.request_ids() == nullptr || result.tokens() == nullptr) return sampled;
  for (size_t i = 0; i < result.request_ids()->size() && i < result.tokens()->size(); ++i) {
    sampled.push_back({result.request_ids()->Get(i), result.tokens()->Get(i), std::nullopt, std::nullopt});
  }
  if (result.beams() != nullptr) {
    for (const BeamSequenceCandidates* c : *result.beams()) {
      if (c->index() < 0 || c->index() >= static_cast<int>(sampled.size()) || c->ids() == nullptr ||
          c->logprobs() == nullptr || c->ids()->size() != c->logprobs()->size()) {
        continue;
      }
      BeamCandidates& out = sampled[c->index()].candidates.emplace();
      out.ids.assign(c->ids()->begin(), c->ids()->end());
      out.logprobs.assign(c->logprobs()->begin(), c->logprobs()->end());
    }
  }
  if (result.logprobs() == nullptr) return sampled;
  for (const SampledLogprobs* l : *result.logprobs()) {
    if (l->index() < 0 || l->index() >= static_cast<int>(sampled.size())) continue;
    TokenLogprobs& out = sampled[l->index()].logprobs.emplace();
    out.chosen = l->chosen();
    if (l->top_ids() != nullptr && l->top_logprobs() != nullptr && l->top_ids()->size() == l->top_logprobs()->size()) {
      out.top_ids.assign(l->top_ids()->begin(), l->top_ids()->end());
      out.top_logprobs.assign(l->top_logprobs()->begin(), l->top_logprobs()->end());
    }
  }
  return sampled;
}

Bytes EncodeReady(int rank, int kv_blocks) {
  flatbuffers::FlatBufferBuilder builder;
  const auto body = CreateStepResult(builder, /*step=*/0, 0, 0, kv_blocks);
  return Finish(builder, rank, Body::StepResult, body.Union());
}

Bytes EncodeError(int rank, const std::string& message, uint64_t request_id) {
  flatbuffers::FlatBufferBuilder builder;
  const auto body = CreateErrorReport(builder, builder.CreateString(message), request_id);
  return Finish(builder, rank, Body::ErrorReport, body.Union());
}

Bytes EncodeHeartbeat(int rank) {
  flatbuffers::FlatBufferBuilder builder;
  return Finish(builder, rank, Body::Heartbeat, CreateHeartbeat(builder, rank).Union());
}

Bytes EncodeShutdown(int rank) {
  flatbuffers::FlatBufferBuilder builder;
  return Finish(builder, rank, Body::Shutdown, CreateShutdown(builder).Union());
}

struct Channel::Sockets {
  zmq::context_t context{1};
  zmq::socket_t socket;
};

absl::StatusOr<std::unique_ptr<Channel>> Channel::Bind(const std::string& host) {
  std::unique_ptr<Channel> channel(new Channel());
  channel->sockets_ = std::make_unique<Sockets>();
  channel->router_ = true;
  try {
    channel->sockets_->socket = zmq::socket_t(channel->sockets_->context, zmq::socket_type::router);
    channel->sockets_->socket.set(zmq::sockopt::linger, 0);
    // A send to a worker that is not connected fails instead of vanishing.
    channel->sockets_->socket.set(zmq::sockopt::router_mandatory, true);
    channel->sockets_->socket.bind(absl::StrCat("tcp://", host, ":*"));
    channel->endpoint_ = channel->sockets_->socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& error) {
    return absl::UnavailableError(absl::StrCat("cannot bind the control socket on ", host, ": ", error.what()));
  }
  return channel;
}

namespace {

constexpr char kHeartbeatPrefix[] = "hb";

}  // namespace

absl::StatusOr<std::unique_ptr<Channel>> Channel::Connect(const std::string& endpoint, int rank) {
  return ConnectAs(endpoint, std::to_string(rank));
}

absl::StatusOr<std::unique_ptr<Channel>> Channel::ConnectHeartbeat(const std::string& endpoint, int rank) {
  return ConnectAs(endpoint, kHeartbeatPrefix + std::to_string(rank));
}

absl::StatusOr<std::unique_ptr<Channel>> Channel::ConnectAs(const std::string& endpoint, const std::string& identity) {
  std::unique_ptr<Channel> channel(new Channel());
  channel->sockets_ = std::make_unique<Sockets>();
  channel->endpoint_ = endpoint;
  try {
    channel->sockets_->socket = zmq::socket_t(channel->sockets_->context, zmq::socket_type::dealer);
    channel->sockets_->socket.set(zmq::sockopt::linger, 0);
    channel->sockets_->socket.set(zmq::sockopt::routing_id, identity);
    channel->sockets_->socket.connect(endpoint);
  } catch (const zmq::error_t& error) {
    return absl::UnavailableError(absl::StrCat("cannot connect to the coordinator at ", endpoint, ": ", error.what()));
  }
  return channel;
}

Channel::~Channel() = default;

absl::Status Channel::Send(int rank, const Bytes& message) {
  try {
    if (router_) {
      const std::string id = std::to_string(rank);
      sockets_->socket.send(zmq::buffer(id), zmq::send_flags::sndmore);
    }
    sockets_->socket.send(zmq::buffer(message), zmq::send_flags::none);
  } catch (const zmq::error_t& error) {
    return absl::UnavailableError(absl::StrCat("control send to rank ", rank, " failed: ", error.what()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<int, Bytes>> Channel::Receive(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{static_cast<void*>(sockets_->socket), 0, ZMQ_POLLIN, 0};
  try {
    if (zmq::poll(&item, 1, timeout) == 0) {
      return absl::DeadlineExceededError(absl::StrCat("no control message within ", timeout.count(), " ms"));
    }
    int sender = 0;
    zmq::message_t part;
    if (router_) {
      (void)sockets_->socket.recv(part, zmq::recv_flags::none);
      std::string identity = part.to_string();
      // Heartbeat sockets report their rank; the envelope says it is a heartbeat.
      if (identity.rfind(kHeartbeatPrefix, 0) == 0) identity = identity.substr(sizeof(kHeartbeatPrefix) - 1);
      sender = std::atoi(identity.c_str());
    }
    (void)sockets_->socket.recv(part, zmq::recv_flags::none);
    const auto* data = static_cast<const uint8_t*>(part.data());
    return std::make_pair(sender, Bytes(data, data + part.size()));
  } catch (const zmq::error_t& error) {
    return absl::UnavailableError(absl::StrCat("control receive failed: ", error.what()));
  }
}

struct HeartbeatSender::State {
  std::unique_ptr<Channel> channel;
  std::mutex mutex;
  std::condition_variable stop_signal;
  bool stop = false;
  std::thread thread;
};

absl::StatusOr<std::unique_ptr<HeartbeatSender>> HeartbeatSender::Start(const std::string& endpoint, int rank) {
  std::unique_ptr<HeartbeatSender> sender(new HeartbeatSender());
  sender->state_ = std::make_unique<State>();
  auto channel = Channel::ConnectHeartbeat(endpoint, rank);
  if (!channel.ok()) return channel.status();
  sender->state_->channel = std::move(*channel);
  State* state = sender->state_.get();
  state->thread = std::thread([state, rank] {
    const Bytes beat = EncodeHeartbeat(rank);
    std::unique_lock<std::mutex> lock(state->mutex);
    while (!state->stop) {
      (void)state->channel->Send(0, beat);
      state->stop_signal.wait_for(lock, std::chrono::seconds(1), [state] { return state->stop; });
    }
  });
  return sender;
}

HeartbeatSender::~HeartbeatSender() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->stop_signal.notify_all();
  state_->thread.join();
}

absl::StatusOr<const Envelope*> AwaitCoordinator(Channel& channel, const std::string& who, int step_timeout_s,
                                                 Bytes* storage) {
  auto message = channel.Receive(std::chrono::seconds(4 * step_timeout_s));
  if (!message.ok()) {
    return absl::DeadlineExceededError(absl::StrCat(who, ": no word from the coordinator: ", message.status().message()));
  }
  *storage = std::move(message->second);
  return Decode(*storage);
}

}  // namespace ixc::protocol
