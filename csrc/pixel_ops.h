// Per-pixel arithmetic of the fused pass, shared by the CPU (.cpp) and CUDA (.cu) kernels.
//
// Every function mirrors one kernel of the plain-PyTorch backend (src/gpuaug/functional/*.py)
// operation for operation, in float32, so that both backends compute the same function: values
// are held in the image's own range (0..255 for a uint8 image, 0..1 for a float image) and, in
// an integer domain, truncated exactly where torchvision's uint8 kernels truncate.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define GA_HD __host__ __device__ __forceinline__
#define GA_INLINE_LAMBDA
#define GA_UNROLL _Pragma("unroll")
#else
// Forced into the CPU's row loops, which then vectorise (GCC would call the larger ones).
#define GA_HD inline __attribute__((always_inline))
#define GA_INLINE_LAMBDA __attribute__((always_inline))
#define GA_UNROLL _Pragma("GCC unroll 4")
#endif

namespace gpuaug {

// The colour program: one row of kOpWidth floats per (sample, slot):
// [code, integer, p0 .. p7]; `integer` says whether the image is in a uint8 domain there.
// Keep in sync with OpCode in src/gpuaug/fused.py.
enum OpCode : int {
  kNop = 0,
  kBrightness = 1,  // p0 factor
  kContrast = 2,    // p0 factor, p1 1 - factor; the mean comes from a statistics pass
  kSaturation = 3,  // p0 factor, p1 1 - factor
  kHue = 4,         // p0 shift (fraction of a turn)
  kGray = 5,        // p0 1: keep one channel (Grayscale(1)), else write gray to every channel
  kInvert = 6,
  kSolarize = 7,    // p0 threshold
  kPosterize = 8,   // p0 bits
  kNoise = 9,       // p0 sigma * bound, p1 mean * bound, p2 clip; the slot's key seeds the field
  kErase = 10,      // p0 top, p1 left, p2 height, p3 width, p4 random values, p5.. p7 value per channel
  kAffine = 11,     // p0..p2 scale, p3..p5 shift per channel, p6 1: then floor and clamp to 0..255
};
constexpr int kOpWidth = 10;
constexpr int kMaxChannels = 3;

// Where the input's pixels go (per sample).
enum GeometryMode : int { kIdentity = 0, kSeparable = 1, kMatrix = 2 };
enum PaddingMode : int { kConstant = 0, kEdge = 1, kReflect = 2, kSymmetric = 3 };
// How the final write turns working values into output values.
enum FinalMode : int { kCopy = 0, kScaleShift = 1, kScaleShiftToUint8 = 2 };

// min / max / clamp as plain comparisons (fminf/fmaxf are library calls on CPUs without -ffast-math).
GA_HD float minf(float a, float b) { return b < a ? b : a; }
GA_HD float maxf(float a, float b) { return a < b ? b : a; }
GA_HD float clampf(float v, float lo, float hi) { return minf(maxf(v, lo), hi); }
// Separable resampling's rounding to uint8 values: halves up, as torch's native uint8 resize
// rounds its fixed-point sums (functional.resample.round_half_up); grid sampling rounds half to
// even (nearbyintf), as torchvision's does.
GA_HD float round_half_up(float v) { return floorf(v + 0.5f); }

// murmur3's 32-bit finaliser (gpuaug.random.mix32).
GA_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  return x ^ (x >> 16);
}

#ifdef __CUDA_ARCH__
GA_HD float log_unit(float u) { return logf(u); }
GA_HD float sin_or_cos_turn(float x, uint32_t sine) { return sine ? sinf(x) : cosf(x); }
#else
// On CPUs libm's logf/sinf/cosf are scalar calls that stop a row loop from vectorising; these
// branch-free versions (within a few float ulps on the ranges normal_at uses) let it vectorise.

// log(u) for a normal float u in (0, 1]: u = m * 2^e with m in [sqrt(1/2), sqrt(2)), then
// log(m) = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172, as an odd series.
GA_HD float log_unit(float u) {
  uint32_t bits;
  __builtin_memcpy(&bits, &u, 4);  // a bit cast (std::bit_cast needs C++20, __builtin_bit_cast GCC 11)
  int e = static_cast<int>(bits >> 23) - 127;
  bits = (bits & 0x7FFFFFu) | 0x3F800000u;
  float m;
  __builtin_memcpy(&m, &bits, 4);
  const bool high = m > 1.41421356f;
  m = high ? m * 0.5f : m;
  e = high ? e + 1 : e;
  const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
  const float series = 1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9))));
  return static_cast<float>(e) * 0.693147180559945f + 2.0f * t * series;
}

