// File: tests/parallel/mpi_test_main.h
//
// A gtest main for tests that run under mpirun: every rank runs every test; the job fails when any rank fails.
// The layout comes from IXC_TEST_LAYOUT="coordinators,vision,tp,sp" (default: all ranks in one TP group).
#pragma once

#include <mpi.h>

#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "parallel/mapping.h"
#include "tests/test_util.h"

namespace ixc::testing {

inline parallel::Layout TestLayout(int world_size) {
  const char* text = std::getenv("IXC_TEST_LAYOUT");
  if (text == nullptr) return {0, 0, world_size, 1};
  std::vector<int> values;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    int v = 0;
    if (absl::SimpleAtoi(piece, &v)) values.push_back(v);
  }
  return values.size() == 4 ? parallel::Layout{values[0], values[1], values[2], values[3]}
                            : parallel::Layout{0, 0, world_size, 1};
}

inline parallel::Mapping WorldMapping() {
  int world = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  auto mapping = parallel::Mapping::Create(world, rank, TestLayout(world));
  if (!mapping.ok()) {
    std::fprintf(stderr, "bad IXC_TEST_LAYOUT: %s\n", std::string(mapping.status().message()).c_str());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return *mapping;
}

}  // namespace ixc::testing

#define IXC_MPI_TEST_MAIN()                                                                  \
  int main(int argc, char** argv) {                                                          \
    MPI_Init(&argc, &argv);                                                                  \
    int rank = 0;                                                                            \
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);                                                    \
    ::testing::InitGoogleTest(&argc, argv);                                                  \
    if (rank != 0) {                                                                         \
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();                     \
      delete listeners.Release(listeners.default_result_printer());                          \
    }                                                                                        \
    int failed = RUN_ALL_TESTS() != 0 ? 1 : 0, any_failed = 0;                               \
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);                \
    if (failed) std::fprintf(stderr, "rank %d: tests failed\n", rank);                       \
    MPI_Finalize();                                                                          \
    return any_failed;                                                                       \
  }
