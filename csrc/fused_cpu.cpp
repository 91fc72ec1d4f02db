// The fused pass on the CPU. Each sample is resampled into a planar float buffer the size of its
// output (a few hundred KB: it stays in cache), every program slot then runs over the buffer in a
// loop compiled for that slot's code (which the compiler vectorises; a contrast slot first sums
// the buffer's luma, so no second pass over the input is needed), and the buffer is written out.
// Parallel over samples, or over rows within a sample when the batch is smaller than the threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "fused.h"
#include "fused_view.h"

namespace gpuaug {

namespace {

constexpr int64_t kRowGrain = 8;

// Per-thread working memory.
struct Scratch {
  std::vector<float> image;    // (kMaxChannels, out_h, out_w): the sample being processed
  std::vector<float> rows;     // (source rows, kMaxChannels, out_w): separable horizontal pass
  std::vector<int> taps;       // (kx, out_w) column taps of the sample
  std::vector<float> weights;  // (kx, out_w)
};

// Runs body(first, last) over [0, n), in parallel unless the caller already is.
template <typename Body>
void for_rows(bool parallel, int64_t n, Body&& body) {
  if (parallel) {
    at::parallel_for(0, n, kRowGrain, body);
  } else {
    body(0, n);
  }
}

// Separable resampling of sample b into s.image: each source row that an output row reads is
// filtered once (in sample_separable's order of additions), then the output rows combine them.
template <typename T>
void warp_separable(const FusedView& f, const T* images, int b, Scratch& s, bool parallel) {
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
  const int plane = f.out_h * width;
  if (hi < lo) {  // nothing of the image is read: fill only
    for (int c = 0; c < f.channels_in; ++c) std::fill(s.image.begin() + c * plane, s.image.begin() + (c + 1) * plane, 0.0f);
  } else {
    const SourceImage<T> img{images + b * f.in_sb, f.in_sc, f.in_sh, f.in_sw, f.src_size[2 * b], f.src_size[2 * b + 1]};
    s.rows.resize(static_cast<size_t>(hi - lo + 1) * kMaxChannels * width);
    s.taps.resize(static_cast<size_t>(kx) * width);
    s.weights.resize(static_cast<size_t>(kx) * width);
    const int* tx = f.taps_x + static_cast<int64_t>(b) * width * kx;
    const float* wx = f.weights_x + static_cast<int64_t>(b) * width * kx;
    for (int j = 0; j < width; ++j) {  // as (kx, out_w): the inner loops run over output columns
      for (int k = 0; k < kx; ++k) {
        s.taps[k * width + j] = tx[j * kx + k];
        s.weights[k * width + j] = wx[j * kx + k];
      }
    }
    const bool round_rows = f.warp_rounding > 0;
    for_rows(parallel, hi - lo + 1, [&](int64_t first, int64_t last) {
      std::vector<float> line(img.width);
      for (int64_t r = lo + first; r < lo + last; ++r) {
        for (int c = 0; c < f.channels_in; ++c) {
          const T* src = img.data + c * img.stride_c + r * img.stride_h;
          if (img.stride_w == 1) {
            for (int x = 0; x < img.width; ++x) line[x] = static_cast<float>(src[x]);
          } else {
            for (int x = 0; x < img.width; ++x) line[x] = static_cast<float>(src[x * img.stride_w]);
          }
          float* dst = s.rows.data() + ((r - lo) * kMaxChannels + c) * width;
          std::fill(dst, dst + width, 0.0f);
          for (int k = 0; k < kx; ++k) {
            const int* t = s.taps.data() + k * width;
            const float* w = s.weights.data() + k * width;
            for (int j = 0; j < width; ++j) dst[j] += w[j] * line[t[j]];
          }
          if (round_rows)
            for (int j = 0; j < width; ++j) dst[j] = clampf(nearbyintf(dst[j]), 0.0f, 255.0f);
        }
      }
    });
    for_rows(parallel, f.out_h, [&](int64_t first, int64_t last) {
      for (int64_t i = first; i < last; ++i) {
        for (int c = 0; c < f.channels_in; ++c) {
          float* out = s.image.data() + c * plane + i * width;
          std::fill(out, out + width, 0.0f);
          for (int a = 0; a < ky; ++a) {
            const float w = wy[i * ky + a];
            if (w == 0.0f) continue;
            const float* src = s.rows.data() + ((ty[i * ky + a] - lo) * kMaxChannels + c) * width;
            for (int j = 0; j < width; ++j) out[j] += w * src[j];
          }
        }
      }
    });
  }
  for_rows(parallel, f.out_h, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      if (f.has_fill) {
        const float sy = tap_sum(wy + i * ky, ky);
        const float* wx = f.weights_x + static_cast<int64_t>(b) * width * kx;
        for (int j = 0; j < width; ++j) {
          const float outside = 1.0f - sy * tap_sum(wx + j * kx, kx);
          for (int c = 0; c < f.channels_in; ++c) s.image[c * plane + i * width + j] += outside * f.fill[c];
        }
      }
      if (f.warp_rounding > 0) {
        for (int c = 0; c < f.channels_in; ++c) {
          float* out = s.image.data() + c * plane + i * width;
          for (int j = 0; j < width; ++j) {
            const float v = nearbyintf(out[j]);
            out[j] = f.warp_rounding == 2 ? clampf(v, 0.0f, 255.0f) : v;
          }
        }
      }
    }
  });
}

