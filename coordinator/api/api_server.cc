#include "coordinator/api/api_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/api/logprobs_json.h"
#include "coordinator/api/peer_watch.h"
#include "coordinator/api/text_stream.h"
#include "core/logging.h"
#include "core/version.h"

namespace ixc::coordinator {
namespace {

constexpr char kJson[] = "application/json";

const char* ErrorType(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return status < 500 ? "invalid_request_error" : "internal_error";
  }
}

// OpenAI's error object, as a response body and as a stream's error event.
nlohmann::json ErrorJson(int status, const std::string& message, const std::string& param = "") {
  nlohmann::json error = {{"message", message}, {"type", ErrorType(status)}, {"param", nullptr}, {"code", status}};
  if (!param.empty()) error["param"] = param;
  return {{"error", error}};
}

void Error(httplib::Response& response, int status, const std::string& message, const std::string& param = "") {
  response.status = status;
  response.set_content(ErrorJson(status, message, param).dump(), kJson);
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string RandomId(const char* prefix) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(rng()));
  return absl::StrCat(prefix, hex);
}

std::string Sse(const nlohmann::json& data) { return absl::StrCat("data: ", data.dump(), "\n\n"); }

// When the request this HTTP thread handles came in (httplib runs a request's routing, handler and logger on one
// thread).
thread_local std::chrono::steady_clock::time_point request_start;

}  // namespace

// One API request's engine requests (prompts x n choices) and what has been told about them.
struct ApiServer::Generation {
  struct Choice {
    std::shared_ptr<Request> request;
    std::unique_ptr<TextStream> text;
    size_t seen = 0;             // tokens taken from the stream
    int64_t tokens = 0;          // generated, the stop token included
    std::vector<int32_t> ids;    // (tokens) the generated ids
    std::vector<TokenLogprobs> logprobs;  // (tokens) where the request asked for them
    size_t logprobs_sent = 0;    // tokens whose logprobs a stream chunk has carried
    int64_t logprobs_offset = 0;  // the completions shape's text_offset: bytes of those tokens
    std::string finish_reason;   // set once finished
    std::string error;
    bool role_sent = false;
    bool first_of_prompt = false;  // its prompt's usage counts once, on this choice
    int64_t cached_tokens = 0;     // of its prompt's positions, those the prefix cache held
  };
  ApiRequest api;
  std::string id;
  std::string model;
  int64_t created = 0;
  int64_t prompt_tokens = 0;
  std::vector<Choice> choices;

  // Takes what `choice`'s stream holds now: returns the new text; sets finish_reason at the end. A stop string ends
  // the engine request at once.
  std::string Advance(Choice& choice, const RequestStream::Update& update, EngineInbox& inbox) {
    if (!choice.finish_reason.empty()) return "";
    std::vector<int32_t> fresh;
    const std::vector<int32_t>& stops = choice.request->stop_ids;
    for (int32_t token : update.tokens) {
      if (std::find(stops.begin(), stops.end(), token) == stops.end()) fresh.push_back(token);
    }
    choice.ids.insert(choice.ids.end(), update.tokens.begin(), update.tokens.end());
    choice.logprobs.insert(choice.logprobs.end(), update.logprobs.begin(), update.logprobs.end());
    choice.seen = update.total;
    choice.tokens = static_cast<int64_t>(update.total);
    choice.cached_tokens = update.cached_tokens;
    std::string delta = choice.text->Add(fresh);
    if (choice.text->stopped()) {
      inbox.Cancel(choice.request->number, "stop");
      choice.finish_reason = "stop";
    } else if (update.finished) {
      delta += choice.text->Finish();
      choice.finish_reason = choice.text->stopped() ? "stop" : update.finish_reason;
      choice.error = update.error;
    }
    return delta;
  }

