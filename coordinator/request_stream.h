// File: coordinator/request_stream.h
//
// What the engine tells a request's client while it runs: each token as its step finishes, then the end (finish
// reason, or an error). The engine thread writes; the client (an HTTP handler, the offline JSONL writer) waits on it
// from its own thread.
//   engine:  stream.Push(token); ... stream.Finish("stop", "");
//   client:  RequestStream::Update update;
//            while (stream.Wait(seen, std::chrono::seconds(1), &update)) { ...update.tokens[seen..]...; seen = ... }
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/token_logprobs.h"

namespace ixc::coordinator {

class RequestStream {
 public:
  struct Update {
    std::vector<int32_t> tokens;  // every token so far
    std::vector<TokenLogprobs> logprobs;  // (tokens) where the request asked for them, else empty
    bool finished = false;
    std::string finish_reason;    // stop | length | abort | error
    std::string error;            // with finish_reason error
  };

  void Push(int32_t token, std::optional<TokenLogprobs> logprobs = std::nullopt);
  void Finish(const std::string& reason, const std::string& error);

  // Waits until the stream holds more than `seen` tokens or has finished, or `timeout` passes; copies its state into
  // `update`. Returns whether there is something new (false on timeout).
  bool Wait(size_t seen, std::chrono::milliseconds timeout, Update* update) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  Update state_;
};

}  // namespace ixc::coordinator
