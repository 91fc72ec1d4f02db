// Raw pointers and sizes of one fused_augment call, and the per-pixel steps every
// implementation runs: resample one output pixel, run colour program slots, write the result.
#pragma once

#include "sampling.h"

namespace gpuaug {

struct FusedView {
  const int8_t* geometry;
  const int* taps_x;
  const float* weights_x;
  const int* taps_y;
  const float* weights_y;
  const double* matrix;
  const int* src_size;
  const float* fill;
  const float* program;
  const int* keys;
  const double* contrast_sums;  // (B, S) luma sums of the contrast slots (CUDA), over `pixels` pixels
  double pixels;
  const float* out_scale;
  const float* out_shift;
  int kx, ky, slots;
  int channels_in, out_h, out_w, out_c;
  int64_t in_sb, in_sc, in_sh, in_sw;
  int64_t out_sb, out_sc, out_sh, out_sw;
  bool bilinear, has_fill;
  int padding, supersample, warp_rounding, final_mode;
  float final_mult;

  GA_HD const float* op(int b, int slot) const { return program + (static_cast<int64_t>(b) * slots + slot) * kOpWidth; }
  GA_HD uint32_t key(int b, int slot) const { return static_cast<uint32_t>(keys[static_cast<int64_t>(b) * slots + slot]); }
  GA_HD float mean(int b, int slot) const {  // 0 where the slot was not reduced
    return contrast_sums == nullptr ? 0.0f : static_cast<float>(contrast_sums[static_cast<int64_t>(b) * slots + slot] / pixels);
  }
  // The slot of sample b's contrast op number `ordinal` (from 0), or -1.
  GA_HD int contrast_slot(int b, int ordinal) const {
    for (int s = 0; s < slots; ++s) {
      if (static_cast<int>(op(b, s)[0]) == kContrast && ordinal-- == 0) return s;
    }
    return -1;
  }
  GA_HD Site site(int i, int j) const {
    return Site{i, j, static_cast<int64_t>(i) * out_w + j, static_cast<int64_t>(out_h) * out_w};
  }
  // The separable taps of output row i and column j of sample b (ky and kx of them).
  GA_HD const int* row_taps(int b, int i) const { return taps_y + (static_cast<int64_t>(b) * out_h + i) * ky; }
  GA_HD const float* row_weights(int b, int i) const { return weights_y + (static_cast<int64_t>(b) * out_h + i) * ky; }
  GA_HD const int* column_taps(int b, int j) const { return taps_x + (static_cast<int64_t>(b) * out_w + j) * kx; }
  GA_HD const float* column_weights(int b, int j) const {
    return weights_x + (static_cast<int64_t>(b) * out_w + j) * kx;
  }
  template <typename T>
  GA_HD SourceImage<T> source(const T* images, int b) const {
    return SourceImage<T>{images + b * in_sb, in_sc, in_sh, in_sw, src_size[2 * b], src_size[2 * b + 1]};
  }
};

// What of a separable sample of output pixel (i, j) of sample b fell outside the image, times the
// fill, added to v (constant padding).
GA_HD void add_separable_fill(const FusedView& f, int b, int i, int j, float* v) {
  if (!f.has_fill) return;
  const float outside = outside_share(tap_sum(f.row_weights(b, i), f.ky), tap_sum(f.column_weights(b, j), f.kx),
                                      f.warp_rounding > 0);
  GA_UNROLL
  for (int c = 0; c < kMaxChannels; ++c) {
    if (c < f.channels_in) v[c] += outside * f.fill[c];
  }
}

// A resampled value made whole where the warp rounds (``rounding`` 1 or 2: halves up after separable
// resampling, see round_half_up; to even after grid sampling), clamped to 0..255 where it also clamps (2).
GA_HD float warp_rounded(float v, bool separable, int rounding) {
  v = separable ? round_half_up(v) : nearbyintf(v);
  return rounding == 2 ? clampf(v, 0.0f, 255.0f) : v;
}

// A resampled pixel's values through warp_rounded, where the call's warp rounds.
GA_HD void round_warp(const FusedView& f, bool separable, float* v) {
  if (f.warp_rounding == 0) return;
  GA_UNROLL
  for (int c = 0; c < kMaxChannels; ++c) v[c] = warp_rounded(v[c], separable, f.warp_rounding);
}

// The resampled value of output pixel (i, j) of sample b, `channels_in` values into v. With
// AllSeparable (every sample is kSeparable: crops, resizes, flips; the tiles' fallback) the other
// paths compile away.
template <bool AllSeparable, typename T>
GA_HD void warp_pixel(const FusedView& f, const T* images, int b, int i, int j, float* v) {
  const SourceImage<T> img = f.source(images, b);
  const int channels = f.channels_in;
  const int mode = AllSeparable ? static_cast<int>(kSeparable) : f.geometry[b];
  if (mode == kIdentity) {
    GA_UNROLL
    for (int c = 0; c < kMaxChannels; ++c) {
      if (c < channels) v[c] = img.at(c, i, j);
    }
    return;
  }
  if (mode == kSeparable) {
    sample_separable(img, channels, f.row_taps(b, i), f.row_weights(b, i), f.ky, f.column_taps(b, j),
                     f.column_weights(b, j), f.kx, f.warp_rounding > 0, v);
    add_separable_fill(f, b, i, j, v);
  } else {
    const int k = f.supersample;
    float acc[kMaxChannels] = {0.0f, 0.0f, 0.0f}, sub[kMaxChannels] = {0.0f, 0.0f, 0.0f};
    for (int sy = 0; sy < k; ++sy) {
      for (int sx = 0; sx < k; ++sx) {
        const double ox = (j * k + sx + 0.5) / k - 0.5, oy = (i * k + sy + 0.5) / k - 0.5;
        sample_matrix(img, channels, f.matrix + 9 * b, ox, oy, f.bilinear, f.padding, f.fill, f.has_fill, sub);
        GA_UNROLL
        for (int c = 0; c < kMaxChannels; ++c) acc[c] += sub[c];
      }
    }
    GA_UNROLL
    for (int c = 0; c < kMaxChannels; ++c) v[c] = k > 1 ? acc[c] / static_cast<float>(k * k) : acc[c];
  }
  round_warp(f, mode == kSeparable, v);
}

// The luma (or the single channel) that contrast averages, as functional.color.adjust_contrast.
GA_HD float contrast_gray(const float* op, const float* v, int channels) {
  return channels == 3 ? luma(v[0], v[1], v[2], op[1] != 0.0f) : v[0];
}

// The rest of a CUDA kernel's per-pixel path, after resampling (fused_pixelwise.cpp runs the same
// code on the CPU for the tests; the CPU pass works row by row instead).

// Program slots [0, stop) on the resampled values v of output pixel (i, j) of sample b; returns the
// channel count.
GA_HD int run_program(const FusedView& f, int b, int i, int j, int stop, float* v) {
  int channels = f.channels_in;
  const Site site = f.site(i, j);
  for (int s = 0; s < stop; ++s) {
    const float* op = f.op(b, s);
    const int code = static_cast<int>(op[0]);
    const float mean = code == kContrast ? f.mean(b, s) : 0.0f;
    dispatch_code(code, ApplyOnePixel{op, f.key(b, s), mean, v, channels, site});
    channels = channels_after(op, channels);
  }
  return channels;
}

// Output pixel (i, j) of sample b from its resampled values v: every program slot, then the final write.
template <typename O>
GA_HD void finish_pixel(const FusedView& f, int b, int i, int j, float* v, O* __restrict__ out) {
  run_program(f, b, i, j, f.slots, v);
  O* dst = out + b * f.out_sb + i * f.out_sh + j * f.out_sw;
  GA_UNROLL
  for (int c = 0; c < kMaxChannels; ++c) {
    if (c < f.out_c) dst[c * f.out_sc] = to_output<O>(final_value(v[c], f.out_scale[c], f.out_shift[c], f.final_mode, f.final_mult));
  }
}

// What output pixel (i, j) of sample b, resampled to v, adds to the luma sum of contrast slot `slot`
// (which holds kContrast): the luma after the slots before it.
GA_HD double contrast_term(const FusedView& f, int b, int i, int j, int slot, float* v) {
  return contrast_gray(f.op(b, slot), v, run_program(f, b, i, j, slot, v));
}

// f(std::bool_constant<flag>()) for a run-time flag (a call's all_separable, ...): code compiled
// for each value.
template <typename F>
void dispatch_bool(bool flag, F&& f) {
  if (flag) {
    f(std::true_type());
  } else {
    f(std::false_type());
  }
}

}  // namespace gpuaug
