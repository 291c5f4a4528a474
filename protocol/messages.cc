#include "protocol/messages.h"

#include <zmq.hpp>

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

Bytes EncodeStepResult(int rank, uint64_t step, const std::vector<uint64_t>& request_ids,
                       const std::vector<int32_t>& tokens) {
  flatbuffers::FlatBufferBuilder builder;
  const auto body = CreateStepResult(builder, step, builder.CreateVector(request_ids), builder.CreateVector(tokens));
  return Finish(builder, rank, Body::StepResult, body.Union());
}

Bytes EncodeError(int rank, const std::string& message, uint64_t request_id) {
  flatbuffers::FlatBufferBuilder builder;
  const auto body = CreateErrorReport(builder, builder.CreateString(message), request_id);
  return Finish(builder, rank, Body::ErrorReport, body.Union());
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

absl::StatusOr<std::unique_ptr<Channel>> Channel::Connect(const std::string& endpoint, int rank) {
  std::unique_ptr<Channel> channel(new Channel());
  channel->sockets_ = std::make_unique<Sockets>();
  channel->endpoint_ = endpoint;
  try {
    channel->sockets_->socket = zmq::socket_t(channel->sockets_->context, zmq::socket_type::dealer);
    channel->sockets_->socket.set(zmq::sockopt::linger, 0);
    channel->sockets_->socket.set(zmq::sockopt::routing_id, std::to_string(rank));
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
      sender = std::stoi(part.to_string());
    }
    (void)sockets_->socket.recv(part, zmq::recv_flags::none);
    const auto* data = static_cast<const uint8_t*>(part.data());
    return std::make_pair(sender, Bytes(data, data + part.size()));
  } catch (const zmq::error_t& error) {
    return absl::UnavailableError(absl::StrCat("control receive failed: ", error.what()));
  }
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
