#include "coordinator/request_stream.h"

namespace ixc::coordinator {

void RequestStream::Push(int32_t token, std::optional<TokenLogprobs> logprobs) {
  {
    std::lock_guard lock(mutex_);
    state_.tokens.push_back(token);
    if (logprobs) state_.logprobs.push_back(std::move(*logprobs));
  }
  changed_.notify_all();
}

void RequestStream::Finish(const std::string& reason, const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    if (state_.finished) return;
    state_.finished = true;
    state_.finish_reason = reason;
    state_.error = error;
  }
  changed_.notify_all();
}

bool RequestStream::Wait(size_t seen, std::chrono::milliseconds timeout, Update* update) const {
  std::unique_lock lock(mutex_);
  const bool news =
      changed_.wait_for(lock, timeout, [&] { return state_.finished || state_.tokens.size() > seen; });
  *update = state_;
  return news;
}

}  // namespace ixc::coordinator
