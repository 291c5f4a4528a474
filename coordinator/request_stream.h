// File: coordinator/request_stream.h
//
// What the engine tells a request's client while it runs: each token as its step finishes, then the end (finish
// reason, or an error). The engine thread writes; the client (an HTTP handler, the offline JSONL writer) waits on it
// from its own thread.
//   engine:  stream.Push(token); ... stream.Finish("stop", "");
//   client:  RequestStream::Update update;
//            while (stream.Wait(seen, std::chrono::seconds(1), &update)) { ...update.tokens...; seen = update.total; }
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
  // What came after the `seen` tokens a Wait was given: a long answer's tokens are copied once, not at every wait.
  struct Update {
    std::vector<int32_t> tokens;  // the tokens after `seen`
    std::vector<TokenLogprobs> logprobs;  // theirs, where the request asked for them, else empty
    size_t total = 0;             // tokens so far, these included
    bool finished = false;
    std::string finish_reason;    // stop | length | abort | error
    std::string error;            // with finish_reason error
    int64_t cached_tokens = 0;    // prompt positions the prefix cache held at its admission
  };

  void Push(int32_t token, std::optional<TokenLogprobs> logprobs = std::nullopt);
  void Finish(const std::string& reason, const std::string& error);
  // At its first admission: how many of its prompt positions came from the prefix cache (usage's cached_tokens).
  void SetCachedTokens(int64_t cached);

  // Waits until the stream holds more than `seen` tokens or has finished, or `timeout` passes; fills `update` with
  // the tokens after `seen` and the end, if it has come. Returns whether there is something new (false on timeout).
  bool Wait(size_t seen, std::chrono::milliseconds timeout, Update* update) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<int32_t> tokens_;
  std::vector<TokenLogprobs> logprobs_;
  bool finished_ = false;
  std::string finish_reason_, error_;
  int64_t cached_tokens_ = 0;
};

}  // namespace ixc::coordinator
