"""Per-pixel kernels: additive Gaussian noise and erasing a box.

Per-pixel random numbers come from :func:`gpuaug.random.normal_field`, keyed by a per-sample key,
so they replay exactly and do not depend on the batch.

Example:
    >>> import torch
    >>> from gpuaug.functional.color import Domain
    >>> x = torch.zeros(1, 1, 4, 4)
    >>> erase(x, torch.tensor([[1, 1, 2, 2]]), (1.0,), None, Domain(torch.float32)).sum().item()
    4.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._device import constant
from ..random import normal_field
from .color import Domain

__all__ = ["gaussian_noise", "erase"]


def gaussian_noise(x: Tensor, keys: Tensor, mean: float, sigma: float, clip: bool, domain: Domain) -> Tensor:
    """Add N(mean, sigma) noise (in units of the [0, 1] range) to every value.

    For integer images the noise is truncated toward zero before it is added, as torchvision does,
    and the result always saturates to [0, 255] (a uint8 image holds nothing else): ``clip`` is for
    float images.
    """
    noise = normal_field(keys, tuple(x.shape[1:])).mul_(sigma * domain.bound).add_(mean * domain.bound)
    if domain.integer:
        noise = noise.trunc_()
    x = x.add_(noise)
    return x.clamp_(0.0, domain.bound) if clip or domain.integer else x


def erase(x: Tensor, box: Tensor, value: tuple[float, ...] | None, keys: Tensor | None, domain: Domain) -> Tensor:
    """Overwrite the box (top, left, height, width) of each sample with ``value``.

    ``value`` None means per-pixel standard normals from ``keys`` (torchvision's ``value="random"``).
    """
    batch, channels, height, width = x.shape
    top, left, h, w = (v.view(batch, 1, 1, 1) for v in box.to(x.device).unbind(1))
    rows = torch.arange(height, device=x.device).view(1, 1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, 1, width)
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    if value is None:
        fill = normal_field(keys, (channels, height, width))
    else:
        fill = constant(value * channels if len(value) == 1 else value, torch.float32, x.device).view(1, channels, 1, 1)
    if domain.integer:
        fill = fill.trunc().clamp(0.0, 255.0)
    return torch.where(inside, fill, x)
