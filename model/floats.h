// File: model/floats.h
//
// f32 values, owned, in host memory or in a GPU's memory: the image features and embeddings that travel from the
// vision ranks to the LLM ranks, between host buffers over MPI or between GPUs over NCCL (worker/, the vision
// handoff). Device buffers come from model::NewFloats (model/placement.h), which gives them their deleter.
//
//   IXC_ASSIGN_OR_RETURN(Floats embeddings, NewFloats(tokens * hidden, handoff_gpu));   // -1: on the host
//   IXC_RETURN_IF_ERROR(comm.Recv(embeddings.data(), embeddings.size(), peer, parallel::Group::kWorld));
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace ixc::model {

class Floats {
 public:
  Floats() = default;
  explicit Floats(int64_t count) : host_(count) {}  // on the host, zeroed
  Floats(std::shared_ptr<float> device, int64_t count) : device_(std::move(device)), device_count_(count) {}

  float* data() { return device_ != nullptr ? device_.get() : host_.data(); }
  const float* data() const { return device_ != nullptr ? device_.get() : host_.data(); }
  int64_t size() const { return device_ != nullptr ? device_count_ : static_cast<int64_t>(host_.size()); }
  bool on_device() const { return device_ != nullptr; }

 private:
  std::vector<float> host_;
  std::shared_ptr<float> device_;
  int64_t device_count_ = 0;
};

}  // namespace ixc::model
