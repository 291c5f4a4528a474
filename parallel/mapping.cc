#include "parallel/mapping.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ixc::parallel {

absl::StatusOr<Mapping> Mapping::Create(int world_size, int rank, const Layout& layout) {
  if (layout.coordinators < 0 || layout.coordinators > 1 || layout.vision < 0 || layout.tp < 1 || layout.sp < 1) {
    return absl::InvalidArgumentError(absl::StrCat("invalid layout: coordinators ", layout.coordinators, ", vision ",
                                                   layout.vision, ", tp ", layout.tp, ", sp ", layout.sp));
  }
  const int needed = layout.coordinators + layout.vision + layout.tp * layout.sp;
  if (world_size != needed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the job has ", world_size, " ranks but the layout needs ", needed, " = ", layout.coordinators,
        " coordinator + ", layout.vision, " vision + ", layout.tp, " (tp) x ", layout.sp, " (sp) LLM ranks"));
  }
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is outside the world of ", world_size));
  }
  Mapping mapping;
  mapping.world_size_ = world_size;
  mapping.rank_ = rank;
  mapping.layout_ = layout;
  return mapping;
}

absl::Status Mapping::CheckModel(int num_kv_heads, int vocab_size) const {
  if (num_kv_heads % layout_.tp != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tp ", layout_.tp, " does not divide the model's ", num_kv_heads,
                                                   " KV heads; use a tp that does (", num_kv_heads, " KV heads allow ",
                                                   "1, 2, ... up to ", num_kv_heads, ")"));
  }
  if (vocab_size % layout_.tp != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp ", layout_.tp, " does not divide the vocabulary of ", vocab_size, " (vocab-parallel head)"));
  }
  return absl::OkStatus();
}

Role Mapping::role() const {
  if (rank_ < layout_.coordinators) return Role::kCoordinator;
  if (rank_ < first_llm_rank()) return Role::kVision;
  return Role::kLlm;
}

std::vector<int> Mapping::TpGroup() const {
  std::vector<int> ranks;
  for (int t = 0; t < layout_.tp; ++t) ranks.push_back(first_llm_rank() + sp_rank() * layout_.tp + t);
  return ranks;
}

std::vector<std::string> TpGroupsSpanningMachines(const Layout& layout, const std::vector<std::string>& hosts) {
  std::vector<std::string> warnings;
  const int first = layout.coordinators + layout.vision;
  for (int s = 0; s < layout.sp; ++s) {
    std::vector<std::string> machines;  // in rank order, each once
    for (int t = 0; t < layout.tp; ++t) {
      const size_t rank = static_cast<size_t>(first + s * layout.tp + t);
      const std::string& host = rank < hosts.size() ? hosts[rank] : "?";
      if (std::find(machines.begin(), machines.end(), host) == machines.end()) machines.push_back(host);
    }
    if (machines.size() < 2) continue;
    warnings.push_back(absl::StrCat("the TP group of ranks ", first + s * layout.tp, "-", first + (s + 1) * layout.tp - 1,
                                    " (sp ", s, ") spans the machines ", absl::StrJoin(machines, ", "),
                                    ": its all-reduces, two per layer and step, cross the network; put each TP group "
                                    "on one machine (hostfile slots = a multiple of --tp, docs/deploy.md)"));
  }
  return warnings;
}

std::vector<int> Mapping::SpGroup() const {
  std::vector<int> ranks;
  for (int s = 0; s < layout_.sp; ++s) ranks.push_back(first_llm_rank() + s * layout_.tp + tp_rank());
  return ranks;
}

std::vector<int> Mapping::LlmRanks() const {
  std::vector<int> ranks;
  for (int r = first_llm_rank(); r < world_size_; ++r) ranks.push_back(r);
  return ranks;
}

std::vector<int> Mapping::VisionRanks() const {
  std::vector<int> ranks;
  for (int r = layout_.coordinators; r < first_llm_rank(); ++r) ranks.push_back(r);
  return ranks;
}

std::string Mapping::ToString() const {
  switch (role()) {
    case Role::kCoordinator:
      return absl::StrCat("rank ", rank_, "/", world_size_, " coordinator");
    case Role::kVision:
      return absl::StrCat("rank ", rank_, "/", world_size_, " vision ", vision_index(), "/", layout_.vision);
    case Role::kLlm:
      return absl::StrCat("rank ", rank_, "/", world_size_, " llm tp ", tp_rank(), "/", layout_.tp, " sp ", sp_rank(),
                          "/", layout_.sp);
  }
  return "";
}

absl::StatusOr<int> WorkerGpu(const NodeWorkers& node, Role role, int gpus) {
  const int llm = node.count - node.vision;
  if (role == Role::kCoordinator || node.index < 0 || node.index >= node.count || gpus < 1) {
    return absl::InvalidArgumentError(absl::StrCat("no GPU for worker ", node.index, " of ", node.count,
                                                   " on a machine with ", gpus, " GPUs"));
  }
  if (llm > gpus) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this machine has ", llm, " LLM ranks but ", gpus,
        " GPUs: each LLM rank needs a GPU of its own (NCCL); run fewer ranks per machine or lower --tp/--sp"));
  }
  if (role == Role::kLlm) return node.index - node.vision;
  return (llm + node.index) % gpus;  // the vision ranks come first: index is the vision rank's own
}

bool HasGpuOfItsOwn(const NodeWorkers& node, Role role, int gpus) {
  if (role == Role::kLlm) return true;
  return role == Role::kVision && node.count - node.vision + node.index < gpus;
}

}  // namespace ixc::parallel
