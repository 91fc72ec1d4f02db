"""Resampling kernels: one pass from the source image through a (B, 3, 3) matrix per sample.

Two kernels compute the same map:

- :func:`warp_separable` for axis-aligned maps (crop, resize, flip, pad and their compositions):
  exact torchvision ``resize`` semantics, antialiased when shrinking, rows then columns with
  per-sample filter taps (batched matrix products on accelerators, tap gathers on the CPU);
- :func:`warp_grid` for any map (rotation, shear, perspective): ``grid_sample`` on the composed
  matrix, with optional supersampling as the antialiasing approximation.

Values are float32 in the image's own value range; the caller rounds for uint8.

Example:
    >>> import torch
    >>> from gpuaug import geometry
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> A = geometry.horizontal_flip(torch.tensor([True]), width=4)
    >>> bool(torch.equal(warp_grid(x, [Link(A, 4, 4, None)], (4, 4), "nearest"), x.flip(-1)))
    True
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _device
from .._device import constant
from .filters import weighted_sum

__all__ = ["Padding", "Link", "Resampled", "AxisTaps", "separable_taps", "warp_separable", "warp_grid", "fold_index", "round_half_up"]

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


@dataclass(frozen=True)
class Padding:
    """What a sample outside the source image reads: ``fill`` or the image's edge, mirrored."""

    mode: str = "constant"
    fill: tuple[float, ...] = (0.0,)

    def fill_tensor(self, channels: int, device: torch.device) -> Tensor:
        fill = self.fill * channels if len(self.fill) == 1 else self.fill
        return constant(fill, torch.float32, device).view(1, channels, 1, 1)

    @property
    def has_fill(self) -> bool:
        return self.mode == "constant" and any(v != 0 for v in self.fill)


@dataclass
class Link:
    """One geometric step of a folded pass: its output -> input ``matrix`` (B, 3, 3), the size of
    its input canvas, what it shows outside that canvas (None: it never looks there), and whether
    it interpolates (a resize, rotation, ...; not a crop, pad or flip)."""

    matrix: Tensor
    height: int
    width: int
    padding: Padding | None
    interpolates: bool = False


class Resampled(NamedTuple):
    """The output of the step that interpolates, where later steps of the pass crop or pad it: its map
    to the source (B, 3, 3) and its size. torch's uint8 resize, which the separable weights round as,
    sets its precision from its whole output."""

    matrix: Tensor
    height: int
    width: int


class AxisTaps(NamedTuple):
    """A separable warp along one axis: source ``taps`` and their ``weights``, both (B, out, taps), and
    the outer links' (coverage (B, out), padding) pairs, innermost first."""

    taps: Tensor
    weights: Tensor
    covers: list


