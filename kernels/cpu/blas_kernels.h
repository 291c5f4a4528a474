// OpenBLAS picks its kernels by the CPU's model number when the library loads. Debian 12's (0.3.21) does not know the
// models newer than it (Sapphire and Emerald Rapids among them) and falls back to its Prescott (SSE3) kernels: sgemm
// at a third to a quarter of what the same cores reach with its SkylakeX kernels. OPENBLAS_CORETYPE chooses instead,
// but only before the library loads, so a program that finds the fallback runs itself again with it set.
#ifndef IXC_KERNELS_CPU_BLAS_KERNELS_H_
#define IXC_KERNELS_CPU_BLAS_KERNELS_H_

#include <optional>
#include <string>
#include <string_view>

namespace ixc::kernels {

// The OPENBLAS_CORETYPE for a CPU with these features where OpenBLAS chose `corename`: the kernels of the newest x86
// it knows that the CPU runs, where it fell back to Prescott's; none where its own choice stands.
std::optional<std::string> BetterBlasCore(std::string_view corename, bool avx512f, bool avx2);

// Runs this program again (same pid, arguments and environment) with OPENBLAS_CORETYPE set, where BetterBlasCore
// names one and the user has not set the variable. First thing in main: before MPI, threads or files start. Returns
// where there is nothing to do (or exec fails, which it says).
void RestartForBetterBlasKernels(char** argv);

}  // namespace ixc::kernels

#endif  // IXC_KERNELS_CPU_BLAS_KERNELS_H_
