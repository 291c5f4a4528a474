// File: tests/coordinator/real_tokenizer.h
//
// The real IXC-2.5 tokenizer (tests/data/tokenizer.model, 92,544 pieces), loaded once per test binary.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "coordinator/tokenizer.h"

namespace ixc::testing {

inline const coordinator::Tokenizer& RealTokenizer() {
  static const std::unique_ptr<coordinator::Tokenizer> tokenizer = [] {
    std::string error;
    auto loaded = coordinator::Tokenizer::Load(std::string(IXC_SOURCE_DIR) + "/tests/data/tokenizer.model", &error);
    EXPECT_NE(loaded, nullptr) << error;
    return loaded;
  }();
  return *tokenizer;
}

}  // namespace ixc::testing