  // The logprobs of `choice`'s tokens not yet sent, in the endpoint's shape, now counted as sent; null where the
  // request asked for none or there are none new.
  nlohmann::json TakeLogprobs(Choice& choice, const Tokenizer& tokenizer) const {
    const size_t from = choice.logprobs_sent, to = std::min(choice.ids.size(), choice.logprobs.size());
    if (api.top_logprobs < 0 || from == to) return nullptr;
    const std::span<const int32_t> ids(choice.ids.data() + from, to - from);
    const std::span<const TokenLogprobs> logprobs(choice.logprobs.data() + from, to - from);
    choice.logprobs_sent = to;
    if (api.chat) return {{"content", ChatLogprobs(tokenizer, ids, logprobs)}};
    nlohmann::json out = CompletionLogprobs(tokenizer, ids, logprobs, choice.logprobs_offset);
    for (int32_t id : ids) choice.logprobs_offset += static_cast<int64_t>(tokenizer.TokenBytes(id).size());
    return out;
  }

  bool done() const {
    for (const Choice& choice : choices) {
      if (choice.finish_reason.empty()) return false;
    }
    return true;
  }
  int64_t completion_tokens() const {
    int64_t total = 0;
    for (const Choice& choice : choices) total += choice.tokens;
    return total;
  }
  // vLLM's usage, with prompt_tokens_details.cached_tokens as OpenAI names it: the prompt positions served from
  // the prefix cache (each prompt's once, as prompt_tokens counts it).
  nlohmann::json usage() const {
    int64_t cached = 0;
    for (const Choice& choice : choices) cached += choice.first_of_prompt ? choice.cached_tokens : 0;
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens()},
            {"total_tokens", prompt_tokens + completion_tokens()},
            {"prompt_tokens_details", {{"cached_tokens", cached}}}};
  }
  // A response or a stream chunk around `choices` (a chat completion, its chunk, or a text completion's).
  nlohmann::json Body(bool chunk, nlohmann::json choices) const {
    const char* object = !api.chat ? "text_completion" : chunk ? "chat.completion.chunk" : "chat.completion";
    return {{"id", id}, {"object", object}, {"created", created}, {"model", model}, {"choices", std::move(choices)}};
  }
  void CancelAll(EngineInbox& inbox, const std::string& reason) const {
    for (const Choice& choice : choices) {
      if (choice.finish_reason.empty()) inbox.Cancel(choice.request->number, reason);
    }
  }
};

ApiServer::ApiServer(const ServerOptions& options, const Tokenizer& tokenizer, const RequestDefaults& defaults,
                     EngineInbox& inbox, const Engine& engine, monitoring::Metrics& metrics)
    : options_(options),
      tokenizer_(tokenizer),
      defaults_(defaults),
      inbox_(inbox),
      engine_(engine),
      metrics_(metrics),
      server_(std::make_unique<httplib::Server>()),
      preparing_(std::max(1, options.preprocess_threads)) {}

ApiServer::~ApiServer() { Stop(); }

absl::Status ApiServer::Start() {
  const int threads = std::max(4, options_.http_threads);
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(static_cast<size_t>(options_.max_request_bytes));
  server_->set_read_timeout(60, 0);
  // cpp-httplib 0.11 listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled into Debian's library): of 32
  // clients connecting at once, some had their SYN dropped (a second's retransmit in their TTFT) and, rarely, their
  // connection reset. The bound socket, taken as httplib makes it, listens again with the system's most.
  int listening = -1;
  server_->set_socket_options([&listening](socket_t sock) {
    httplib::default_socket_options(sock);
    listening = sock;  // the last one made is the one bound (the others failed to bind and were closed)
  });
  Route();
  port_ = options_.port == 0 ? server_->bind_to_any_port(options_.host) :
          (server_->bind_to_port(options_.host, options_.port) ? options_.port : -1);
  if (port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.host, ":", options_.port,
                                               " (--host, --port): in use, or not an address of this machine"));
  }
  if (::listen(listening, SOMAXCONN) != 0) {
    return absl::InternalError(absl::StrCat("listen() on ", options_.host, ":", port_, ": ", std::strerror(errno)));
  }
  listener_ = std::thread([this] { server_->listen_after_bind(); });
  IXC_LOG(INFO) << "OpenAI API on http://" << options_.host << ":" << port_ << "/v1 (model '"
                << options_.served_model_name << "')";
  return absl::OkStatus();
}

