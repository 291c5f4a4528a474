// File: worker/rank_reporter.h
//
// What a worker tells the coordinator about itself with each step result (core/rank_report.h): the steps it worked
// on and their time, its data plane's traffic (the CommCounter its comms count into), its ViT passes, and its GPU's
// memory at the time of the report.
//   RankReporter reporter(counter, placement);
//   reporter.AddStep(seconds);  ...  RankReport report = reporter.Take();
#pragma once

#include "core/rank_report.h"
#include "model/placement.h"
#include "parallel/counting_comm.h"

namespace ixc::worker {

class RankReporter {
 public:
  RankReporter(parallel::CommCounter& counter, model::Placement placement)
      : counter_(counter), placement_(std::move(placement)) {}

  void AddStep(double seconds) {
    ++pending_.steps;
    pending_.compute_seconds += seconds;
  }
  void AddVitPass(double seconds, int crops) {
    pending_.vit_pass_seconds.push_back(seconds);
    pending_.vit_crops += crops;
  }
  // Everything since the last Take.
  RankReport Take() {
    RankReport report = std::move(pending_);
    pending_ = RankReport{};
    report.comm = counter_.Take();
    const model::DeviceMemory memory = model::DeviceMemoryOf(placement_);
    report.device_memory_used = memory.used;
    report.device_memory_total = memory.total;
    return report;
  }

 private:
  parallel::CommCounter& counter_;
  model::Placement placement_;
  RankReport pending_;
};

}  // namespace ixc::worker
