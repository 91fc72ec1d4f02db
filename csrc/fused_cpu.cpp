// The fused pass on the CPU, one sample at a time (parallel over samples, or over rows within a
// sample when the batch is smaller than the threads). Row by row, an output row is resampled into
// a planar float row buffer, every program slot runs over the row in a loop compiled for that
// slot's code (which the compiler vectorises), and the row is written out: the row stays in the L1
// cache from the resampling to the write. A contrast slot needs the mean of the whole image before
// it: the rows before it are summed as they pass into a buffer the size of the sample's output,
// which is kept, and the rest of the program runs over it in a second pass (one more per later
// contrast slot).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fused.h"
#include "fused_view.h"

namespace gpuaug {

namespace {

constexpr int64_t kRowGrain = 8;

// Working memory: one per thread when threads take whole samples; one shared by the threads that
// split a sample's rows (each writes its own rows).
struct Scratch {
  std::vector<float> image;      // (kMaxChannels, out_h, out_w): the sample being processed
  std::vector<float> rows;       // (source rows, kMaxChannels, out_w): separable horizontal pass
  std::vector<double> row_sums;  // (out_h): luma sums of the rows, for a contrast slot's mean
  std::vector<float> source;     // (channels, height, width): a matrix-mapped sample's input as float
};

// A matrix map's working memory for one output row of `width` pixels: its grid points, then its
// taps tap-major (tap a of pixel j at [a * width + j]: weights, and offsets into a channel plane, in
// 32 bits where every offset fits, which lets the compiler gather pixels a vector at a time, else
// in 64) and the share of each pixel's sample outside the image.
struct MatrixScratch {
  explicit MatrixScratch(int width)
      : ix(width), iy(width), weight(4 * width), outside(width), offset32(4 * width), offset64(4 * width) {}
  std::vector<float> ix, iy, weight, outside;
  std::vector<int32_t> offset32;
  std::vector<int64_t> offset64;
};

// f(std::integral_constant<int, mode>()) for a run-time PaddingMode: a loop compiled for one mode
// has no branches on it, and vectorises.
template <typename F>
void dispatch_padding(int padding, F&& f) {
  switch (padding) {
    case kEdge: f(std::integral_constant<int, kEdge>()); break;
    case kReflect: f(std::integral_constant<int, kReflect>()); break;
    case kSymmetric: f(std::integral_constant<int, kSymmetric>()); break;
    default: f(std::integral_constant<int, kConstant>()); break;
  }
}

// Runs body(first, last) over [0, n), in parallel unless the caller already is.
template <typename Body>
void for_rows(bool parallel, int64_t n, Body&& body) {
  if (parallel) {
    at::parallel_for(0, n, kRowGrain, body);
  } else {
    body(0, n);
  }
}

// n values of an input row (elements `stride` apart) as float; the contiguous case as its own loop,
// which the compiler vectorises.
template <typename T>
void load_row(const T* src, int64_t stride, int n, float* dst) {
  if (stride == 1) {
    for (int x = 0; x < n; ++x) dst[x] = static_cast<float>(src[x]);
  } else {
    for (int x = 0; x < n; ++x) dst[x] = static_cast<float>(src[x * stride]);
  }
}

// The taps of the sample's columns that carry weight: one past the last tap of any column with a
// nonzero weight (an upscaled sample's last tap is zero everywhere; the batch's tap count is its
// widest sample's).
int used_taps(const float* w, int width, int k) {
  int used = 0;
  for (int j = 0; j < width; ++j)
    for (int t = used; t < k; ++t)
      if (w[j * k + t] != 0.0f) used = t + 1;
  return used;
}

// One source row filtered along x: dst[c][j] = sum over the column's taps of weight * lines[c][tap],
// added in tap order (as filter_source_row), the K taps of a column read once for all C channels; a
// tap of weight 0 adds nothing (an inf pixel there must not become NaN).
// The taps are (width, k) and the first `used` of each column carry weight (K = used, or 0 for any).
template <int C, int K>
void filter_row(const float* lines, int line_width, const int* taps, const float* weights, int k, int used,
                int width, float* dst, int64_t dst_stride_c) {
  const int count = K > 0 ? K : used;
  for (int j = 0; j < width; ++j) {
    const int* t = taps + j * k;
    const float* w = weights + j * k;
    float acc[C] = {};
    for (int a = 0; a < count; ++a) {
      if (w[a] == 0.0f) continue;
      for (int c = 0; c < C; ++c) acc[c] += w[a] * lines[c * line_width + t[a]];
    }
    for (int c = 0; c < C; ++c) dst[c * dst_stride_c + j] = acc[c];
  }
}

// filter_row for the run-time channel count and used tap count, compiled for the common ones.
void filter_row_any(int channels, int used, const float* lines, int line_width, const int* taps,
                    const float* weights, int k, int width, float* dst, int64_t dst_stride_c) {
  auto with_taps = [&](auto c) {
    constexpr int C = decltype(c)::value;
    switch (used) {
      case 1: filter_row<C, 1>(lines, line_width, taps, weights, k, used, width, dst, dst_stride_c); break;
      case 2: filter_row<C, 2>(lines, line_width, taps, weights, k, used, width, dst, dst_stride_c); break;
      case 3: filter_row<C, 3>(lines, line_width, taps, weights, k, used, width, dst, dst_stride_c); break;
      case 4: filter_row<C, 4>(lines, line_width, taps, weights, k, used, width, dst, dst_stride_c); break;
      default: filter_row<C, 0>(lines, line_width, taps, weights, k, used, width, dst, dst_stride_c);
    }
  };
  dispatch_channels(channels, with_taps);
}

// Separable resampling, first half: every source row that an output row of sample b reads is
// filtered along x once, into s.rows (rounded to uint8 values where the warp rounds). Returns the
// first of those rows, or -1 where the sample reads nothing of its image.
template <typename T>
int filter_source_rows(const FusedView& f, const T* images, int b, Scratch& s, bool parallel) {
  const int width = f.out_w, kx = f.kx, ky = f.ky;
  const int64_t row0 = static_cast<int64_t>(b) * f.out_h;
  const int* ty = f.taps_y + row0 * ky;
  const float* wy = f.weights_y + row0 * ky;
  int lo = INT_MAX, hi = -1;
  for (int64_t k = 0; k < static_cast<int64_t>(f.out_h) * ky; ++k) {
    if (wy[k] == 0.0f) continue;
    lo = std::min(lo, ty[k]);
    hi = std::max(hi, ty[k]);
  }
  if (hi < lo) return -1;
  const SourceImage<T> img{images + b * f.in_sb, f.in_sc, f.in_sh, f.in_sw, f.src_size[2 * b], f.src_size[2 * b + 1]};
  s.rows.resize(static_cast<size_t>(hi - lo + 1) * kMaxChannels * width);
  const int* tx = f.taps_x + static_cast<int64_t>(b) * width * kx;
  const float* wx = f.weights_x + static_cast<int64_t>(b) * width * kx;
  const int used = used_taps(wx, width, kx);
  const bool round_rows = f.warp_rounding > 0;
  for_rows(parallel, hi - lo + 1, [&](int64_t first, int64_t last) {
    std::vector<float> lines(static_cast<size_t>(kMaxChannels) * img.width);
    for (int64_t r = lo + first; r < lo + last; ++r) {
      for (int c = 0; c < f.channels_in; ++c) {
        const T* src = img.data + c * img.stride_c + r * img.stride_h;
        load_row(src, img.stride_w, img.width, lines.data() + c * img.width);
      }
      float* dst = s.rows.data() + (r - lo) * kMaxChannels * width;
      filter_row_any(f.channels_in, used, lines.data(), img.width, tx, wx, kx, width, dst, width);
      if (round_rows)
        for (int j = 0; j < f.channels_in * width; ++j) dst[j] = clampf(round_half_up(dst[j]), 0.0f, 255.0f);
    }
  });
  return lo;
}

// A resampled row (its first channel at `row`) to whole values where the warp rounds (halves up
// after separable resampling, see round_half_up), clamped to 0..255 where it also clamps.
void round_warp_row(const FusedView& f, float* row, int64_t plane, bool separable) {
  if (f.warp_rounding == 0) return;
  for (int c = 0; c < f.channels_in; ++c) {
    float* out = row + c * plane;
    for (int j = 0; j < f.out_w; ++j) out[j] = warp_rounded(out[j], separable, f.warp_rounding);
  }
}

// Separable resampling, second half: output row i combines the filtered source rows along y (in
// sample_separable's order of additions), plus the fill where constant padding left the image.
void combine_rows(const FusedView& f, int b, const Scratch& s, int lo, int64_t i, float* row, int64_t plane) {
  const int width = f.out_w, kx = f.kx, ky = f.ky;
  const int* ty = f.taps_y + (static_cast<int64_t>(b) * f.out_h + i) * ky;
  const float* wy = f.weights_y + (static_cast<int64_t>(b) * f.out_h + i) * ky;
  for (int c = 0; c < f.channels_in; ++c) {
    float* out = row + c * plane;
    std::fill(out, out + width, 0.0f);
    if (lo < 0) continue;
    for (int a = 0; a < ky; ++a) {
      const float w = wy[a];
      if (w == 0.0f) continue;
      const float* src = s.rows.data() + (static_cast<int64_t>(ty[a] - lo) * kMaxChannels + c) * width;
      for (int j = 0; j < width; ++j) out[j] += w * src[j];
    }
  }
  if (f.has_fill) {
    const float sy = tap_sum(wy, ky);
    const float* wx = f.weights_x + static_cast<int64_t>(b) * width * kx;
    for (int j = 0; j < width; ++j) {
      const float outside = outside_share(sy, tap_sum(wx + j * kx, kx), f.warp_rounding > 0);
      for (int c = 0; c < f.channels_in; ++c) row[c * plane + j] += outside * f.fill[c];
    }
  }
  round_warp_row(f, row, plane, true);
}

// Output row i of the input itself (no resampling).
template <typename T>
void copy_row(const FusedView& f, const T* images, int b, int64_t i, float* row, int64_t plane) {
  for (int c = 0; c < f.channels_in; ++c)
    load_row(images + b * f.in_sb + c * f.in_sc + i * f.in_sh, f.in_sw, f.out_w, row + c * plane);
}

// The taps of a row's grid points (ix, iy: `width` each) into MatrixScratch's arrays, one tap at a time.
template <bool kBilinear, typename T, typename Index>
void row_taps(const SourceImage<T>& img, const float* __restrict__ ix, const float* __restrict__ iy, int width,
              Index* __restrict__ offset, float* __restrict__ weight) {
  for (int a = 0; a < 4; ++a) {
    for (int j = 0; j < width; ++j) {
      int x, y;
      point_tap<kBilinear>(ix[j], iy[j], a, img.width, img.height, x, y, weight[a * width + j]);
      offset[a * width + j] = static_cast<Index>(y * img.stride_h + x * img.stride_w);
    }
  }
}

// A matrix map's rows read along lines that the hardware prefetchers do not follow: matrix_row asks
// for the source lines that the row this many rows below will read (its own taps' lines, moved by
// the map's step per row).
constexpr int kRowsAhead = 4;

// How far (in elements) the source point under the middle of output row i moves kRowsAhead rows
// below: the map's derivative along y there (for an affine map, its step per row). A hint for
// prefetching only: it ignores supersampling and the padding's fold.
template <typename T>
int64_t rows_ahead(const double* m, int width, int64_t i, const SourceImage<T>& img) {
  const double ox = 0.5 * width, oy = static_cast<double>(i);
  const double w = m[6] * ox + m[7] * oy + m[8];
  const double sx = (m[0] * ox + m[1] * oy + m[2]) / w, sy = (m[3] * ox + m[4] * oy + m[5]) / w;
  const double dx = (m[1] - sx * m[7]) / w, dy = (m[4] - sy * m[7]) / w;
  if (!(std::fabs(dx) < 1e6 && std::fabs(dy) < 1e6)) return 0;  // a degenerate map: nothing useful to ask for
  return std::llround(kRowsAhead * dy) * img.stride_h + std::llround(kRowsAhead * dx) * img.stride_w;
}

// Prefetches the cache lines of a row's first and (bilinear) third taps (rows y0 and y0 + 1), moved
// by `ahead` elements, in every channel: a request every 32 bytes of the row's pixels (what row i +
// kRowsAhead reads, on its way into the cache). The addresses are
// computed as integers, as they may lie outside the image (a prefetch never faults). Inlined: GCC
// takes a function that only prefetches for one without effects and drops its calls.
template <typename T, typename Index>
inline __attribute__((always_inline)) void prefetch_taps(const SourceImage<T>& img, const Index* offset, int width,
                                                         int channels, bool bilinear, int64_t ahead) {
  constexpr int kStep = std::max<int>(1, 32 / sizeof(T));
  for (int c = 0; c < channels; ++c) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(img.data) + (c * img.stride_c + ahead) * sizeof(T);
    for (int a = 0; a <= (bilinear ? 2 : 0); a += 2)  // nearest: every tap is the first one's pixel
      for (int j = 0; j < width; j += kStep)
        __builtin_prefetch(reinterpret_cast<const void*>(base + offset[a * width + j] * sizeof(T)));
  }
}

// out[j] += channel plane `src` read through a row's taps (MatrixScratch), as read_taps adds them,
// plus `fill` weighted by the share outside the image (0 without a fill).
template <typename T, typename Index>
void gather_row(const T* __restrict__ src, const Index* __restrict__ offset, const float* __restrict__ weight,
                const float* __restrict__ outside, float fill, int width, float* __restrict__ out) {
  for (int j = 0; j < width; ++j) {
    float v = 0.0f;
    for (int a = 0; a < 4; ++a) {
      const float w = weight[a * width + j], p = static_cast<float>(src[offset[a * width + j]]);
      v += w != 0.0f ? w * p : 0.0f;
    }
    out[j] += v + outside[j] * fill;
  }
}

// How a sample's separable map reads its input where it only picks whole pixels (one tap of weight
// 1 for every row and column, nothing outside the image: crops, flips, nearest resizes): its columns
// are runs x0 + j or x0 - j, or any others.
enum Picks : int { kNoPicks = 0, kRun = 1, kReversedRun = 2, kAnyColumns = 3 };

// The Picks of sample b. A warp that rounds and clamps leaves picked pixels as they are only where
// they are uint8 values (`uint8_input`).
Picks picks_of(const FusedView& f, int b, bool uint8_input) {
  if (f.geometry[b] != kSeparable || f.kx != 1 || f.ky != 1 || f.has_fill) return kNoPicks;
  if (f.warp_rounding != 0 && !uint8_input) return kNoPicks;
  const float* wx = f.weights_x + static_cast<int64_t>(b) * f.out_w;
  const float* wy = f.weights_y + static_cast<int64_t>(b) * f.out_h;
  if (!std::all_of(wx, wx + f.out_w, [](float w) { return w == 1.0f; }) ||
      !std::all_of(wy, wy + f.out_h, [](float w) { return w == 1.0f; }))
    return kNoPicks;
  const int* tx = f.taps_x + static_cast<int64_t>(b) * f.out_w;
  for (const int step : {1, -1}) {
    bool runs = true;
    for (int j = 0; j < f.out_w && runs; ++j) runs = tx[j] == tx[0] + step * j;
    if (runs) return step == 1 ? kRun : kReversedRun;
  }
  return kAnyColumns;
}

// Output row i of a sample that picks whole pixels (`picks`): the pixels its taps name, read along a
// contiguous row forwards, or upwards for a reversed run (as the prefetchers expect; loops that
// vectorise), or through the taps. Adding 0 turns -0 into +0, as the filters' sums do.
template <typename T>
void pick_row(const FusedView& f, const T* images, int b, Picks picks, int64_t i, float* row, int64_t plane) {
  const int* tx = f.taps_x + static_cast<int64_t>(b) * f.out_w;
  const int y = f.taps_y[static_cast<int64_t>(b) * f.out_h + i], width = f.out_w;
  for (int c = 0; c < f.channels_in; ++c) {
    const T* src = images + b * f.in_sb + c * f.in_sc + y * f.in_sh;
    float* out = row + c * plane;
    if (picks == kRun && f.in_sw == 1) {
      const T* first = src + tx[0];
      for (int j = 0; j < width; ++j) out[j] = static_cast<float>(first[j]) + 0.0f;
    } else if (picks == kReversedRun && f.in_sw == 1) {
      const T* first = src + tx[width - 1];
      for (int j = 0; j < width; ++j) out[width - 1 - j] = static_cast<float>(first[j]) + 0.0f;
    } else {
      for (int j = 0; j < width; ++j) out[j] = static_cast<float>(src[tx[j] * f.in_sw]) + 0.0f;
    }
  }
}

// Output row i through any other map (a matrix): where each pixel of the row reads (the taps that
// sample_matrix reads), then one channel plane at a time, averaged over the supersamples. The row's
// grid points and taps come first, in loops that the compiler vectorises; `s` is sized for out_w.
template <typename T>
void matrix_row(const FusedView& f, const SourceImage<T>& img, int b, int64_t i, MatrixScratch& s, float* row,
                int64_t plane) {
  const int width = f.out_w, k = f.supersample;
  const double* m = f.matrix + 9 * b;
  const bool affine = m[6] == 0.0 && m[7] == 0.0 && m[8] == 1.0;
  const bool narrow = (img.height - 1) * img.stride_h + (img.width - 1) * img.stride_w <= INT32_MAX;
  float *ix = s.ix.data(), *iy = s.iy.data(), *weight = s.weight.data(), *outside = s.outside.data();
  // one supersample's grid points (ix, iy) into taps, then into the row, through 32- or 64-bit offsets
  auto sample_row = [&](auto* offset, bool first) {
    dispatch_bool(f.bilinear, [&](auto bilinear) {
      row_taps<decltype(bilinear)::value>(img, ix, iy, width, offset, weight);
    });
    for (int j = 0; j < width; ++j)
      outside[j] = 1.0f - (weight[j] + weight[width + j] + weight[2 * width + j] + weight[3 * width + j]);
    if (first) prefetch_taps(img, offset, width, f.channels_in, f.bilinear, rows_ahead(m, width, i, img));
    for (int c = 0; c < f.channels_in; ++c)
      gather_row(img.data + c * img.stride_c, offset, weight, outside, f.has_fill ? f.fill[c] : 0.0f, width,
                 row + c * plane);
  };
  for (int c = 0; c < f.channels_in; ++c) std::fill_n(row + c * plane, width, 0.0f);
  for (int sy = 0; sy < k; ++sy) {
    for (int sx = 0; sx < k; ++sx) {
      const double oy = (i * k + sy + 0.5) / k - 0.5;
      dispatch_padding(f.padding, [&](auto mode) {
        dispatch_bool(affine, [&](auto is_affine) {
          for (int j = 0; j < width; ++j)
            grid_point<decltype(is_affine)::value>(m, (j * k + sx + 0.5) / k - 0.5, oy, img.width, img.height,
                                                   decltype(mode)::value, ix[j], iy[j]);
        });
      });
      if (narrow) {
        sample_row(s.offset32.data(), sy == 0 && sx == 0);
      } else {
        sample_row(s.offset64.data(), sy == 0 && sx == 0);
      }
    }
  }
  if (k > 1) {
    for (int c = 0; c < f.channels_in; ++c)
      for (int j = 0; j < width; ++j) row[c * plane + j] /= static_cast<float>(k * k);
  }
  round_warp_row(f, row, plane, false);
}

// Sample b's input (its valid region) as float into s.source, planar: a matrix map gathers its
// pixels, and gathers of floats vectorise where gathers of bytes or halves do not.
template <typename T>
void to_float_source(const FusedView& f, const T* images, int b, Scratch& s, bool parallel) {
  const int height = f.src_size[2 * b], width = f.src_size[2 * b + 1];
  s.source.resize(static_cast<size_t>(f.channels_in) * height * width);
  for_rows(parallel, static_cast<int64_t>(f.channels_in) * height, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      const int64_t c = r / height, y = r % height;
      load_row(images + b * f.in_sb + c * f.in_sc + y * f.in_sh, f.in_sw, width, s.source.data() + r * width);
    }
  });
}

