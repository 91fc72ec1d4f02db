// The resampling of a call whose samples are all separable (crops, resizes, flips), as a CUDA block
// does it: one block per tile of kTileHeight x kTileWidth output pixels of one sample. The block
// filters each source row its tile reads once, into shared memory (the first pass of separable
// resampling), then combines those rows for each output pixel (the second pass), where the
// per-pixel path (warp_pixel) filters every tap row again for every output pixel. The CPU pass
// works the same way, a sample at a time (fused_cpu.cpp).
//
// The block's steps are loops of one thread (`tid`) over its share of the work, run one after the
// other with a barrier between them (resample_tile): fused_cuda.cu runs them with __syncthreads(),
// fused_pixelwise.cpp on the CPU thread after thread, so that CI tests the code the GPU runs.
#pragma once

#include <climits>

#include "fused_view.h"

namespace gpuaug {

constexpr int kTileWidth = 32, kTileHeight = 16, kTileThreads = 256;
// The most source rows a tile filters into shared memory; a tile that reads more (a sample shrunk
// about 4x or more) resamples each output pixel through warp_pixel instead.
constexpr int kTileRows = 64;

// A block's shared memory.
struct TileShared {
  float rows[kTileRows][kMaxChannels][kTileWidth];  // source row lo + r filtered for tile column jj
  int lo, hi;  // the source rows that the tile's row taps of nonzero weight read (hi < lo: none)
  GA_HD bool fits() const { return hi < lo || hi - lo < kTileRows; }
};

// The tile of sample b whose first output pixel is (i0, j0).
struct Tile {
  int b, i0, j0;
  GA_HD int height(const FusedView& f) const { return f.out_h - i0 < kTileHeight ? f.out_h - i0 : kTileHeight; }
  GA_HD int width(const FusedView& f) const { return f.out_w - j0 < kTileWidth ? f.out_w - j0 : kTileWidth; }
};

GA_HD void shared_min(int* target, int value) {
#ifdef __CUDA_ARCH__
  atomicMin(target, value);
#else
  *target = value < *target ? value : *target;
#endif
}

GA_HD void shared_max(int* target, int value) {
#ifdef __CUDA_ARCH__
  atomicMax(target, value);
#else
  *target = value > *target ? value : *target;
#endif
}

// Step 1: the row range [lo, hi] of the tile's taps of nonzero weight (s.lo and s.hi start at
// INT_MAX and -1).
GA_HD void tile_row_range(const FusedView& f, const Tile& t, TileShared& s, int tid) {
  const int taps = t.height(f) * f.ky;
  for (int k = tid; k < taps; k += kTileThreads) {
    const int i = t.i0 + k / f.ky, a = k % f.ky;
    if (f.row_weights(t.b, i)[a] == 0.0f) continue;
    const int row = f.row_taps(t.b, i)[a];
    shared_min(&s.lo, row);
    shared_max(&s.hi, row);
  }
}

// Step 2: rows lo..hi filtered along x for each column of the tile (filter_source_row), where they fit.
template <typename T>
GA_HD void tile_filter_rows(const FusedView& f, const T* images, const Tile& t, TileShared& s, int tid) {
  if (s.hi < s.lo || !s.fits()) return;  // (hi < lo: the tile reads no row)
  const SourceImage<T> img = f.source(images, t.b);
  const int rows = s.hi - s.lo + 1, width = t.width(f);
  for (int k = tid; k < rows * kTileWidth; k += kTileThreads) {
    const int r = k / kTileWidth, jj = k % kTileWidth;
    if (jj >= width) continue;
    float v[kMaxChannels];
    filter_source_row(img, f.channels_in, s.lo + r, f.column_taps(t.b, t.j0 + jj), f.column_weights(t.b, t.j0 + jj),
                      f.kx, f.warp_rounding > 0, v);
    GA_UNROLL
    for (int c = 0; c < kMaxChannels; ++c) s.rows[r][c][jj] = v[c];
  }
}

// Step 3: visit(i, j, v) for each output pixel (i, j) of the tile with its resampled values v, the
// rows combined along y in sample_separable's order of additions (the same bits as warp_pixel).
template <typename T, typename Visit>
GA_HD void tile_pixels(const FusedView& f, const T* images, const Tile& t, const TileShared& s, int tid, Visit&& visit) {
  const bool fits = s.fits();
  const int height = t.height(f), width = t.width(f);
  for (int k = tid; k < kTileHeight * kTileWidth; k += kTileThreads) {
    const int ii = k / kTileWidth, jj = k % kTileWidth;
    if (ii >= height || jj >= width) continue;
    const int i = t.i0 + ii, j = t.j0 + jj;
    float v[kMaxChannels] = {0.0f, 0.0f, 0.0f};
    if (fits) {
      const int* ty = f.row_taps(t.b, i);
      const float* wy = f.row_weights(t.b, i);
      for (int a = 0; a < f.ky; ++a) {
        if (wy[a] == 0.0f) continue;  // (its row may lie outside lo..hi)
        const int r = ty[a] - s.lo;
        GA_UNROLL
        for (int c = 0; c < kMaxChannels; ++c) v[c] += wy[a] * s.rows[r][c][jj];
      }
      add_separable_fill(f, t.b, i, j, v);
      round_warp(f, true, v);
    } else {
      warp_pixel<true>(f, images, t.b, i, j, v);
    }
    visit(i, j, v);
  }
}

// The tile's steps: each_thread(step) runs step(tid) for every thread of the block, then waits for
// them all (a barrier).
template <typename T, typename EachThread, typename Visit>
GA_HD void resample_tile(const FusedView& f, const T* images, const Tile& t, TileShared& s, EachThread&& each_thread,
                         Visit&& visit) {
  each_thread([&](int tid) {
    if (tid == 0) {
      s.lo = INT_MAX;
      s.hi = -1;
    }
  });
  each_thread([&](int tid) { tile_row_range(f, t, s, tid); });
  each_thread([&](int tid) { tile_filter_rows(f, images, t, s, tid); });
  each_thread([&](int tid) { tile_pixels(f, images, t, s, tid, visit); });
}

}  // namespace gpuaug
