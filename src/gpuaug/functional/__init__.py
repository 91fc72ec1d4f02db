"""Per-sample batched kernels in plain PyTorch: the reference backend. They take tensors of
parameters and know nothing of transform classes."""
