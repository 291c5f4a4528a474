#include "coordinator/beam_group.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ixc::coordinator {

model::BeamSearchOptions BeamOptionsOf(const Request& request, int64_t max_context) {
  const int64_t room = max_context - static_cast<int64_t>(request.prompt.size());
  return {request.num_beams, request.stop_ids,
          static_cast<int>(std::clamp<int64_t>(room, 1, request.max_new_tokens)), model::kHistoryBosId};
}

std::unique_ptr<Request> NewBeam(Request& owner, uint64_t number, std::vector<int32_t> tokens) {
  auto beam = std::make_unique<Request>();
  beam->id = absl::StrCat(owner.id, "/beam");
  beam->number = number;
  beam->beam_owner = &owner;
  beam->lora = owner.lora;
  beam->sampling = owner.sampling;
  beam->num_beams = owner.num_beams;
  beam->stop_ids = owner.stop_ids;
  beam->generated = std::move(tokens);
  beam->prefill_length = beam->computed = static_cast<int64_t>(owner.prompt.size() + beam->generated.size());
  beam->state = RequestState::kRunning;
  return beam;
}

}  // namespace ixc::coordinator