// sin(x) or cos(x) for x in [0, 2 pi]: x = q pi/2 + r with |r| <= pi/4 (pi/2 in two parts, so r
// is exact enough), then Taylor polynomials on r and the quadrant's swap and signs.
GA_HD float sin_or_cos_turn(float x, uint32_t sine) {  // sine 1: sin, 0: cos
  const float q = nearbyintf(x * 0.636619772367581f);
  const float r = (x - q * 1.57079601287841796875f) - q * 3.1391647865e-07f;
  const float r2 = r * r;
  const float s = r + r * r2 * (-1.0f / 6 + r2 * (1.0f / 120 + r2 * (-1.0f / 5040 + r2 * (1.0f / 362880))));
  const float c = 1.0f + r2 * (-0.5f + r2 * (1.0f / 24 + r2 * (-1.0f / 720 + r2 * (1.0f / 40320 + r2 * (-1.0f / 3628800)))));
  const uint32_t quadrant = static_cast<uint32_t>(static_cast<int>(q)) & 3u;
  // sin(x) = s, c, -s, -c and cos(x) = c, -s, -c, s in quadrants 0..3
  const float v = ((quadrant ^ sine) & 1u) != 0u ? s : c;
  const uint32_t negative = sine != 0u ? quadrant >> 1 : (quadrant ^ (quadrant >> 1)) & 1u;
  return negative != 0u ? -v : v;
}
#endif

// Element `index` of gpuaug.random.normal_field(key, shape) (flat index in C, H, W order).
GA_HD float normal_at(uint32_t key, int64_t index) {
  const uint32_t even = static_cast<uint32_t>(index & ~int64_t(1));
  const uint32_t h1 = mix32(key ^ mix32(even));
  const uint32_t h2 = mix32(key ^ mix32(even + 1u));
  const float u1 = (static_cast<float>((h1 >> 8) & 0xFFFFFFu) + 0.5f) * (1.0f / 16777216.0f);
  const float u2 = static_cast<float>((h2 >> 8) & 0xFFFFFFu) * static_cast<float>(2.0 * M_PI / 16777216.0);
  const float radius = sqrtf(-2.0f * log_unit(u1));
  return radius * sin_or_cos_turn(u2, static_cast<uint32_t>(index) & 1u);
}

// Clamp to the value range and truncate in an integer domain (functional.color._finish).
GA_HD float finish(float v, bool integer) {
  v = clampf(v, 0.0f, integer ? 255.0f : 1.0f);
  return integer ? floorf(v) : v;
}

// torchvision's luma, truncated in an integer domain (functional.color.rgb_to_grayscale).
GA_HD float luma(float r, float g, float b, bool integer) {
  const float y = fmaf(b, 0.114f, fmaf(g, 0.587f, r * 0.2989f));
  return integer ? floorf(y) : y;
}

// x * f + other * (1 - f) (functional.color._blend: torch's addcmul fuses the multiply-add).
GA_HD float blend(float x, float other, float f, float one_minus_f, bool integer) {
  return finish(fmaf(other, one_minus_f, x * f), integer);
}

// 1.0 where `c` is the maximum `maxc` (functional.color._is_max).
GA_HD float is_max(float c, float maxc) { return clampf((c - maxc) * 1e30f + 1.0f, 0.0f, 1.0f); }

GA_HD float wrap6(float k) { return k - floorf(k * (1.0f / 6.0f)) * 6.0f; }

// One channel of the hue-rotated pixel from its hue `h` in sixths of a turn: the closed form
// f(n) = V - C * clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6 (functional.color.adjust_hue). A float
// image's channel with k in [4, 6) is V and stays as it is; the others are clamped to [0, 1], as
// torchvision's.
GA_HD float hue_channel(float h, float n, float maxc, float chroma, bool integer) {
  const float k = wrap6(h + n);
  const float t = clampf(minf(k, 4.0f - k), 0.0f, 1.0f);
  const float v = maxc - t * chroma;
  if (integer) return clampf(floorf(v * static_cast<float>(255.999 / 255.0)), 0.0f, 255.0f);
  return k >= 4.0f ? maxc : clampf(v, 0.0f, 1.0f);
}

