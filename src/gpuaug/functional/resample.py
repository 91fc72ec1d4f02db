"""Resampling kernels: one pass from the source image through a (B, 3, 3) matrix per sample.

Two kernels compute the same map:

- :func:`warp_separable` for axis-aligned maps (crop, resize, flip, pad and their compositions):
  exact torchvision ``resize`` semantics, antialiased when shrinking, as two batched matrix
  products with per-sample filter weights;
- :func:`warp_grid` for any map (rotation, shear, perspective): ``grid_sample`` on the composed
  matrix, with optional supersampling as the antialiasing approximation.

Values are float32 in the image's own value range; the caller rounds for uint8.

Example:
    >>> import torch
    >>> from gpuaug import geometry
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> A = geometry.horizontal_flip(torch.tensor([True]), width=4)
    >>> bool(torch.equal(warp_grid(x, A, (4, 4), "nearest", Padding()), x.flip(-1)))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Padding", "warp_separable", "warp_grid", "fold_index"]

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


@dataclass(frozen=True)
class Padding:
    """What a sample outside the source image reads: ``fill`` or the image's edge, mirrored."""

    mode: str = "constant"
    fill: tuple[float, ...] = (0.0,)

    def fill_tensor(self, channels: int, device: torch.device) -> Tensor:
        fill = self.fill * channels if len(self.fill) == 1 else self.fill
        return torch.tensor(fill, dtype=torch.float32, device=device).view(1, channels, 1, 1)

    @property
    def has_fill(self) -> bool:
        return self.mode == "constant" and any(v != 0 for v in self.fill)


def fold_index(t: Tensor, n: int, mode: str) -> Tensor:
    """Map integer coordinates ``t`` outside [0, n) back inside, per padding ``mode``.

    ``constant`` clamps (the caller zeroes those weights and adds the fill).
    """
    if mode in ("constant", "edge") or n == 1:
        return t.clamp(0, n - 1)
    if mode == "reflect":  # mirror about the edge pixels' centres: ... 2 1 | 0 1 2 ... n-1 | n-2 ...
        t = t.abs() % (2 * n - 2)
        return torch.where(t >= n, 2 * n - 2 - t, t)
    t = t % (2 * n)  # symmetric: the edge pixel repeats
    return torch.where(t >= n, 2 * n - 1 - t, t)


def _filter(x: Tensor, interpolation: str, antialias: bool) -> Tensor:
    x = x.abs()
    if interpolation == "bilinear":
        return (1.0 - x).clamp_(min=0.0)
    a = -0.5 if antialias else -0.75  # torch's antialiased kernels use PIL's -0.5, plain bicubic -0.75
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _axis_taps(
    a: Tensor,
    b: Tensor,
    window: tuple[Tensor, Tensor],
    out_len: int,
    in_len: int,
    interpolation: str,
    antialias: bool,
    max_scale: float,
    mode: str,
) -> tuple[Tensor, Tensor]:
    """Source indices and weights, both (B, out, taps), for ``src = a * out + b`` along one axis.

    ``window`` (lo, hi) are the inclusive source indices the filter may read (the canvas the
    resampling transform saw, as torchvision's crop-then-resize reads only the crop). Indices
    outside the image are folded back by ``mode``; with ``constant`` their weight is zeroed, so
    the weights' sum is what stayed inside the image and a fill makes up the rest.
    """
    j = torch.arange(out_len, dtype=torch.float64, device=a.device)
    centre = a[:, None] * j + b[:, None]
    lo, hi = window[0][:, None, None], window[1][:, None, None]
    if interpolation == "nearest":
        # torchvision's nearest reads the pixel holding the start of the output pixel's footprint,
        # computed as torch does: floor(float32(j) * float32(scale)), plus the whole-pixel offset
        offset = b + 0.5 - 0.5 * a
        offset = torch.where((offset - offset.round()).abs() < 1e-6, offset.round(), offset)
        start = (j.to(torch.float32) * a.to(torch.float32)[:, None]).to(torch.float64) + offset[:, None]
        taps = torch.where(a[:, None] > 0, start.floor(), start.ceil() - 1)[..., None]
        taps = torch.minimum(torch.maximum(taps, lo), hi)
        weights = torch.ones_like(taps)
    else:
        base_support = 1.0 if interpolation == "bilinear" else 2.0
        stretch = a.abs().clamp(min=1.0)[:, None, None] if antialias else torch.ones_like(a)[:, None, None]
        num_taps = math.floor(2 * base_support * (max_scale if antialias else 1.0)) + 1
        first = (centre[..., None] - base_support * stretch).floor() + 1
        taps = first + torch.arange(num_taps, dtype=torch.float64, device=a.device)
        weights = _filter((taps - centre[..., None]) / stretch, interpolation, antialias)
        if interpolation == "bicubic" and not antialias:  # torch's plain bicubic repeats the edge pixels
            taps = torch.minimum(torch.maximum(taps, lo), hi)
        else:  # the antialiased kernels (and bilinear) drop taps outside the window and renormalise
            weights = weights * ((taps >= lo) & (taps <= hi))
            weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    taps = taps.to(torch.int64)
    if mode == "constant":
        weights = weights * ((taps >= 0) & (taps < in_len))
    return fold_index(taps, in_len, mode), weights.to(torch.float32)


def _dense(taps: Tensor, weights: Tensor, in_len: int) -> Tensor:
    """(B, out, in) matrix holding the tap weights."""
    dense = torch.zeros(*taps.shape[:2], in_len, dtype=torch.float32, device=taps.device)
    return dense.scatter_add_(2, taps, weights)


def _split(scale: Tensor, offset: Tensor, window: Tensor, axis: int) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
    return scale[:, axis], offset[:, axis], (window[:, 2 * axis], window[:, 2 * axis + 1])


