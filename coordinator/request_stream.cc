#include "coordinator/request_stream.h"

#include <algorithm>

namespace ixc::coordinator {

void RequestStream::Push(int32_t token, std::optional<TokenLogprobs> logprobs) {
  {
    std::lock_guard lock(mutex_);
    tokens_.push_back(token);
    if (logprobs) logprobs_.push_back(std::move(*logprobs));
  }
  changed_.notify_all();
}

void RequestStream::Finish(const std::string& reason, const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
    finish_reason_ = reason;
    error_ = error;
  }
  changed_.notify_all();
}

void RequestStream::SetCachedTokens(int64_t cached) {
  std::lock_guard lock(mutex_);
  cached_tokens_ = cached;
}

bool RequestStream::Wait(size_t seen, std::chrono::milliseconds timeout, Update* update) const {
  std::unique_lock lock(mutex_);
  const bool news = changed_.wait_for(lock, timeout, [&] { return finished_ || tokens_.size() > seen; });
  const size_t from = std::min(seen, tokens_.size());
  update->tokens.assign(tokens_.begin() + from, tokens_.end());
  update->logprobs.assign(logprobs_.begin() + std::min(from, logprobs_.size()), logprobs_.end());
  update->total = tokens_.size();
  update->finished = finished_;
  update->finish_reason = finish_reason_;
  update->error = error_;
  update->cached_tokens = cached_tokens_;
  return news;
}

}  // namespace ixc::coordinator
