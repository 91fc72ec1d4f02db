// gpuaug::fused_augment: the operator schema, argument checks and the CPU/CUDA dispatch.
// The Python side (src/gpuaug/fused.py) builds the arguments from a plan and registers the fake
// (meta) implementation, so torch.compile and torch.export trace through the op.
#include <torch/library.h>

#include <limits>

#include "fused.h"
#include "pixel_ops.h"
#include "fused_view.h"

namespace gpuaug {

FusedView make_view(const FusedArgs& a, const at::Tensor& contrast_sums, const at::Tensor* out) {
  FusedView f{};
  f.geometry = a.geometry.data_ptr<int8_t>();
  f.taps_x = a.taps_x.data_ptr<int>();
  f.weights_x = a.weights_x.data_ptr<float>();
  f.taps_y = a.taps_y.data_ptr<int>();
  f.weights_y = a.weights_y.data_ptr<float>();
  f.matrix = a.matrix.data_ptr<double>();
  f.src_size = a.src_size.data_ptr<int>();
  f.fill = a.fill.data_ptr<float>();
  f.program = a.program.data_ptr<float>();
  f.keys = a.keys.data_ptr<int>();
  f.contrast_sums = contrast_sums.defined() ? contrast_sums.data_ptr<double>() : nullptr;
  f.pixels = static_cast<double>(a.out_height) * static_cast<double>(a.out_width);
  f.out_scale = a.out_scale.data_ptr<float>();
  f.out_shift = a.out_shift.data_ptr<float>();
  f.kx = static_cast<int>(a.taps_x.size(2));
  f.ky = static_cast<int>(a.taps_y.size(2));
  f.slots = static_cast<int>(a.program.size(1));
  f.channels_in = static_cast<int>(a.images.size(1));
  f.out_h = static_cast<int>(a.out_height);
  f.out_w = static_cast<int>(a.out_width);
  f.out_c = static_cast<int>(a.out_channels);
  f.in_sb = a.images.stride(0);
  f.in_sc = a.images.stride(1);
  f.in_sh = a.images.stride(2);
  f.in_sw = a.images.stride(3);
  if (out != nullptr) {
    f.out_sb = out->stride(0);
    f.out_sc = out->stride(1);
    f.out_sh = out->stride(2);
    f.out_sw = out->stride(3);
  }
  f.bilinear = a.interpolation == 1;
  f.has_fill = a.has_fill;
  f.padding = static_cast<int>(a.padding_mode);
  f.supersample = static_cast<int>(a.supersample);
  f.warp_rounding = static_cast<int>(a.warp_rounding);
  f.final_mode = static_cast<int>(a.final_mode);
  f.final_mult = static_cast<float>(a.final_mult);
  return f;
}

namespace {

void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, std::vector<int64_t> shape,
                  const at::Tensor& images) {
  TORCH_CHECK(t.scalar_type() == dtype, "fused_augment: ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == images.device(), "fused_augment: ", name, " is on ", t.device(), ", images on ",
              images.device());
  TORCH_CHECK(t.is_contiguous(), "fused_augment: ", name, " must be contiguous");
  TORCH_CHECK(t.dim() == static_cast<int64_t>(shape.size()), "fused_augment: ", name, " must have ", shape.size(),
              " dimensions, got shape ", t.sizes());
  for (size_t d = 0; d < shape.size(); ++d)
    TORCH_CHECK(shape[d] < 0 || t.size(d) == shape[d], "fused_augment: ", name, " has shape ", t.sizes(),
                ", expected ", at::IntArrayRef(shape), " (-1: any)");
}

// Whether every value of the integer tensor t lies in [lo, hi] (an empty one: yes).
bool within(const at::Tensor& t, int64_t lo, int64_t hi) {
  if (t.numel() == 0) return true;
  const auto [least, most] = at::aminmax(t);
  return least.item<int64_t>() >= lo && most.item<int64_t>() <= hi;
}

// The values that say where to read the images: out of range, they would read outside the batch.
// Checked on the CPU only: on CUDA, reading them back would make the host wait for the device.
void check_indices(const FusedArgs& a) {
  if (!a.images.device().is_cpu()) return;
  const int64_t height = a.images.size(2), width = a.images.size(3);
  TORCH_CHECK(within(a.src_size.select(1, 0), 1, height) && within(a.src_size.select(1, 1), 1, width),
              "fused_augment: src_size must hold sizes within the images' (", height, ", ", width, ")");
  TORCH_CHECK(within(a.taps_x, 0, width - 1), "fused_augment: taps_x must be column indices in [0, ", width - 1, "]");
  TORCH_CHECK(within(a.taps_y, 0, height - 1), "fused_augment: taps_y must be row indices in [0, ", height - 1, "]");
  // each sample's taps within its own size (a ragged batch's padding is never read)
  const auto sizes = a.src_size.to(at::kLong);
  TORCH_CHECK(a.taps_x.numel() == 0 || !a.taps_x.ge(sizes.select(1, 1).view({-1, 1, 1})).any().item<bool>(),
              "fused_augment: taps_x must be column indices within each sample's src_size");
  TORCH_CHECK(a.taps_y.numel() == 0 || !a.taps_y.ge(sizes.select(1, 0).view({-1, 1, 1})).any().item<bool>(),
              "fused_augment: taps_y must be row indices within each sample's src_size");
  TORCH_CHECK(within(a.geometry, kIdentity, kMatrix), "fused_augment: geometry must hold modes in [", kIdentity,
              ", ", kMatrix, "]");
  TORCH_CHECK((a.out_height <= height && a.out_width <= width) || !a.geometry.eq(kIdentity).any().item<bool>(),
              "fused_augment: a sample that is not resampled (geometry ", kIdentity, ") needs an output size within "
              "the images'");
  // what the CUDA kernels take from these flags instead of reading the program and modes per sample
  TORCH_CHECK(a.program.numel() == 0 || a.program.select(2, 0).eq(kContrast).sum(1).max().item<int64_t>() <=
                                            a.contrast_passes,
              "fused_augment: contrast_passes must be at least the number of contrast ops of any sample");
  TORCH_CHECK(!a.all_separable || a.geometry.eq(kSeparable).all().item<bool>(),
              "fused_augment: all_separable needs every sample's geometry to be ", kSeparable);
}

void check(const FusedArgs& a) {
  const auto& x = a.images;
  TORCH_CHECK(x.dim() == 4, "fused_augment: images must be (B, C, H, W), got shape ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kByte || x.scalar_type() == at::kFloat,
              "fused_augment: images must be uint8 or float32, got ", x.scalar_type());
  const int64_t batch = x.size(0), channels = x.size(1);
  TORCH_CHECK(channels >= 1 && channels <= kMaxChannels, "fused_augment: images must have 1 to ", kMaxChannels,
              " channels, got ", channels);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();  // the kernels index rows and columns with int
  TORCH_CHECK(a.out_height > 0 && a.out_width > 0 && a.out_height <= kIntMax && a.out_width <= kIntMax,
              "fused_augment: output size must be positive and below 2**31, got ", a.out_height, " x ", a.out_width);
  TORCH_CHECK(a.out_channels >= 1 && a.out_channels <= channels, "fused_augment: out_channels must be in [1, ",
              channels, "], got ", a.out_channels);
  const int64_t h = a.out_height, w = a.out_width;
  check_tensor(a.src_size, "src_size", at::kInt, {batch, 2}, x);
  check_tensor(a.geometry, "geometry", at::kChar, {batch}, x);
  check_tensor(a.taps_x, "taps_x", at::kInt, {batch, w, -1}, x);
  check_tensor(a.weights_x, "weights_x", at::kFloat, {batch, w, a.taps_x.size(2)}, x);
  check_tensor(a.taps_y, "taps_y", at::kInt, {batch, h, -1}, x);
  check_tensor(a.weights_y, "weights_y", at::kFloat, {batch, h, a.taps_y.size(2)}, x);
  TORCH_CHECK(a.taps_x.size(2) * w <= kIntMax && a.taps_y.size(2) * h <= kIntMax,
              "fused_augment: output size times taps must be below 2**31");
  check_tensor(a.matrix, "matrix", at::kDouble, {batch, 3, 3}, x);
  check_tensor(a.fill, "fill", at::kFloat, {channels}, x);
  check_tensor(a.program, "program", at::kFloat, {batch, -1, kOpWidth}, x);
  check_tensor(a.keys, "keys", at::kInt, {batch, a.program.size(1)}, x);
  check_tensor(a.out_scale, "out_scale", at::kFloat, {a.out_channels}, x);
  check_tensor(a.out_shift, "out_shift", at::kFloat, {a.out_channels}, x);
  TORCH_CHECK(a.contrast_passes >= 0 && a.contrast_passes <= a.program.size(1),
              "fused_augment: contrast_passes must be in [0, slots], got ", a.contrast_passes);
  TORCH_CHECK(a.interpolation == 0 || a.interpolation == 1, "fused_augment: interpolation must be 0 or 1");
  TORCH_CHECK(a.padding_mode >= kConstant && a.padding_mode <= kSymmetric, "fused_augment: bad padding_mode");
  TORCH_CHECK(a.supersample >= 1 && a.supersample <= 8, "fused_augment: supersample must be in [1, 8]");
  TORCH_CHECK(a.warp_rounding >= 0 && a.warp_rounding <= 2, "fused_augment: warp_rounding must be 0, 1 or 2");
  TORCH_CHECK(a.final_mode >= kCopy && a.final_mode <= kScaleShiftToUint8, "fused_augment: bad final_mode");
  check_indices(a);
}

// Pixelwise: the CPU runs the CUDA kernels' per-pixel code (fused_pixelwise.cpp) instead of its own pass.
template <bool Pixelwise>
at::Tensor fused_augment(const at::Tensor& images, const at::Tensor& src_size, const at::Tensor& geometry,
                         const at::Tensor& taps_x, const at::Tensor& weights_x, const at::Tensor& taps_y,
                         const at::Tensor& weights_y, const at::Tensor& matrix, const at::Tensor& fill,
                         const at::Tensor& program, const at::Tensor& keys, const at::Tensor& out_scale,
                         const at::Tensor& out_shift, int64_t contrast_passes, int64_t out_height,
                         int64_t out_width, int64_t out_channels, int64_t interpolation, int64_t padding_mode,
                         int64_t supersample, int64_t warp_rounding, bool has_fill, int64_t final_mode,
                         double final_mult, at::ScalarType out_dtype, bool channels_last, bool all_separable) {
  FusedArgs a{images, src_size, geometry, taps_x, weights_x, taps_y, weights_y, matrix, fill, program, keys,
              out_scale, out_shift, contrast_passes, out_height, out_width, out_channels, interpolation,
              padding_mode, supersample, warp_rounding, has_fill, final_mode, final_mult, all_separable};
  check(a);
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor out = at::empty({images.size(0), out_channels, out_height, out_width},
                             images.options().dtype(out_dtype).memory_format(format));
  if (images.size(0) == 0) return out;
  if (images.is_cuda()) {
#ifdef GPUAUG_WITH_CUDA
    at::Tensor sums;  // one launch zeroes them all; none without contrast
    if (a.contrast_passes > 0) {
      sums = at::zeros({images.size(0), program.size(1)}, images.options().dtype(at::kDouble));
      contrast_sums_cuda(a, sums);
    }
    fused_cuda(a, sums, out);
#else
    TORCH_CHECK(false, "fused_augment: this build of the gpuaug extension has no CUDA support");
#endif
  } else if (Pixelwise) {
    fused_pixelwise_cpu(a, out);
  } else {
    fused_cpu(a, out);
  }
  return out;
}

}  // namespace

