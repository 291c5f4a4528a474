// File: coordinator/api/api_server.h
//
// The OpenAI-compatible HTTP API of the cluster (architecture section 3), on cpp-httplib's thread pool beside the
// engine's thread:
//   POST /v1/chat/completions, /v1/completions   (stream: SSE, one chunk per step's new text)
//   GET  /v1/models, /health, /version, /metrics
//   POST /tokenize, /detokenize
// A request is prepared (template, tokens, media decoded, HD transform) on the handler's thread, at most
// `preprocess_threads` at a time, and then submitted to the engine's inbox; the handler follows its RequestStream.
// Every error is OpenAI's {"error": {message, type, param, code}}: 400 bad input (naming the field), 401 without the
// API key, 404 unknown route or model, 405 wrong method, 413 body too large, 415 not JSON, 429 queue full
// (Retry-After), 503 loading, draining or failed. A client that goes away, streamed or not, cancels its request.
//   ApiServer server(options, tokenizer, defaults, inbox, engine, metrics);
//   IXC_RETURN_IF_ERROR(server.Start());   ...   server.BeginDrain();   ...   server.Stop();
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <semaphore>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "coordinator/api/openai_request.h"
#include "coordinator/engine.h"
#include "coordinator/engine_inbox.h"
#include "coordinator/request.h"
#include "coordinator/tokenizer.h"
#include "monitoring/metrics.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace ixc::coordinator {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                   // 0: any free port (port() says which)
  std::string api_key;               // empty: no key
  std::string served_model_name;
  std::string model_dir;
  int64_t max_request_bytes = int64_t{100} << 20;
  int http_threads = 256;            // connections served at once (a stream holds one for its length)
  int preprocess_threads = 2;        // requests prepared at once
  ApiLimits limits;
};

class ApiServer {
 public:
  ApiServer(const ServerOptions& options, const Tokenizer& tokenizer, const RequestDefaults& defaults,
            EngineInbox& inbox, const Engine& engine, monitoring::Metrics& metrics);
  ~ApiServer();

  // Binds and starts answering (503 until the engine is ready).
  absl::Status Start();
  int port() const { return port_; }
  // New requests get 503 from now; those in flight go on.
  void BeginDrain() { state_ = State::kDraining; }
  // The engine failed: /health and new requests 503; in-flight requests end with the engine's error.
  void Fail() { state_ = State::kFailed; }
  // Stops listening and waits for the handlers in flight.
  void Stop();
  int64_t in_flight() const { return in_flight_; }

 private:
  enum class State { kServing, kDraining, kFailed };
  struct Generation;

  void Route();
  void Completions(const httplib::Request& http, httplib::Response& response, bool chat);
  void Tokenize(const httplib::Request& http, httplib::Response& response);
  void Detokenize(const httplib::Request& http, httplib::Response& response);

  // Whether the request carries the API key (or none is set); writes the 401 where not.
  bool Authorized(const httplib::Request& http, httplib::Response& response);
  // The common gate of the POST routes: state, key, content type, JSON. Returns false after writing an error.
  bool Admit(const httplib::Request& http, httplib::Response& response, nlohmann::json* body);
  // Prepares every (prompt, choice) of `api` into `generation`; errors are written to `response`.
  // `received`: when the HTTP request came (its preparation counts in its TTFT and e2e latency).
  bool Prepare(const ApiRequest& api, Generation& generation, httplib::Response& response,
               std::chrono::steady_clock::time_point received);
  // The status of a request that ended with an error: 503 where the server failed (a rank is gone), else 400.
  int ErrorStatus() const { return state_ == State::kFailed || engine_.failed() ? 503 : 400; }
  // Counts every answered HTTP request by handler, method and status, with its duration (httplib's logger).
  void RecordHttp(const httplib::Request& http, const httplib::Response& response);
  // Waits for every choice; a client that has gone meanwhile (PeerWatch) cancels them: false then.
  bool Await(const httplib::Request& http, Generation& generation);
  // Awaits every choice and answers.
  void Respond(const httplib::Request& http, Generation& generation, httplib::Response& response);
  // A composition task (ixc_task, coordinator/compose_task.h): its generations (the resume's two), the page or
  // article post-processed, as one answer (a stream gets it as one chunk).
  void Compose(const httplib::Request& http, Generation& generation, httplib::Response& response);
  void Stream(std::shared_ptr<Generation> generation, httplib::Response& response);

  ServerOptions options_;
  const Tokenizer& tokenizer_;
  RequestDefaults defaults_;
  EngineInbox& inbox_;
  const Engine& engine_;
  monitoring::Metrics& metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::thread listener_;
  std::counting_semaphore<1 << 16> preparing_;
  std::atomic<State> state_{State::kServing};
  std::atomic<uint64_t> next_number_{1};
  std::atomic<int64_t> in_flight_{0};
  int port_ = 0;
};

}  // namespace ixc::coordinator
