// The CUDA kernels' per-pixel path (compute_pixel, write_pixel and contrast_term in fused_view.h)
// run on the CPU, one output pixel at a time, as the op gpuaug::fused_augment_pixelwise. CI has no
// GPU: with this op the tests check the code the CUDA kernels run (everything but the launch and
// the order in which a contrast slot's luma sum is added) against the plain-PyTorch backend.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "fused.h"
#include "fused_view.h"

namespace gpuaug {

namespace {

template <bool AllSeparable, typename T>
void pixelwise(const FusedArgs& a, const T* images, at::Tensor& out) {
  const int batch = static_cast<int>(a.images.size(0));
  const int height = static_cast<int>(a.out_height), width = static_cast<int>(a.out_width);
  at::Tensor sums = at::zeros({batch, a.program.size(1)}, a.images.options().dtype(at::kDouble));
  const FusedView stats = make_view(a, sums, nullptr);  // reads the sums that earlier contrast ops wrote
  double* slot_sums = sums.data_ptr<double>();
  for (int ordinal = 0; ordinal < a.contrast_passes; ++ordinal) {  // in order, as contrast_sums_cuda launches them
    at::parallel_for(0, batch, 1, [&](int64_t first, int64_t last) {
      for (int b = static_cast<int>(first); b < last; ++b) {
        const int slot = stats.contrast_slot(b, ordinal);
        if (slot < 0) continue;
        double sum = 0.0;
        for (int i = 0; i < height; ++i)
          for (int j = 0; j < width; ++j) sum += contrast_term<AllSeparable>(stats, images, b, i, j, slot);
        slot_sums[static_cast<int64_t>(b) * stats.slots + slot] = sum;
      }
    });
  }
  const FusedView f = make_view(a, sums, &out);
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, out.scalar_type(), "gpuaug_pixelwise", [&] {
    auto* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, static_cast<int64_t>(batch) * height, 1, [&](int64_t first, int64_t last) {
      for (int64_t row = first; row < last; ++row)
        for (int j = 0; j < width; ++j)
          write_pixel<AllSeparable>(f, images, static_cast<int>(row / height), static_cast<int>(row % height), j, dst);
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
