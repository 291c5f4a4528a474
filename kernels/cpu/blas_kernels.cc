#include "kernels/cpu/blas_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ixc::kernels {

std::optional<std::string> BetterBlasCore(std::string_view corename, bool avx512f, bool avx2) {
  if (corename != "Prescott") return std::nullopt;
  if (avx512f) return "SkylakeX";
  if (avx2) return "Haswell";
  return std::nullopt;
}

void RestartForBetterBlasKernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const std::optional<std::string> core =
      BetterBlasCore(openblas_get_corename(), __builtin_cpu_supports("avx512f"), __builtin_cpu_supports("avx2"));
  if (!core) return;
  setenv("OPENBLAS_CORETYPE", core->c_str(), /*overwrite=*/1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "OpenBLAS runs its Prescott kernels on this CPU and restarting with OPENBLAS_CORETYPE=%s "
               "failed (%s): GEMMs run at a fraction of this CPU's speed\n", core->c_str(), std::strerror(errno));
}

}  // namespace ixc::kernels
