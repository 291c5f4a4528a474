// File: coordinator/engine_inbox.h
//
// How requests reach the engine's thread from any other (HTTP handlers, the offline JSONL reader): submissions and
// cancellations queue here and the engine takes them between steps. Closing the inbox says that no more will come:
// the engine finishes what it has and returns. Admission is bounded: past `max_queued` requests not yet finished,
// Submit refuses.
//   EngineInbox inbox(/*max_queued=*/256);
//   if (!inbox.Submit(request)) ... 429
//   inbox.Cancel(request->number, "abort");
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/request.h"

namespace ixc::coordinator {

class EngineInbox {
 public:
  explicit EngineInbox(int64_t max_queued) : max_queued_(max_queued) {}

  // Queues `request` unless the engine already holds `max_queued` unfinished requests or the inbox is closed.
  bool Submit(std::shared_ptr<Request> request);
  // All of `requests` or none (the choices of one API request).
  bool SubmitAll(const std::vector<std::shared_ptr<Request>>& requests);
  // Asks the engine to end request `number` with finish reason `reason` (abort, stop): its KV blocks and images are
  // freed with the next step. Unknown or finished numbers are ignored.
  void Cancel(uint64_t number, const std::string& reason);
  // Cancels every request the engine holds or will take (a drain that ran out of time).
  void CancelAll(const std::string& reason);
  // No more submissions; the engine returns once what it holds is done.
  void Close();

  // Engine side.
  std::vector<std::shared_ptr<Request>> TakeSubmitted();
  std::vector<std::pair<uint64_t, std::string>> TakeCancelled();
  std::string cancel_all() const;  // the reason of CancelAll, or empty
  void Finished(int64_t count);  // `count` requests the engine held are done: room for as many more
  bool closed() const;
  int64_t unfinished() const;

 private:
  const int64_t max_queued_;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<Request>> submitted_;
  std::vector<std::pair<uint64_t, std::string>> cancelled_;
  std::string cancel_all_;
  int64_t unfinished_ = 0;  // submitted and not yet finished
  bool closed_ = false;
};

}  // namespace ixc::coordinator
