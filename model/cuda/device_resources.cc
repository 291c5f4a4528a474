#include "model/cuda/device_resources.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"

namespace ixc::model {
namespace {

absl::Status OutOfMemory(int64_t bytes, const char* what, cudaError_t error) {
  return absl::ResourceExhaustedError(
      absl::StrCat("cudaMalloc of ", bytes, " bytes for ", what, " failed: ", cudaGetErrorString(error)));
}

// `view` (rows, cols) as `dtype` (rows, padded_cols) bytes, converted on the host a row block at a time.
std::vector<uint8_t> ConvertTo(TensorView view, DType dtype, int64_t padded_cols) {
  const int64_t cols = view.rank == 0 ? 1 : view.dim(-1);
  const int64_t rows = view.numel() / cols;
  const int64_t out_size = DTypeSize(dtype), in_size = DTypeSize(view.dtype);
  std::vector<uint8_t> bytes(rows * padded_cols * out_size, 0);
  const auto* in = static_cast<const uint8_t*>(view.data);
  if (view.dtype == dtype) {
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(bytes.data() + r * padded_cols * out_size, in + r * cols * in_size, cols * in_size);
    }
    return bytes;
  }
  std::vector<float> wide(cols);
  for (int64_t r = 0; r < rows; ++r) {
    ConvertToF32(view.dtype, in + r * cols * in_size, wide.data(), cols);
    uint8_t* out = bytes.data() + r * padded_cols * out_size;
    if (dtype == DType::kF32) {
      std::memcpy(out, wide.data(), cols * 4);
      continue;
    }
    for (int64_t c = 0; c < cols; ++c) {
      const uint16_t half = dtype == DType::kBF16 ? F32ToBf16(wide[c]) : F32ToF16(wide[c]);
      std::memcpy(out + c * 2, &half, 2);
    }
  }
  return bytes;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GpuRuntime>> GpuRuntime::Create(int device, bool tune_gemms) {
  IXC_ASSIGN_OR_RETURN(kernels::cuda::DeviceInfo info, kernels::cuda::ProbeCudaDevice());
  if (device < 0 || device >= info.count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " does not exist (", info.count, " visible)"));
  }
  auto runtime = std::make_unique<GpuRuntime>();
  runtime->device = device;
  IXC_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  IXC_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&runtime->num_sms, cudaDevAttrMultiProcessorCount, device));
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&runtime->stream, cudaStreamNonBlocking));
  IXC_ASSIGN_OR_RETURN(runtime->gemm,
                       kernels::cuda::Gemm::Create(kernels::cuda::Gemm::kDefaultWorkspaceBytes, tune_gemms));
  return runtime;
}

GpuRuntime::~GpuRuntime() {
  if (stream != nullptr) cudaStreamSynchronize(stream);
  gemm.reset();
  if (stream != nullptr) cudaStreamDestroy(stream);
}

DeviceArena::~DeviceArena() {
  for (void* p : allocations_) cudaFree(p);
}

absl::StatusOr<void*> DeviceArena::Allocate(int64_t bytes) {
  void* p = nullptr;
  const cudaError_t error = cudaMalloc(&p, std::max<int64_t>(bytes, 1));
  if (error != cudaSuccess) return OutOfMemory(bytes, "weights or pools", error);
  allocations_.push_back(p);
  bytes_ += bytes;
  return p;
}

absl::StatusOr<void*> DeviceArena::Upload(const void* data, int64_t bytes) {
  IXC_ASSIGN_OR_RETURN(void* p, Allocate(bytes));
  IXC_RETURN_IF_ERROR(CopyToDeviceNow(p, data, bytes, nullptr));
  return p;
}

absl::StatusOr<void*> DeviceArena::UploadMatrix(TensorView view, DType dtype, int64_t padded_cols) {
  if (view.empty()) return nullptr;
  const int64_t cols = view.rank == 0 ? 1 : view.dim(-1);
  const std::vector<uint8_t> bytes = ConvertTo(view, dtype, std::max(padded_cols, cols));
  return Upload(bytes.data(), static_cast<int64_t>(bytes.size()));
}

absl::StatusOr<void*> DeviceArena::UploadConcatenated(const std::vector<TensorView>& views, DType dtype, int axis) {
  std::vector<TensorView> parts;
  for (const TensorView& view : views) {
    if (view.empty()) continue;
    if (view.rank != 2 || (!parts.empty() && view.dim(1 - axis) != parts[0].dim(1 - axis))) {
      return absl::InvalidArgumentError(absl::StrCat("UploadConcatenated: views of unequal ",
                                                     axis == 0 ? "widths" : "heights", " along axis ", axis));
    }
    parts.push_back(view);
  }
  if (parts.empty()) return nullptr;
  const int64_t e = DTypeSize(dtype), rows = axis == 0 ? 0 : parts[0].dim(0), cols = axis == 1 ? 0 : parts[0].dim(1);
  int64_t total_rows = rows, total_cols = cols;
  for (const TensorView& part : parts) (axis == 0 ? total_rows : total_cols) += part.dim(axis);
  std::vector<uint8_t> bytes(total_rows * total_cols * e);
  int64_t at = 0;  // the next part's first row (axis 0) or column (axis 1)
  for (const TensorView& part : parts) {
    const std::vector<uint8_t> converted = ConvertTo(part, dtype, part.dim(1));
    const int64_t part_rows = part.dim(0), row_bytes = part.dim(1) * e;
    for (int64_t r = 0; r < part_rows; ++r) {
      const int64_t to = axis == 0 ? (at + r) * total_cols * e : r * total_cols * e + at * e;
      std::memcpy(bytes.data() + to, converted.data() + r * row_bytes, row_bytes);
    }
    at += part.dim(axis);
  }
  return Upload(bytes.data(), static_cast<int64_t>(bytes.size()));
}

absl::StatusOr<float*> DeviceArena::UploadFloats(const std::vector<float>& values) {
  if (values.empty()) return nullptr;
  IXC_ASSIGN_OR_RETURN(void* p, Upload(values.data(), static_cast<int64_t>(values.size()) * 4));
  return static_cast<float*>(p);
}

absl::Status CopyToDeviceNow(void* dst, const void* src, int64_t bytes, cudaStream_t stream) {
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

GrowingBuffer::~GrowingBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

absl::Status GrowingBuffer::Reserve(int64_t bytes, cudaStream_t stream, const char* what) {
  if (bytes <= bytes_) return absl::OkStatus();
  if (data_ != nullptr) {
    IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // kernels may still read the old one
    cudaFree(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  const cudaError_t error = cudaMalloc(&data_, bytes);
  if (error != cudaSuccess) {
    data_ = nullptr;
    return OutOfMemory(bytes, what, error);
  }
  bytes_ = bytes;
  return absl::OkStatus();
}

absl::StatusOr<Floats> NewDeviceFloats(int64_t count, int device) {
  IXC_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  void* p = nullptr;
  const int64_t bytes = std::max<int64_t>(count, 1) * 4;
  if (const cudaError_t error = cudaMalloc(&p, bytes); error != cudaSuccess) {
    return OutOfMemory(bytes, "image rows of the vision handoff", error);
  }
  std::shared_ptr<float> owned(static_cast<float*>(p), [](float* q) { cudaFree(q); });
  IXC_CUDA_RETURN_IF_ERROR(cudaMemset(p, 0, bytes));
  return Floats(std::move(owned), count);
}

absl::Status CopyFloatsAnywhere(float* dst, const float* src, int64_t count) {
  if (count > 0) IXC_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, src, count * 4, cudaMemcpyDefault));
  return absl::OkStatus();
}

}  // namespace ixc::model