// Rotate the HSV hue by `shift` turns (functional.color.adjust_hue).
GA_HD void hue(float& r, float& g, float& b, float shift, bool integer) {
  const float maxc = maxf(maxf(r, g), b);
  const float minc = minf(minf(r, g), b);
  const float chroma = maxc - minc;
  const float ir = is_max(r, maxc);
  const float ig = is_max(g, maxc) * (1.0f - ir);
  const float ib = 1.0f - ir - ig;
  float h = (g - b) * ir;
  h += fmaf(chroma, 2.0f, b - r) * ig;
  h += fmaf(chroma, 4.0f, r - g) * ib;
  h *= 1.0f / maxf(chroma, 1e-12f);
  h = wrap6(h + 6.0f * (1.0f + shift));
  r = hue_channel(h, 5.0f, maxc, chroma, integer);
  g = hue_channel(h, 3.0f, maxc, chroma, integer);
  b = hue_channel(h, 1.0f, maxc, chroma, integer);
}

GA_HD float posterize(float v, float bits, bool integer) {
  if (integer) {
    const float step = static_cast<float>(1 << (8 - static_cast<int>(bits)));
    return floorf(v / step) * step;
  }
  const float levels = static_cast<float>(1 << static_cast<int>(bits));
  return clampf(floorf(v * levels), 0.0f, levels - 1.0f) * (1.0f / levels);
}

// Where a pixel is: output row y and column x, its flat index in channel 0 of its (C, H, W)
// image and H * W (the random fields are indexed like gpuaug.random.normal_field).
struct Site {
  int y, x;
  int64_t element, plane;
};

// fn(value, channel) on each of the first C channels of a pixel, unrolled.
template <int C, typename F>
GA_HD void each_channel(float& r, float& g, float& b, F&& fn) {
  r = fn(r, 0);
  if constexpr (C > 1) g = fn(g, 1);
  if constexpr (C > 2) b = fn(b, 2);
}

// One program slot of code `Code` on one pixel of a C-channel image in an integer (uint8) domain
// or not: r (and g, b). `mean` is the slot's contrast mean, `key` its random-field key. kGray
// with p0 = 1 leaves one channel: the caller tracks the count (channels_after). Every branch
// is on template parameters, so the CPU's loops over a row vectorise.
template <int Code, int C, bool Integer>
GA_HD void apply_code(const float* p, float& r, float& g, float& b, uint32_t key, float mean, const Site& site) {
  constexpr float bound = Integer ? 255.0f : 1.0f;
  if constexpr (Code == kBrightness) {
    each_channel<C>(r, g, b, [&](float v, int) GA_INLINE_LAMBDA { return finish(v * p[0], Integer); });
  } else if constexpr (Code == kContrast) {
    each_channel<C>(r, g, b, [&](float v, int) GA_INLINE_LAMBDA { return blend(v, mean, p[0], p[1], Integer); });
  } else if constexpr (Code == kSaturation && C == 3) {
    const float gray = luma(r, g, b, Integer);
    each_channel<C>(r, g, b, [&](float v, int) GA_INLINE_LAMBDA { return blend(v, gray, p[0], p[1], Integer); });
  } else if constexpr (Code == kHue && C == 3) {
    hue(r, g, b, p[0], Integer);
  } else if constexpr (Code == kGray && C == 3) {
    r = g = b = luma(r, g, b, Integer);
  } else if constexpr (Code == kInvert) {
    each_channel<C>(r, g, b, [&](float v, int) GA_INLINE_LAMBDA { return bound - v; });
  } else if constexpr (Code == kSolarize) {
    each_channel<C>(r, g, b, [&](float v, int) GA_INLINE_LAMBDA { return v >= p[0] ? bound - v : v; });
  } else if constexpr (Code == kPosterize) {
    each_channel<C>(r, g, b, [&](float v, int) GA_INLINE_LAMBDA { return posterize(v, p[0], Integer); });
  } else if constexpr (Code == kNoise) {
    each_channel<C>(r, g, b, [&](float v, int c) GA_INLINE_LAMBDA {
      float noise = normal_at(key, site.element + c * site.plane) * p[0] + p[1];
      if (Integer) noise = truncf(noise);
      v += noise;
      return p[2] != 0.0f ? clampf(v, 0.0f, bound) : v;
    });
  } else if constexpr (Code == kErase) {
    if (site.y >= p[0] && site.y < p[0] + p[2] && site.x >= p[1] && site.x < p[1] + p[3]) {
      each_channel<C>(r, g, b, [&](float, int c) GA_INLINE_LAMBDA {
        const float fill = p[4] != 0.0f ? normal_at(key, site.element + c * site.plane) : p[5 + c];
        return Integer ? clampf(truncf(fill), 0.0f, 255.0f) : fill;
      });
    }
  } else if constexpr (Code == kAffine) {
    each_channel<C>(r, g, b, [&](float v, int c) GA_INLINE_LAMBDA {
      v = v * p[c] + p[3 + c];
      return p[6] != 0.0f ? clampf(floorf(v), 0.0f, 255.0f) : v;
    });
  }
}