void ApiServer::Stop() {
  if (!listener_.joinable()) return;
  server_->stop();
  listener_.join();
}

void ApiServer::Route() {
  httplib::Server& s = *server_;
  s.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) { Completions(q, r, true); });
  s.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) { Completions(q, r, false); });
  s.Post("/tokenize", [this](const httplib::Request& q, httplib::Response& r) { Tokenize(q, r); });
  s.Post("/detokenize", [this](const httplib::Request& q, httplib::Response& r) { Detokenize(q, r); });
  s.Get("/v1/models", [this](const httplib::Request& q, httplib::Response& r) {
    if (!Authorized(q, r)) return;
    nlohmann::json model = {{"id", options_.served_model_name}, {"object", "model"}, {"created", UnixSeconds()},
                            {"owned_by", "ixc-cluster"}, {"root", options_.model_dir},
                            {"max_model_len", defaults_.max_context}};
    r.set_content(nlohmann::json{{"object", "list"}, {"data", {model}}}.dump(), kJson);
  });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
    if (state_ == State::kServing && engine_.ready()) return r.set_content("", "text/plain");
    const char* why = state_ == State::kFailed ? "failed" : state_ == State::kDraining ? "draining" : "loading";
    Error(r, 503, absl::StrCat("the server is ", why));
  });
  s.Get("/version", [](const httplib::Request&, httplib::Response& r) {
    const nlohmann::json version = {{"version", std::string(kVersion)}, {"commit", std::string(kGitCommit)}};
    r.set_content(version.dump(), kJson);
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
    r.set_content(metrics_.Scrape(), monitoring::kPrometheusText);
  });
  s.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    request_start = std::chrono::steady_clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_logger([this](const httplib::Request& q, const httplib::Response& r) { RecordHttp(q, r); });
  // The known routes with another method: 405, not 404.
  for (const char* path : {"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"}) {
    auto refuse = [path](const httplib::Request& q, httplib::Response& r) {
      Error(r, 405, absl::StrCat(q.method, " is not allowed on ", path, "; use POST"));
    };
    s.Get(path, refuse).Put(path, refuse).Delete(path, refuse).Patch(path, refuse);
  }
  for (const char* path : {"/v1/models", "/health", "/version", "/metrics"}) {
    auto refuse = [path](const httplib::Request& q, httplib::Response& r) {
      Error(r, 405, absl::StrCat(q.method, " is not allowed on ", path, "; use GET"));
    };
    s.Post(path, refuse).Put(path, refuse).Delete(path, refuse).Patch(path, refuse);
  }
  // What httplib answers itself (unknown routes, bodies over the limit, bad HTTP) in OpenAI's shape too.
  s.set_error_handler([](const httplib::Request& q, httplib::Response& r) {
    if (!r.body.empty()) return;
    if (r.status == 404) return Error(r, 404, absl::StrCat("no route ", q.method, " ", q.path));
    if (r.status == 413) return Error(r, 413, "the request body is larger than the server takes (--max-request-mib)");
    Error(r, r.status, absl::StrCat("HTTP ", r.status));
  });
}

bool ApiServer::Authorized(const httplib::Request& http, httplib::Response& response) {
  if (options_.api_key.empty() || http.get_header_value("Authorization") == "Bearer " + options_.api_key) return true;
  Error(response, 401, "a valid API key is required (Authorization: Bearer KEY)");
  return false;
}

