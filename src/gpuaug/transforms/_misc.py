"""Blur, sharpness, noise and erasing: per-sample parameters over neighbourhood and per-pixel kernels.

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([ga.GaussianBlur(5), ga.GaussianNoise(sigma=0.05), ga.RandomErasing(p=1.0)], seed=0)
    >>> pipe(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from ..functional import filters, misc
from ..functional.color import Domain
from ..params import Params, register_params
from ..random import Stream
from ._base import ImageSpec, PixelTransform, first_valid, parse_fill, parse_pair, parse_range, random_boxes, require_channels

__all__ = ["RandomAdjustSharpness", "GaussianBlur", "GaussianNoise", "RandomErasing"]


@register_params
class FactorParams(Params):
    """factor (B,): the per-sample factor the functional takes."""

    factor: Tensor


class RandomAdjustSharpness(PixelTransform):
    """Sharpen (factor > 1) or soften (factor < 1) with probability ``p``.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomAdjustSharpness(2.0, p=1.0)])(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, sharpness_factor: float, p: float = 0.5) -> None:
        super().__init__(p)
        if not isinstance(sharpness_factor, numbers.Real) or sharpness_factor < 0:
            raise ValueError(f"sharpness_factor must be a non-negative number, got {sharpness_factor!r}")
        self.sharpness_factor = float(sharpness_factor)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        require_channels("RandomAdjustSharpness", spec)
        return spec

    def draw(self, rng: Stream, spec: ImageSpec) -> FactorParams:
        applied = self.coin(rng)
        return FactorParams(applied, torch.full(applied.shape, self.sharpness_factor, device=applied.device))

    def apply(self, x: Tensor, params: FactorParams, domain: Domain) -> Tensor:
        return filters.adjust_sharpness(x, params.factor, domain)


@register_params
class BlurParams(Params):
    """sigma (B, 2): (sigma_x, sigma_y) as F.gaussian_blur takes it."""

    sigma: Tensor


class GaussianBlur(PixelTransform):
    """Gaussian blur with a per-sample sigma drawn from ``sigma`` (min, max).

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.GaussianBlur((3, 5), sigma=(0.1, 2.0))], seed=0)(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self, kernel_size: int | Sequence[int], sigma: float | Sequence[float] = (0.1, 2.0), p: float = 1.0
    ) -> None:
        super().__init__(p)
        if isinstance(kernel_size, numbers.Integral):
            kernel_size = (int(kernel_size), int(kernel_size))
        if isinstance(kernel_size, Sequence) and len(kernel_size) == 1:  # as torchvision: (k,) is (k, k)
            kernel_size = (kernel_size[0], kernel_size[0])
        if not isinstance(kernel_size, Sequence) or len(kernel_size) != 2:
            raise ValueError(f"kernel_size must be an int or a sequence of one or two ints, got {kernel_size!r}")
        if any(not isinstance(k, numbers.Integral) or k <= 0 or k % 2 == 0 for k in kernel_size):
            raise ValueError(f"kernel_size values must be odd and positive, got {kernel_size}")
        self.kernel_size = (int(kernel_size[0]), int(kernel_size[1]))
        if isinstance(sigma, Sequence) and len(sigma) == 1:  # as torchvision: (s,) is a fixed sigma s
            sigma = sigma[0]
        if isinstance(sigma, numbers.Real):
            if sigma <= 0:
                raise ValueError(f"If sigma is a single number, it must be positive, got {sigma}")
            sigma = (float(sigma), float(sigma))
        self.sigma = parse_range(sigma, "sigma")
        if self.sigma[0] <= 0:
            raise ValueError(f"sigma values must be positive, got {self.sigma}")

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        if self.kernel_size[0] // 2 >= spec.width or self.kernel_size[1] // 2 >= spec.height:
            raise ValueError(f"kernel_size {self.kernel_size} is too large for {spec.height}x{spec.width} images")
        return spec

    def draw(self, rng: Stream, spec: ImageSpec) -> BlurParams:
        applied = self.coin(rng)
        sigma = rng.uniform(1, *self.sigma)
        return BlurParams(applied, sigma.expand(-1, 2).clone())

    def apply(self, x: Tensor, params: BlurParams, domain: Domain) -> Tensor:
        return filters.gaussian_blur(x, self.kernel_size, params.sigma, domain)


@register_params
class NoiseParams(Params):
    """key (B,) int32: the per-sample key of the per-pixel noise (see gpuaug.random.normal_field)."""

    key: Tensor


class GaussianNoise(PixelTransform):
    """Add Gaussian noise N(mean, sigma) (in [0, 1] units), clipped to the value range if ``clip``.

    On a uint8 image the noise (times 255) is truncated toward zero, as torchvision's; the result
    saturates to [0, 255] even with ``clip=False``, where torchvision's wraps around.

    Example:
        >>> import torch, gpuaug as ga
        >>> out = ga.Pipeline([ga.GaussianNoise(sigma=0.1)], seed=0)(torch.full((2, 3, 64, 64), 0.5))
        >>> 0.08 < float((out - 0.5).std()) < 0.12
        True
    """

    def __init__(self, mean: float = 0.0, sigma: float = 0.1, clip: bool = True, p: float = 1.0) -> None:
        super().__init__(p)
        if sigma < 0:
            raise ValueError(f"sigma must be non-negative, got {sigma}")
        self.mean, self.sigma, self.clip = float(mean), float(sigma), bool(clip)

    def draw(self, rng: Stream, spec: ImageSpec) -> NoiseParams:
        return NoiseParams(self.coin(rng), rng.key())

    def apply(self, x: Tensor, params: NoiseParams, domain: Domain) -> Tensor:
        return misc.gaussian_noise(x, params.key, self.mean, self.sigma, self.clip, domain)


@register_params
class ErasingParams(Params):
    """top, left, height, width (B,) int64: the erased box (i, j, h, w of F.erase); key for random values."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    key: Tensor


