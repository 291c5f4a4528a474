// File: core/rank_report.h
//
// What a worker rank reports with each step result about itself since its previous report (protocol/messages.h),
// for the per-rank metrics (monitoring/metrics.h): its work's time, its data plane's traffic (parallel/counting_comm.h),
// its GPU's memory, and on a vision rank its ViT passes. A plain value shared by those layers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ixc {

// One kind of data-plane call: its group (tp, sp, llm, world), its operation (all_reduce, all_gather, send_recv,
// send, recv, ...) and its path (mpi, nccl).
struct CommTotal {
  std::string group;
  std::string op;
  std::string path;
  int64_t calls = 0;
  double seconds = 0;  // the caller's time in the calls (on GPUs, stream-ordered all-reduces: the time to enqueue)
  int64_t bytes = 0;   // sent and received
};

struct RankReport {
  int64_t steps = 0;             // step plans worked on
  double compute_seconds = 0;    // their time on this rank, communication included
  std::vector<CommTotal> comm;
  int64_t device_memory_used = 0;   // bytes on this rank's GPU, or on the CPU its resident memory (and the host's)
  int64_t device_memory_total = 0;
  std::vector<double> vit_pass_seconds;  // a vision rank's ViT passes, each
  int64_t vit_crops = 0;                 // the crops they encoded
};

}  // namespace ixc