bool ApiServer::Admit(const httplib::Request& http, httplib::Response& response, nlohmann::json* body) {
  if (state_ != State::kServing || !engine_.ready()) {
    const char* why = state_ == State::kFailed ? "has failed" : state_ == State::kDraining ? "is shutting down"
                                                                                          : "is loading";
    Error(response, 503, absl::StrCat("the server ", why));
    return false;
  }
  if (!Authorized(http, response)) return false;
  if (!absl::StartsWithIgnoreCase(http.get_header_value("Content-Type"), kJson)) {
    Error(response, 415, "the body must be JSON (Content-Type: application/json)");
    return false;
  }
  *body = nlohmann::json::parse(http.body, nullptr, /*allow_exceptions=*/false);
  if (body->is_discarded()) {
    Error(response, 400, "the body is not valid JSON");
    return false;
  }
  if (!body->is_object()) {
    Error(response, 400, "the body must be a JSON object");
    return false;
  }
  if (body->contains("model") && (*body)["model"].is_string() && (*body)["model"] != options_.served_model_name) {
    Error(response, 404, absl::StrCat("the model '", (*body)["model"].get<std::string>(), "' does not exist; this "
                                      "server serves '", options_.served_model_name, "'"), "model");
    return false;
  }
  return true;
}

bool ApiServer::Prepare(const ApiRequest& api, Generation& generation, httplib::Response& response,
                        std::chrono::steady_clock::time_point received) {
  std::vector<std::shared_ptr<Request>> prepared;
  {
    preparing_.acquire();  // the bounded pool: a burst of large images waits here, not in the engine
    for (const PromptSpec& spec : api.prompts) {
      auto request = std::make_shared<Request>();
      request->number = next_number_++;
      const absl::Status status = PreparePrompt(spec, &tokenizer_, defaults_, request.get());
      if (!status.ok()) {
        preparing_.release();
        const bool client = status.code() == absl::StatusCode::kInvalidArgument;
        Error(response, client ? 400 : 500, std::string(status.message()),
              ParamOf(status).empty() ? (api.chat ? "messages" : "prompt") : ParamOf(status));
        return false;
      }
      prepared.push_back(std::move(request));
    }
    preparing_.release();
  }
  std::random_device entropy;
  for (const std::shared_ptr<Request>& base : prepared) {
    const int64_t length = static_cast<int64_t>(base->prompt.size());
    int64_t room = defaults_.max_context - length;
    if (api.max_total_tokens > 0) room = std::min(room, std::max<int64_t>(1, api.max_total_tokens - length));
    if (api.max_tokens && *api.max_tokens > room) {
      const PromptPositions positions = CountPositions(*base);
      Error(response, 400,
            absl::StrCat("this model's context holds ", defaults_.max_context, " positions; the prompt takes ",
                         positions.total, " (", positions.total - positions.media, " of text, ", positions.media,
                         " of images and video) and max_tokens asks for ", *api.max_tokens),
            "max_tokens");
      return false;
    }
    generation.prompt_tokens += length;
    // Choice 0 is the prepared request itself (an image request's crops are large); each other choice a copy with
    // its own number (its images are the same entries of the image cache).
    std::vector<std::shared_ptr<Request>> copies = {base};
    for (int i = 1; i < api.n; ++i) {
      auto copy = std::make_shared<Request>(*base);
      copy->stream = std::make_shared<RequestStream>();
      copy->number = next_number_++;
      copies.push_back(std::move(copy));
    }
    for (int i = 0; i < api.n; ++i) {
      std::shared_ptr<Request>& request = copies[i];
      request->id = absl::StrCat(generation.id, "-", generation.choices.size());
      request->sampling = api.sampling;
      request->lora = api.lora;
      request->seed = api.seed ? *api.seed + static_cast<uint64_t>(i) : (uint64_t{entropy()} << 32 | entropy());
      request->top_logprobs = api.top_logprobs;
      request->num_beams = api.num_beams;
      request->max_new_tokens = static_cast<int>(std::min<int64_t>(api.max_tokens.value_or(room), room));
      request->stop_ids = StopIds(defaults_, api.ignore_eos);
      Generation::Choice choice;
      choice.first_of_prompt = i == 0;
      choice.request = std::move(request);
      choice.text = std::make_unique<TextStream>(tokenizer_, api.stop);
      generation.choices.push_back(std::move(choice));
    }
  }
  std::vector<std::shared_ptr<Request>> requests;
  const double preparation = std::chrono::duration<double>(std::chrono::steady_clock::now() - received).count();
  for (const Generation::Choice& choice : generation.choices) {
    choice.request->preparation_s = preparation;
    requests.push_back(choice.request);
  }
  if (!inbox_.SubmitAll(requests)) {
    response.set_header("Retry-After", "1");
    Error(response, state_ == State::kServing ? 429 : 503,
          state_ == State::kServing ? "the server's queue is full (--max-queued-requests); try again shortly"
                                    : "the server is shutting down");
    return false;
  }
  return true;
}

