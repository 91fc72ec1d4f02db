"""Neighbourhood kernels with per-sample parameters: Gaussian blur and sharpness.

Same conventions as :mod:`gpuaug.functional.color` (float32 working values, a
:class:`~gpuaug.functional.color.Domain`, per-sample (B,) parameters).

Example:
    >>> import torch
    >>> from gpuaug.functional.color import Domain
    >>> x = torch.rand(2, 3, 16, 16)
    >>> gaussian_blur(x, (5, 5), torch.tensor([[0.5, 0.5], [2.0, 2.0]]), Domain(torch.float32)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _device
from .color import Domain, _finish, _per_sample

__all__ = ["gaussian_kernels", "gaussian_blur", "adjust_sharpness", "weighted_sum"]

_MOST_TAPS = 15  # the longest kernel summed tap by tap on CPUs (see _filter_axis)


def gaussian_kernels(size: int, sigma: Tensor) -> Tensor:
    """(B, size) normalised 1-D Gaussian kernels, as torchvision builds them."""
    lim = (size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-lim, lim, steps=size, dtype=torch.float32, device=sigma.device)
    return torch.softmax(-((x / sigma.to(torch.float32)[:, None]) ** 2), dim=1)


def _depthwise(x: Tensor, weight: Tensor) -> Tensor:
    """Convolve sample b's channels with its own kernel: weight (B, kh, kw)."""
    batch, channels, height, width = x.shape
    w = weight[:, None].expand(batch, channels, *weight.shape[1:]).reshape(batch * channels, 1, *weight.shape[1:])
    return F.conv2d(x.reshape(1, batch * channels, height, width), w, groups=batch * channels).view(
        batch, channels, height - weight.shape[1] + 1, width - weight.shape[2] + 1
    )


def _filter_axis(x: Tensor, kernels: Tensor, dim: int) -> Tensor:
    """The valid part of sample b's convolution with ``kernels[b]`` (B, k) along ``dim`` (-1 or -2).

    On CPUs, up to _MOST_TAPS taps, as a sum of shifted slices (the depthwise convolution's own
    arithmetic, and about 2x faster there; slower for longer kernels); else as a convolution.
    """
    batch, taps = kernels.shape
    if not _device.on_host(x.device) or taps > _MOST_TAPS:
        return _depthwise(x, kernels[:, None, :] if dim == -1 else kernels[:, :, None])
    length = x.shape[dim] - taps + 1
    weights = kernels.view(batch, 1, 1, 1, taps)
    return weighted_sum((x.narrow(dim, t, length), weights[..., t]) for t in range(taps))


def weighted_sum(terms: Iterable[tuple[Tensor, Tensor]], out: Tensor | None = None) -> Tensor:
    """The sum of ``values * weight`` over the (values, weight) ``terms``, added in their order: the
    first product, then one ``addcmul_`` per term, a depthwise convolution's own arithmetic. Into
    ``out`` where given (zeros for no terms); else a new tensor, from at least one term."""
    total = None
    for values, weight in terms:
        total = torch.mul(values, weight, out=out) if total is None else total.addcmul_(values, weight)
    return out.zero_() if total is None else total


def gaussian_blur(x: Tensor, kernel_size: tuple[int, int], sigma: Tensor, domain: Domain) -> Tensor:
    """Separable Gaussian blur with reflect padding; ``kernel_size`` (kx, ky), ``sigma`` (B, 2) = (sx, sy)."""
    kx, ky = kernel_size
    padded = F.pad(x, [kx // 2, kx // 2, ky // 2, ky // 2], mode="reflect")
    out = _filter_axis(padded, gaussian_kernels(kx, sigma[:, 0]), -1)
    out = _filter_axis(out, gaussian_kernels(ky, sigma[:, 1]), -2)
    return out.round_() if domain.integer else out


def adjust_sharpness(x: Tensor, factor: Tensor, domain: Domain) -> Tensor:
    """Blend the interior with a 3x3 smoothed copy (torchvision's kernel); the border is kept."""
    if x.shape[-1] <= 2 or x.shape[-2] <= 2:
        return x
    kernel = torch.ones(3, 3, dtype=torch.float32, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(x.shape[0], 3, 3)
    smooth = _depthwise(x, kernel)
    if domain.integer:
        smooth = smooth.round_()
    inner = x[..., 1:-1, 1:-1]
    inner.add_((smooth - inner) * (1.0 - _per_sample(factor)))
    return _finish(x, domain)
