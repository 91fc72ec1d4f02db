// The fused pass on CUDA, in one launch on the current stream (one per 65,535 samples: the grid's
// z limit). A call whose samples are all separable runs a block per tile (tile.h); any other call
// a thread per output pixel. Each thread computes every channel of its pixels: resample, colour
// program, final write. Contrast sums come first, from one reduction launch per contrast op a
// sample may hold. No host synchronisation: CUDA-graph capturable.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "fused.h"
#include "fused_view.h"
#include "tile.h"

namespace gpuaug {

namespace {

constexpr int kBlockX = 32, kBlockY = 8;
constexpr int64_t kMaxGridYZ = 65535;

// Runs a tile's step on this thread, then waits for the block (resample_tile's each_thread).
struct EachThread {
  template <typename Step>
  __device__ void operator()(Step&& step) const {
    step(static_cast<int>(threadIdx.x));
    __syncthreads();
  }
};

static_assert(kTileThreads % 32 == 0 && kBlockX * kBlockY % 32 == 0, "add_block_sum needs whole warps");

// *target += the sum of `value` over the block's threads (one atomic addition per block). Every
// thread of the block calls it, once per kernel (thread 0 reads warp_sums after the barrier while
// lane 0 of each warp would write it again).
__device__ void add_block_sum(double value, double* target) {
  constexpr int kMaxWarps = 32;
  __shared__ double warp_sums[kMaxWarps];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xFFFFFFFFu, value, offset);
  const int thread = threadIdx.y * blockDim.x + threadIdx.x, warps = blockDim.x * blockDim.y / 32;
  if (thread % 32 == 0) warp_sums[thread / 32] = value;
  __syncthreads();
  if (thread == 0) {
    double total = 0.0;
    for (int w = 0; w < warps; ++w) total += warp_sums[w];
    atomicAdd(target, total);
  }
}

// Samples [first, first + gridDim.z) of the batch, a thread per output pixel.
template <typename T, typename O>
__global__ void fused_kernel(const FusedView f, const T* __restrict__ images, O* __restrict__ out, int first) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  const int b = first + static_cast<int>(blockIdx.z);
  if (j >= f.out_w || i >= f.out_h) return;
  float v[kMaxChannels] = {0.0f, 0.0f, 0.0f};
  warp_pixel<false>(f, images, b, i, j, v);
  finish_pixel(f, b, i, j, v, out);
}

// sums[b, slot] += the contrast gray of every pixel of sample b, at the slot of its contrast op
// number `ordinal`.
template <typename T>
__global__ void contrast_kernel(const FusedView f, const T* __restrict__ images, int ordinal, double* sums, int first) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
  const int b = first + static_cast<int>(blockIdx.z);
  const int slot = f.contrast_slot(b, ordinal);
  if (slot < 0) return;  // the same for the whole block
  double gray = 0.0;
  if (j < f.out_w && i < f.out_h) {
    float v[kMaxChannels] = {0.0f, 0.0f, 0.0f};
    warp_pixel<false>(f, images, b, i, j, v);
    gray = contrast_term(f, b, i, j, slot, v);
  }
  add_block_sum(gray, sums + static_cast<int64_t>(b) * f.slots + slot);
}

// The tile of this block (blockIdx.x: tile column, y: tile row, z: sample - first).
__device__ Tile block_tile(int first) {
  return Tile{first + static_cast<int>(blockIdx.z), static_cast<int>(blockIdx.y) * kTileHeight,
              static_cast<int>(blockIdx.x) * kTileWidth};
}

// fused_kernel for calls whose samples are all separable: a block per tile.
template <typename T, typename O>
__global__ void __launch_bounds__(kTileThreads)
    separable_kernel(const FusedView f, const T* __restrict__ images, O* __restrict__ out, int first) {
  __shared__ TileShared s;
  const Tile t = block_tile(first);
  resample_tile(f, images, t, s, EachThread(), [&](int i, int j, float* v) { finish_pixel(f, t.b, i, j, v, out); });
}

// contrast_kernel for calls whose samples are all separable: a block per tile.
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    separable_contrast_kernel(const FusedView f, const T* __restrict__ images, int ordinal, double* sums, int first) {
  __shared__ TileShared s;
  const Tile t = block_tile(first);
  const int slot = f.contrast_slot(t.b, ordinal);
  if (slot < 0) return;  // the same for the whole block
  double gray = 0.0;
  resample_tile(f, images, t, s, EachThread(), [&](int i, int j, float* v) { gray += contrast_term(f, t.b, i, j, slot, v); });
  add_block_sum(gray, sums + static_cast<int64_t>(t.b) * f.slots + slot);
}

// A launch's shape: the grid of samples [first, first + count) and the block.
struct Launch {
  dim3 grid, block;
};

Launch launch_for(const FusedArgs& a, int64_t count) {
  const int64_t tile_w = a.all_separable ? kTileWidth : kBlockX, tile_h = a.all_separable ? kTileHeight : kBlockY;
  TORCH_CHECK((a.out_height + tile_h - 1) / tile_h <= kMaxGridYZ, "fused_augment: CUDA outputs are limited to ",
              kMaxGridYZ * tile_h, " rows, got ", a.out_height);
  const dim3 grid(static_cast<unsigned>((a.out_width + tile_w - 1) / tile_w),
                  static_cast<unsigned>((a.out_height + tile_h - 1) / tile_h), static_cast<unsigned>(count));
  return a.all_separable ? Launch{grid, dim3(kTileThreads)} : Launch{grid, dim3(kBlockX, kBlockY)};
}

// f(first, launch) for each part of the batch that one launch's grid holds.
template <typename F>
void for_each_launch(const FusedArgs& a, F&& f) {
  const int64_t batch = a.images.size(0);
  for (int64_t first = 0; first < batch; first += kMaxGridYZ)
    f(static_cast<int>(first), launch_for(a, std::min(kMaxGridYZ, batch - first)));
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
      const T* images = a.images.data_ptr<T>();
      for_each_launch(a, [&](int first, Launch l) {
        if (a.all_separable) {
          separable_contrast_kernel<T><<<l.grid, l.block, 0, stream>>>(f, images, ordinal, sums.data_ptr<double>(), first);
        } else {
          contrast_kernel<T><<<l.grid, l.block, 0, stream>>>(f, images, ordinal, sums.data_ptr<double>(), first);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
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
    const T* images = a.images.data_ptr<T>();
    AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, out.scalar_type(), "gpuaug_fused_cuda", [&] {
      for_each_launch(a, [&](int first, Launch l) {
        if (a.all_separable) {
          separable_kernel<T, scalar_t><<<l.grid, l.block, 0, stream>>>(f, images, out.data_ptr<scalar_t>(), first);
        } else {
          fused_kernel<T, scalar_t><<<l.grid, l.block, 0, stream>>>(f, images, out.data_ptr<scalar_t>(), first);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
}

}  // namespace gpuaug
