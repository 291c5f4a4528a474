// File: parallel/mapping.h
//
// Who does what in one mpirun job (architecture section 1). World ranks are laid out as
//   [coordinator] [vision 0 .. V-1] [LLM grid: T x S]
// and LLM rank r (counted from the first LLM rank) has tp = r % T and sp = r / T, so a TP group (same sp) holds
// consecutive ranks and stays inside one node's NVLink domain.
//
// Example, world 12 = 1 + V 3 + T 4 x S 2:
//   rank 0 coordinator; ranks 1-3 vision;
//   ranks 4-7  LLM sp 0, tp 0-3   (TP group {4,5,6,7})
//   ranks 8-11 LLM sp 1, tp 0-3   (TP group {8,9,10,11}); SP groups {4,8} {5,9} {6,10} {7,11}
//
// Built only by Mapping::Create, which validates the layout; passed explicitly, never global.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ixc::parallel {

enum class Role { kCoordinator, kVision, kLlm };

struct Layout {
  int coordinators = 1;  // 1 in the cluster; 0 in LLM-only test jobs
  int vision = 1;        // V
  int tp = 1;            // T
  int sp = 1;            // S
};

class Mapping {
 public:
  // Validates world_size == coordinators + V + T * S and 0 <= rank < world_size; errors name the mismatch.
  static absl::StatusOr<Mapping> Create(int world_size, int rank, const Layout& layout);
  // Also checks the model: T divides the KV heads (whole KV groups per rank) and the vocabulary (vocab-parallel head).
  absl::Status CheckModel(int num_kv_heads, int vocab_size) const;

  int world_size() const { return world_size_; }
  int rank() const { return rank_; }
  const Layout& layout() const { return layout_; }
  Role role() const;
  int tp_rank() const { return LlmIndex() % layout_.tp; }  // meaningful for LLM ranks
  int sp_rank() const { return LlmIndex() / layout_.tp; }
  int vision_index() const { return rank_ - layout_.coordinators; }
  int first_llm_rank() const { return layout_.coordinators + layout_.vision; }
  // World ranks of this rank's TP group (same sp) and SP group (same tp), in tp / sp order.
  std::vector<int> TpGroup() const;
  std::vector<int> SpGroup() const;
  std::vector<int> LlmRanks() const;
  std::vector<int> VisionRanks() const;
  std::string ToString() const;  // "rank 5/12 llm tp 1/4 sp 0/2"

 private:
  int LlmIndex() const { return rank_ - first_llm_rank(); }
  int world_size_ = 1;
  int rank_ = 0;
  Layout layout_;
};

// A warning for each TP group whose ranks sit on more than one machine (`hosts`: each world rank's machine, as
// parallel::HostNames gathers them): its all-reduces, two per layer and step, would cross the network. Place each
// TP group inside one machine (docs/deploy.md); SP groups and the vision ranks may span machines.
std::vector<std::string> TpGroupsSpanningMachines(const Layout& layout, const std::vector<std::string>& hosts);

// Where a worker sits on its machine (parallel/bootstrap.h counts them): its index among the machine's workers in
// world order, and how many workers and vision ranks the machine has (the vision ranks come first).
struct NodeWorkers {
  int index = -1;  // -1 for a rank that is no worker (the coordinator)
  int count = 0;
  int vision = 0;
};

// The GPU a worker takes with --device cuda on a machine with `gpus` of them: each LLM rank one of its own, in rank
// order (NCCL allows one rank per GPU in a communicator); the vision ranks those left over, and where none are left
// they share the LLM ranks' round-robin (the vision tower's weights are about 1 GB: a one-GPU machine runs its
// vision rank beside its LLM rank). Fails, naming both counts, where the machine's LLM ranks outnumber its GPUs.
absl::StatusOr<int> WorkerGpu(const NodeWorkers& node, Role role, int gpus);
// Whether that GPU is the worker's alone: always an LLM rank's; a vision rank's where the machine has one left over
// for it. The vision handoff goes over NCCL only where every vision rank's is (worker/handoff.h).
bool HasGpuOfItsOwn(const NodeWorkers& node, Role role, int gpus);

}  // namespace ixc::parallel