def warp_separable(
    x: Tensor,
    scale: Tensor,
    offset: Tensor,
    window: Tensor,
    out_hw: tuple[int, int],
    interpolation: str,
    antialias: bool,
    max_scale: tuple[float, float],
    padding: Padding,
    integer: bool = False,
) -> Tensor:
    """Axis-aligned resampling: ``src_x = scale[:, 0] * x + offset[:, 0]`` (same for y, index 1).

    ``window`` (B, 4) = (x_lo, x_hi, y_lo, y_hi) inclusive source indices the filter may read.
    Two batched matrix products (rows, then columns) with dense per-sample weights: on CPUs and
    GPUs alike this beats gathering taps. With ``integer`` the intermediate (after the horizontal
    pass) is rounded and clamped to uint8 values, as torchvision's native uint8 resize does.
    Returns float32 (B, C, Ho, Wo).
    """
    batch, channels, height, width = x.shape
    out_h, out_w = out_hw
    if interpolation == "nearest":
        return _gather_nearest(x, scale, offset, window, out_hw, padding)
    args = (interpolation, antialias)
    tx, wx = _axis_taps(*_split(scale, offset, window, 0), out_w, width, *args, max_scale[1], padding.mode)
    ty, wy = _axis_taps(*_split(scale, offset, window, 1), out_h, height, *args, max_scale[0], padding.mode)
    y = torch.bmm(x.to(torch.float32).reshape(batch, channels * height, width), _dense(tx, wx, width).transpose(1, 2))
    if integer:
        y = y.round_().clamp_(0.0, 255.0)
    y = torch.matmul(_dense(ty, wy, height)[:, None], y.view(batch, channels, height, out_w))
    if padding.has_fill:
        outside = 1.0 - wy.sum(-1)[:, None, :, None] * wx.sum(-1)[:, None, None, :]
        y.add_(outside * padding.fill_tensor(channels, x.device))
    return y


def _gather_nearest(
    x: Tensor, scale: Tensor, offset: Tensor, window: Tensor, out_hw: tuple[int, int], padding: Padding
) -> Tensor:
    """Nearest-neighbour axis-aligned maps (crops, flips, pads, nearest resizes): one gather, in x's dtype."""
    batch, channels, height, width = x.shape
    out_h, out_w = out_hw
    tx, wx = _axis_taps(*_split(scale, offset, window, 0), out_w, width, "nearest", False, 1.0, padding.mode)
    ty, wy = _axis_taps(*_split(scale, offset, window, 1), out_h, height, "nearest", False, 1.0, padding.mode)
    flat = (ty[:, :, 0, None] * width + tx[:, None, :, 0]).view(batch, 1, out_h * out_w)
    y = x.reshape(batch, channels, height * width).gather(2, flat.expand(batch, channels, -1))
    y = y.view(batch, channels, out_h, out_w)
    if padding.mode == "constant":
        inside = (wy[:, :, 0, None] * wx[:, None, :, 0] > 0).view(batch, 1, out_h, out_w)
        y = torch.where(inside, y, padding.fill_tensor(channels, x.device).to(y.dtype))
    return y


def _source_grid(matrix: Tensor, out_hw: tuple[int, int], supersample: int) -> Tensor:
    """(B, Ho*k, Wo*k, 2) source coordinates (x, y) in index space, float64."""
    out_h, out_w = out_hw
    k = supersample
    dev = matrix.device
    ys = (torch.arange(out_h * k, dtype=torch.float64, device=dev) + 0.5) / k - 0.5
    xs = (torch.arange(out_w * k, dtype=torch.float64, device=dev) + 0.5) / k - 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(1, -1, 3)
    src = pts @ matrix.transpose(1, 2)
    src = src[..., :2] / src[..., 2:]
    return src.view(matrix.shape[0], out_h * k, out_w * k, 2)


def _fold_coordinate(v: Tensor, n: int) -> Tensor:
    """Continuous reflection about the centres of the edge pixels (torch 'reflect')."""
    if n == 1:
        return torch.zeros_like(v)
    period = 2.0 * (n - 1)
    v = torch.remainder(v, period)
    return torch.where(v > n - 1, period - v, v)


def warp_grid(
    x: Tensor,
    matrix: Tensor,
    out_hw: tuple[int, int],
    interpolation: str,
    padding: Padding,
    supersample: int = 1,
) -> Tensor:
    """General resampling through ``matrix`` with ``grid_sample`` (align_corners=False).

    ``supersample`` k > 1 averages k x k samples per output pixel (antialiasing when the map
    shrinks). Returns float32 (B, C, Ho, Wo).
    """
    batch, channels, height, width = x.shape
    src = _source_grid(matrix, out_hw, supersample)
    if padding.mode == "reflect":
        src = torch.stack([_fold_coordinate(src[..., 0], width), _fold_coordinate(src[..., 1], height)], -1)
    size = torch.tensor([width, height], dtype=torch.float64, device=x.device)
    grid = ((2.0 * src + 1.0) / size - 1.0).to(torch.float32)
    grid_mode = {"constant": "zeros", "edge": "border", "reflect": "border", "symmetric": "reflection"}[padding.mode]
    image = x.to(torch.float32)
    if padding.has_fill:
        image = torch.cat([image, torch.ones_like(image[:, :1])], dim=1)
    y = F.grid_sample(image, grid, mode=interpolation, padding_mode=grid_mode, align_corners=False)
    if padding.has_fill:
        y, mask = y[:, :channels], y[:, channels:]
        y = y + (1.0 - mask) * padding.fill_tensor(channels, x.device)
    if supersample > 1:
        y = F.avg_pool2d(y, supersample)
    return y