// The arguments both ops take (a string literal, joined to each op's name).
#define GPUAUG_FUSED_SIGNATURE \
    "(Tensor images, Tensor src_size, Tensor geometry, Tensor taps_x, Tensor weights_x, "          \
    "Tensor taps_y, Tensor weights_y, Tensor matrix, Tensor fill, Tensor program, Tensor keys, "   \
    "Tensor out_scale, Tensor out_shift, int contrast_passes, int out_height, int out_width, "     \
    "int out_channels, int interpolation, int padding_mode, int supersample, int warp_rounding, "  \
    "bool has_fill, int final_mode, float final_mult, ScalarType out_dtype, bool channels_last, "  \
    "bool all_separable) -> Tensor"

TORCH_LIBRARY(gpuaug, m) {
  m.def("fused_augment" GPUAUG_FUSED_SIGNATURE);
  // The same function through the CUDA kernels' per-pixel code on the CPU: what the tests check that code with.
  m.def("fused_augment_pixelwise" GPUAUG_FUSED_SIGNATURE);
}

TORCH_LIBRARY_IMPL(gpuaug, CPU, m) {
  m.impl("fused_augment", &fused_augment<false>);
  m.impl("fused_augment_pixelwise", &fused_augment<true>);
}
#ifdef GPUAUG_WITH_CUDA
TORCH_LIBRARY_IMPL(gpuaug, CUDA, m) { m.impl("fused_augment", &fused_augment<false>); }
#endif

}  // namespace gpuaug
