// Tensor and sequence parallelism on this machine, under mpirun: prefill time of a long prompt and decode step time
// for the job's T x S layout, and the bytes each collective moves per layer per step next to the analytic volume
// of architecture section 4. Ranks beyond the machine's cores share them: the timings then say so. With SP, the ring
// prefill's balance: each rank's busy time (its prefill less the time it spent in comm calls, waiting for its
// neighbours included) and the slowest rank's over the mean, beside the causal attention work of each rank's
// positions (parallel/sequence_shard.h) in the same terms.
//   mpirun -np 4 parallel_bench --model DIR --tp 1 --sp 4 --prompt_tokens 2048 --decode_steps 16
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/machine_limits.h"
#include "kernels/cpu/blas_kernels.h"
#include "model/generation.h"
#include "parallel/mpi_device_comm.h"
#include "parallel/sequence_shard.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(int, tp, 1, "T");
ABSL_FLAG(int, sp, 1, "S");
ABSL_FLAG(int, prompt_tokens, 2048, "prefill length");
ABSL_FLAG(int, decode_steps, 16, "decode steps timed after the prefill");

namespace ixc::bench {
namespace {

// Counts the payload bytes this rank hands to each collective, by name, and the seconds spent in the calls.
class CountingComm : public parallel::DeviceComm {
 public:
  explicit CountingComm(parallel::DeviceComm& inner) : inner_(inner) {}
  std::map<std::string, double> bytes;
  double seconds = 0;

  int GroupSize(parallel::Group g) const override { return inner_.GroupSize(g); }
  int GroupRank(parallel::Group g) const override { return inner_.GroupRank(g); }
  absl::Status AllReduceSum(float* d, int64_t n, parallel::Group g) override {
    bytes[Name("all_reduce", g)] += 4.0 * n;
    return Timed([&] { return inner_.AllReduceSum(d, n, g); });
  }
  absl::Status AllGather(const float* s, int64_t n, float* out, parallel::Group g) override {
    bytes[Name("all_gather", g)] += 4.0 * n;
    return Timed([&] { return inner_.AllGather(s, n, out, g); });
  }
  absl::Status ReduceScatterSum(const float* s, float* r, int64_t n, parallel::Group g) override {
    bytes[Name("reduce_scatter", g)] += 4.0 * n * GroupSize(g);
    return Timed([&] { return inner_.ReduceScatterSum(s, r, n, g); });
  }
  absl::Status Broadcast(float* d, int64_t n, int root, parallel::Group g) override {
    bytes[Name("broadcast", g)] += 4.0 * n;
    return Timed([&] { return inner_.Broadcast(d, n, root, g); });
  }
  absl::Status Send(const float* d, int64_t n, int p, parallel::Group g) override {
    bytes[Name("send", g)] += 4.0 * n;
    return Timed([&] { return inner_.Send(d, n, p, g); });
  }
  absl::Status Recv(float* d, int64_t n, int p, parallel::Group g) override {
    return Timed([&] { return inner_.Recv(d, n, p, g); });
  }
  absl::Status SendRecv(const float* s, int64_t sn, int sp, float* r, int64_t rn, int rp, parallel::Group g) override {
    bytes[Name("ring_send", g)] += 4.0 * sn;
    return Timed([&] { return inner_.SendRecv(s, sn, sp, r, rn, rp, g); });
  }
  absl::Status StartSendRecv(const float* s, int64_t sn, int sp, float* r, int64_t rn, int rp,
                             parallel::Group g) override {
    bytes[Name("ring_send", g)] += 4.0 * sn;
    return Timed([&] { return inner_.StartSendRecv(s, sn, sp, r, rn, rp, g); });
  }
  absl::Status Wait() override { return Timed([&] { return inner_.Wait(); }); }