// Output row i of sample b, resampled (`lo` from filter_source_rows for a separable map).
template <typename T>
void warp_row(const FusedView& f, const T* images, int b, const Scratch& s, int lo, int64_t i,
              MatrixScratch& matrix_scratch, float* row, int64_t plane) {
  if (f.geometry[b] == kSeparable) {
    combine_rows(f, b, s, lo, i, row, plane);
  } else if (f.geometry[b] == kIdentity) {
    copy_row(f, images, b, i, row, plane);
  } else if constexpr (std::is_same_v<T, float>) {
    const SourceImage<T> img{images + b * f.in_sb, f.in_sc, f.in_sh, f.in_sw, f.src_size[2 * b], f.src_size[2 * b + 1]};
    matrix_row(f, img, b, i, matrix_scratch, row, plane);
  } else {  // the float copy of the input that process_sample made (to_float_source)
    const int height = f.src_size[2 * b], width = f.src_size[2 * b + 1];
    const SourceImage<float> img{s.source.data(), static_cast<int64_t>(height) * width, width, 1, height, width};
    matrix_row(f, img, b, i, matrix_scratch, row, plane);
  }
}

// Program slots [first, last) of sample b over output row i, which has `channels` channels;
// `mean` is the mean a contrast slot among them blends with.
void run_slots(const FusedView& f, int b, int first, int last, int64_t i, float* row, int64_t plane, int channels,
               float mean) {
  float *r = row, *g = row + plane, *bl = row + 2 * plane;
  for (int slot = first; slot < last; ++slot) {
    const float* op = f.op(b, slot);
    const int code = static_cast<int>(op[0]);
    if (code == kNop) continue;
    const uint32_t key = f.key(b, slot);
    float params[kOpWidth - 2];  // a local copy: the loop need not prove it never aliases the row
    std::copy(op + 2, op + kOpWidth, params);
    dispatch_code(code, [&](auto tag) {
      dispatch_pixel_kind(channels, op[1] != 0.0f, [&](auto c, auto integer_domain) {
        constexpr int kCode = decltype(tag)::value, kChannels = decltype(c)::value;
        constexpr bool kInteger = decltype(integer_domain)::value;
        for (int j = 0; j < f.out_w; ++j)
          apply_code<kCode, kChannels, kInteger>(params, r[j], g[j], bl[j], key, mean, f.site(static_cast<int>(i), j));
      });
    });
    channels = channels_after(op, channels);
  }
}

