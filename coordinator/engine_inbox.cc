#include "coordinator/engine_inbox.h"

namespace ixc::coordinator {

bool EngineInbox::Submit(std::shared_ptr<Request> request) { return SubmitAll({std::move(request)}); }

bool EngineInbox::SubmitAll(const std::vector<std::shared_ptr<Request>>& requests) {
  std::lock_guard lock(mutex_);
  const int64_t count = static_cast<int64_t>(requests.size());
  if (closed_ || unfinished_ + count > max_queued_) return false;
  unfinished_ += count;
  submitted_.insert(submitted_.end(), requests.begin(), requests.end());
  return true;
}

void EngineInbox::CancelAll(const std::string& reason) {
  std::lock_guard lock(mutex_);
  cancel_all_ = reason;
}

std::string EngineInbox::cancel_all() const {
  std::lock_guard lock(mutex_);
  return cancel_all_;
}

void EngineInbox::Cancel(uint64_t number, const std::string& reason) {
  std::lock_guard lock(mutex_);
  cancelled_.emplace_back(number, reason);
}

void EngineInbox::Close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

std::vector<std::shared_ptr<Request>> EngineInbox::TakeSubmitted() {
  std::lock_guard lock(mutex_);
  return std::exchange(submitted_, {});
}

std::vector<std::pair<uint64_t, std::string>> EngineInbox::TakeCancelled() {
  std::lock_guard lock(mutex_);
  return std::exchange(cancelled_, {});
}

void EngineInbox::Finished(int64_t count) {
  std::lock_guard lock(mutex_);
  unfinished_ -= count;
}

bool EngineInbox::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

int64_t EngineInbox::unfinished() const {
  std::lock_guard lock(mutex_);
  return unfinished_;
}

}  // namespace ixc::coordinator
