"""ToDtype and Normalize: value conversions that the pipeline folds into its final write.

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([ga.ToDtype(torch.float32, scale=True), ga.Normalize([0.5], [0.5])])
    >>> pipe(torch.tensor([[[0, 255]]], dtype=torch.uint8)).round(decimals=5)
    tensor([[[-1.,  1.]]])
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._device import constant
from ..functional.color import Domain
from ..params import Params
from ._base import ImageSpec, Transform

__all__ = ["ToDtype", "Normalize", "SUPPORTED_DTYPES", "convert_values"]

SUPPORTED_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def convert_values(x: Tensor, source: Domain, dtype: torch.dtype, scale: bool) -> Tensor:
    """Working values of a ``source`` image as torchvision's ``to_dtype(dtype, scale)`` makes them."""
    target = Domain(dtype)
    if source.integer == target.integer:
        return x
    if target.integer:  # float -> uint8 truncates; scaled by 255.999 as torchvision does
        return (x * 255.999 if scale else x).floor_().clamp_(0.0, 255.0)
    return x * (1.0 / 255.0) if scale else x


class ToDtype(Transform):
    """Convert to ``dtype``; with ``scale`` the value range follows (uint8 0..255 <-> float 0..1).

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.ToDtype(torch.float16, scale=True)])(torch.full((1, 1, 1), 255, dtype=torch.uint8))
        tensor([[[1.]]], dtype=torch.float16)
    """

    kind = "output"

    def __init__(self, dtype: torch.dtype, scale: bool = False) -> None:
        super().__init__(1.0)
        if dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"ToDtype supports {[str(d) for d in SUPPORTED_DTYPES]}, got {dtype!r}")
        self.dtype, self.scale = dtype, bool(scale)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        return ImageSpec(spec.channels, spec.height, spec.width, self.dtype)

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        return convert_values(x, domain, self.dtype, self.scale)


def _floats(values: Sequence[float] | float | Tensor | np.ndarray, name: str) -> tuple[float, ...]:
    if isinstance(values, (Tensor, np.ndarray)) and values.ndim <= 1:  # torchvision's normalize takes them too
        values = values.tolist()
    if isinstance(values, numbers.Real):
        values = [values]
    if not isinstance(values, Sequence) or not values or not all(isinstance(v, numbers.Real) for v in values):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    return tuple(float(v) for v in values)


class Normalize(Transform):
    """(x - mean) / std per channel, on float images (an error on uint8, as torchvision).

    ``inplace`` is accepted for torchvision compatibility and changes nothing: the input is never modified.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.Normalize([0.5], [0.25])])(torch.ones(1, 1, 1)).item()
        2.0
    """

    kind = "output"

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        super().__init__(1.0)
        self.mean, self.std = _floats(mean, "mean"), _floats(std, "std")
        if any(s == 0 for s in self.std):
            raise ValueError(f"std evaluated to zero, leading to division by zero: {self.std}")
        self.inplace = inplace  # accepted for torchvision compatibility; gpuaug never writes its input

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        if not spec.dtype.is_floating_point:
            raise TypeError(f"Normalize needs a float image, got {spec.dtype}: put ToDtype(torch.float32, scale=True) first")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, spec.channels):
                raise ValueError(f"Normalize {name} has {len(values)} values for {spec.channels}-channel images")
        return spec

    def scale_shift(self, channels: int) -> tuple[list[float], list[float]]:
        """(scale, shift), ``channels`` numbers each, so that normalize(x) = x * scale + shift."""
        mean, std = (v * channels if len(v) == 1 else v for v in (self.mean, self.std))
        return [1.0 / s for s in std], [-m / s for m, s in zip(mean, std)]

    def coefficients(self, channels: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """:meth:`scale_shift` as (C,) float32 tensors (float64 arithmetic, rounded once; cached: read-only)."""
        return tuple(constant(v, torch.float32, device) for v in self.scale_shift(channels))

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        scale, shift = self.coefficients(x.shape[1], x.device)
        return x.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))
