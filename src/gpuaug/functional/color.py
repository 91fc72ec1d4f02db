"""Per-sample colour kernels on a float32 working batch, matching torchvision's arithmetic.

Every kernel takes ``x`` (B, C, H, W) float32 holding values in the image's own range
(0..255 for a uint8 image, 0..1 for a float image), per-sample parameters as (B,) tensors (or,
but for hue, numbers for a batch of one sample), and a :class:`Domain` saying which range that
is. With ``domain.integer`` the kernel truncates its result to whole numbers exactly where
torchvision's uint8 kernels do, so a uint8 pipeline matches torchvision step for step. Kernels
may overwrite ``x``; callers pass a tensor they own.

Example:
    >>> import torch
    >>> x = torch.full((2, 3, 2, 2), 100.0)
    >>> adjust_brightness(x, torch.tensor([0.5, 2.0]), Domain(torch.uint8))[:, 0, 0, 0]
    tensor([ 50., 200.])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from .. import _device

__all__ = [
    "Domain",
    "rgb_to_grayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "invert",
    "solarize",
    "posterize",
    "autocontrast",
    "equalize",
]

_GRAY = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class Domain:
    """The dtype an image has at a point of the pipeline, while its values are held as float32."""

    dtype: torch.dtype

    @property
    def integer(self) -> bool:
        return not self.dtype.is_floating_point

    @property
    def bound(self) -> float:
        return 255.0 if self.integer else 1.0


def _per_sample(v: Tensor | float) -> Tensor | float:
    """A (B,) parameter shaped to broadcast over (B, C, H, W); a number (one sample's) as it is."""
    return v if isinstance(v, float) else v.to(torch.float32).view(-1, 1, 1, 1)


def _finish(x: Tensor, domain: Domain) -> Tensor:
    """Clamp to the value range and truncate as torchvision's ``.to(uint8)`` does."""
    x = x.clamp_(0.0, domain.bound)
    return x.floor_() if domain.integer else x


def rgb_to_grayscale(x: Tensor, domain: Domain, truncate: bool = True) -> Tensor:
    """(B, 1, H, W) luma with torchvision's weights; truncated for integer images."""
    if x.shape[1] == 1:
        return x.clone()
    r, g, b = (plane.contiguous() for plane in x.unbind(1))  # ops on strided planes are slow on CPUs
    luma = (r * _GRAY[0]).add_(g, alpha=_GRAY[1]).add_(b, alpha=_GRAY[2]).unsqueeze(1)
    return luma.floor_() if truncate and domain.integer else luma


def _blend(x: Tensor, other: Tensor, factor: Tensor | float, domain: Domain) -> Tensor:
    """x * f + other * (1 - f), with 1 - f rounded once as torchvision's ``add_(alpha=1 - f)``; a number
    ``factor`` (one sample's) takes exactly torchvision's ops."""
    # a per-sample scalar (the contrast mean) as a plane on CPUs: they run addcmul with two broadcast
    # scalars several times slower, and round a broadcast scalar's last few products differently
    if _device.on_host(x.device) and other.shape[2:] != x.shape[2:]:
        other = other.expand(-1, 1, *x.shape[2:]).contiguous()
    if isinstance(factor, float):
        return _finish(x.mul_(factor).add_(other, alpha=1.0 - factor), domain)
    return _finish(x.mul_(_per_sample(factor)).addcmul_(other, _per_sample(1.0 - factor.double())), domain)


def adjust_brightness(x: Tensor, factor: Tensor | float, domain: Domain) -> Tensor:
    """x * factor, clamped."""
    return _finish(x.mul_(_per_sample(factor)), domain)


def adjust_contrast(x: Tensor, factor: Tensor | float, domain: Domain) -> Tensor:
    """Blend with the mean of the image's (truncated) grayscale."""
    return _blend(x, rgb_to_grayscale(x, domain).mean(dim=(1, 2, 3), keepdim=True), factor, domain)


def adjust_saturation(x: Tensor, factor: Tensor | float, domain: Domain) -> Tensor:
    """Blend with the (truncated) grayscale image; one-channel images pass unchanged."""
    if x.shape[1] == 1:
        return x
    return _blend(x, rgb_to_grayscale(x, domain), factor, domain)


def _wrap6(k: Tensor, scratch: Tensor) -> Tensor:
    """k mod 6 in place, for k >= 0: k - 6 floor(k / 6) (faster than remainder on CPUs; ``scratch`` like k)."""
    return k.add_(torch.mul(k, 1.0 / 6.0, out=scratch).floor_(), alpha=-6.0)


def adjust_hue(x: Tensor, shift: Tensor, domain: Domain) -> Tensor:
    """Rotate the HSV hue by ``shift`` (fraction of a turn in [-0.5, 0.5]); value and saturation kept.

    Hue H as torchvision's ``_rgb_to_hsv`` defines it, in sixths of a turn: the max channel picks the
    formula, red before green before blue on ties (lerp by a 0/1 weight returns one end exactly).
    Back to RGB with the closed form f(n) = V - C * clamp(min(k, 4 - k), 0, 1), k = (n + H) mod 6,
    which is torchvision's sextant table without the table, for the three channels at once. Every
    pass writes into ``x`` or into planes of one scratch tensor (and, for a float image, one mask of
    its V channels): on CPUs, a handful of separately allocated temporaries are returned to the system
    and page-faulted in again at every call.
    """
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    scratch = torch.empty((x.shape[0], 5, *x.shape[2:]), dtype=x.dtype, device=x.device)
    maxc, chroma, hue, other, weight = scratch.unbind(1)
    torch.amax(x, dim=1, out=maxc)  # amax and amin: much faster than aminmax or argmax over channels on CPUs
    torch.sub(maxc, torch.amin(x, dim=1, out=chroma), out=chroma)
    torch.sub(r, g, out=hue).add_(chroma, alpha=4.0)
    torch.sub(b, r, out=other).add_(chroma, alpha=2.0)
    hue.lerp_(other, torch.eq(g, maxc, out=weight))  # a float weight: CPUs run bool masks and where slowly
    hue.lerp_(torch.sub(g, b, out=other), torch.eq(r, maxc, out=weight))
    hue.mul_(torch.clamp(chroma, min=1e-12, out=weight).reciprocal_())  # grey pixels: chroma 0, hue 0
    hue = _wrap6(hue.add_(6.0 * (1.0 + _per_sample(shift)[:, 0])), weight)  # in [0, 6)
    offsets = _device.constant((5.0, 3.0, 1.0), torch.float32, x.device).view(1, 3, 1, 1)
    k = torch.add(hue.unsqueeze(1), offsets, out=x)  # x is free: r, g, b are read
    t = scratch[:, 2:]  # hue, other and weight are free: hue is read into k
    k.add_(torch.ge(k, 6.0, out=t), alpha=-6.0)  # mod 6, as k = H + n < 11
    # a float image's channel with k in [4, 6) is V, which torchvision leaves as it is (a float image
    # may hold values outside [0, 1], e.g. after unclipped noise); it clamps the other two
    holds_value = None if domain.integer else k >= 4.0
    four = _device.constant((4.0,), torch.float32, x.device)  # ``sub`` takes no number first
    t = torch.minimum(k, torch.sub(four, k, out=t), out=t).clamp_(0.0, 1.0)
    out = torch.sub(maxc.unsqueeze(1), t.mul_(chroma.unsqueeze(1)), out=x)
    if domain.integer:  # torchvision converts to float in [0, 1] and back with x * 255.999
        return out.mul_(255.999 / 255.0).floor_().clamp_(0.0, 255.0)
    return torch.where(holds_value, maxc.unsqueeze(1), out.clamp_(0.0, 1.0), out=out)


def invert(x: Tensor, domain: Domain) -> Tensor:
    return torch.sub(domain.bound, x, out=x)


def solarize(x: Tensor, threshold: float, domain: Domain) -> Tensor:
    """Invert the values at or above ``threshold``."""
    return torch.where(x >= threshold, domain.bound - x, x)


def posterize(x: Tensor, bits: int, domain: Domain) -> Tensor:
    """Keep the top ``bits`` bits of each value (float images: ``2**bits`` levels)."""
    if domain.integer:
        step = float(1 << (8 - bits))
        return x.div_(step).floor_().mul_(step)
    levels = float(1 << bits)
    return x.mul_(levels).floor_().clamp_(0.0, levels - 1.0).mul_(1.0 / levels)


def autocontrast(x: Tensor, domain: Domain) -> Tensor:
    """Stretch each channel of each image to the full range."""
    minimum = x.amin(dim=(2, 3), keepdim=True)
    maximum = x.amax(dim=(2, 3), keepdim=True)
    flat = maximum == minimum
    inv_scale = torch.where(flat, torch.ones_like(maximum), (maximum - minimum) * (1.0 / domain.bound))
    minimum = torch.where(flat, torch.zeros_like(minimum), minimum)
    return _finish(x.sub_(minimum).div_(inv_scale), domain)


def equalize(x: Tensor, domain: Domain) -> Tensor:
    """Histogram equalisation per channel, by torchvision's own batched kernel."""
    image = x.to(torch.uint8) if domain.integer else x
    return TF.equalize(image).to(torch.float32)