// The input itself (no resampling), row by row.
template <typename T>
void copy_input(const FusedView& f, const T* images, int b, Scratch& s, bool parallel) {
  const int width = f.out_w, plane = f.out_h * width;
  const T* sample = images + b * f.in_sb;
  for_rows(parallel, f.out_h, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      for (int c = 0; c < f.channels_in; ++c) {
        const T* src = sample + c * f.in_sc + i * f.in_sh;
        float* dst = s.image.data() + c * plane + i * width;
        if (f.in_sw == 1) {
          for (int j = 0; j < width; ++j) dst[j] = static_cast<float>(src[j]);
        } else {
          for (int j = 0; j < width; ++j) dst[j] = static_cast<float>(src[j * f.in_sw]);
        }
      }
    }
  });
}

// Any other map (a matrix), row by row: where each output pixel of the row reads (the same
// GridTaps as sample_matrix), then one channel plane at a time, averaged over the supersamples.
template <typename T>
void warp_matrix(const FusedView& f, const T* images, int b, Scratch& s, bool parallel) {
  const int width = f.out_w, plane = f.out_h * width, k = f.supersample;
  const SourceImage<T> img{images + b * f.in_sb, f.in_sc, f.in_sh, f.in_sw, f.src_size[2 * b], f.src_size[2 * b + 1]};
  const double* m = f.matrix + 9 * b;
  for_rows(parallel, f.out_h, [&](int64_t first, int64_t last) {
    std::vector<GridTaps> taps(width);
    for (int64_t i = first; i < last; ++i) {
      for (int c = 0; c < f.channels_in; ++c) std::fill_n(s.image.data() + c * plane + i * width, width, 0.0f);
      for (int sy = 0; sy < k; ++sy) {
        for (int sx = 0; sx < k; ++sx) {
          const double oy = (i * k + sy + 0.5) / k - 0.5;
          for (int j = 0; j < width; ++j)
            taps[j] = grid_taps(m, (j * k + sx + 0.5) / k - 0.5, oy, img.width, img.height, f.bilinear, f.padding);
          for (int c = 0; c < f.channels_in; ++c) {
            float* out = s.image.data() + c * plane + i * width;
            const float fill = f.has_fill ? f.fill[c] : 0.0f;
            for (int j = 0; j < width; ++j) {
              const GridTaps& t = taps[j];
              const float outside = 1.0f - (t.w[0] + t.w[1] + t.w[2] + t.w[3]);
              out[j] += read_taps(img, c, t) + (f.has_fill ? outside * fill : 0.0f);
            }
          }
        }
      }
      for (int c = 0; c < f.channels_in; ++c) {
        float* out = s.image.data() + c * plane + i * width;
        for (int j = 0; j < width; ++j) {
          float v = k > 1 ? out[j] / static_cast<float>(k * k) : out[j];
          if (f.warp_rounding > 0) v = nearbyintf(v);
          out[j] = f.warp_rounding == 2 ? clampf(v, 0.0f, 255.0f) : v;
        }
      }
    }
  });
}