class RandomErasing(PixelTransform):
    """Erase a random box per sample with ``value`` (a number, one per channel, or "random").

    ``inplace`` is accepted for torchvision compatibility and changes nothing: the input is never modified.

    Example:
        >>> import torch, gpuaug as ga
        >>> out = ga.Pipeline([ga.RandomErasing(p=1.0, value=0)], seed=0)(torch.ones(4, 3, 32, 32))
        >>> bool((out == 0).any())
        True
    """

    skips_without_coin = True  # a sample where no try fits is left as it is, as torchvision leaves it

    def __init__(
        self,
        p: float = 0.5,
        scale: Sequence[float] = (0.02, 0.33),
        ratio: Sequence[float] = (0.3, 3.3),
        value: float | Sequence[float] | str = 0.0,
        inplace: bool = False,
    ) -> None:
        super().__init__(p)
        self.scale = parse_pair(scale, "scale")
        if not (0.0 <= self.scale[0] and self.scale[1] <= 1.0):
            raise ValueError(f"scale must lie in [0, 1], got {self.scale}")
        self.ratio = parse_pair(ratio, "ratio")
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio must be positive, got {self.ratio}")
        if value is None:  # torchvision raises too (parse_fill would read None as 0)
            raise TypeError("value must be a number, a sequence of numbers or 'random', got None")
        if isinstance(value, str):
            if value != "random":
                raise ValueError(f"value must be a number, a sequence of numbers or 'random', got {value!r}")
            self.value = None
        else:
            self.value = parse_fill(value)
        self.inplace = inplace  # accepted for torchvision compatibility; gpuaug never writes its input

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        if self.value is not None and len(self.value) not in (1, spec.channels):
            raise ValueError(f"value has {len(self.value)} entries for {spec.channels}-channel images")
        return spec

    def draw(self, rng: Stream, spec: ImageSpec) -> ErasingParams:
        applied = self.coin(rng)
        top, left, h, w = random_boxes(rng, spec.height, spec.width, self.scale, self.ratio, tall=True)
        found, box = first_valid((h < spec.height) & (w < spec.width), (top, left, h, w))
        whole = (0.0, 0.0, float(spec.height), float(spec.width))  # torchvision's box when no try fits
        box = [torch.where(found, v, fallback) for v, fallback in zip(box, whole)]
        return ErasingParams(applied & found, *(v.to(torch.int64) for v in box), key=rng.key())

    def apply(self, x: Tensor, params: ErasingParams, domain: Domain) -> Tensor:
        box = torch.stack([params.top, params.left, params.height, params.width], dim=1)
        return misc.erase(x, box, self.value, params.key, domain)