// The channel count after program slots [first, last) of sample b.
int channels_after_slots(const FusedView& f, int b, int first, int last, int channels) {
  for (int slot = first; slot < last; ++slot) channels = channels_after(f.op(b, slot), channels);
  return channels;
}

// The first contrast slot of sample b at or after `from`, or f.slots.
int next_contrast_slot(const FusedView& f, int b, int from) {
  while (from < f.slots && static_cast<int>(f.op(b, from)[0]) != kContrast) ++from;
  return from;
}

// The sum over row i of what a contrast slot averages: the luma (integer: truncated, as
// functional.color.adjust_contrast) of a 3-channel image, else its one channel. Eight partial sums,
// so that the additions need not wait on each other.
double luma_sum(const float* row, int64_t plane, int width, int channels, bool integer) {
  constexpr int kLanes = 8;
  double partial[kLanes] = {};
  const float *r = row, *g = row + plane, *bl = row + 2 * plane;
  auto value = [&](int j) GA_INLINE_LAMBDA { return channels == 3 ? luma(r[j], g[j], bl[j], integer) : r[j]; };
  int j = 0;
  for (; j + kLanes <= width; j += kLanes)
    for (int k = 0; k < kLanes; ++k) partial[k] += value(j + k);
  for (; j < width; ++j) partial[j % kLanes] += value(j);
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

// Output row i of sample b (its first channel at `row`) through the final write.
template <typename O>
void write_row(const FusedView& f, int b, int64_t i, const float* row, int64_t plane, O* out) {
  const int width = f.out_w;
  for (int c = 0; c < f.out_c; ++c) {
    const float scale = f.out_scale[c], shift = f.out_shift[c], mult = f.final_mult;
    O* dst = out + b * f.out_sb + c * f.out_sc + i * f.out_sh;
    const float* src = row + c * plane;
    const int64_t step = f.out_sw;
    auto store = [&](auto value) {  // one loop per final mode, contiguous or strided
      if (step == 1) {
        for (int j = 0; j < width; ++j) dst[j] = to_output<O>(value(src[j]));
      } else {
        for (int j = 0; j < width; ++j) dst[j * step] = to_output<O>(value(src[j]));
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

// Sample b, row by row: resample, run the program, write. The program is cut before each contrast
// slot; each cut ends a pass over the rows that sums them, and the next pass runs from the kept rows.
template <typename T, typename O>
void process_sample(const FusedView& f, const T* images, int b, O* out, Scratch& s, bool parallel) {
  const int64_t plane = static_cast<int64_t>(f.out_h) * f.out_w;
  if (next_contrast_slot(f, b, 0) < f.slots) {  // rows kept for a second pass
    s.image.resize(static_cast<size_t>(kMaxChannels) * plane);
    s.row_sums.resize(f.out_h);
  }
  float* image = s.image.data();
  if (!std::is_same_v<T, float> && f.geometry[b] == kMatrix) to_float_source(f, images, b, s, parallel);
  const Picks picks = picks_of(f, b, std::is_same_v<T, uint8_t>);
  const int lo = f.geometry[b] == kSeparable && picks == kNoPicks ? filter_source_rows(f, images, b, s, parallel) : -1;
  int start = 0, channels = f.channels_in;
  float mean = 0.0f;
  for (bool first_pass = true;; first_pass = false) {
    const int end = next_contrast_slot(f, b, first_pass ? 0 : start + 1);
    const bool cut = end < f.slots;
    const int channels_at_end = channels_after_slots(f, b, start, end, channels);
    const bool integer_at_end = cut && f.op(b, end)[1] != 0.0f;
    // a single pass keeps no rows: each goes through one row's buffer, which stays in the L1 cache
    const bool single = first_pass && !cut;
    const int64_t stride = single ? f.out_w : plane;  // between the channels of a row
    for_rows(parallel, f.out_h, [&](int64_t first, int64_t last) {
      MatrixScratch matrix_scratch(first_pass && f.geometry[b] == kMatrix ? f.out_w : 0);
      std::vector<float> line(single ? kMaxChannels * f.out_w : 0);
      for (int64_t i = first; i < last; ++i) {
        float* row = single ? line.data() : image + i * f.out_w;
        if (first_pass && picks != kNoPicks) {
          pick_row(f, images, b, picks, i, row, stride);
        } else if (first_pass) {
          warp_row(f, images, b, s, lo, i, matrix_scratch, row, stride);
        }
        run_slots(f, b, start, end, i, row, stride, channels, mean);
        if (cut) {
          s.row_sums[i] = luma_sum(row, stride, f.out_w, channels_at_end, integer_at_end);
        } else {
          write_row(f, b, i, row, stride, out);
        }
      }
    });
    if (!cut) break;
    double sum = 0.0;
    for (int64_t i = 0; i < f.out_h; ++i) sum += s.row_sums[i];
    mean = static_cast<float>(sum / static_cast<double>(plane));
    channels = channels_at_end;
    start = end;
  }
}

// A large output is freshly mapped memory whose first write page-faults: ask for 2 MiB pages
// (transparent huge pages in the kernel's "madvise" mode) over its aligned interior. On a VM that
// cuts the fault cost of a 38 MB float32 batch from about 25 ms to 9 ms. Advice only: errors are ignored.
void advise_huge_pages(const at::Tensor& out) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + out.nbytes()) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

}  // namespace

void fused_cpu(const FusedArgs& a, at::Tensor& out) {
  const at::Tensor no_sums;  // the CPU pass computes each contrast mean when it reaches the slot
  const FusedView f = make_view(a, no_sums, &out);
  const int batch = static_cast<int>(a.images.size(0));
  const bool by_sample = batch >= at::get_num_threads();
  advise_huge_pages(out);
  dispatch_input(a.images, [&](auto tag) {
    const auto* images = a.images.data_ptr<decltype(tag)>();
    AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, out.scalar_type(), "gpuaug_fused_cpu", [&] {
      auto* dst = out.data_ptr<scalar_t>();
      if (by_sample) {  // each thread takes the next sample until none is left: samples differ in cost
        std::atomic<int> next{0};
        at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
          Scratch s;
          for (int b = next++; b < batch; b = next++) process_sample(f, images, b, dst, s, false);
        });
      } else {
        Scratch s;
        for (int b = 0; b < batch; ++b) process_sample(f, images, b, dst, s, true);
      }
    });
  });
}

}  // namespace gpuaug
