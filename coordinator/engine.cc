#include "coordinator/engine.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "coordinator/chunk_cost.h"
#include "coordinator/prefix_keys.h"

namespace ixc::coordinator {
namespace {

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Workers beat every second; this long without one, and no answer, means the rank is gone. A step timeout shorter
// than this fires first, with a note on the heartbeats.
constexpr double kDeadAfterSeconds = 10;

// A beam's prompt is its owner's.
int64_t Length(const Request& request) {
  const Request& prompted = request.beam_owner != nullptr ? *request.beam_owner : request;
  return static_cast<int64_t>(prompted.prompt.size() + request.generated.size());
}

// The request whose search a beam belongs to; any other request stands for itself.
Request* SearchOf(Request* request) { return request->beam_owner != nullptr ? request->beam_owner : request; }

}  // namespace

Engine::Engine(const parallel::Mapping& mapping, protocol::Channel& channel, const EngineOptions& options,
               monitoring::Metrics& metrics)
    : mapping_(mapping),
      channel_(channel),
      options_(options),
      blocks_(mapping.layout().sp, options.kv_block_size, 0, options.prefix_caching),  // sized when ranks are ready
      image_cache_(options.image_cache_bytes, options.image_feature_bytes_per_crop, options.image_row_bytes,
                   options.prefix_caching),
      answered_(mapping.world_size(), false),
      heartbeat_(mapping.world_size(), 0.0),
      metrics_(metrics),
      rank_series_(mapping.world_size()) {
  for (int rank : mapping.VisionRanks()) rank_series_[rank].labels = {rank, "vision"};
  const int first = mapping.first_llm_rank(), tp = mapping.layout().tp;
  for (int rank : mapping.LlmRanks()) {
    RankSeries& series = rank_series_[rank];
    series.labels = {rank, "llm", (rank - first) % tp, (rank - first) / tp};
    series.kv_blocks = &metrics.RankGauge(metrics.rank_kv_blocks, series.labels);
    series.kv_blocks_used = &metrics.RankGauge(metrics.rank_kv_blocks_used, series.labels);
  }
  for (int rank = 1; rank < mapping.world_size(); ++rank) {
    RankSeries& series = rank_series_[rank];
    series.up = &metrics.RankGauge(metrics.rank_up, series.labels);
    series.heartbeat_age = &metrics.RankGauge(metrics.rank_heartbeat_age, series.labels);
    series.device_memory_used = &metrics.RankGauge(metrics.rank_device_memory_used, series.labels);
    series.device_memory_total = &metrics.RankGauge(metrics.rank_device_memory_total, series.labels);
    series.steps = &metrics.RankCounter(metrics.rank_steps, series.labels);
    series.compute_seconds = &metrics.RankCounter(metrics.rank_compute_seconds, series.labels);
  }
}

std::string Engine::Silent() const {
  std::vector<int> silent;
  for (int rank = 1; rank < mapping_.world_size(); ++rank) {
    if (!answered_[rank]) silent.push_back(rank);
  }
  return absl::StrCat(silent.size() == 1 ? "rank " : "ranks ", absl::StrJoin(silent, ", "));
}

std::string Engine::HeartbeatNote() const {
  double oldest_beat = Now();
  for (int rank = 1; rank < mapping_.world_size(); ++rank) {
    if (!answered_[rank]) oldest_beat = std::min(oldest_beat, heartbeat_[rank]);
  }
  return Now() - oldest_beat < kDeadAfterSeconds
             ? " (their heartbeats go on: busy or stuck, not dead)"
             : absl::StrCat(" (no heartbeat for ", static_cast<int>(Now() - oldest_beat), " s)");
}

absl::Status Engine::CheckHeartbeats(bool in_step) const {
  for (int rank = 1; rank < mapping_.world_size(); ++rank) {
    if ((in_step && answered_[rank]) || Now() - heartbeat_[rank] < kDeadAfterSeconds) continue;
    return absl::UnavailableError(absl::StrCat("rank ", rank, " sent no heartbeat for ",
                                               static_cast<int>(Now() - heartbeat_[rank]), " s",
                                               in_step ? absl::StrCat(" and did not answer step ", step_) : "",
                                               ": it is gone"));
  }
  return absl::OkStatus();
}

double Engine::Now() const { return WallSeconds() - start_; }

absl::Status Engine::Start() {
  start_ = WallSeconds();
  std::map<uint64_t, protocol::SampledToken> tokens;
  int ready = 0;
  const int workers = mapping_.world_size() - 1;
  const double deadline = Now() + options_.step_timeout_s;
  std::fill(heartbeat_.begin(), heartbeat_.end(), Now());
  while (ready < workers) {
    const double left = deadline - Now();
    if (left <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(Silent(), " did not start within ", options_.step_timeout_s,
                                                      " s", HeartbeatNote()));
    }
    auto message = channel_.Receive(std::chrono::milliseconds(static_cast<int64_t>(std::min(left, 1.0) * 1000)));
    if (message.ok()) IXC_RETURN_IF_ERROR(HandleMessage(message->first, message->second, &tokens, &ready));
    IXC_RETURN_IF_ERROR(CheckHeartbeats(/*in_step=*/true));
  }
  if (kv_blocks_ == 0) return absl::InternalError("no LLM rank said how many KV blocks it holds");
  blocks_ = BlockManager(mapping_.layout().sp, options_.kv_block_size, kv_blocks_, options_.prefix_caching);
  IXC_LOG(INFO) << workers << " workers ready; KV cache of " << kv_blocks_ << " blocks of " << options_.kv_block_size
                << " tokens per LLM rank (the smallest pool)";
  std::fill(answered_.begin(), answered_.end(), false);
  UpdateGauges();
  ready_ = true;
  return absl::OkStatus();
}

