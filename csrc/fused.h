// The fused augmentation pass: arguments shared by the op registration (ops.cpp), the CPU
// implementation (fused_cpu.cpp) and the CUDA one (fused_cuda.cu).
#pragma once

#include <ATen/ATen.h>

namespace gpuaug {

// One call of gpuaug::fused_augment; see the schema in ops.cpp and src/gpuaug/fused.py.
struct FusedArgs {
  at::Tensor images;     // (B, C, H, W) uint8 or floating, any strides
  at::Tensor src_size;   // (B, 2) int32: height and width of each image's valid region
  at::Tensor geometry;   // (B,) int8 GeometryMode per sample
  at::Tensor taps_x;     // (B, Wo, Kx) int32 source columns (kSeparable)
  at::Tensor weights_x;  // (B, Wo, Kx) float32
  at::Tensor taps_y;     // (B, Ho, Ky) int32 source rows
  at::Tensor weights_y;  // (B, Ho, Ky) float32
  at::Tensor matrix;     // (B, 3, 3) float64 output -> source pixel coordinates (kMatrix)
  at::Tensor fill;       // (C,) float32 value outside the image (constant padding)
  at::Tensor program;    // (B, S, kOpWidth) float32 colour program
  at::Tensor keys;       // (B, S) int32 per-slot keys of the random fields
  at::Tensor out_scale;  // (C_out,) float32 final write: out = v * scale + shift
  at::Tensor out_shift;  // (C_out,) float32
  int64_t contrast_passes = 0;  // the most contrast ops a sample's program holds (each needs a mean)
  int64_t out_height = 0, out_width = 0, out_channels = 0;
  int64_t interpolation = 1;  // 0 nearest, 1 bilinear (kMatrix); kSeparable carries its own taps
  int64_t padding_mode = 0;   // PaddingMode (kMatrix)
  int64_t supersample = 1;    // samples per output pixel and axis (kMatrix)
  int64_t warp_rounding = 0;  // 0 none, 1 round (uint8 domain), 2 round and clamp to 0..255
  bool has_fill = false;
  int64_t final_mode = 0;     // FinalMode
  double final_mult = 1.0;
  bool all_separable = false;  // every sample's geometry is kSeparable (the kernels skip the other paths)
};

struct FusedView;
// The raw pointers and sizes of a call (`out` null for the statistics pass; `contrast_sums` undefined
// on CPUs and where no slot may hold a contrast op).
FusedView make_view(const FusedArgs& args, const at::Tensor& contrast_sums, const at::Tensor* out);

// f(T()) with T the images' element type: uint8, or float32 (fused.py converts other inputs).
template <typename F>
void dispatch_input(const at::Tensor& images, F&& f) {
  if (images.scalar_type() == at::kByte) {
    f(uint8_t());
  } else {
    f(float());
  }
}

// The CPU pass computes each contrast mean when it reaches the slot; on CUDA, reduction launch k
// adds the luma sums of each sample's k-th contrast slot into `sums` (B, S) float64 (zeroed) first.
void fused_cpu(const FusedArgs& args, at::Tensor& out);
// The CUDA kernels' per-pixel code run on the CPU (gpuaug::fused_augment_pixelwise, for the tests).
void fused_pixelwise_cpu(const FusedArgs& args, at::Tensor& out);
#ifdef GPUAUG_WITH_CUDA
void contrast_sums_cuda(const FusedArgs& args, at::Tensor& sums);
void fused_cuda(const FusedArgs& args, const at::Tensor& sums, at::Tensor& out);
#endif

}  // namespace gpuaug