def _scale_shift(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """The per-axis ``src = a * out + b`` of axis-aligned maps (B, 3, 3): a and b, both (B, 2) (x, y)."""
    return matrix.diagonal(dim1=1, dim2=2)[:, :2], matrix[:, :2, 2]


def _coverage(v: Tensor, n: int, hard: bool) -> Tensor:
    """How much of an interpolated sample at coordinate ``v`` falls inside [0, n - 1] (1 inside,
    falling to 0 one pixel outside); nearest sampling keeps it when at least half is inside."""
    c = torch.minimum(v + 1.0, n - v).clamp_(0.0, 1.0)
    return (c >= 0.5).to(c.dtype) if hard else c


def _fold_continuous(v: Tensor, n: int, mode: str) -> Tensor:
    """Fold continuous coordinates outside [0, n - 1] back inside, per padding ``mode``."""
    if mode == "edge" or n == 1:
        return v.clamp(0.0, n - 1.0)
    if mode == "reflect":  # about the edge pixels' centres
        period = 2.0 * (n - 1)
        v = torch.remainder(v, period)
        return torch.where(v > n - 1, period - v, v)
    v = torch.remainder(v + 0.5, 2.0 * n)  # symmetric: about the edge pixels' outer borders
    return torch.where(v > n, 2.0 * n - v, v) - 0.5


def _trace(
    links: list[Link], points: Tensor, hard: bool, axis: int | None = None, last: Tensor | None = None
) -> tuple[Tensor, list]:
    """Map output ``points`` back through the outer links (all but the first), one canvas at a time.

    Where a link shows a constant fill, record how much of each sample stays inside its canvas;
    where it mirrors or repeats its edge, fold the points back inside. Returns the points in the
    first link's output coordinates, or through ``last`` (B, 3, 3) after that (composed with the
    outer links' trailing maps: one pass over the points), and the (coverage, padding) pairs,
    innermost first. ``axis`` None: points (B or 1, N, 2) with homogeneous matrices; 0 or 1:
    coordinates (B, N) along that axis.
    """
    covers = []
    pending = None
    for link in reversed(links[1:]):
        pending = link.matrix if pending is None else link.matrix @ pending
        if link.padding is None:
            continue
        points = _map(pending, points, axis)
        pending = None
        sizes = (link.width, link.height)
        if link.padding.mode == "constant":
            if axis is None:
                cover = _coverage(points[..., 0], sizes[0], hard) * _coverage(points[..., 1], sizes[1], hard)
            else:
                cover = _coverage(points, sizes[axis], hard)
            covers.append((cover, link.padding))
        elif axis is None:
            points = torch.stack([_fold_continuous(points[..., i], sizes[i], link.padding.mode) for i in (0, 1)], -1)
        else:
            points = _fold_continuous(points, sizes[axis], link.padding.mode)
    if last is not None:
        pending = last if pending is None else last @ pending
    if pending is not None:
        points = _map(pending, points, axis)
    return points, covers[::-1]


def _map(matrix: Tensor, points: Tensor, axis: int | None) -> Tensor:
    """``points`` through ``matrix`` (B, 3, 3): (B or 1, N, 2) points with homogeneous division for
    ``axis`` None, else (B, N) coordinates along that axis of an axis-aligned map.

    Elementwise: a batched product with 3 columns runs several times slower on CPUs."""
    if axis is None:
        x, y = points[..., 0], points[..., 1]
        u, v, w = (torch.addcmul(matrix[:, r, 2, None], x, matrix[:, r, 0, None]).addcmul_(y, matrix[:, r, 1, None]) for r in range(3))
        return torch.stack([u.div_(w), v.div_(w)], dim=-1)
    return matrix[:, axis, axis, None] * points + matrix[:, axis, 2, None]


def _blend_fill(y: Tensor, cover: Tensor, padding: Padding) -> Tensor:
    """y where ``cover`` (B, Ho, Wo) is 1, ``padding``'s fill where it is 0, mixed in between."""
    y = y.to(torch.float32)
    outside = 1.0 - cover[:, None].to(torch.float32)
    return torch.lerp(y, padding.fill_tensor(y.shape[1], y.device), outside)  # exactly y at 0 and the fill at 1


def fold_index(t: Tensor, n: int, mode: str) -> Tensor:
    """Map integer coordinates ``t`` outside [0, n) back inside, per padding ``mode``.

    ``constant`` clamps (the caller zeroes those weights and adds the fill).
    """
    if mode == "constant":
        return t.clamp(min=0).clamp(max=n - 1)  # n may be a tensor: one length per sample
    return _fold_continuous(t.to(torch.float64), n, mode).round_().to(torch.int64)


def _filter(x: Tensor, interpolation: str, antialias: bool) -> Tensor:
    x = x.abs()
    if interpolation == "bilinear":
        return (1.0 - x).clamp_(min=0.0)
    a = -0.5 if antialias else -0.75  # torch's antialiased kernels use PIL's -0.5, plain bicubic -0.75
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _fixed_point(weights: Tensor, largest: Tensor) -> Tensor:
    """The weights (2, B, out, taps) rounded as torch's native uint8 resize rounds its int16 weights.

    Per axis and sample, to whole multiples of 2**-p, halves away from zero, with p the most bits (up
    to 22) for which the ``largest`` weight w (2, B, 1, 1) of torch's resize times 2**p still rounds
    below 2**15 (fits an int16): the count of q >= 0 with w * 2**(q + 1) < 32767.5, i.e.
    ceil(log2(16383.75 / w)). Every partial sum over uint8 values is then exact in float32 (for
    p <= 16, that is down to about a quarter of the size), so the result does not depend on the order
    a backend sums in, and rounding the sum half up gives torch's ``(sum + 2**(p-1)) >> p`` bit for bit.
    """
    steps = torch.exp2(torch.log2(16383.75 / largest).ceil_().clamp_(0.0, 22.0))
    return (weights.abs().mul_(steps).add_(0.5).floor_().copysign_(weights)).div_(steps)


def _largest(weights: Tensor, lens: tuple[int, int]) -> Tensor:
    """The largest |weight| (2, B, 1, 1) over each axis' own first ``lens`` (x, y) rows."""
    magnitude = weights.abs()
    if lens[0] != lens[1]:
        rows = torch.arange(weights.shape[2], device=weights.device).view(1, 1, -1, 1)
        magnitude = magnitude * (rows < constant(lens, torch.int64, weights.device).view(2, 1, 1, 1))
    return magnitude.amax(dim=(2, 3), keepdim=True)


def _window_taps(
    centre: Tensor, a: Tensor, lo: Tensor, hi: Tensor, interpolation: str, antialias: bool, num_taps: int
) -> tuple[Tensor, Tensor]:
    """The filter's source indices (float64) and weights, both (2, B, out, taps), at each ``centre``
    (2, B, out) of a map of scale ``a`` (2, B), reading only the window [``lo``, ``hi``] (2, B, 1, 1)."""
    stretch = a.abs().clamp(min=1.0)[..., None, None] if antialias else 1.0
    base_support = 1.0 if interpolation == "bilinear" else 2.0
    first = (centre[..., None] - base_support * stretch).floor() + 1
    taps = first + torch.arange(num_taps, dtype=torch.float64, device=centre.device)
    weights = _filter((taps - centre[..., None]) / stretch, interpolation, antialias)
    if interpolation == "bicubic" and not antialias:  # torch's plain bicubic repeats the edge pixels
        return torch.minimum(torch.maximum(taps, lo), hi), weights
    # the antialiased kernels (and bilinear) drop taps outside the window and renormalise; a pixel with
    # (next to) nothing of its filter inside lies outside the window, where a fill shows: no weights
    # (renormalising a few tail taps would give huge ones)
    weights = weights * ((taps >= lo) & (taps <= hi))
    total = _tap_sum(weights)
    return taps, weights * (total > 1e-3) / total.clamp(min=1e-3)


def round_half_up(y: Tensor) -> Tensor:
    """``floor(y + 0.5)`` in place: how torch's native uint8 resize rounds its fixed-point sums."""
    return y.add_(0.5).floor_()


def _centres(a: Tensor, b: Tensor, j: Tensor) -> Tensor:
    """The source coordinates (2, B, out) of output pixels ``j`` (out,) under ``src = a * out + b`` (2, B)."""
    return a[..., None] * j + b[..., None]


def _axes_taps(
    a: Tensor,
    b: Tensor,
    window: Tensor,
    out_lens: tuple[int, int],
    in_lens: tuple[int | Tensor, int | Tensor],
    interpolation: str,
    antialias: bool,
    max_scale: float,
    mode: str,
    centre: Tensor | None = None,
    integer: bool = False,
    resampled: Resampled | None = None,
    index: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Source indices and weights, both (2, B, out, taps), along x and y at once, for
    ``src = a * out + b`` per axis ``a``, ``b`` (2, B) (or at the given source ``centre`` (2, B, out)
    of each output pixel).

    ``window`` (2, B, 2) holds each axis' (lo, hi): the inclusive source indices the filter may read
    (the canvas the resampling transform saw, as torchvision's crop-then-resize reads only the crop).
    ``in_lens`` are the image's width and height (ints, or (B, 1, 1) per sample). Indices outside the
    image are folded back by ``mode``; with ``constant`` their weight is zeroed, so the weights' sum is
    what stayed inside the image and a fill makes up the rest. ``out_lens`` (x, y): each axis' output
    length; ``integer``: uint8 values, whose weights are rounded as torch rounds them (_fixed_point);
    ``resampled``: the output of the step that interpolates when later steps crop or pad it (torch's
    resize then has rows that are not in this output). ``index`` (2, B, out), nearest only: the
    output pixels as coordinates in the output that ``a`` and ``b`` map (None: 0, 1, 2, ...).
    """
    j = torch.arange(max(out_lens), dtype=torch.float64, device=a.device)
    lo, hi = window[..., 0, None, None], window[..., 1, None, None]
    if interpolation == "nearest":
        # torchvision's nearest reads the pixel holding the start of the output pixel's footprint,
        # computed as torch does: floor(float32(j) * float32(scale)), plus the whole-pixel offset
        offset = b + 0.5 - 0.5 * a
        offset = torch.where((offset - offset.round()).abs() < 1e-6, offset.round(), offset)
        j = j if index is None else index
        start = (j.to(torch.float32) * a.to(torch.float32)[..., None]).to(torch.float64) + offset[..., None]
        taps = torch.where(a[..., None] > 0, start.floor(), start.ceil() - 1)[..., None]
        taps = torch.minimum(torch.maximum(taps, lo), hi)
        weights = torch.ones_like(taps)
    else:
        num_taps = _tap_count(interpolation, antialias, max_scale)
        centre = _centres(a, b, j) if centre is None else centre
        taps, weights = _window_taps(centre, a, lo, hi, interpolation, antialias, num_taps)
        if integer:  # before the image's edge zeroes weights: torch resizes the padded crop
            if resampled is None:
                largest = _largest(weights, out_lens)
            else:  # the same filter over the interpolating step's own output
                a_r, b_r = (v.T for v in _scale_shift(resampled.matrix))
                lens_r = (resampled.width, resampled.height)
                centre_r = _centres(a_r, b_r, torch.arange(max(lens_r), dtype=torch.float64, device=a.device))
                largest = _largest(_window_taps(centre_r, a_r, lo, hi, interpolation, antialias, num_taps)[1], lens_r)
            weights = _fixed_point(weights, largest)
    taps = taps.to(torch.int64)
    if mode == "constant":
        in_len = _per_axis(in_lens, a.device)
        weights = weights * ((taps >= 0) & (taps < in_len))
        taps = fold_index(taps, in_len, mode)
    else:
        taps = torch.stack([fold_index(taps[axis], n, mode) for axis, n in enumerate(in_lens)])
    return taps, weights.to(torch.float32)


def _per_axis(in_lens: tuple[int | Tensor, int | Tensor], device: torch.device) -> Tensor:
    """The (width, height) pair as a (2, 1 or B, 1, 1) tensor."""
    if isinstance(in_lens[0], Tensor):
        return torch.stack(in_lens)
    return constant(in_lens, torch.int64, device).view(2, 1, 1, 1)


def _tap_count(interpolation: str, antialias: bool, max_scale: float) -> int:
    """Taps per output pixel along an axis that reads at most ``max_scale`` source pixels per output pixel."""
    if interpolation == "nearest":
        return 1
    base_support = 1.0 if interpolation == "bilinear" else 2.0
    return math.floor(2 * base_support * (max_scale if antialias else 1.0)) + 1


def _tap_sum(weights: Tensor) -> Tensor:
    """The weights' sum over the taps (last axis, kept): a few taps are added one by one, since the
    CPU's .sum(-1) over a short last axis is several times slower (3 taps: 6x); more taps, one sum."""
    if weights.shape[-1] > 4:
        return weights.sum(-1, keepdim=True)
    return functools.reduce(operator.add, weights.unbind(-1))[..., None]


def separable_taps(
    x_shape: tuple[int, ...],
    matrix: Tensor,
    links: list[Link],
    window: Tensor,
    out_hw: tuple[int, int],
    interpolation: str,
    antialias: bool,
    max_scale: tuple[float, float],
    integer: bool = False,
    sizes: Tensor | None = None,
    resampled: Resampled | None = None,
) -> tuple[AxisTaps, AxisTaps]:
    """The taps of a separable warp along x and along y, computed for both axes together (one set
    of tensor ops, each a kernel launch on a GPU).

    ``matrix`` is the composed map of ``links``. ``integer``: the image holds uint8 values (the
    weights are then rounded as torch's, see _fixed_point); ``sizes`` (B, 2) (height, width) of each
    image of a ragged batch (None: the whole input); ``max_scale`` (y, x) and ``resampled`` as
    :class:`gpuaug.plan.Warp` has them.

    torch's nearest resize rounds where its own output pixels lie, so a nearest pass traces its
    output pixels back to the output of the last link that interpolates (exactly: the crops, pads
    and flips after it move whole pixels) and maps them on through the links up to it; without
    such a link, every link moves whole pixels and the composed map is exact.
    """
    batch = matrix.shape[0]
    out_h, out_w = out_hw
    length = max(out_hw)
    in_lens = (x_shape[3], x_shape[2]) if sizes is None else (sizes[:, 1, None, None], sizes[:, 0, None, None])
    nearest = interpolation == "nearest"
    interpolating = [k for k, link in enumerate(links) if link.interpolates]
    first = interpolating[-1] if nearest and interpolating else 0  # where the points are traced back to
    later = links[first + 1 :]
    outer = [link.padding for link in later if link.padding is not None]  # later links that pad
    traced = [(None, [])] * 2  # per axis: the output points in links[first]'s output, and the covers
    if outer or (nearest and interpolating and later):
        j = torch.arange(length, dtype=torch.float64, device=matrix.device).expand(batch, length)
        traced = [_trace(links[first:], j, nearest, axis) for axis in (0, 1)]
    index = centre = None
    if nearest and traced[0][0] is not None:
        matrix = functools.reduce(torch.matmul, [link.matrix for link in links[: first + 1]])
        index = torch.stack([traced[axis][0] for axis in (0, 1)])
    elif any(p.mode != "constant" for p in outer):
        centre = torch.stack([_map(links[0].matrix, traced[axis][0], axis) for axis in (0, 1)])
    padding = links[0].padding or Padding()
    a, b = _scale_shift(matrix)
    taps, weights = _axes_taps(
        a.T, b.T, window.reshape(batch, 2, 2).transpose(0, 1), (out_w, out_h), in_lens, interpolation,
        antialias, max(max_scale), padding.mode, centre, integer, resampled, index,
    )
    result = []
    for axis, out_len, scale in ((0, out_w, max_scale[1]), (1, out_h, max_scale[0])):
        count = _tap_count(interpolation, antialias, scale)  # the axis' own taps; the rest weigh nothing
        covers = [(cover[:, :out_len], link_padding) for cover, link_padding in traced[axis][1]]
        result.append(AxisTaps(taps[axis, :, :out_len, :count], weights[axis, :, :out_len, :count], covers))
    return result[0], result[1]


def _blend_covers(y: Tensor, covers_y: list, covers_x: list) -> Tensor:
    for (cy, padding), (cx, _) in zip(covers_y, covers_x):
        y = _blend_fill(y, cy[:, :, None] * cx[:, None, :], padding)
    return y


def _filter_rows_then_columns(
    x: Tensor,
    horizontal: tuple[Tensor, Tensor],
    vertical: tuple[Tensor, Tensor],
    integer: bool,
    boxes: list[tuple[int, ...] | None] | None = None,
    native: tuple[str, bool] | None = None,
) -> Tensor:
    """Each image row filtered along x, then each column along y; ``horizontal`` and ``vertical`` are
    (taps, weights), both (B, out, taps).

    Accelerators gather every sample's taps at once (_gather_taps). On the CPU each sample gathers
    only the rows and columns its taps read and sums its few taps per output pixel; a sample with a
    box from _plain_boxes instead calls torch's own resize (``native``: its interpolation and
    antialias), several times faster: for uint8 values both sum the taps in order with the same
    products, so they agree bit for bit; for float ones it is torchvision's own resize.
    """
    batch, channels, height, width = x.shape
    (tx, wx), (ty, wy) = horizontal, vertical
    if not _device.on_host(x.device):
        y = _gather_taps(x, tx, wx, 3)
        if integer:
            y = round_half_up(y).clamp_(0.0, 255.0)
        return _gather_taps(y, ty, wy, 2)
    out = torch.empty(batch, channels, ty.shape[1], tx.shape[1])
    cols = torch.stack([tx.flatten(1).amin(1), tx.flatten(1).amax(1) + 1], 1).tolist()
    rows = torch.stack([ty.flatten(1).amin(1), ty.flatten(1).amax(1) + 1], 1).tolist()
    used_x, used_y = (wx != 0).any(1).tolist(), (wy != 0).any(1).tolist()  # the taps that weigh, per sample
    for s, ((c0, c1), (r0, r1)) in enumerate(zip(cols, rows)):
        if boxes is not None and boxes[s] is not None:
            out[s] = _native_resize(x[s], boxes[s], out.shape[2:], *native)
            continue
        # (C, columns, rows): a gather along dim 1 then copies whole rows of memory
        part = torch.empty(channels, c1 - c0, r1 - r0).copy_(x[s, :, r0:r1, c0:c1].transpose(1, 2))
        y = _sum_taps(part, tx[s] - c0, wx[s], used_x[s], torch.empty(channels, tx.shape[1], r1 - r0))
        if integer:
            y = round_half_up(y).clamp_(0.0, 255.0)
        _sum_taps(y.transpose(1, 2).contiguous(), ty[s] - r0, wy[s], used_y[s], out[s])
    return out


def _plain_boxes(matrix: Tensor, window: Tensor, out_hw: tuple[int, int], sizes: Tensor) -> list[tuple[int, ...] | None]:
    """Per sample, (top, left, height, width, flip_y, flip_x) where its map is a crop of that box of its
    image resized to ``out_hw`` (align_corners=False), then flipped where said; None where it is not.

    ``window`` (B, 4) as warp_separable takes it; ``sizes`` (B, 2) the images' (height, width).
    On the host, in float64 numbers: a few per sample, which tensor ops would take far longer to run.
    """
    rows = zip(matrix.tolist(), window.tolist(), sizes.tolist())
    return [_plain_box(m, w, out_hw, size) for m, w, size in rows]


def _plain_box(m: list, window: list, out_hw: tuple[int, int], size: list) -> tuple[int, ...] | None:
    """_plain_boxes for one sample: ``m`` its 3x3 map, ``window`` (x_lo, x_hi, y_lo, y_hi), ``size`` (h, w)."""
    box = []
    for axis, (n_out, n_in) in enumerate(zip(out_hw[::-1], size[::-1])):  # x, then y
        a, b = m[axis][axis], m[axis][2]
        lo, hi = float(window[2 * axis]), float(window[2 * axis + 1])
        length = hi - lo + 1.0
        start = lo if a > 0 else hi + 1.0  # where output pixel 0's footprint starts
        plain = abs(abs(a) * n_out - length) < 1e-9 and abs(b - (start + 0.5 * a - 0.5)) < 1e-9  # False on NaN
        if not (plain and lo >= 0 and hi < n_in):
            return None
        box.append((int(lo), int(length), a < 0))
    (left, width, flip_x), (top, height, flip_y) = box
    return top, left, height, width, int(flip_y), int(flip_x)


def _native_resize(image: Tensor, box: tuple[int, ...], out_hw: tuple[int, int], interpolation: str, antialias: bool) -> Tensor:
    """One (C, H, W) image's ``box`` from _plain_boxes through torch's resize, flipped where the box says."""
    top, left, height, width, flip_y, flip_x = box
    crop = image[None, :, top : top + height, left : left + width]
    if crop.dtype == torch.uint8:  # channels-last: torch's uint8 kernel works on packed pixels, and packs a planar crop more slowly
        crop = crop.contiguous(memory_format=torch.channels_last)
    y = F.interpolate(crop, size=tuple(out_hw), mode=interpolation, antialias=antialias, align_corners=False)[0]
    return _flipped(y, flip_y, flip_x)


def _flipped(image: Tensor, flip_y: bool, flip_x: bool) -> Tensor:
    """A (C, H, W) image flipped along the axes said (itself where none)."""
    flips = [d for d, flip in ((1, flip_y), (2, flip_x)) if flip]
    return image.flip(flips) if flips else image


def _gather_taps(x: Tensor, taps: Tensor, weights: Tensor, dim: int) -> Tensor:
    """Along ``dim`` (2: rows, 3: columns) of x (B, C, H, W), output line o of sample b is the sum, in
    tap order, of x's lines ``taps[b, o, k]`` weighted by ``weights[b, o, k]`` (both (B, out, K)):
    _sum_taps' arithmetic for the whole batch at once. Float32 products and sums, not a product with
    dense weight matrices, which TF32 (``torch.backends.cuda.matmul.allow_tf32``) would round."""
    shape = list(x.shape)
    shape[dim] = taps.shape[1]
    lines = (x.shape[0], 1, -1, 1) if dim == 2 else (x.shape[0], 1, 1, -1)
    terms = ((x.gather(dim, taps[:, :, k].reshape(lines).expand(shape)), weights[:, :, k].reshape(lines))
             for k in range(taps.shape[2]))
    return weighted_sum(terms, torch.empty(shape, dtype=torch.float32, device=x.device))


def _sum_taps(x: Tensor, taps: Tensor, weights: Tensor, used: list[bool], out: Tensor) -> Tensor:
    """out = the sum, in tap order, of x[:, taps[:, k]] * weights[:, k, None] over the ``used`` taps k."""
    terms = ((x.index_select(1, taps[:, k]), weights[:, k, None]) for k, u in enumerate(used) if u)
    return weighted_sum(terms, out)


def _native_resizes(x: Tensor, out_w: int, interpolation: str, antialias: bool, integer: bool) -> bool:
    """Whether torch's own CPU resize of ``x`` computes what torchvision's resize does: float32 images
    (whose resize torchvision calls; it places its taps in float32 arithmetic, and the taps here come
    within about 2e-5 of it at 224 px), unless they
    hold a uint8 image's values, which the taps round after each pass as torchvision's uint8 resize does;
    and uint8 images, whose fixed-point arithmetic _fixed_point reproduces in the taps bit for bit
    (checked for bilinear, and antialiased bicubic), through torch's AVX2 kernel (up to 4 channels).
    Not to an output width of 1, where torch's kernels go wrong (the float one leaves enlarged rows
    unblended, the generic uint8 one differs, and the AVX2 one fails on 3 channels)."""
    if not _device.on_host(x.device) or interpolation not in ("bilinear", "bicubic") or out_w == 1:
        return False
    if x.dtype == torch.float32:
        return not integer
    return (
        x.dtype == torch.uint8 and integer and x.shape[1] <= 4
        and (interpolation == "bilinear" or antialias)
        and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    )


def warp_separable(
    x: Tensor,
    matrix: Tensor,
    links: list[Link],
    window: Tensor,
    out_hw: tuple[int, int],
    interpolation: str,
    antialias: bool,
    max_scale: tuple[float, float],
    integer: bool = False,
    sizes: Tensor | None = None,
    resampled: Resampled | None = None,
) -> Tensor:
    """Axis-aligned resampling through ``matrix``, the composed map of ``links`` (crops, resizes, flips, pads).

    ``window`` (B, 4) = (x_lo, x_hi, y_lo, y_hi) inclusive source indices the filter may read.
    Rows, then columns, through each sample's filter taps (see _filter_rows_then_columns); nearest
    maps are one gather in the input's dtype (on the CPU, a copy of each sample's window where the
    maps only crop and flip). With
    ``integer`` the intermediate (after the horizontal pass) is rounded and clamped to uint8 values,
    as torchvision's native uint8 resize does. ``sizes`` (B, 2): the (height, width) of each image
    of a ragged batch, which is all each sample reads. ``resampled``: see separable_taps.
    Returns (B, C, Ho, Wo): in the input's dtype for nearest maps, and on the CPU for a batch whose every
    sample is a plain crop-resize (torch's own resize, per sample; uint8 channels-last, as that kernel
    writes); float32 otherwise.
    """
    batch, channels, height, width = x.shape
    out_h, out_w = out_hw
    padding = links[0].padding or Padding()
    boxes = None
    covered = any(link.padding is not None and link.padding.mode == "constant" for link in links[1:])
    if not covered and _native_resizes(x, out_w, interpolation, antialias, integer):  # never nearest
        full = constant((height, width), torch.int64, x.device).expand(batch, 2)
        boxes = _plain_boxes(matrix, window, out_hw, full if sizes is None else sizes)
        if all(box is not None for box in boxes):  # no taps needed, nor rounding: the input's dtype out
            # uint8 channels-last, as torch's uint8 resize writes: a plain copy per sample, and the float
            # conversion that follows changes the layout in the same pass
            layout = torch.channels_last if x.dtype == torch.uint8 else torch.contiguous_format
            y = torch.empty(batch, channels, out_h, out_w, dtype=x.dtype, device=x.device, memory_format=layout)
            for s, box in enumerate(boxes):
                y[s] = _native_resize(x[s], box, out_hw, interpolation, antialias)
            return y
    (tx, wx, covers_x), (ty, wy, covers_y) = separable_taps(
        x.shape, matrix, links, window, out_hw, interpolation, antialias, max_scale, integer, sizes, resampled
    )
    if interpolation == "nearest":
        y = _copy_windows(x, ty[:, :, 0], tx[:, :, 0]) if _device.on_host(x.device) else None
        if y is None:
            flat = (ty[:, :, 0, None] * width + tx[:, None, :, 0]).view(batch, 1, out_h * out_w)
            y = x.reshape(batch, channels, height * width).gather(2, flat.expand(batch, channels, -1))
            y = y.view(batch, channels, out_h, out_w)
        if links[0].padding is not None and padding.mode == "constant":  # else no tap of the image is outside
            inside = (wy[:, :, 0, None] * wx[:, None, :, 0] > 0).view(batch, 1, out_h, out_w)
            fill = padding.fill_tensor(channels, x.device)
            if not y.is_floating_point():  # a whole number, as the dtype holds; carried as a float, as every
                fill = fill.trunc()  # other pass carries it, where the dtype cannot hold it (uint8 300)
                info = torch.iinfo(y.dtype)
                y = y if all(info.min <= v <= info.max for v in padding.fill) else y.to(torch.float32)
            y = torch.where(inside, y, fill.to(y.dtype))
        return _blend_covers(y, covers_y, covers_x)
    y = _filter_rows_then_columns(x, (tx, wx), (ty, wy), integer, boxes, (interpolation, antialias))
    if padding.has_fill:
        outside = _outside_share(wy.sum(-1)[:, None, :, None], wx.sum(-1)[:, None, None, :], integer)
        y.add_(outside * padding.fill_tensor(channels, x.device))
    return _blend_covers(y, covers_y, covers_x)


def _copy_windows(x: Tensor, rows: Tensor, columns: Tensor) -> Tensor | None:
    """Where the nearest source ``rows`` (B, Ho) and ``columns`` (B, Wo) of every sample are runs of
    consecutive pixels (crops and flips: steps of 1 or -1, or a single pixel), each sample's window
    copied, flipped where its run steps back (faster than one gather on CPUs); else None."""
    windows = []
    for taps in (rows, columns):
        step = taps[:, 1:] - taps[:, :-1] if taps.shape[1] > 1 else torch.ones_like(taps)
        if not bool(((step == step[:, :1]) & (step.abs() == 1)).all()):
            return None
        windows.append(torch.stack([taps[:, 0], step[:, 0]], 1).tolist())
    y = torch.empty(x.shape[0], x.shape[1], rows.shape[1], columns.shape[1], dtype=x.dtype)
    for s, ((r, dr), (c, dc)) in enumerate(zip(*windows)):
        top, left = min(r, r + dr * (rows.shape[1] - 1)), min(c, c + dc * (columns.shape[1] - 1))
        y[s] = _flipped(x[s, :, top : top + rows.shape[1], left : left + columns.shape[1]], dr < 0, dc < 0)
    return y


def _outside_share(rows: Tensor, columns: Tensor, integer: bool) -> Tensor:
    """What of each separable sample falls outside the image (where a fill shows), from the sums of its
    row and column weights. uint8 weights are rounded to fixed point (_fixed_point), so their sums miss 1
    by a few 2**-15 where nothing is outside: less than 2**-10 counts as nothing, as in the fused op."""
    outside = 1.0 - rows * columns
    return outside * (outside >= 2.0**-10) if integer else outside


def warp_grid(
    x: Tensor,
    links: list[Link],
    out_hw: tuple[int, int],
    interpolation: str,
    supersample: int = 1,
    sizes: Tensor | None = None,
    window: Tensor | None = None,
) -> Tensor:
    """General resampling through ``links`` (any homographies) with ``grid_sample`` (align_corners=False).

    ``supersample`` k > 1 averages k x k samples per output pixel (antialiasing when the map
    shrinks). ``sizes`` (B, 2): the (height, width) of each image of a ragged batch, outside which
    a sample sees the first link's padding (constant only). ``window`` (B, 4): inclusive source pixel
    indices (x_lo, x_hi, y_lo, y_hi) the points are clamped into, where the first link never looks
    outside its input (a resize of a crop repeats the crop's edge pixels). Returns float32 (B, C, Ho, Wo).
    """
    batch, channels, height, width = x.shape
    out_h, out_w = out_hw[0] * supersample, out_hw[1] * supersample
    dev = x.device
    ys = (torch.arange(out_h, dtype=torch.float64, device=dev) + 0.5) / supersample - 0.5
    xs = (torch.arange(out_w, dtype=torch.float64, device=dev) + 0.5) / supersample - 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([gx, gy], dim=-1).view(1, -1, 2)
    padding = links[0].padding or Padding()
    # grid_sample's coordinates: (2 * src + 1) / size - 1, folded into the last matrix unless a reflection comes first
    normalize = constant(((2.0 / width, 0.0, 1.0 / width - 1.0), (0.0, 2.0 / height, 1.0 / height - 1.0), (0.0, 0.0, 1.0)),
                         torch.float64, dev)
    last = links[0].matrix if padding.mode == "reflect" else normalize @ links[0].matrix
    src, covers = _trace(links, points, interpolation == "nearest", last=last)
    src = src.view(batch, out_h, out_w, 2)
    if window is not None:  # grid_sample's coordinates of the window's edge pixels' centres
        bounds = ((2.0 * window + 1.0) / constant((width, width, height, height), torch.float64, dev) - 1.0)[:, None, None]
        src = torch.stack([src[..., 0].clamp(bounds[..., 0], bounds[..., 1]),
                           src[..., 1].clamp(bounds[..., 2], bounds[..., 3])], dim=-1)
    if padding.mode == "reflect":
        src = torch.stack([_fold_continuous(src[..., 0], width, "reflect"), _fold_continuous(src[..., 1], height, "reflect")], -1)
        src = (2.0 * src + 1.0) / constant((width, height), torch.float64, dev) - 1.0
    grid = src.to(torch.float32)
    grid_mode = {"constant": "zeros", "edge": "border", "reflect": "border", "symmetric": "reflection"}[padding.mode]
    image = x.to(torch.float32)
    inside = torch.ones_like(image[:, :1])
    if sizes is not None:
        rows = torch.arange(height, device=dev) < sizes[:, 0, None]
        cols = torch.arange(width, device=dev) < sizes[:, 1, None]
        mask = (rows[:, :, None] & cols[:, None, :])[:, None]
        image = torch.where(mask, image, 0.0)  # not image * mask: the padding may hold NaN (0 * NaN is NaN)
        inside = mask.to(torch.float32)
    if padding.has_fill:
        image = torch.cat([image, inside], dim=1)
    y = F.grid_sample(image, grid, mode=interpolation, padding_mode=grid_mode, align_corners=False)
    if padding.has_fill:
        y, mask = y[:, :channels], y[:, channels:]
        y = y + (1.0 - mask) * padding.fill_tensor(channels, dev)
    for cover, link_padding in covers:
        y = _blend_fill(y, cover.view(batch, out_h, out_w), link_padding)
    if supersample > 1:
        y = F.avg_pool2d(y, supersample)
    return y