absl::Status Engine::Serve(EngineInbox& inbox) {
  absl::Status status;
  while (status.ok()) {
    TakeFromInbox(inbox);
    Arrive();
    status = DispatchQueuedImages();
    if (status.ok() && requests_.empty() && inbox.closed()) {
      TakeFromInbox(inbox);  // a last submission between the two looks
      if (requests_.empty()) {
        status = CheckIdle();
        break;
      }
    }
    if (status.ok()) status = Step();
    if (status.ok()) status = CheckHeartbeats(/*in_step=*/false);
    for (uint64_t number : done_) requests_.erase(number);
    inbox.Finished(static_cast<int64_t>(done_.size()));
    done_.clear();
    UpdateGauges();
  }
  if (!status.ok()) FailAll(status, inbox);
  UpdateGauges();
  if (options_.prefix_caching) {
    IXC_LOG(INFO) << "prefix cache: " << prefix_hits_ << " of " << prefix_queries_ << " prompt positions hit, "
                  << blocks_.evictions() << " blocks evicted; image cache: " << image_cache_.hits() << " of "
                  << image_cache_.queries() << " images hit";
  }
  return status;
}

void Engine::FailAll(const absl::Status& status, EngineInbox& inbox) {
  failed_all_ = true;
  inbox.Close();
  TakeFromInbox(inbox);
  for (auto& [number, request] : requests_) {
    request->error = std::string(status.message());
    request->finish_reason = "error";
    request->state = RequestState::kDone;
    request->stream->Finish("error", request->error);
  }
  inbox.Finished(static_cast<int64_t>(requests_.size()));
  requests_.clear();
  running_.clear();
  waiting_.clear();
  image_queue_.clear();
  not_arrived_.clear();
}

void Engine::TakeFromInbox(EngineInbox& inbox) {
  for (std::shared_ptr<Request>& request : inbox.TakeSubmitted()) {
    Request* held = request.get();
    requests_[held->number] = std::move(request);
    held->state = RequestState::kNotArrived;
    not_arrived_.push_back(held);
  }
  for (const auto& [number, reason] : inbox.TakeCancelled()) Cancel(number, reason);
  if (const std::string reason = inbox.cancel_all(); !reason.empty()) {
    std::vector<uint64_t> numbers;
    for (const auto& [number, request] : requests_) numbers.push_back(number);
    for (uint64_t number : numbers) Cancel(number, reason);
  }
}

void Engine::Arrive() {
  for (auto it = not_arrived_.begin(); it != not_arrived_.end();) {
    Request& request = **it;
    if (Now() < request.arrive_after_s) {
      ++it;
      continue;
    }
    it = not_arrived_.erase(it);
    request.arrived_s = Now();
    if (request.images.empty()) {
      request.state = RequestState::kWaiting;
      waiting_.push_back(&request);
    } else {
      request.state = RequestState::kImageQueue;
      image_queue_.push_back(&request);
    }
  }
}

void Engine::Cancel(uint64_t number, const std::string& reason) {
  auto it = requests_.find(number);
  if (it == requests_.end() || it->second->state == RequestState::kDone) return;
  Request& request = *it->second;
  if (request.state == RequestState::kEncoding) {
    // Its crops are on the vision ranks: it ends when they are encoded, and its images leave with it.
    request.cancel_reason = reason;
    return;
  }
  Finish(request, reason);
}

absl::Status Engine::DispatchQueuedImages() {
  while (!image_queue_.empty()) {
    Request& request = *image_queue_.front();
    if (!image_cache_.Fits(request)) break;
    image_queue_.pop_front();
    request.images_dispatched_s = Now();
    RecordDispatch(request);
    IXC_RETURN_IF_ERROR(DispatchVision(request));
  }
  return absl::OkStatus();
}

absl::Status Engine::DispatchVision(Request& request) {
  if (mapping_.VisionRanks().empty()) {
    Finish(request, "error", "the request has images but the cluster has no vision ranks (--vision 0)");
    return absl::OkStatus();
  }
  bool all = true;
  for (ImageInPrompt& image : request.images) {
    bool is_new = false;
    ImageCache::Entry& entry = image_cache_.Take(image, &is_new);
    metrics_.image_cache_queries.Increment();
    if (!is_new) metrics_.image_cache_hits.Increment();
    image.tag = entry.tag;
    if (is_new) IXC_RETURN_IF_ERROR(EncodeImage(image, entry));
    image.vision_rank = entry.owner;
    image.encoded = entry.encoded;
    all = all && image.encoded;
    std::vector<float>().swap(image.prepared.crops.pixels);  // a recomputation takes the embeddings the ranks keep
  }
  if (all) {  // every image held already
    request.state = RequestState::kWaiting;
    waiting_.push_back(&request);
  } else {
    request.state = RequestState::kEncoding;
  }
  return absl::OkStatus();
}