void ApiServer::Completions(const httplib::Request& http, httplib::Response& response, bool chat) {
  nlohmann::json body;
  if (!Admit(http, response, &body)) return;
  absl::StatusOr<ApiRequest> api = chat ? ParseChatRequest(body, options_.limits)
                                        : ParseCompletionRequest(body, options_.limits);
  if (!api.ok()) return Error(response, 400, std::string(api.status().message()), ParamOf(api.status()));
  auto generation = std::make_shared<Generation>();
  generation->api = std::move(*api);
  generation->id = RandomId(chat ? "chatcmpl-" : "cmpl-");
  generation->model = options_.served_model_name;
  generation->created = UnixSeconds();
  if (!Prepare(generation->api, *generation, response, request_start)) return;
  if (generation->api.task) return Compose(http, *generation, response);
  if (generation->api.stream) return Stream(generation, response);
  Respond(http, *generation, response);
}

bool ApiServer::Await(const httplib::Request& http, Generation& generation) {
  ++in_flight_;
  PeerWatch client(http.local_addr, http.local_port, http.remote_addr, http.remote_port);
  auto checked = std::chrono::steady_clock::now();
  while (!generation.done()) {
    for (Generation::Choice& choice : generation.choices) {
      RequestStream::Update update;
      choice.request->stream->Wait(choice.seen, std::chrono::milliseconds(20), &update);
      generation.Advance(choice, update, inbox_);  // the text builds up in choice.text
    }
    if (std::chrono::steady_clock::now() - checked > std::chrono::milliseconds(500)) {
      checked = std::chrono::steady_clock::now();
      if (client.Gone()) {  // nobody to answer: the engine frees what the choices hold
        generation.CancelAll(inbox_, "abort");
        --in_flight_;
        return false;
      }
    }
  }
  --in_flight_;
  return true;
}

