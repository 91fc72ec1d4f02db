// Resampling of one output pixel, shared by the CPU and CUDA kernels: the separable filter taps
// of axis-aligned maps (functional.resample.warp_separable) and grid_sample through a 3x3 matrix
// for any other map (functional.resample.warp_grid), read from one sample of the input batch.
#pragma once

#include "pixel_ops.h"

namespace gpuaug {

// One sample of the input batch, read with its strides; height and width of its valid region.
template <typename T>
struct SourceImage {
  const T* data;
  int64_t stride_c, stride_h, stride_w;
  int height, width;
  GA_HD float at(int c, int y, int x) const {
    return static_cast<float>(data[c * stride_c + y * stride_h + x * stride_w]);
  }
};

// The first pass of axis-aligned resampling on source row y: its columns `tx` weighted by `wx`
// (rounded to a uint8 value when `round_row`). A tap of weight 0 adds nothing, not 0 * its pixel:
// an upscaled sample's last tap weighs 0, and an inf there must not become NaN. Channel loops here
// and in the rest of the per-pixel path run over kMaxChannels, unrolled, up to the run-time
// `channels`: a pixel's values then stay in GPU registers (an array indexed by a run-time loop
// lives in local memory); `row` receives kMaxChannels values (0 past `channels`).
template <typename T>
GA_HD void filter_source_row(const SourceImage<T>& img, int channels, int y, const int* tx, const float* wx, int kx,
                             bool round_row, float* row) {
  GA_UNROLL
  for (int c = 0; c < kMaxChannels; ++c) row[c] = 0.0f;
  const T* line = img.data + y * img.stride_h;
  for (int k = 0; k < kx; ++k) {
    const float w = wx[k];
    if (w == 0.0f) continue;
    const T* pixel = line + tx[k] * img.stride_w;
    GA_UNROLL
    for (int c = 0; c < kMaxChannels; ++c) {
      if (c < channels) row[c] += w * static_cast<float>(pixel[c * img.stride_c]);
    }
  }
  if (round_row) {
    GA_UNROLL
    for (int c = 0; c < kMaxChannels; ++c) row[c] = clampf(round_half_up(row[c]), 0.0f, 255.0f);
  }
}

// Axis-aligned resampling: rows `ty` with weights `wy`, columns `tx` with weights `wx`. Each
// source row is filtered first (filter_source_row), then the rows are combined, as torchvision's
// separable uint8 resize does.
template <typename T>
GA_HD void sample_separable(const SourceImage<T>& img, int channels, const int* ty, const float* wy, int ky,
                            const int* tx, const float* wx, int kx, bool round_rows, float* v) {
  GA_UNROLL
  for (int c = 0; c < kMaxChannels; ++c) v[c] = 0.0f;
  for (int a = 0; a < ky; ++a) {
    if (wy[a] == 0.0f) continue;
    float row[kMaxChannels];
    filter_source_row(img, channels, ty[a], tx, wx, kx, round_rows, row);
    GA_UNROLL
    for (int c = 0; c < kMaxChannels; ++c) v[c] += wy[a] * row[c];
  }
}

// The sum of the taps' weights, (rows) x (columns): what of the filter fell inside the image.
GA_HD float tap_sum(const float* w, int k) {
  float s = 0.0f;
  for (int i = 0; i < k; ++i) s += w[i];
  return s;
}

// What of a separable sample falls outside the image, from the sums of its row and column weights
// (functional.resample._outside_share): uint8 weights are rounded to fixed point, so their sums miss 1
// by a few 2**-15 where nothing is outside; less than 2**-10 counts as nothing.
GA_HD float outside_share(float rows, float columns, bool integer) {
  const float outside = 1.0f - rows * columns;
  return integer && outside < 0.0009765625f ? 0.0f : outside;
}

// functional.resample._fold_continuous "reflect", about the edge pixels' centres.
GA_HD double fold_reflect(double v, int n) {
  if (n == 1) return 0.0;
  const double period = 2.0 * (n - 1);
  v -= floor(v / period) * period;
  return v > n - 1 ? period - v : v;
}

// grid_sample's reflect_coordinates.
GA_HD float reflect_coordinates(float in, int twice_low, int twice_high) {
  const float lo = twice_low / 2.0f, span = (twice_high - twice_low) / 2.0f;
  in = fabsf(in - lo);
  const float extra = fmodf(in, span);
  const int flips = static_cast<int>(floorf(in / span));
  return flips % 2 == 0 ? extra + lo : span - extra + lo;
}

// Source coordinate `src` (pixel index units) as grid_sample sees it, after the padding's fold.
GA_HD float grid_coordinate(double src, int size, int padding) {
  const float g = static_cast<float>((2.0 * src + 1.0) / size - 1.0);
  float i = ((g + 1.0f) * size - 1.0f) / 2.0f;
  if (padding == kSymmetric) i = reflect_coordinates(i, -1, 2 * size - 1);
  if (padding != kConstant) i = clampf(i, 0.0f, size - 1.0f);
  return i;
}

// The source pixels that output point (ox, oy) reads through `m`, as grid_sample
// (align_corners=False) reads them: four pixels (indices clamped into the image) with their
// bilinear weights, 0 for the pixels outside the image; nearest: one pixel, in slot 0.
struct GridTaps {
  int x[4], y[4];
  float w[4];
};

// The point grid_sample reads for output point (ox, oy) through `m`, in source pixel units after the
// padding's fold: ix, iy (-2, outside, for a degenerate map). kAffine: `m`'s last row is (0, 0, 1),
// so the divisions by its w, which is exactly 1, are skipped (the same bits).
template <bool kAffine = false>
GA_HD void grid_point(const double* m, double ox, double oy, int width, int height, int padding, float& ix, float& iy) {
  double sx = m[0] * ox + m[1] * oy + m[2];
  double sy = m[3] * ox + m[4] * oy + m[5];
  if (!kAffine) {
    const double w = m[6] * ox + m[7] * oy + m[8];
    sx /= w;
    sy /= w;
  }
  if (padding == kReflect) {
    sx = fold_reflect(sx, width);
    sy = fold_reflect(sy, height);
  }
  ix = grid_coordinate(sx, width, padding);
  iy = grid_coordinate(sy, height, padding);
  const bool degenerate = !(fabsf(ix) < 1e7f && fabsf(iy) < 1e7f);  // (also NaN): nothing inside
  ix = degenerate ? -2.0f : ix;
  iy = degenerate ? -2.0f : iy;
}

// Tap a of grid point (ix, iy) (grid_point) as grid_sample reads it: bilinear, a = 0..3 are columns
// x0 and x0 + 1 of row y0, then of row y0 + 1; nearest, the pixel is tap 0 and the others weigh
// nothing. Its pixel (clamped into the image) and weight (0 for a pixel outside the image). One tap
// at a time, so that a CPU loop over a row's points vectorises.
template <bool kBilinear>
GA_HD void point_tap(float ix, float iy, int a, int width, int height, int& x, int& y, float& w) {
  float weight;
  if (kBilinear) {
    const float x0 = floorf(ix), y0 = floorf(iy);
    const float fx = ix - x0, fy = iy - y0;
    x = static_cast<int>(x0) + (a & 1);
    y = static_cast<int>(y0) + (a >> 1);
    weight = ((a & 1) ? fx : 1.0f - fx) * ((a >> 1) ? fy : 1.0f - fy);
  } else {
    x = static_cast<int>(nearbyintf(ix));
    y = static_cast<int>(nearbyintf(iy));
    weight = a == 0 ? 1.0f : 0.0f;
  }
  const bool inside = (x >= 0) & (y >= 0) & (x < width) & (y < height);  // no branches: CPU loops vectorise
  w = inside ? weight : 0.0f;
  x = x < 0 ? 0 : (x >= width ? width - 1 : x);
  y = y < 0 ? 0 : (y >= height ? height - 1 : y);
}

// The four taps of grid point (ix, iy) (point_tap).
GA_HD GridTaps point_taps(float ix, float iy, int width, int height, bool bilinear) {
  GridTaps t;
  for (int a = 0; a < 4; ++a) {
    if (bilinear) {
      point_tap<true>(ix, iy, a, width, height, t.x[a], t.y[a], t.w[a]);
    } else {
      point_tap<false>(ix, iy, a, width, height, t.x[a], t.y[a], t.w[a]);
    }
  }
  return t;
}

// The taps of output point (ox, oy) through `m` (grid_point, then point_taps).
GA_HD GridTaps grid_taps(const double* m, double ox, double oy, int width, int height, bool bilinear, int padding) {
  float ix, iy;
  grid_point(m, ox, oy, width, height, padding, ix, iy);
  return point_taps(ix, iy, width, height, bilinear);
}

// Channel c of the pixel that `t` reads (pixels outside the image count 0, as grid_sample's zeros).
// A tap of weight 0 adds nothing, not 0 * its pixel: grid_sample reads no pixel outside the image, and
// nearest reads one, so an inf there must not become NaN.
template <typename T>
GA_HD float read_taps(const SourceImage<T>& img, int c, const GridTaps& t) {
  float v = 0.0f;
  for (int k = 0; k < 4; ++k) {
    const float p = img.at(c, t.y[k], t.x[k]);
    v += t.w[k] != 0.0f ? t.w[k] * p : 0.0f;
  }
  return v;
}

// grid_sample of output point (ox, oy) through `m`, plus the fill where constant padding leaves
// the image (weighted by what of the sample fell outside). `v` receives `channels` values.
template <typename T>
GA_HD void sample_matrix(const SourceImage<T>& img, int channels, const double* m, double ox, double oy,
                         bool bilinear, int padding, const float* fill, bool has_fill, float* v) {
  const GridTaps t = grid_taps(m, ox, oy, img.width, img.height, bilinear, padding);
  const float outside = 1.0f - (t.w[0] + t.w[1] + t.w[2] + t.w[3]);
  GA_UNROLL
  for (int c = 0; c < kMaxChannels; ++c) {
    if (c < channels) v[c] = read_taps(img, c, t) + (has_fill ? outside * fill[c] : 0.0f);
  }
}

}  // namespace gpuaug