absl::Status Engine::EncodeImage(ImageInPrompt& image, ImageCache::Entry& entry) {
  // The crops in contiguous parts over the vision ranks, starting at the next rank in turn (the owner).
  const std::vector<int> vision = mapping_.VisionRanks();
  const int ranks = static_cast<int>(vision.size());
  const VisionCrops& crops = image.prepared.crops;
  const int count = crops.count(), used = std::min(ranks, count), first_rank = next_vision_++ % ranks;
  const size_t crop_floats = static_cast<size_t>(3) * crops.tile * crops.tile;
  entry.owner = vision[first_rank];
  for (int p = 0; p < used; ++p) {
    const int first = count * p / used, part_count = count * (p + 1) / used - first;
    const int rank = vision[(first_rank + p) % ranks];
    entry.parts.push_back({rank, first, part_count});
    flatbuffers::FlatBufferBuilder builder(part_count * crop_floats * sizeof(float) + 1024);
    const auto pixels = builder.CreateVector(crops.pixels.data() + first * crop_floats, part_count * crop_floats);
    const auto task = protocol::CreateVisionTask(builder, entry.tag, crops.rows, crops.cols, crops.tile, first,
                                                 part_count, entry.owner, pixels);
    IXC_RETURN_IF_ERROR(
        channel_.Send(rank, protocol::Finish(builder, mapping_.rank(), protocol::Body::VisionTask, task.Union())));
  }
  entry.parts_pending = used;
  return absl::OkStatus();
}

