// File: model/cuda/device_resources.h
//
// What every model on the GPU holds (the language model, the vision tower):
//   GpuRuntime   the device it runs on (probed, with a clear message where there is none), its stream, the cuBLASLt
//                GEMM and the multiprocessor count
//   DeviceArena  allocations made once and freed together: the weights, converted to the 16-bit GEMM dtype on the
//                host as they are uploaded, and pools
//   GrowingBuffer  scratch that grows to the largest request seen (the first long prompt or big image sizes it)
//   NewDeviceFloats  an owned f32 buffer (model/floats.h) for the vision handoff over NCCL
//   CopyToDeviceNow  a host-to-device copy that has landed when it returns
//
//   IXC_ASSIGN_OR_RETURN(std::unique_ptr<GpuRuntime> gpu, GpuRuntime::Create(/*device=*/0));
//   IXC_ASSIGN_OR_RETURN(void* w, arena.UploadMatrix(view, DType::kBF16));
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "core/tensor_view.h"
#include "kernels/cuda/gemm.h"
#include "model/floats.h"

namespace ixc::model {

// Buffers carved out of one allocation start at 256-byte boundaries.
inline int64_t AlignUp(int64_t bytes) { return (bytes + 255) / 256 * 256; }

struct GpuRuntime {
  // Fails with the runtime's reason where no GPU is usable, or where `device` is not one of them. `tune_gemms`: the
  // GEMM's tuning (kernels/cuda/gemm.h), which holds a timing scratch; the vision tower, whose GEMMs all have
  // thousands of rows, goes without.
  static absl::StatusOr<std::unique_ptr<GpuRuntime>> Create(int device,
                                                            bool tune_gemms = kernels::cuda::GemmTuningRequested());
  ~GpuRuntime();

  int device = 0;
  int num_sms = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<kernels::cuda::Gemm> gemm;
};

class DeviceArena {
 public:
  DeviceArena() = default;
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  absl::StatusOr<void*> Allocate(int64_t bytes);
  // `view` (rows, cols), any checkpoint dtype, as `dtype` (rows, padded_cols) with zeros past cols (padded_cols 0:
  // cols). Null for an empty view.
  absl::StatusOr<void*> UploadMatrix(TensorView view, DType dtype, int64_t padded_cols = 0);
  // Two-dimensional views side by side as one `dtype` matrix: along rows (axis 0; every view (rows_i, cols), one
  // cols) or along columns (axis 1; every view (rows, cols_i), one rows). Empty views are left out; null if all are.
  absl::StatusOr<void*> UploadConcatenated(const std::vector<TensorView>& views, DType dtype, int axis);
  // f32 values as they are; null for none.
  absl::StatusOr<float*> UploadFloats(const std::vector<float>& values);
  int64_t bytes() const { return bytes_; }

 private:
  // `bytes` of host data in a new allocation, landed when it returns.
  absl::StatusOr<void*> Upload(const void* data, int64_t bytes);

  std::vector<void*> allocations_;
  int64_t bytes_ = 0;
};

// dst (device) <- src (host), finished when it returns. A plain cudaMemcpy from pageable memory may return while
// its DMA is still in flight, and a non-blocking stream (the forward's, NCCL's) is not ordered after it.
absl::Status CopyToDeviceNow(void* dst, const void* src, int64_t bytes, cudaStream_t stream);

class GrowingBuffer {
 public:
  GrowingBuffer() = default;
  ~GrowingBuffer();
  GrowingBuffer(const GrowingBuffer&) = delete;
  GrowingBuffer& operator=(const GrowingBuffer&) = delete;

  // At least `bytes`; a larger allocation waits for `stream` before the old one is freed. `what` names the buffer
  // in the error when the device is out of memory.
  absl::Status Reserve(int64_t bytes, cudaStream_t stream, const char* what);
  void* data() const { return data_; }
  int64_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  int64_t bytes_ = 0;
};

// `count` zeroed floats on CUDA device `device`, freed with the last copy of the Floats.
absl::StatusOr<Floats> NewDeviceFloats(int64_t count, int device);

// dst <- src, `count` floats, each in host memory or on a GPU (unified addressing tells which); returns when done.
absl::Status CopyFloatsAnywhere(float* dst, const float* src, int64_t count);

}  // namespace ixc::model