// The mean that a contrast slot blends with: of the luma (or the one channel) of the image now.
float contrast_mean(const FusedView& f, const float* op, const Scratch& s, int channels) {
  const int64_t plane = static_cast<int64_t>(f.out_h) * f.out_w;
  const float* r = s.image.data();
  double sum = 0.0;
  if (channels == 3) {
    const float *g = r + plane, *bl = r + 2 * plane;
    const bool integer = op[1] != 0.0f;
    for (int64_t k = 0; k < plane; ++k) sum += luma(r[k], g[k], bl[k], integer);
  } else {
    for (int64_t k = 0; k < plane; ++k) sum += r[k];
  }
  return static_cast<float>(sum / static_cast<double>(plane));
}

// One program slot over the whole image; returns the channel count after it.
int run_slot(const FusedView& f, int b, int slot, Scratch& s, int channels, bool parallel) {
  const float* op = f.op(b, slot);
  const int code = static_cast<int>(op[0]);
  if (code == kNop) return channels;
  const float mean = code == kContrast ? contrast_mean(f, op, s, channels) : 0.0f;
  const uint32_t key = f.key(b, slot);
  const bool integer = op[1] != 0.0f;
  const int width = f.out_w, plane = f.out_h * width;
  float *r = s.image.data(), *g = r + plane, *bl = r + 2 * plane;
  float params[kOpWidth - 2];  // a local copy: the row loops need not prove it never aliases the image
  std::copy(op + 2, op + kOpWidth, params);
  for_rows(parallel, f.out_h, [&](int64_t first, int64_t last) {
    dispatch_code(code, [&](auto tag) {
      dispatch_pixel_kind(channels, integer, [&](auto c, auto integer_domain) {
        constexpr int kCode = decltype(tag)::value, kChannels = decltype(c)::value;
        constexpr bool kInteger = decltype(integer_domain)::value;
        for (int64_t i = first; i < last; ++i) {
          float *rr = r + i * width, *gg = g + i * width, *bb = bl + i * width;
          for (int j = 0; j < width; ++j)
            apply_code<kCode, kChannels, kInteger>(params, rr[j], gg[j], bb[j], key, mean, f.site(static_cast<int>(i), j));
        }
      });
    });
  });
  return channels_after(op, channels);
}

template <typename O>
void write_sample(const FusedView& f, const Scratch& s, int b, O* out, bool parallel) {
  const int width = f.out_w, plane = f.out_h * width;
  for_rows(parallel, f.out_h, [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      for (int c = 0; c < f.out_c; ++c) {
        const float scale = f.out_scale[c], shift = f.out_shift[c], mult = f.final_mult;
        O* dst = out + b * f.out_sb + c * f.out_sc + i * f.out_sh;
        const float* src = s.image.data() + c * plane + i * width;
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
  });
}

template <typename T, typename O>
void process_sample(const FusedView& f, const T* images, int b, O* out, Scratch& s, bool parallel) {
  s.image.resize(static_cast<size_t>(kMaxChannels) * f.out_h * f.out_w);
  if (f.geometry[b] == kSeparable) {
    warp_separable(f, images, b, s, parallel);
  } else if (f.geometry[b] == kIdentity) {
    copy_input(f, images, b, s, parallel);
  } else {
    warp_matrix(f, images, b, s, parallel);
  }
  int channels = f.channels_in;
  for (int slot = 0; slot < f.slots; ++slot) channels = run_slot(f, b, slot, s, channels, parallel);
  write_sample(f, s, b, out, parallel);
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
      if (by_sample) {
        at::parallel_for(0, batch, 1, [&](int64_t first, int64_t last) {
          Scratch s;
          for (int64_t b = first; b < last; ++b) process_sample(f, images, static_cast<int>(b), dst, s, false);
        });
      } else {
        Scratch s;
        for (int b = 0; b < batch; ++b) process_sample(f, images, b, dst, s, true);
      }
    });
  });
}

}  // namespace gpuaug
