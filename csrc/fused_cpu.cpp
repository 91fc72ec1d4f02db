// The fused pass on the CPU: parallel over (sample, block of output rows); each row is resampled
// into planar float buffers, then every program slot runs over the whole row (a loop compiled
// for that slot's code, which the compiler vectorises), then the row is written.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cstdint>

#include <algorithm>
#include <climits>
#include <vector>

#include "fused.h"
#include "fused_view.h"

namespace gpuaug {

namespace {

constexpr int kRowsPerTask = 16;

// The horizontal pass of a separable warp over the source rows that a block of output rows
// reads: each source row is filtered once (as in sample_separable, in the same order), then every
// output row of the block combines its rows with contiguous, vectorisable loops.
struct RowCache {
  std::vector<float> data;  // (rows, kMaxChannels, out_w)
  std::vector<float> line;  // one source row as float
  std::vector<int> taps;    // (kx, out_w) column taps of the sample
  std::vector<float> weights;
  int first = 0;
  int width = 0;
  float* row(int r, int c) { return data.data() + (static_cast<size_t>(r - first) * kMaxChannels + c) * width; }
  const float* row(int r, int c) const {
    return data.data() + (static_cast<size_t>(r - first) * kMaxChannels + c) * width;
  }
};

template <typename T>
void fill_cache(const FusedView& f, const T* images, int b, int first, int last, RowCache& cache) {
  const int64_t row0 = static_cast<int64_t>(b) * f.out_h;
  int lo = INT_MAX, hi = -1;
  for (int i = first; i < last; ++i) {
    for (int a = 0; a < f.ky; ++a) {
      if (f.weights_y[(row0 + i) * f.ky + a] == 0.0f) continue;
      lo = std::min(lo, f.taps_y[(row0 + i) * f.ky + a]);
      hi = std::max(hi, f.taps_y[(row0 + i) * f.ky + a]);
    }
  }
  cache.first = lo;
  cache.width = f.out_w;
  if (hi < lo) return;
  const SourceImage<T> img{images + b * f.in_sb, f.in_sc, f.in_sh, f.in_sw, f.src_size[2 * b], f.src_size[2 * b + 1]};
  cache.data.resize(static_cast<size_t>(hi - lo + 1) * kMaxChannels * f.out_w);
  cache.line.resize(img.width);
  // the taps as (kx, out_w) so that the inner loops run over output columns (vectorised gathers)
  const int width = f.out_w, kx = f.kx;
  cache.taps.resize(static_cast<size_t>(kx) * width);
  cache.weights.resize(static_cast<size_t>(kx) * width);
  const int* tx = f.taps_x + static_cast<int64_t>(b) * width * kx;
  const float* wx = f.weights_x + static_cast<int64_t>(b) * width * kx;
  for (int j = 0; j < width; ++j) {
    for (int k = 0; k < kx; ++k) {
      cache.taps[k * width + j] = tx[j * kx + k];
      cache.weights[k * width + j] = wx[j * kx + k];
    }
  }
  const bool round_rows = f.warp_rounding > 0;
  float* line = cache.line.data();
  for (int r = lo; r <= hi; ++r) {
    for (int c = 0; c < f.channels_in; ++c) {
      const T* src = img.data + c * img.stride_c + r * img.stride_h;
      if (img.stride_w == 1) {
        for (int x = 0; x < img.width; ++x) line[x] = static_cast<float>(src[x]);
      } else {
        for (int x = 0; x < img.width; ++x) line[x] = static_cast<float>(src[x * img.stride_w]);
      }
      float* dst = cache.row(r, c);
      std::fill(dst, dst + width, 0.0f);
      for (int k = 0; k < kx; ++k) {  // the same order of additions as sample_separable
        const int* t = cache.taps.data() + k * width;
        const float* w = cache.weights.data() + k * width;
        for (int j = 0; j < width; ++j) dst[j] += w[j] * line[t[j]];
      }
      if (round_rows)
        for (int j = 0; j < width; ++j) dst[j] = clampf(nearbyintf(dst[j]), 0.0f, 255.0f);
    }
  }
}

// Output row i of a separable sample from the block's cache (warp_pixel's kSeparable branch).
void separable_row(const FusedView& f, const RowCache& cache, int b, int i, float* rows) {
  const int width = f.out_w;
  const int64_t row = static_cast<int64_t>(b) * f.out_h + i;
  const int* ty = f.taps_y + row * f.ky;
  const float* wy = f.weights_y + row * f.ky;
  for (int c = 0; c < f.channels_in; ++c) {
    float* out = rows + c * width;
    std::fill(out, out + width, 0.0f);
    for (int a = 0; a < f.ky; ++a) {
      if (wy[a] == 0.0f) continue;
      const float w = wy[a];
      const float* src = cache.row(ty[a], c);
      for (int j = 0; j < width; ++j) out[j] += w * src[j];
    }
  }
  if (f.has_fill) {
    const float sy = tap_sum(wy, f.ky);
    const float* wx = f.weights_x + static_cast<int64_t>(b) * width * f.kx;
    for (int j = 0; j < width; ++j) {
      const float outside = 1.0f - sy * tap_sum(wx + j * f.kx, f.kx);
      for (int c = 0; c < f.channels_in; ++c) rows[c * width + j] += outside * f.fill[c];
    }
  }
  if (f.warp_rounding > 0) {
    for (int c = 0; c < f.channels_in; ++c) {
      float* out = rows + c * width;
      for (int j = 0; j < width; ++j) {
        const float v = nearbyintf(out[j]);
        out[j] = f.warp_rounding == 2 ? clampf(v, 0.0f, 255.0f) : v;
      }
    }
  }
}

// Resample output row i of sample b into rows[c * out_w + j] (from `cache` for a separable
// sample) and run program slots [0, stop). Returns the channel count after those slots.
template <typename T>
int compute_row(const FusedView& f, const T* images, const RowCache& cache, int b, int i, int stop, float* rows) {
  const int width = f.out_w;
  if (f.geometry[b] == kSeparable) {
    separable_row(f, cache, b, i, rows);
  } else {
    float v[kMaxChannels];
    for (int j = 0; j < width; ++j) {
      warp_pixel(f, images, b, i, j, v);
      for (int c = 0; c < f.channels_in; ++c) rows[c * width + j] = v[c];
    }
  }
  int channels = f.channels_in;
  for (int s = 0; s < stop; ++s) {
    const float* op = f.op(b, s);
    const uint32_t key = f.key(b, s);
    const float mean = f.mean(b, s);
    const bool integer = op[1] != 0.0f;
    float *r = rows, *g = rows + width, *bl = rows + 2 * width;
    dispatch_code(static_cast<int>(op[0]), [&](auto code) {
      constexpr int kCode = decltype(code)::value;
      for (int j = 0; j < width; ++j)
        apply_code<kCode>(op + 2, integer, r[j], g[j], bl[j], channels, key, mean, f.site(i, j));
    });
    channels = channels_after(op, channels);
  }
  return channels;
}

template <typename O>
void write_row(const FusedView& f, const float* rows, int b, int i, O* out) {
  const int width = f.out_w;
  for (int c = 0; c < f.out_c; ++c) {
    const float scale = f.out_scale[c], shift = f.out_shift[c], mult = f.final_mult;
    O* dst = out + b * f.out_sb + c * f.out_sc + i * f.out_sh;
    const float* src = rows + c * width;
    const int64_t step = f.out_sw;
    auto store = [&](auto value) {  // one loop per final mode, contiguous or strided
      if (step == 1) {
        for (int j = 0; j < width; ++j) dst[j] = static_cast<O>(value(src[j]));
      } else {
        for (int j = 0; j < width; ++j) dst[j * step] = static_cast<O>(value(src[j]));
      }
    };
    if (f.final_mode == kCopy) {
      store([](float v) { return v; });
    } else if (f.final_mode == kScaleShift) {
      store([&](float v) { return final_value(v, scale, shift, kScaleShift, mult); });
    } else {
      store([&](float v) { return final_value(v, scale, shift, kScaleShiftToUint8, mult); });
    }
  }
}

// Run `task(b, first_row, last_row, block, cache, rows)` over every (sample, block of output
// rows) of the samples where `wanted(b)` in parallel; `cache` holds the block's horizontal pass
// when the sample is separable.
template <typename T, typename Wanted, typename Task>
void for_each_block(const FusedView& f, const T* images, int batch, Wanted&& wanted, Task&& task) {
  const int blocks = (f.out_h + kRowsPerTask - 1) / kRowsPerTask;
  at::parallel_for(0, static_cast<int64_t>(batch) * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> rows(static_cast<size_t>(kMaxChannels) * f.out_w);
    RowCache cache;
    for (int64_t t = begin; t < end; ++t) {
      const int b = static_cast<int>(t / blocks), block = static_cast<int>(t % blocks);
      if (!wanted(b)) continue;
      const int first = block * kRowsPerTask, last = std::min(f.out_h, (block + 1) * kRowsPerTask);
      if (f.geometry[b] == kSeparable) fill_cache(f, images, b, first, last, cache);
      task(b, first, last, block, cache, rows.data());
    }
  });
}

}  // namespace