 private:
  template <typename F>
  absl::Status Timed(F call) {
    const auto start = std::chrono::steady_clock::now();
    const absl::Status status = call();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return status;
  }
  static std::string Name(const char* op, parallel::Group g) {
    return std::string(op) + (g == parallel::Group::kTensor ? " (tp)" : g == parallel::Group::kSequence ? " (sp)" : "");
  }
  parallel::DeviceComm& inner_;
};

void Report(const char* phase, const std::map<std::string, double>& bytes, double layers, double steps) {
  for (const auto& [name, total] : bytes) {
    std::printf("  %-8s %-20s %12.0f bytes per layer per step\n", phase, name.c_str(), total / layers / steps);
  }
}

// The ring prefill's balance over the SP ranks (of TP rank 0): measured busy time, and each rank's causal attention
// work (the keys its queries see: the sum of its positions + 1) under the layout.
void ReportBalance(const std::vector<double>& busy_by_rank, const parallel::Mapping& mapping, int64_t n,
                   int block_size) {
  const int sp = mapping.layout().sp, tp = mapping.layout().tp;
  std::vector<double> busy, work;
  for (int s = 0; s < sp; ++s) {
    busy.push_back(busy_by_rank[s * tp]);  // world rank of (tp 0, sp s): LLM ranks are laid out tp-fastest
    double keys = 0;
    for (int32_t p : parallel::PrefillPositions(0, n, s, sp, block_size)) keys += p + 1.0;
    work.push_back(keys);
  }
  auto max_over_mean = [](const std::vector<double>& v) {
    double sum = 0, most = 0;
    for (double x : v) {
      sum += x;
      most = std::max(most, x);
    }
    return most / (sum / static_cast<double>(v.size()));
  };
  std::printf("  ring prefill balance (slowest rank / mean): busy time %.3f, attention work %.4f; busy s by SP rank:",
              max_over_mean(busy), max_over_mean(work));
  for (double b : busy) std::printf(" %.3f", b);
  std::printf("\n");
}

int Run(int world, int rank) {
  auto mapping = parallel::Mapping::Create(world, rank, {0, 0, absl::GetFlag(FLAGS_tp), absl::GetFlag(FLAGS_sp)});
  if (!mapping.ok()) {
    if (rank == 0) std::fprintf(stderr, "%s\n", std::string(mapping.status().message()).c_str());
    return 1;
  }
  auto mpi = parallel::CreateMpiDeviceComm(*mapping);
  auto weights = model::LoadLlmWeights(absl::GetFlag(FLAGS_model), {mapping->tp_rank(), absl::GetFlag(FLAGS_tp)});
  if (!mpi.ok() || !weights.ok()) {
    std::fprintf(stderr, "%s\n", std::string(weights.ok() ? mpi.status().message() : weights.status().message()).c_str());
    return 1;
  }
  CountingComm comm(**mpi);
  const model::LlmConfig& c = weights->config;
  const int tp = absl::GetFlag(FLAGS_tp), sp = absl::GetFlag(FLAGS_sp);
  const int n = absl::GetFlag(FLAGS_prompt_tokens), steps = absl::GetFlag(FLAGS_decode_steps);
  model::KvCache cache(weights->shard, 16, (n + steps) / 16 + 16);
  std::vector<int32_t> prompt(n);
  for (int i = 0; i < n; ++i) prompt[i] = (i * 7919 + 11) % c.vocab_size;
  model::ForwardInput input;
  input.ids = prompt;
  model::SequenceKv seq;
  MPI_Barrier(MPI_COMM_WORLD);
  auto start = std::chrono::steady_clock::now();
  const bool local_vocab = tp > 1;  // the vocab-parallel head: each TP rank keeps its slice, greedy gathers 2 floats
  auto logits = model::Prefill(*weights, input, false, seq, cache, &comm, local_vocab);
  const double busy = Seconds(start) - comm.seconds;  // this rank's work, without its waits in comm calls
  MPI_Barrier(MPI_COMM_WORLD);
  const double prefill_s = Seconds(start);
  std::vector<double> busy_by_rank(world);
  MPI_Gather(&busy, 1, MPI_DOUBLE, busy_by_rank.data(), 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  const auto prefill_bytes = comm.bytes;
  comm.bytes.clear();
  start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps && logits.ok(); ++s) {
    auto token = model::SampleNext(*weights, *logits, {}, {}, 0, s, &comm);
    if (!token.ok()) {
      logits = token.status();
      break;
    }
    logits = model::DecodeStep(*weights, *token, n + s, model::LoraMode::kBase, seq, cache, &comm, local_vocab);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const double decode_s = Seconds(start);
  if (!logits.ok()) {
    std::fprintf(stderr, "%s\n", std::string(logits.status().message()).c_str());
    return 1;
  }
  if (rank == 0) {
    const unsigned cores = std::thread::hardware_concurrency();
    std::printf("T%d S%d on %u cores%s: prefill %d tokens %.3f s (%.0f tok/s); decode step %.2f ms\n", tp, sp, cores,
                world > static_cast<int>(cores) ? " (ranks share cores: times include waiting for a core)" : "", n,
                prefill_s, n / prefill_s, decode_s / steps * 1e3);
    Report("prefill", prefill_bytes, c.num_layers, 1);
    Report("decode", comm.bytes, c.num_layers, steps);
    // Architecture section 4: per layer, TP moves two all-reduces of (tokens, hidden); SP's ring sends each of the
    // S - 1 other shards' K/V once; decode gathers (heads/T, head_dim + 1) per SP rank.
    const double local = static_cast<double>(n) / sp, kv_row = static_cast<double>(c.num_kv_heads) / tp * c.head_dim;
    std::printf("  analytic: prefill all_reduce (tp) %.0f, ring_send (sp) %.0f; decode all_reduce (tp) %.0f, "
                "all_gather (sp) %.0f bytes per layer per step\n",
                tp > 1 ? 2.0 * local * c.hidden_size * 4 : 0.0, sp > 1 ? (sp - 1) * (2 * local * kv_row + local) * 4 : 0.0,
                tp > 1 ? 2.0 * c.hidden_size * 4 : 0.0,
                sp > 1 ? static_cast<double>(c.num_heads) / tp * (c.head_dim + 1) * 4 : 0.0);
    if (sp > 1) ReportBalance(busy_by_rank, *mapping, n, cache.block_size());
  }
  return 0;
}

}  // namespace
}  // namespace ixc::bench

int main(int argc, char** argv) {
  ixc::kernels::RestartForBetterBlasKernels(argv);
  MPI_Init(&argc, &argv);
  absl::ParseCommandLine(argc, argv);
  int world = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int code = ixc::bench::Run(world, rank);
  MPI_Finalize();
  return code;
}
