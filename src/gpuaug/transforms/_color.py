"""Colour transforms: per-sample parameters over the kernels of :mod:`gpuaug.functional.color`.

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([ga.ColorJitter(0.4, 0.4, 0.4, 0.1), ga.RandomGrayscale(p=0.2)], seed=0)
    >>> pipe(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)).dtype
    torch.uint8
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import _device
from .._device import constant
from ..functional import color as C
from ..functional.color import Domain
from ..params import Params, register_params
from ..random import Stream
from ._base import ImageSpec, PixelTransform, apply_selected, parse_range, require_channels

__all__ = [
    "ColorJitter",
    "RandomGrayscale",
    "Grayscale",
    "RandomInvert",
    "RandomSolarize",
    "RandomPosterize",
    "RandomAutocontrast",
    "RandomEqualize",
]


@register_params
class ColorJitterParams(Params):
    """Factors (B,) as F.adjust_* take them; ``order`` (B, 4): the parts in the order applied
    (0 brightness, 1 contrast, 2 saturation, 3 hue)."""

    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: Tensor


_JITTER_PARTS = (
    ("brightness", C.adjust_brightness),
    ("contrast", C.adjust_contrast),
    ("saturation", C.adjust_saturation),
    ("hue", C.adjust_hue),
)
_HUE = [name for name, _ in _JITTER_PARTS].index("hue")


class ColorJitter(PixelTransform):
    """Random brightness, contrast, saturation and hue, in a random order per sample.

    Example:
        >>> import torch, gpuaug as ga
        >>> pipe = ga.Pipeline([ga.ColorJitter(brightness=0.5, hue=0.2)], seed=0)
        >>> pipe(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(
        self,
        brightness: float | Sequence[float] | None = None,
        contrast: float | Sequence[float] | None = None,
        saturation: float | Sequence[float] | None = None,
        hue: float | Sequence[float] | None = None,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        self.brightness = self._range(brightness, "brightness", 1.0, (0.0, float("inf")))
        self.contrast = self._range(contrast, "contrast", 1.0, (0.0, float("inf")))
        self.saturation = self._range(saturation, "saturation", 1.0, (0.0, float("inf")))
        self.hue = self._range(hue, "hue", 0.0, (-0.5, 0.5))

    @staticmethod
    def _range(value, name: str, center: float, bound: tuple[float, float]) -> tuple[float, float] | None:
        if value is None:
            return None
        low, high = parse_range(value, name, center=center, bound=bound)
        return None if low == high == center else (low, high)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        require_channels("ColorJitter", spec)
        return spec

    def draw(self, rng: Stream, spec: ImageSpec) -> ColorJitterParams:
        applied = self.coin(rng)
        # one uniform per part, in _JITTER_PARTS' order; a part without a range gets its identity (span 0)
        ranges = [getattr(self, name) or ((0.0, 0.0) if name == "hue" else (1.0, 1.0)) for name, _ in _JITTER_PARTS]
        device = applied.device
        spans = constant([high - low for low, high in ranges], torch.float64, device)
        lows = constant([low for low, _ in ranges], torch.float64, device)
        factors = rng.uniform(len(ranges)) * spans + lows
        return ColorJitterParams(applied, *factors.unbind(1), order=rng.permutation(4))

    def apply(self, x: Tensor, params: ColorJitterParams, domain: Domain) -> Tensor:
        if _device.on_host(x.device):
            return self._apply_on_host(x, params, domain)
        for slot in range(4):
            for part, (name, kernel) in enumerate(_JITTER_PARTS):
                if getattr(self, name) is None:
                    continue
                selected = params.order[:, slot] == part
                x = apply_selected(x, selected, lambda xs, ps, k=kernel, n=name: k(xs, getattr(ps, n), domain), params)
        return x

    def _apply_on_host(self, x: Tensor, params: ColorJitterParams, domain: Domain) -> Tensor:
        """A sample at a time, on views of x with its factors as numbers (several times faster than
        the batched slots), but hue, the costliest part, once for the whole batch: each sample's parts
        before its hue, then every sample's hue, then each sample's parts after it."""
        orders = params.order.tolist()
        factors = list(zip(*(getattr(params, name).tolist() for name, _ in _JITTER_PARTS)))
        if self.hue is None:
            self._apply_orders(x, factors, orders, domain)
            return x
        cuts = [order.index(_HUE) for order in orders]  # where each order meets hue
        self._apply_orders(x, factors, [order[:cut] for order, cut in zip(orders, cuts)], domain)
        x = C.adjust_hue(x, params.hue, domain)
        self._apply_orders(x, factors, [order[cut + 1 :] for order, cut in zip(orders, cuts)], domain)
        return x

    def _apply_orders(
        self, x: Tensor, factors: list[tuple[float, ...]], orders: list[list[int]], domain: Domain
    ) -> None:
        """Each sample's ``orders[i]`` of parts into ``x[i]``, with its ``factors[i]`` in _JITTER_PARTS' order."""
        for i, (order, sample_factors) in enumerate(zip(orders, factors)):
            part_of_x = result = x[i : i + 1]
            for part in order:
                name, kernel = _JITTER_PARTS[part]
                if getattr(self, name) is not None:
                    result = kernel(result, sample_factors[part], domain)
            if result is not part_of_x:
                part_of_x.copy_(result)


class RandomGrayscale(PixelTransform):
    """Convert to grayscale with probability ``p``, keeping the number of channels.

    Example:
        >>> import torch, gpuaug as ga
        >>> out = ga.Pipeline([ga.RandomGrayscale(p=1.0)])(torch.rand(1, 3, 4, 4))
        >>> bool((out[:, 0] == out[:, 2]).all())
        True
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__(p)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        require_channels(type(self).__name__, spec)
        return spec

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        return x.copy_(C.rgb_to_grayscale(x, domain).expand_as(x))


class Grayscale(PixelTransform):
    """Convert to grayscale with ``num_output_channels`` (1 or 3) channels.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.Grayscale()])(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(self, num_output_channels: int = 1) -> None:
        super().__init__(1.0)
        if num_output_channels not in (1, 3):
            raise ValueError(f"num_output_channels must be 1 or 3, got {num_output_channels}")
        self.num_output_channels = int(num_output_channels)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        require_channels("Grayscale", spec)
        return ImageSpec(self.num_output_channels, spec.height, spec.width, spec.dtype)

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        gray = C.rgb_to_grayscale(x, domain)
        return gray.expand(-1, self.num_output_channels, -1, -1).clone()


class _RandomColorOp(PixelTransform):
    """A colour kernel applied with probability ``p`` (default 0.5, as torchvision); channel by
    channel, so any number of channels, unless ``channels`` says otherwise (as torchvision's)."""

    channels: tuple[int, ...] | None = None

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        if self.channels is not None:
            require_channels(type(self).__name__, spec, self.channels)
        return spec


class RandomInvert(_RandomColorOp):
    """Invert the values with probability ``p``.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomInvert(p=1.0)])(torch.zeros(1, 1, 1, dtype=torch.uint8)).item()
        255
    """

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        return C.invert(x, domain)


class RandomSolarize(_RandomColorOp):
    """Invert the values at or above ``threshold`` (in the image's own range) with probability ``p``.

    Example:
        >>> import torch, gpuaug as ga
        >>> x = torch.tensor([[[10, 200]]], dtype=torch.uint8)
        >>> ga.Pipeline([ga.RandomSolarize(128, p=1.0)])(x).tolist()
        [[[10, 55]]]
    """

    def __init__(self, threshold: float, p: float = 0.5) -> None:
        super().__init__(p)
        if not isinstance(threshold, numbers.Real) or threshold < 0:
            raise ValueError(f"threshold must be a non-negative number, got {threshold!r}")
        self.threshold = float(threshold)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        if self.threshold > Domain(spec.dtype).bound:
            raise ValueError(f"threshold {self.threshold} is above the maximum value of {spec.dtype} images")
        return super().output_spec(spec)

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        return C.solarize(x, self.threshold, domain)


class RandomPosterize(_RandomColorOp):
    """Keep ``bits`` bits per value with probability ``p``.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomPosterize(2, p=1.0)])(torch.tensor([[[200]]], dtype=torch.uint8)).item()
        192
    """

    def __init__(self, bits: int, p: float = 0.5) -> None:
        super().__init__(p)
        if not isinstance(bits, numbers.Integral) or not 0 <= bits <= 8:
            raise ValueError(f"bits must be an int in [0, 8], got {bits!r}")
        self.bits = int(bits)

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        return C.posterize(x, self.bits, domain)


class RandomAutocontrast(_RandomColorOp):
    """Stretch each channel to the full range with probability ``p``.

    Example:
        >>> import torch, gpuaug as ga
        >>> x = torch.tensor([[[0.25, 0.5]]])
        >>> ga.Pipeline([ga.RandomAutocontrast(p=1.0)])(x).tolist()
        [[[0.0, 1.0]]]
    """

    channels = (1, 3)

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        return C.autocontrast(x, domain)


class RandomEqualize(_RandomColorOp):
    """Equalise each channel's histogram with probability ``p``.

    Example:
        >>> import torch, gpuaug as ga
        >>> x = torch.randint(0, 64, (2, 3, 32, 32), dtype=torch.uint8)
        >>> ga.Pipeline([ga.RandomEqualize(p=1.0)])(x).amax().item() > 200
        True
    """

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        return C.equalize(x, domain)
