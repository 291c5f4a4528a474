#include "bench/random_vision.h"

#include "tests/test_util.h"

namespace ixc::bench {

model::VisionWeights RandomVision(const model::VisionConfig& c, int llm_hidden,
                                  std::vector<std::vector<float>>& storage) {
  uint64_t seed = 1;
  auto tensor = [&](std::initializer_list<int64_t> dims, float scale) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    storage.push_back(testing::RandomFloats(n, seed++, scale));
    return TensorView(storage.back().data(), DType::kF32, dims);
  };
  auto vec = [&](int64_t n, float scale) { return testing::RandomFloats(n, seed++, scale); };
  model::VisionWeights w;
  w.config = c;
  w.llm_hidden = llm_hidden;
  const int64_t hv = c.hidden_size, positions = c.grid() * c.grid() + 1;
  w.patch_embedding = tensor({hv, 3 * c.patch_size * c.patch_size}, 0.05f);
  w.class_embedding = vec(hv, 1.f);
  w.position_embedding = vec(positions * hv, 0.5f);
  w.pre_ln_weight = std::vector<float>(hv, 1.f);
  w.pre_ln_bias = std::vector<float>(hv, 0.f);
  for (int i = 0; i < c.num_layers; ++i) {
    model::VitLayerWeights l;
    l.ln1_weight = l.ln2_weight = std::vector<float>(hv, 1.f);
    l.ln1_bias = l.ln2_bias = l.q_bias = l.k_bias = l.v_bias = l.out_bias = l.fc2_bias = std::vector<float>(hv, 0.f);
    l.q = tensor({hv, hv}, 0.03f);
    l.k = tensor({hv, hv}, 0.03f);
    l.v = tensor({hv, hv}, 0.03f);
    l.out = tensor({hv, hv}, 0.03f);
    l.fc1 = tensor({c.intermediate_size, hv}, 0.03f);
    l.fc1_bias = std::vector<float>(c.intermediate_size, 0.f);
    l.fc2 = tensor({hv, c.intermediate_size}, 0.015f);
    w.layers.push_back(std::move(l));
  }
  w.sub_separator = vec(4 * hv, 1.f);
  w.global_separator = vec(4 * hv, 1.f);
  w.proj1 = tensor({llm_hidden, 4 * hv}, 0.015f);
  w.proj1_bias = std::vector<float>(llm_hidden, 0.f);
  w.proj2 = tensor({llm_hidden, llm_hidden}, 0.015f);
  w.proj2_bias = std::vector<float>(llm_hidden, 0.f);
  return w;
}

double FlopsPerTile(const model::VisionConfig& c) {
  const double tokens = c.grid() * c.grid() + 1, hv = c.hidden_size;
  const double patch = 2.0 * (tokens - 1) * hv * 3 * c.patch_size * c.patch_size;
  const double layer = 2.0 * tokens * (4 * hv * hv + 2 * hv * c.intermediate_size) + 4.0 * tokens * tokens * hv;
  return patch + c.num_layers * layer;
}

}  // namespace ixc::bench