// f(std::integral_constant<int, C>()) for a run-time channel count C of 1 to 3.
template <typename F>
GA_HD void dispatch_channels(int channels, F&& f) {
  if (channels == 3) {
    f(std::integral_constant<int, 3>());
  } else if (channels == 2) {
    f(std::integral_constant<int, 2>());
  } else {
    f(std::integral_constant<int, 1>());
  }
}

// f(std::integral_constant<int, C>(), std::bool_constant<Integer>()) for run-time values.
template <typename F>
GA_HD void dispatch_pixel_kind(int channels, bool integer, F&& f) {
  dispatch_channels(channels, [&](auto c) {
    if (integer) {
      f(c, std::true_type());
    } else {
      f(c, std::false_type());
    }
  });
}

// The channel count after a slot: Grayscale(num_output_channels=1) keeps one.
GA_HD int channels_after(const float* op, int channels) {
  return static_cast<int>(op[0]) == kGray && op[2] == 1.0f ? 1 : channels;
}

// Calls f(std::integral_constant<int, code>()) for a run-time op code, so that loops inside f
// are compiled for one code (the CPU vectorises them) while device code switches per pixel.
template <typename F>
GA_HD void dispatch_code(int code, F&& f) {
  switch (code) {
    case kBrightness: f(std::integral_constant<int, kBrightness>()); break;
    case kContrast: f(std::integral_constant<int, kContrast>()); break;
    case kSaturation: f(std::integral_constant<int, kSaturation>()); break;
    case kHue: f(std::integral_constant<int, kHue>()); break;
    case kGray: f(std::integral_constant<int, kGray>()); break;
    case kInvert: f(std::integral_constant<int, kInvert>()); break;
    case kSolarize: f(std::integral_constant<int, kSolarize>()); break;
    case kPosterize: f(std::integral_constant<int, kPosterize>()); break;
    case kNoise: f(std::integral_constant<int, kNoise>()); break;
    case kErase: f(std::integral_constant<int, kErase>()); break;
    case kAffine: f(std::integral_constant<int, kAffine>()); break;
    default: break;
  }
}

// One program slot on one pixel's values `v` (device code: the code is known only per sample).
struct ApplyOnePixel {
  const float* op;
  uint32_t key;
  float mean;
  float* v;
  int channels;
  const Site& site;
  template <typename Code>
  GA_HD void operator()(Code) const {
    dispatch_pixel_kind(channels, op[1] != 0.0f, [&](auto c, auto integer) {
      apply_code<Code::value, decltype(c)::value, decltype(integer)::value>(op + 2, v[0], v[1], v[2], key, mean, site);
    });
  }
};

// The final write's value (execute._final_write).
GA_HD float final_value(float v, float scale, float shift, int mode, float mult) {
  if (mode == kCopy) return v;
  if (mode == kScaleShift) return shift + v * scale;
  return clampf(floorf((v * scale + shift) * mult), 0.0f, 255.0f);
}

// The output element holding final value v: uint8 saturates (a value outside [0, 255], as unclipped
// noise leaves, is clamped, then truncated as torch's cast truncates); other types convert.
template <typename O>
GA_HD O to_output(float v) {
  if constexpr (std::is_same_v<O, uint8_t>) {
    return static_cast<uint8_t>(clampf(v, 0.0f, 255.0f));
  } else {
    return static_cast<O>(v);
  }
}

}  // namespace gpuaug
