// The CUDA kernels' per-pixel path run on the CPU, as the op gpuaug::fused_augment_pixelwise: calls
// whose samples are all separable through the tiles of tile.h (each block's steps run thread after
// thread), the others one output pixel at a time through warp_pixel; then run_program and
// finish_pixel or contrast_term (fused_view.h). CI has no GPU: with this op the tests check the code
// the CUDA kernels run (everything but the launch and the order in which a contrast slot's luma sum
// is added) against the plain-PyTorch backend.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "fused.h"
#include "fused_view.h"
#include "tile.h"

namespace gpuaug {

namespace {

// Runs a tile's step for each thread of a block, one after the other (resample_tile's each_thread);
// every other tile in reverse order, so that a step that reads what another thread writes in the same
// step (a race on the GPU) gives other bits.
struct EachThreadInTurn {
  bool reverse;
  template <typename Step>
  void operator()(Step&& step) const {
    for (int n = 0; n < kTileThreads; ++n) step(reverse ? kTileThreads - 1 - n : n);
  }
};

// Shared memory as a GPU block finds it: garbage (NaN rows, nonsense lo and hi), so that a read of a
// cell that no step wrote shows.
void poison(TileShared& s) {
  std::fill(&s.rows[0][0][0], &s.rows[0][0][0] + sizeof(s.rows) / sizeof(float), NAN);
  s.lo = -7;
  s.hi = 1 << 20;
}

// visit(i, j, v) for every output pixel (i, j) of sample b with its resampled values v, as the CUDA
// kernels resample them.
template <bool AllSeparable, typename T, typename Visit>
void each_pixel(const FusedView& f, const T* images, int b, Visit&& visit) {
  if constexpr (AllSeparable) {
    const auto shared = std::make_unique<TileShared>();
    for (int i0 = 0; i0 < f.out_h; i0 += kTileHeight) {
      for (int j0 = 0; j0 < f.out_w; j0 += kTileWidth) {
        poison(*shared);
        resample_tile(f, images, Tile{b, i0, j0}, *shared, EachThreadInTurn{(i0 / kTileHeight + j0 / kTileWidth) % 2 == 1},
                      visit);
      }
    }
  } else {
    for (int i = 0; i < f.out_h; ++i) {
      for (int j = 0; j < f.out_w; ++j) {
        float v[kMaxChannels] = {0.0f, 0.0f, 0.0f};
        warp_pixel<false>(f, images, b, i, j, v);
        visit(i, j, v);
      }
    }
  }
}

template <bool AllSeparable, typename T>
void pixelwise(const FusedArgs& a, const T* images, at::Tensor& out) {
  const int batch = static_cast<int>(a.images.size(0));
  at::Tensor sums = at::zeros({batch, a.program.size(1)}, a.images.options().dtype(at::kDouble));
  const FusedView stats = make_view(a, sums, nullptr);  // reads the sums that earlier contrast ops wrote
  double* slot_sums = sums.data_ptr<double>();
  for (int ordinal = 0; ordinal < a.contrast_passes; ++ordinal) {  // in order, as contrast_sums_cuda launches them
    at::parallel_for(0, batch, 1, [&](int64_t first, int64_t last) {
      for (int b = static_cast<int>(first); b < last; ++b) {
        const int slot = stats.contrast_slot(b, ordinal);
        if (slot < 0) continue;
        double sum = 0.0;
        each_pixel<AllSeparable>(stats, images, b, [&](int i, int j, float* v) { sum += contrast_term(stats, b, i, j, slot, v); });
        slot_sums[static_cast<int64_t>(b) * stats.slots + slot] = sum;
      }
    });
  }
  const FusedView f = make_view(a, sums, &out);
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, out.scalar_type(), "gpuaug_pixelwise", [&] {
    auto* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, batch, 1, [&](int64_t first, int64_t last) {
      for (int b = static_cast<int>(first); b < last; ++b)
        each_pixel<AllSeparable>(f, images, b, [&](int i, int j, float* v) { finish_pixel(f, b, i, j, v, dst); });
    });
  });
}

}  // namespace

void fused_pixelwise_cpu(const FusedArgs& a, at::Tensor& out) {
  dispatch_input(a.images, [&](auto tag) {
    using T = decltype(tag);
    dispatch_bool(a.all_separable, [&](auto separable) {
      pixelwise<decltype(separable)::value>(a, a.images.data_ptr<T>(), out);
    });
  });
}

}  // namespace gpuaug