absl::Status Engine::ImageReady(int tag, int rows, int sender) {
  if (image_cache_.ByTag(tag) == nullptr) return absl::OkStatus();
  image_cache_.Assembled(tag);  // the features are gone, the embeddings wait on the owner
  for (auto& [number, request] : requests_) {
    if (request->state != RequestState::kEncoding) continue;
    bool all = true;
    for (ImageInPrompt& image : request->images) {
      if (image.tag == tag) {
        if (rows != image.rows) {
          return absl::InternalError(absl::StrCat("rank ", sender, " encoded ", rows, " rows for image ", tag,
                                                  "; the prompt has ", image.rows));
        }
        image.encoded = true;
      }
      all = all && image.encoded;
    }
    if (!all) continue;
    if (!request->cancel_reason.empty()) {
      Finish(*request, request->cancel_reason);
    } else {
      request->state = RequestState::kWaiting;
      waiting_.push_back(request.get());
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::HandleMessage(int sender, const protocol::Bytes& bytes,
                                   std::map<uint64_t, protocol::SampledToken>* tokens,
                                   int* results) {
  IXC_ASSIGN_OR_RETURN(const protocol::Envelope* envelope, protocol::Decode(bytes));
  switch (envelope->body_type()) {
    case protocol::Body::ErrorReport: {
      const protocol::ErrorReport* error = envelope->body_as_ErrorReport();
      return absl::InternalError(absl::StrCat(
          "rank ", sender, " failed", error->request_id() ? absl::StrCat(" on request ", error->request_id()) : "",
          ": ", error->message() ? error->message()->str() : "no message"));
    }
    case protocol::Body::Heartbeat:
      if (sender > 0 && sender < mapping_.world_size()) heartbeat_[sender] = Now();
      break;
    case protocol::Body::CropsEncoded: {
      // When every part of the image is encoded, its ranks meet to assemble it (between steps: see vision_worker.h).
      const int tag = envelope->body_as_CropsEncoded()->tag();
      ImageCache::Entry* entry = image_cache_.ByTag(tag);
      if (entry == nullptr || --entry->parts_pending > 0) break;
      flatbuffers::FlatBufferBuilder builder;
      std::vector<flatbuffers::Offset<protocol::VisionPart>> parts;
      for (const auto& [rank, first, count] : entry->parts) {
        parts.push_back(protocol::CreateVisionPart(builder, rank, first, count));
      }
      const auto gather = protocol::CreateVisionGather(builder, tag, entry->owner, builder.CreateVector(parts));
      const protocol::Bytes message =
          protocol::Finish(builder, mapping_.rank(), protocol::Body::VisionGather, gather.Union());
      for (const auto& part : entry->parts) IXC_RETURN_IF_ERROR(channel_.Send(part[0], message));
      break;
    }
    case protocol::Body::VisionDone:
      IXC_RETURN_IF_ERROR(
          ImageReady(envelope->body_as_VisionDone()->tag(), envelope->body_as_VisionDone()->rows(), sender));
      break;
    case protocol::Body::StepResult: {
      const protocol::StepResult* result = envelope->body_as_StepResult();
      if (result->step() != step_ || sender < 0 || sender >= mapping_.world_size() || answered_[sender]) break;
      answered_[sender] = true;
      ++*results;
      if (step_ == 0 && result->kv_blocks() > 0) {  // an LLM rank's ready message
        kv_blocks_ = kv_blocks_ == 0 ? result->kv_blocks() : std::min(kv_blocks_, result->kv_blocks());
      }
      RecordRank(sender, protocol::ReportOf(*result));
      for (protocol::SampledToken& token : protocol::SampledTokens(*result)) {
        const uint64_t id = token.request_id;
        (*tokens)[id] = std::move(token);
      }
      if (result->failed_request_ids() != nullptr && result->failures() != nullptr) {
        for (size_t i = 0; i < result->failed_request_ids()->size() && i < result->failures()->size(); ++i) {
          failed_[result->failed_request_ids()->Get(i)] =
              absl::StrCat("rank ", sender, ": ", result->failures()->Get(i)->str());
        }
      }
      break;
    }
    default:
      break;
  }
  return absl::OkStatus();
}

void Engine::Preempt(Request& preempted) {
  Request& request = *SearchOf(&preempted);
  EndSearch(request);  // it starts again from the prompt: no random draws, the same beams
  ReleaseSequence(request.number);
  running_.erase(std::find(running_.begin(), running_.end(), &request));
  request.state = RequestState::kWaiting;
  request.computed = request.prefill_length = 0;  // prefilled again from the start (what the cache holds aside)
  ++request.preemptions;
  metrics_.preemptions.Increment();
  waiting_.push_front(&request);
  IXC_LOG(INFO) << "preempted request " << request.id << " (" << Length(request) << " positions), KV "
                << static_cast<int>(100 * blocks_.usage()) << "% used";
}

void Engine::ReleaseSequence(uint64_t number) {
  blocks_.Free(number);
  new_blocks_.erase(number);
  release_.push_back(number);
}

void Engine::DropBeam(Request& beam) {
  ReleaseSequence(beam.number);
  if (auto it = std::find(running_.begin(), running_.end(), &beam); it != running_.end()) running_.erase(it);
  beam.state = RequestState::kDone;
}

void Engine::EndSearch(Request& owner) {
  if (owner.beam_group == nullptr) return;
  for (std::unique_ptr<Request>& beam : owner.beam_group->beams) {
    DropBeam(*beam);
    retired_beams_.push_back(std::move(beam));
  }
  owner.beam_group.reset();
}

void Engine::StartBeams(Request& owner, BeamCandidates candidates) {
  RegisterComputed(owner, Length(owner));  // the prompt's blocks join the prefix cache before its sequence goes
  owner.beam_group = std::make_shared<BeamGroup>(BeamOptionsOf(owner, options_.max_context));
  owner.beam_group->answers = {std::move(candidates)};
  AdvanceBeams(owner);
}

void Engine::AdvanceBeams(Request& owner) {
  BeamGroup& group = *owner.beam_group;
  std::vector<BeamCandidates> candidates;
  for (std::optional<BeamCandidates>& answer : group.answers) candidates.push_back(std::move(*answer));
  const absl::StatusOr<model::BeamSearch::Next> next = group.search.Step(candidates);
  if (!next.ok()) return Finish(owner, "error", std::string(next.status().message()));
  // The parents: the prompt's sequence (the owner's) at the first step, then the beams.
  // The first step forks every beam from the prompt's sequence (the owner's, no beam to take over).
  const bool first = group.beams.empty();
  std::vector<Request*> parents = {&owner};
  if (!first) {
    parents.clear();
    for (const std::unique_ptr<Request>& beam : group.beams) parents.push_back(beam.get());
  }
  const int beams = owner.num_beams;
  std::vector<std::unique_ptr<Request>> children(beams);
  for (int j = 0; j < beams; ++j) {
    if (!first && next->takes_over[j]) continue;
    Request& parent = *parents[next->parent[j]];
    const int64_t computed = Length(parent);  // the parent's K/V: its last token was fed in this step
    while (!blocks_.CanFork(computed) && SearchOf(running_.back()) != &owner) Preempt(*running_.back());
    if (!blocks_.CanFork(computed)) {  // its own beams fill the cache: they start again when there is room
      for (std::unique_ptr<Request>& child : children) {
        if (child != nullptr) DropBeam(*child);
      }
      return Preempt(owner);
    }
    const uint64_t number = next_beam_number_++;
    const std::optional<std::pair<int64_t, int32_t>> copy = blocks_.Fork(parent.number, number, computed);
    forks_.push_back({parent.number, number, copy ? static_cast<int32_t>(copy->first) : -1,
                      copy ? copy->second : -1});
    children[j] = NewBeam(owner, number, group.search.tokens(j));
    running_.push_back(children[j].get());
  }
  if (first) {  // the prompt's sequence: every beam forked it
    ReleaseSequence(owner.number);
  } else {
    for (int j = 0; j < beams; ++j) {
      if (!next->takes_over[j]) continue;
      children[j] = std::move(group.beams[next->parent[j]]);
      children[j]->generated = group.search.tokens(j);
    }
    for (int p : next->childless) {
      DropBeam(*group.beams[p]);
      retired_beams_.push_back(std::move(group.beams[p]));
    }
  }
  group.beams = std::move(children);
  group.answers.assign(beams, std::nullopt);
  if (group.search.done()) FinishBeams(owner);
}

void Engine::FinishBeams(Request& owner) {
  const model::BeamSearch::Result best = owner.beam_group->search.Finish();
  const double now = Now();
  owner.first_token_s = owner.last_token_s = now;
  metrics_.time_to_first_token.Observe(owner.preparation_s + now - owner.arrived_s);
  metrics_.request_prefill_time.Observe(now - owner.scheduled_s);
  metrics_.generation_tokens.Increment(static_cast<double>(best.ids.size()));
  owner.generated = best.ids;
  for (int32_t token : best.ids) owner.stream->Push(token);
  Finish(owner, best.finish_reason);
}

void Engine::Finish(Request& request, const std::string& reason, const std::string& error) {
  EndSearch(request);
  auto drop = [&request](auto& queue) {
    if (auto it = std::find(queue.begin(), queue.end(), &request); it != queue.end()) queue.erase(it);
  };
  drop(running_);
  drop(waiting_);
  drop(image_queue_);
  drop(not_arrived_);
  if (request.state == RequestState::kRunning) ReleaseSequence(request.number);  // a preempted one did then
  image_cache_.Release(request);  // unused entries stay cached, or leave (the vision ranks drop them with a plan)
  for (ImageInPrompt& image : request.images) image.tag = -1;
  request.finish_reason = reason;
  request.error = error;
  request.finished_s = Now();
  RecordEnd(request);
  request.state = RequestState::kDone;
  request.stream->Finish(reason, error);
  done_.push_back(request.number);
}

void Engine::RecordEnd(const Request& request) {
  if (request.finish_reason == "error") {
    metrics_.request_errors.Increment();
    return;
  }
  metrics_.request_success.Add({{"finished_reason", request.finish_reason}}).Increment();
  if (request.finish_reason == "abort") metrics_.requests_aborted.Increment();
  if (request.state == RequestState::kNotArrived) return;  // cancelled before its arrival time: no latencies
  metrics_.e2e_request_latency.Observe(request.preparation_s + request.finished_s - request.arrived_s);
  if (request.scheduled_s > 0) metrics_.request_queue_time.Observe(request.scheduled_s - request.arrived_s);
  if (!request.generated.empty()) metrics_.request_decode_time.Observe(request.finished_s - request.first_token_s);
  metrics_.request_prompt_tokens.Observe(static_cast<double>(request.prompt.size()));
  metrics_.request_generation_tokens.Observe(static_cast<double>(request.generated.size()));
}

void Engine::RecordDispatch(const Request& request) {
  metrics_.image_queue_time.Observe(request.images_dispatched_s - request.arrived_s);
  for (const ImageInPrompt& image : request.images) {
    metrics_.images_in.Increment();
    metrics_.video_frames_in.Increment(image.prepared.video_frames);
    metrics_.tiles_per_image.Observe(static_cast<double>(image.prepared.crops.count()));
    metrics_.vision_preprocess_time.Observe(image.prepare_s);
  }
}

void Engine::RecordRank(int rank, const RankReport& report) {
  const RankSeries& series = rank_series_[rank];
  const monitoring::RankLabels& labels = series.labels;
  series.steps->Increment(static_cast<double>(report.steps));
  series.compute_seconds->Increment(report.compute_seconds);
  for (const CommTotal& total : report.comm) {
    const prometheus::Labels kind = {{"group", total.group}, {"op", total.op}, {"path", total.path}};
    metrics_.RankCounter(metrics_.rank_comm_seconds, labels, kind).Increment(total.seconds);
    metrics_.RankCounter(metrics_.rank_comm_bytes, labels, kind).Increment(static_cast<double>(total.bytes));
    if (labels.role == "vision" && total.group == "world" && total.op == "send") {
      metrics_.handoff_bytes.Add({{"path", total.path}}).Increment(static_cast<double>(total.bytes));
      metrics_.handoff_seconds.Add({{"path", total.path}}).Increment(total.seconds);
    }
  }
  if (report.device_memory_total > 0) {
    series.device_memory_used->Set(static_cast<double>(report.device_memory_used));
    series.device_memory_total->Set(static_cast<double>(report.device_memory_total));
  }
  for (double seconds : report.vit_pass_seconds) metrics_.vit_pass_time.Observe(seconds);
  metrics_.vit_crops.Increment(static_cast<double>(report.vit_crops));
}

void Engine::UpdateGauges() {
  int64_t waiting = 0;
  for (const auto& [number, request] : requests_) {
    waiting += request->state != RequestState::kRunning && request->state != RequestState::kDone &&
               request->state != RequestState::kNotArrived;
  }
  // Requests, not sequences: a beam search's beams run as sequences of their own (beam_group.h).
  const auto beams = std::count_if(running_.begin(), running_.end(), [](const Request* r) { return r->beam_owner; });
  metrics_.requests_running.Set(static_cast<double>(running_.size() - static_cast<size_t>(beams)));
  metrics_.requests_waiting.Set(static_cast<double>(waiting));
  metrics_.requests_waiting_for_image_cache.Set(static_cast<double>(image_queue_.size()));
  metrics_.image_cache_bytes.Set(static_cast<double>(image_cache_.used()));
  metrics_.image_cache_bytes_in_use.Set(static_cast<double>(image_cache_.in_use()));
  // Each SP rank's pool as the block manager keeps it: the same on every TP rank of that SP rank.
  double fullest = 0;
  for (int rank : mapping_.LlmRanks()) {
    const RankSeries& series = rank_series_[rank];
    const int used = kv_blocks_ > 0 ? blocks_.used_blocks(series.labels.sp) : 0;
    series.kv_blocks->Set(kv_blocks_);
    series.kv_blocks_used->Set(used);
    if (kv_blocks_ > 0) fullest = std::max(fullest, static_cast<double>(used) / kv_blocks_);
  }
  metrics_.kv_cache_usage.Set(fullest);
  for (int rank = 1; rank < mapping_.world_size(); ++rank) {
    const double age = Now() - heartbeat_[rank];
    rank_series_[rank].heartbeat_age->Set(age);
    rank_series_[rank].up->Set(age < kDeadAfterSeconds ? 1 : 0);
  }
}

absl::Status Engine::Step() {
  std::map<uint64_t, protocol::SampledToken> tokens;
  int results = 0;
  // Take whatever the workers said since the last step (vision done, errors) without waiting.
  while (true) {
    auto message = channel_.Receive(std::chrono::milliseconds(0));
    if (!message.ok()) break;
    IXC_RETURN_IF_ERROR(HandleMessage(message->first, message->second, &tokens, &results));
  }

  // One decode per running sequence whose prompt is done; when a KV block is missing, preempt the latest admitted
  // until it fits. The others go on with their prompts below.
  retired_beams_.clear();
  std::vector<Request*> decodes, prompting;
  for (size_t i = 0; i < running_.size(); ++i) {
    Request* request = running_[i];
    if (request->beam_group != nullptr) continue;  // its beams decode
    if (request->computed < request->prefill_length) {
      prompting.push_back(request);
      continue;
    }
    const int64_t position = Length(*request) - 1;  // the last sampled token, fed now
    // Never a beam of this request's own search: that would preempt the request itself.
    while (!blocks_.CanAppend(request->number, position) && SearchOf(running_.back()) != SearchOf(request)) {
      Preempt(*running_.back());
    }
    if (!blocks_.CanAppend(request->number, position)) {
      Preempt(*request);
      break;
    }
    // A preempted search may have left from before this entry.
    i = static_cast<size_t>(std::find(running_.begin(), running_.end(), request) - running_.begin());
    if (const std::optional<int32_t> block = blocks_.Append(request->number, position)) {
      new_blocks_[request->number] = {static_cast<int32_t>(position / options_.kv_block_size), *block};
    }
    decodes.push_back(request);
  }
  // Beams of a search preempted after they were taken.
  std::erase_if(decodes, [](const Request* r) { return r->state != RequestState::kRunning; });
  // The step's token budget (docs/scheduling.md): the decodes first (one each), then chunks of the prompts under way
  // in admission order, then new prompts in arrival order while the batch has room and their blocks fit; nothing
  // jumps the queue. A chunk's positions cost what their attention reads too (chunk_cost.h). Where the decodes take
  // the whole budget, the first prompt still gets a block's worth, so it advances.
  double budget = static_cast<double>(options_.max_num_batched_tokens) - static_cast<double>(decodes.size());
  std::vector<Request*> prefills;  // this step's chunk of each: positions [computed, chunk_end)
  auto take_chunk = [&](Request& request) {
    const int64_t left = request.prefill_length - request.computed;
    int64_t chunk = std::min(left, ChunkWithin(budget, request.computed, options_.keys_per_token));
    if (prefills.empty()) chunk = std::max(chunk, std::min<int64_t>(left, options_.kv_block_size));
    if (chunk <= 0) return false;
    request.chunk_end = request.computed + chunk;
    budget -= ChunkCost(request.computed, chunk, options_.keys_per_token);
    prefills.push_back(&request);
    return true;
  };
  for (Request* request : prompting) {
    if (!take_chunk(*request)) break;
  }
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_num_seqs &&
         (budget >= 1 || prefills.empty()) && Admit(*waiting_.front())) {
    Request* request = waiting_.front();
    waiting_.pop_front();
    if (request->scheduled_s == 0) {  // its first admission: a recompute after preemption is not counted again
      request->scheduled_s = Now();
      metrics_.prompt_tokens.Increment(static_cast<double>(request->prompt.size()));
      request->cached_tokens = request->prefill_cached;
      request->stream->SetCachedTokens(request->cached_tokens);
    }
    request->state = RequestState::kRunning;
    running_.push_back(request);
    take_chunk(*request);
  }
  if (!waiting_.empty() && running_.empty() && prefills.empty()) {
    Request& request = *waiting_.front();
    Finish(request, "error",
           absl::StrCat("the prompt needs more KV blocks than the cache has (", Length(request),
                        " positions; each SP rank holds ", kv_blocks_, " blocks of ", options_.kv_block_size,
                        " tokens: raise --kv-blocks, or on GPUs lower --kv-reserve-mib)"));
    return absl::OkStatus();
  }
  if (prefills.empty() && decodes.empty()) {
    if (release_.empty()) {
      // Nothing runnable: wait a little for a vision rank (an arrival is taken on the next turn).
      auto message = channel_.Receive(std::chrono::milliseconds(5));
      if (message.ok()) return HandleMessage(message->first, message->second, &tokens, &results);
      return absl::OkStatus();
    }
  }

  ++step_;
  const double step_start = Now();
  int64_t step_positions = static_cast<int64_t>(decodes.size());
  for (const Request* request : prefills) step_positions += request->chunk_end - request->computed;
  metrics_.iteration_tokens.Observe(static_cast<double>(step_positions));
  std::fill(answered_.begin(), answered_.end(), false);
  failed_.clear();
  const protocol::Bytes plan = BuildPlan(prefills, decodes);
  const int workers = mapping_.world_size() - 1;
  for (int rank = 1; rank <= workers; ++rank) IXC_RETURN_IF_ERROR(channel_.Send(rank, plan));
  const double deadline = Now() + options_.step_timeout_s;
  while (results < workers) {
    const double left = deadline - Now();
    if (left <= 0) {
      return absl::DeadlineExceededError(absl::StrCat("step ", step_, ": ", Silent(), " did not answer within ",
                                                      options_.step_timeout_s, " s", HeartbeatNote()));
    }
    // Wake at least every second to notice a rank whose heartbeats stopped.
    auto message = channel_.Receive(std::chrono::milliseconds(static_cast<int64_t>(std::min(left, 1.0) * 1000)));
    if (message.ok()) IXC_RETURN_IF_ERROR(HandleMessage(message->first, message->second, &tokens, &results));
    IXC_RETURN_IF_ERROR(CheckHeartbeats(/*in_step=*/true));
  }

  metrics_.step_duration.Observe(Now() - step_start);

  std::vector<Request*> stepped = prefills;
  stepped.insert(stepped.end(), decodes.begin(), decodes.end());
  std::vector<Request*> searches;  // owners whose beams all answered in this step
  for (Request* request : stepped) {
    if (request->state != RequestState::kRunning) continue;
    if (auto failed = failed_.find(request->number); failed != failed_.end()) {  // it alone: the others go on
      Finish(*SearchOf(request), "error", failed->second);
      continue;
    }
    if (request->computed < request->prefill_length) {  // a chunk of its prompt
      request->computed = request->chunk_end;
      if (request->computed < request->prefill_length) {  // more to come: no token yet
        RegisterComputed(*request, request->computed);
        continue;
      }
    }
    auto it = tokens.find(request->number);
    if (it == tokens.end()) {
      return absl::InternalError(absl::StrCat("step ", step_, ": no token for request ", request->id));
    }
    if (request->num_beams > 1) {  // a beam search's prompt or beam: candidates instead of a token
      if (!it->second.candidates.has_value()) {
        return absl::InternalError(absl::StrCat("step ", step_, ": no beam candidates for request ", request->id));
      }
      if (request->beam_owner == nullptr) {
        StartBeams(*request, std::move(*it->second.candidates));
        continue;
      }
      Request& owner = *request->beam_owner;
      BeamGroup& group = *owner.beam_group;
      for (size_t b = 0; b < group.beams.size(); ++b) {
        if (group.beams[b].get() == request) group.answers[b] = std::move(*it->second.candidates);
      }
      if (std::all_of(group.answers.begin(), group.answers.end(), [](const auto& a) { return a.has_value(); }) &&
          std::find(searches.begin(), searches.end(), &owner) == searches.end()) {
        searches.push_back(&owner);
      }
      continue;
    }
    const int32_t token = it->second.token;
    const double now = Now();
    if (request->generated.empty()) {
      request->first_token_s = now;
      metrics_.time_to_first_token.Observe(request->preparation_s + now - request->arrived_s);
      metrics_.request_prefill_time.Observe(now - request->scheduled_s);
    } else {
      metrics_.inter_token_latency.Observe(now - request->last_token_s);
    }
    request->last_token_s = now;
    metrics_.generation_tokens.Increment();
    request->generated.push_back(token);
    request->stream->Push(token, std::move(it->second.logprobs));
    RegisterComputed(*request, Length(*request) - 1);  // the latest token is fed by the next step
    const bool stop = std::find(request->stop_ids.begin(), request->stop_ids.end(), token) !=
                      request->stop_ids.end();
    if (stop) {
      Finish(*request, "stop");
    } else if (static_cast<int>(request->generated.size()) >= request->max_new_tokens ||
               Length(*request) >= options_.max_context) {
      Finish(*request, "length");
    }
  }
  for (Request* owner : searches) {
    if (owner->state == RequestState::kRunning && owner->beam_group != nullptr) AdvanceBeams(*owner);
  }
  return absl::OkStatus();
}

protocol::Bytes Engine::BuildPlan(const std::vector<Request*>& prefills, const std::vector<Request*>& decodes) {
  flatbuffers::FlatBufferBuilder builder;
  std::vector<flatbuffers::Offset<protocol::SequenceWork>> work;
  const std::vector<int32_t> no_blocks;
  auto sampling = [&](const Request& request) {
    const int candidates =
        request.num_beams > 1 ? model::BeamSearch::CandidatesPerBeam(request.num_beams, request.stop_ids.size()) : 0;
    return protocol::CreateSampling(builder, request.sampling.temperature, request.sampling.top_k,
                                    request.sampling.top_p, request.sampling.repetition_penalty, request.seed,
                                    request.top_logprobs, candidates);
  };
  for (const Request* request : prefills) {
    // A recompute after preemption prefills the prompt and the tokens generated so far.
    std::vector<int32_t> ids = request->prompt;
    ids.insert(ids.end(), request->generated.begin(), request->generated.end());
    std::vector<flatbuffers::Offset<protocol::ImageRef>> images;
    for (const ImageInPrompt& image : request->images) {
      images.push_back(protocol::CreateImageRef(builder, image.vision_rank, image.tag, image.first_row, image.rows));
    }
    const bool dump = !request->dump_logits.empty() && request->preemptions == 0;
    // The sequence's blocks go with its first chunk (all of them: it holds them from its admission).
    const bool first_chunk = request->computed == request->prefill_cached;
    work.push_back(protocol::CreateSequenceWork(
        builder, request->number, /*prefill=*/true, builder.CreateVector(ids), builder.CreateVector(images),
        builder.CreateVector(request->generated), static_cast<int8_t>(request->lora), sampling(*request),
        dump ? builder.CreateString(request->dump_logits) : 0, static_cast<int32_t>(request->computed),
        /*first_block=*/0, builder.CreateVector(first_chunk ? blocks_.Table(request->number) : no_blocks),
        request->chunk_end < request->prefill_length ? static_cast<int32_t>(request->chunk_end) : 0));
  }
  for (const Request* request : decodes) {
    const std::vector<int32_t> last = {request->generated.back()};
    std::vector<int32_t> block;
    int32_t first_block = 0;
    if (auto taken = new_blocks_.find(request->number); taken != new_blocks_.end()) {
      first_block = taken->second.first;
      block.push_back(taken->second.second);
    }
    work.push_back(protocol::CreateSequenceWork(
        builder, request->number, /*prefill=*/false, builder.CreateVector(last), 0,
        builder.CreateVector(request->generated), static_cast<int8_t>(request->lora), sampling(*request),
        /*dump_logits=*/0, /*cached_tokens=*/0, first_block, builder.CreateVector(block)));
  }
  std::vector<flatbuffers::Offset<protocol::KvFork>> forks;
  for (const Fork& fork : forks_) {
    forks.push_back(protocol::CreateKvFork(builder, fork.parent, fork.child, fork.global_block, fork.copy_to));
  }
  const auto plan = protocol::CreateStepPlan(builder, step_, builder.CreateVector(work),
                                             builder.CreateVector(release_),
                                             builder.CreateVector(image_cache_.TakeEvicted()),
                                             forks.empty() ? 0 : builder.CreateVector(forks));
  release_.clear();
  forks_.clear();
  new_blocks_.clear();
  return protocol::Finish(builder, mapping_.rank(), protocol::Body::StepPlan, plan.Union());
}

bool Engine::Admit(Request& request) {
  const int64_t length = Length(request);
  const int block_size = options_.kv_block_size;
  std::vector<ContentKey> keys;
  if (blocks_.prefix_caching()) {
    ExtendBlockKeys(request, {block_size, options_.rope_fixed_up_to}, length, length, keys);
  }
  const int64_t cached = blocks_.CachedPrefix(keys, length);
  if (!blocks_.CanAllocate(keys, cached, length)) return false;
  blocks_.Allocate(request.number, keys, cached, length);
  request.block_keys = std::move(keys);
  request.prefill_length = length;
  request.prefill_cached = cached;
  request.computed = cached;
  if (blocks_.prefix_caching()) {
    prefix_queries_ += length;
    prefix_hits_ += cached;
    metrics_.prefix_cache_queries.Increment(static_cast<double>(length));
    metrics_.prefix_cache_hits.Increment(static_cast<double>(cached));
  }
  return true;
}

void Engine::RegisterComputed(Request& request, int64_t computed) {
  if (!blocks_.prefix_caching()) return;
  ExtendBlockKeys(request, {options_.kv_block_size, options_.rope_fixed_up_to}, request.prefill_length, computed,
                  request.block_keys);
  blocks_.Computed(request.number, request.block_keys, computed);
}

absl::Status Engine::CheckIdle() const {
  if (!blocks_.idle()) {
    return absl::InternalError(absl::StrCat("every request has ended, yet KV blocks are still in use (",
                                            static_cast<int>(100 * blocks_.usage()), "% of the pools): a leak"));
  }
  if (!image_cache_.idle()) {
    return absl::InternalError("every request has ended, yet image cache entries are still in use: a leak");
  }
  return absl::OkStatus();
}

void Engine::Shutdown() {
  const protocol::Bytes message = protocol::EncodeShutdown(mapping_.rank());
  for (int rank = 1; rank < mapping_.world_size(); ++rank) (void)channel_.Send(rank, message);
}

}  // namespace ixc::coordinator