void ApiServer::Compose(const httplib::Request& http, Generation& generation, httplib::Response& response) {
  const ComposeTask task = *generation.api.task;
  auto failed = [&](const Generation& pass) {
    const Generation::Choice& choice = pass.choices.front();
    if (choice.finish_reason != "error") return false;
    Error(response, ErrorStatus(), choice.error);
    return true;
  };
  if (!Await(http, generation) || failed(generation)) return;
  std::string page = StripTurnMarkers(generation.choices.front().text->text());
  std::string finish_reason = generation.choices.front().finish_reason;
  nlohmann::json usage = generation.usage();
  if (task == ComposeTask::kResumeToWebpage) {  // the second pass: the page's JavaScript events
    Generation script;
    script.api = generation.api;
    PromptSpec spec;
    spec.text = TaskPrompt(ScriptQuery(page));
    script.api.prompts = {std::move(spec)};
    script.id = generation.id;
    if (!Prepare(script.api, script, response, std::chrono::steady_clock::now())) return;
    if (!Await(http, script) || failed(script)) return;
    page = SpliceScript(std::move(page), StripTurnMarkers(script.choices.front().text->text()));
    finish_reason = script.choices.front().finish_reason;
    const nlohmann::json more = script.usage();
    for (const char* count : {"prompt_tokens", "completion_tokens", "total_tokens"}) {
      usage[count] = usage[count].get<int64_t>() + more[count].get<int64_t>();
    }
    usage["prompt_tokens_details"]["cached_tokens"] = usage["prompt_tokens_details"]["cached_tokens"].get<int64_t>() +
                                                      more["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
  }
  const std::string content = PostProcess(task, std::move(page));
  if (!generation.api.stream) {
    nlohmann::json out = generation.Body(/*chunk=*/false, nlohmann::json::array({{{"index", 0},
                                                                                   {"logprobs", nullptr},
                                                                                   {"finish_reason", finish_reason},
                                                                                   {"message",
                                                                                    {{"role", "assistant"},
                                                                                     {"content", content}}}}}));
    out["usage"] = usage;
    return response.set_content(out.dump(), kJson);
  }
  // The page is whole only at the end: a stream gets it as one chunk.
  auto chunk = [&](const nlohmann::json& delta, const nlohmann::json& finish) {
    nlohmann::json out = generation.Body(
        /*chunk=*/true, nlohmann::json::array({{{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish},
                                                {"delta", delta}}}));
    if (generation.api.include_usage) out["usage"] = nullptr;
    return Sse(out);
  };
  std::string events = chunk({{"role", "assistant"}, {"content", ""}}, nullptr) + chunk({{"content", content}}, nullptr) +
                       chunk(nlohmann::json::object(), finish_reason);
  if (generation.api.include_usage) {
    nlohmann::json last = generation.Body(/*chunk=*/true, nlohmann::json::array());
    last["usage"] = usage;
    events += Sse(last);
  }
  response.set_content(events + "data: [DONE]\n\n", "text/event-stream");
}

void ApiServer::Respond(const httplib::Request& http, Generation& generation, httplib::Response& response) {
  if (!Await(http, generation)) return;
  nlohmann::json choices = nlohmann::json::array();
  for (size_t c = 0; c < generation.choices.size(); ++c) {
    Generation::Choice& choice = generation.choices[c];
    if (choice.finish_reason == "error") {
      return Error(response, ErrorStatus(), choice.error);
    }
    nlohmann::json out = {{"index", c}, {"logprobs", generation.TakeLogprobs(choice, tokenizer_)},
                          {"finish_reason", choice.finish_reason}};
    if (generation.api.chat) {
      out["message"] = {{"role", "assistant"}, {"content", choice.text->text()}};
    } else {
      out["text"] = choice.text->text();
    }
    choices.push_back(out);
  }
  nlohmann::json out = generation.Body(/*chunk=*/false, choices);
  out["usage"] = generation.usage();
  response.set_content(out.dump(), kJson);
}

void ApiServer::Stream(std::shared_ptr<Generation> generation, httplib::Response& response) {
  ++in_flight_;
  const bool chat = generation->api.chat;
  // A chunk of choice `index`; its logprobs are those of the tokens taken since its last chunk.
  auto chunk = [this, generation, chat](size_t index, const nlohmann::json& delta, const nlohmann::json& finish) {
    nlohmann::json choice = {{"index", index},
                             {"logprobs", generation->TakeLogprobs(generation->choices[index], tokenizer_)},
                             {"finish_reason", finish}};
    if (chat) {
      choice["delta"] = delta;
    } else {
      choice["text"] = delta;
    }
    nlohmann::json out = generation->Body(/*chunk=*/true, {choice});
    if (generation->api.include_usage) out["usage"] = nullptr;
    return Sse(out);
  };
  response.set_chunked_content_provider(
      "text/event-stream",
      [this, generation, chunk, chat](size_t, httplib::DataSink& sink) {
        std::string out;
        for (size_t c = 0; c < generation->choices.size(); ++c) {
          Generation::Choice& choice = generation->choices[c];
          if (chat && !choice.role_sent) {
            out += chunk(c, {{"role", "assistant"}, {"content", ""}}, nullptr);
            choice.role_sent = true;
          }
          if (!choice.finish_reason.empty()) continue;
          RequestStream::Update update;
          choice.request->stream->Wait(choice.seen, std::chrono::milliseconds(out.empty() ? 20 : 0), &update);
          const std::string text = generation->Advance(choice, update, inbox_);
          if (choice.finish_reason == "error") {
            const int status = ErrorStatus();
            out += Sse(ErrorJson(status, choice.error));
            continue;
          }
          if (!text.empty()) out += chunk(c, chat ? nlohmann::json{{"content", text}} : nlohmann::json(text), nullptr);
          if (!choice.finish_reason.empty()) {
            out += chunk(c, chat ? nlohmann::json::object() : nlohmann::json(""), choice.finish_reason);
          }
        }
        if (generation->done()) {
          if (generation->api.include_usage) {
            nlohmann::json usage = generation->Body(/*chunk=*/true, nlohmann::json::array());
            usage["usage"] = generation->usage();
            out += Sse(usage);
          }
          out += "data: [DONE]\n\n";
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // the client has gone
        if (generation->done()) sink.done();
        return true;
      },
      [this, generation](bool) {
        // Ended without finishing (client gone, server stopping): the engine frees what it holds.
        generation->CancelAll(inbox_, "abort");
        --in_flight_;
      });
}

void ApiServer::Tokenize(const httplib::Request& http, httplib::Response& response) {
  nlohmann::json body;
  if (!Admit(http, response, &body)) return;
  PromptSpec spec;
  if (body.contains("messages")) {
    absl::StatusOr<ApiRequest> api = ParseChatRequest(body, options_.limits);
    if (!api.ok()) return Error(response, 400, std::string(api.status().message()), ParamOf(api.status()));
    spec = std::move(api->prompts[0]);
  } else if (body.contains("prompt") && body["prompt"].is_string()) {
    spec.text = body["prompt"];
  } else {
    return Error(response, 400, "field 'prompt': give a prompt string or chat messages", "prompt");
  }
  Request request;
  request.number = next_number_++;
  preparing_.acquire();
  const RequestDefaults no_limit = [&] {
    RequestDefaults defaults = defaults_;
    defaults.max_context = std::numeric_limits<int64_t>::max();  // a long document's count, even past the limit
    return defaults;
  }();
  const absl::Status status = PreparePrompt(spec, &tokenizer_, no_limit, &request);
  preparing_.release();
  if (!status.ok()) return Error(response, 400, std::string(status.message()), ParamOf(status));
  const PromptPositions positions = CountPositions(request);
  nlohmann::json out = {{"count", positions.total},
                        {"text_tokens", positions.total - positions.media},
                        {"media_positions", positions.media},
                        {"max_model_len", defaults_.max_context},
                        {"tokens", request.prompt}};
  response.set_content(out.dump(), kJson);
}

void ApiServer::Detokenize(const httplib::Request& http, httplib::Response& response) {
  nlohmann::json body;
  if (!Admit(http, response, &body)) return;
  if (!body.contains("tokens") || !body["tokens"].is_array()) {
    return Error(response, 400, "field 'tokens': must be a list of token ids", "tokens");
  }
  std::vector<int32_t> ids;
  for (const nlohmann::json& id : body["tokens"]) {
    if (!id.is_number_integer() || !IntegerIn(id, 0, int64_t{defaults_.vocab_size} - 1)) {
      return Error(response, 400, absl::StrCat("field 'tokens': ids must be integers in [0, ", defaults_.vocab_size,
                                               ")"), "tokens");
    }
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  response.set_content(nlohmann::json{{"prompt", tokenizer_.Decode(ids)}}.dump(), kJson);
}

void ApiServer::RecordHttp(const httplib::Request& http, const httplib::Response& response) {
  // The routes by name; anything else as one label, so that unknown paths cannot grow the series without end.
  static const char* const kRoutes[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health",
                                        "/version",            "/metrics",        "/tokenize",  "/detokenize"};
  std::string handler = "other";
  for (const char* route : kRoutes) {
    if (http.path == route) handler = route;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - request_start).count();
  const std::string status = std::to_string(response.status);
  metrics_.http_requests.Add({{"handler", handler}, {"method", http.method}, {"status", status}}).Increment();
  metrics_.http_duration.Add({{"handler", handler}, {"method", http.method}}, monitoring::HttpSecondsBuckets())
      .Observe(seconds);
}

}  // namespace ixc::coordinator
