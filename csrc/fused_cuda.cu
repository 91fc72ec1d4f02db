// The fused pass on CUDA: one thread per output pixel computes every channel (resample, colour
// program, final write) in one launch on the current stream (one per 65,535 samples: the grid's
// z limit). Contrast sums come first, from one reduction launch per contrast op a sample may hold.
// No host synchronisation: CUDA-graph capturable.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "fused.h"
#include "fused_view.h"

namespace gpuaug {

namespace {

constexpr int kBlockX = 32, kBlockY = 8;
constexpr int64_t kMaxGridYZ = 65535;

// Samples [first, first + gridDim.z) of the batch.
template <bool AllSeparable, typename T, typename O>
__global__ void fused_kernel(const FusedView f, const T* __restrict__ images, O* __restrict__ out, int first) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  const int b = first + static_cast<int>(blockIdx.z);
  if (j < f.out_w && i < f.out_h) write_pixel<AllSeparable>(f, images, b, i, j, out);
}

// sums[b, slot] += the contrast gray of every pixel of sample b, at the slot of its contrast op
// number `ordinal`.
template <bool AllSeparable, typename T>
__global__ void contrast_kernel(const FusedView f, const T* __restrict__ images, int ordinal, double* sums, int first) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  const int b = first + static_cast<int>(blockIdx.z);
  const int slot = f.contrast_slot(b, ordinal);
  if (slot < 0) return;  // the same for the whole block
  double gray = j < f.out_w && i < f.out_h ? contrast_term<AllSeparable>(f, images, b, i, j, slot) : 0.0;
  for (int offset = 16; offset > 0; offset /= 2) gray += __shfl_down_sync(0xFFFFFFFFu, gray, offset);
  __shared__ double warp_sums[kBlockX * kBlockY / 32];
  const int lane = (threadIdx.y * blockDim.x + threadIdx.x) % 32, warp = (threadIdx.y * blockDim.x + threadIdx.x) / 32;
  if (lane == 0) warp_sums[warp] = gray;
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    double total = 0.0;
    for (int w = 0; w < kBlockX * kBlockY / 32; ++w) total += warp_sums[w];
    atomicAdd(sums + static_cast<int64_t>(b) * f.slots + slot, total);
  }
}

// The grid of samples [first, first + count).
dim3 grid_for(const FusedArgs& a, int64_t count) {
  TORCH_CHECK((a.out_height + kBlockY - 1) / kBlockY <= kMaxGridYZ, "fused_augment: CUDA outputs are limited to ",
              kMaxGridYZ * kBlockY, " rows, got ", a.out_height);
  return dim3(static_cast<unsigned>((a.out_width + kBlockX - 1) / kBlockX),
              static_cast<unsigned>((a.out_height + kBlockY - 1) / kBlockY), static_cast<unsigned>(count));
}

// f(first, count) for each part of the batch that one launch's grid holds.
template <typename F>
void for_each_launch(const FusedArgs& a, F&& f) {
  const int64_t batch = a.images.size(0);
  for (int64_t first = 0; first < batch; first += kMaxGridYZ) f(static_cast<int>(first), std::min(kMaxGridYZ, batch - first));
}

}  // namespace

void contrast_sums_cuda(const FusedArgs& a, at::Tensor& sums) {
  const c10::cuda::CUDAGuard guard(a.images.device());
  const auto stream = at::cuda::getCurrentCUDAStream();
  if (a.images.is_floating_point())  // atomic float64 additions of float pixels: their order can move a mean by an ulp
    at::globalContext().alertNotDeterministic("gpuaug::fused_augment with contrast on float CUDA images");
  const FusedView f = make_view(a, sums, nullptr);
  for (int ordinal = 0; ordinal < a.contrast_passes; ++ordinal) {  // in order: a contrast needs the earlier means
    dispatch_input(a.images, [&](auto tag) {
      using T = decltype(tag);
      dispatch_bool(a.all_separable, [&](auto separable) {
        for_each_launch(a, [&](int first, int64_t count) {
          contrast_kernel<decltype(separable)::value, T><<<grid_for(a, count), dim3(kBlockX, kBlockY), 0, stream>>>(
              f, a.images.data_ptr<T>(), ordinal, sums.data_ptr<double>(), first);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
    });
  }
}

void fused_cuda(const FusedArgs& a, const at::Tensor& sums, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(a.images.device());
  const auto stream = at::cuda::getCurrentCUDAStream();
  const FusedView f = make_view(a, sums, &out);
  dispatch_input(a.images, [&](auto tag) {
    using T = decltype(tag);
    AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, out.scalar_type(), "gpuaug_fused_cuda", [&] {
      dispatch_bool(a.all_separable, [&](auto separable) {
        for_each_launch(a, [&](int first, int64_t count) {
          fused_kernel<decltype(separable)::value, T, scalar_t><<<grid_for(a, count), dim3(kBlockX, kBlockY), 0, stream>>>(
              f, a.images.data_ptr<T>(), out.data_ptr<scalar_t>(), first);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
    });
  });
}

}  // namespace gpuaug