void contrast_means_cpu(const FusedArgs& a, at::Tensor& means) {
  const int batch = static_cast<int>(a.images.size(0));
  const int blocks = (static_cast<int>(a.out_height) + kRowsPerTask - 1) / kRowsPerTask;
  auto acc = means.accessor<float, 2>();
  const double pixels = static_cast<double>(a.out_height) * a.out_width;
  for (const int64_t slot64 : a.contrast_slots) {
    const int slot = static_cast<int>(slot64);
    const FusedView f = make_view(a, means, nullptr);
    std::vector<double> partial(static_cast<size_t>(batch) * blocks, 0.0);
    dispatch_input(a.images, [&](auto tag) {
      const auto* images = a.images.data_ptr<decltype(tag)>();
      const auto has_contrast = [&](int b) { return static_cast<int>(f.op(b, slot)[0]) == kContrast; };
      for_each_block(f, images, batch, has_contrast, [&](int b, int first, int last, int block, const RowCache& cache,
                                                         float* rows) {
        const float* op = f.op(b, slot);
        double sum = 0.0;
        for (int i = first; i < last; ++i) {
          const int channels = compute_row(f, images, cache, b, i, slot, rows);
          for (int j = 0; j < f.out_w; ++j) {
            const float v[kMaxChannels] = {rows[j], rows[f.out_w + j], rows[2 * f.out_w + j]};
            sum += contrast_gray(op, v, channels);
          }
        }
        partial[static_cast<size_t>(b) * blocks + block] = sum;
      });
    });
    for (int b = 0; b < batch; ++b) {
      double sum = 0.0;
      for (int k = 0; k < blocks; ++k) sum += partial[static_cast<size_t>(b) * blocks + k];
      acc[b][slot] = static_cast<float>(sum / pixels);
    }
  }
}

void fused_cpu(const FusedArgs& a, const at::Tensor& means, at::Tensor& out) {
  const FusedView f = make_view(a, means, &out);
  const int batch = static_cast<int>(a.images.size(0));
  dispatch_input(a.images, [&](auto tag) {
    const auto* images = a.images.data_ptr<decltype(tag)>();
    AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, out.scalar_type(), "gpuaug_fused_cpu", [&] {
      auto* dst = out.data_ptr<scalar_t>();
      const auto every = [](int) { return true; };
      for_each_block(f, images, batch, every, [&](int b, int first, int last, int, const RowCache& cache, float* rows) {
        for (int i = first; i < last; ++i) {
          compute_row(f, images, cache, b, i, f.slots, rows);
          write_row(f, rows, b, i, dst);
        }
      });
    });
  });
}

}  // namespace gpuaug
