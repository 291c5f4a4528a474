// File: kernels/cuda/cuda_check.h
//
// IXC_CUDA_RETURN_IF_ERROR(expr): turns a failing CUDA runtime call into an absl::InternalError that names the
// expression, the CUDA error and file:line. It returns; it never aborts.
#pragma once

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#define IXC_CUDA_RETURN_IF_ERROR(expr)                                                                         \
  do {                                                                                                         \
    const cudaError_t ixc_cuda_error_ = (expr);                                                                \
    if (ixc_cuda_error_ != cudaSuccess) {                                                                      \
      return ::absl::InternalError(::absl::StrCat(#expr, " failed: ", cudaGetErrorName(ixc_cuda_error_), " (", \
                                                  cudaGetErrorString(ixc_cuda_error_), ") at ", __FILE__, ":",  \
                                                  __LINE__));                                                  \
    }                                                                                                          \
  } while (false)
