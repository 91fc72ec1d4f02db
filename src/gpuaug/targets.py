"""Targets that follow each sample's geometry (masks, boxes, keypoints, labels) and the inverse maps.

Boxes and keypoints are in torchvision's continuous pixel coordinates: pixel ``(i, j)`` covers
``[j, j + 1) x [i, i + 1)`` and the image spans ``[0, W] x [0, H]``. They go through the inverse of
the sample's output -> source geometry: boxes as their four corners, then the enclosing box,
clipped to the output and filtered; keypoints as points, invisible once outside. Where a step of
the chain shows something outside its input (a rotation, or a pad after a crop: its fill, or its
input's edge or mirror image, whose content no box or keypoint labels), boxes are clipped to that
input too and keypoints outside it turn invisible, as applying the steps one after the other would
(torchvision takes constant pads only); everywhere else the corners go through the composed map at
once. Masks are resampled by the same passes as the images, nearest, with their own fill.

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([ga.RandomHorizontalFlip(p=1.0)], seed=0)
    >>> boxes, labels = [torch.tensor([[1.0, 2.0, 4.0, 6.0]])], [torch.tensor([7])]
    >>> batch = pipe(torch.rand(1, 3, 8, 10), boxes=boxes, labels=labels)
    >>> batch.boxes, batch.labels
    ([tensor([[6., 2., 9., 6.]])], [tensor([7])])
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import box_convert

from . import geometry
from .functional.resample import Link, Padding, warp_grid, warp_separable
from .params import BatchParams
from .plan import Stage, Warp

__all__ = ["TargetOptions", "Batch"]  # the rest serves Pipeline

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
_F64 = torch.float64


@dataclass(frozen=True)
class TargetOptions:
    """How a :class:`~gpuaug.Pipeline` reads, filters and writes targets.

    Args:
        box_format: "xyxy", "xywh" or "cxcywh", for boxes given as plain tensors
            (``tv_tensors.BoundingBoxes`` carry their own format).
        normalized: plain-tensor boxes and keypoints are fractions of the image's width and height
            (in and out) instead of pixels.
        min_area: boxes with less area (in output pixels) after clipping are dropped
            (torchvision's SanitizeBoundingBoxes default). Empty and inverted boxes are always dropped.
        min_size: so are boxes with a side shorter than this (output pixels; SanitizeBoundingBoxes' default).
        min_visibility: boxes keeping less than this fraction of their area after clipping are
            dropped (albumentations' BboxParams default 0).
        mask_fill: the mask value wherever the image shows a fill (e.g. 255 = ignore).
        flip_map: for mirrored samples, keypoint ``k`` of the output is keypoint ``flip_map[k]`` of
            the input (swaps left and right points); applied along each keypoint tensor's dim -2.

    Example:
        >>> import gpuaug as ga
        >>> ga.TargetOptions(box_format="cxcywh", normalized=True, mask_fill=255).min_area
        1.0
    """

    box_format: str = "xyxy"
    normalized: bool = False
    min_area: float = 1.0
    min_size: float = 1.0
    min_visibility: float = 0.0
    mask_fill: float = 0.0
    flip_map: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {list(BOX_FORMATS)}, got {self.box_format!r}")
        for name in ("min_area", "min_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not isinstance(self.min_visibility, numbers.Real) or not 0 <= self.min_visibility <= 1:
            raise ValueError(f"min_visibility must be in [0, 1], got {self.min_visibility!r}")
        if not isinstance(self.mask_fill, numbers.Real):
            raise TypeError(f"mask_fill must be a number, got {self.mask_fill!r}")
        if self.flip_map is not None:
            flip_map = tuple(self.flip_map)
            if not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in flip_map):
                raise TypeError(f"flip_map must hold ints, got {self.flip_map!r}")
            flip_map = tuple(int(k) for k in flip_map)  # numpy ints too
            if sorted(flip_map) != list(range(len(flip_map))):
                raise ValueError(f"flip_map must be a permutation of 0..K-1, got {self.flip_map!r}")
            object.__setattr__(self, "flip_map", flip_map)


@dataclass
class Batch:
    """An augmented batch with its targets, each in the form it was given (None where not given).

    ``boxes``: a list of (M_i, 4) kept boxes (labels filtered with them), or, for a padded (B, N, 4)
    tensor, every box mapped and clipped with ``boxes_valid`` (B, N) marking the kept ones (labels
    unchanged). ``keypoints`` keep their shape; ``keypoints_visible`` (their shape without the last
    dim) is False for points outside the output (or given as invisible). Without boxes, ``labels``
    pass through unchanged. ``params``: everything drawn, for replay and the inverse maps.

    Example:
        >>> import torch, gpuaug as ga
        >>> pipe = ga.Pipeline([ga.RandomResizedCrop(16)], seed=0)
        >>> batch = pipe(torch.rand(2, 3, 32, 32), masks=torch.zeros(2, 32, 32, dtype=torch.uint8))
        >>> batch.images.shape, batch.masks.shape, batch.boxes
        (torch.Size([2, 3, 16, 16]), torch.Size([2, 16, 16]), None)
    """

    images: Tensor
    params: BatchParams
    masks: Tensor | None = None
    boxes: Tensor | list[Tensor] | None = None
    boxes_valid: Tensor | None = None
    labels: Any = None
    keypoints: Tensor | list[Tensor] | None = None
    keypoints_visible: Tensor | list[Tensor] | None = None


Leg = tuple[Tensor, tuple[int, int]]


@dataclass
class Geometry:
    """Where each sample's boxes and keypoints go, from a frame of ``src_hw`` to one of ``dst_hw``.

    ``legs``: (matrix, canvas) pairs, each (B, 3, 3) matrix (continuous coordinates) carrying the
    points of the previous canvas into ``canvas`` (h, w), where boxes are clipped and points
    outside turn invisible; the last canvas is ``dst_hw``. ``flips``: the samples whose map is
    mirrored, where the legs cannot tell (an inverse: see :attr:`mirrored`), else None.
    """

    legs: list[Leg]
    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]
    flips: Tensor | None = None

    @classmethod
    def forward(cls, stages: list[Stage], src_hw: tuple[int, int], dst_hw: tuple[int, int], batch: int,
                device: torch.device) -> Geometry:
        """Source -> output through the resampling passes of a plan, with a canvas at every step
        that shows something outside its input (its fill, or its input's edge or mirror image)."""
        legs: list[Leg] = []
        pending = geometry.identity(batch, device)  # output -> input of the steps since the last canvas
        for warp in (s for s in stages if isinstance(s, Warp)):
            for link in warp.links:
                if link.padding is not None:
                    legs.append((geometry.continuous(geometry.invert(pending)), (link.height, link.width)))
                    pending = geometry.identity(batch, device)
                pending = pending @ link.matrix
        legs.append((geometry.continuous(geometry.invert(pending)), dst_hw))
        return cls(legs, src_hw, dst_hw)

    @classmethod
    def inverse(cls, params: BatchParams, src_hw: tuple[int, int], device: torch.device,
                stages: list[Stage] | None = None) -> Geometry:
        """Augmented frame (of ``src_hw``) -> input frame of a recorded call: its composed matrix, one
        leg; with the call's ``stages``, its samples' orientation too."""
        dst_hw = (params.input_shape[-2], params.input_shape[-1])
        flips = None if stages is None else cls.forward(stages, dst_hw, src_hw, params.batch_size, device).mirrored
        return cls([(geometry.continuous(composed(params, device)), dst_hw)], src_hw, dst_hw, flips)

    @property
    def batch(self) -> int:
        return self.legs[0][0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.legs[0][0].device

    @property
    def mirrored(self) -> Tensor:
        """(B,) bool: the sample's map reverses orientation (an odd number of flips).

        A leg's orientation at a point p is the sign of its Jacobian, det(m) / w(p)**3 with w(p) the
        third row of m at p: taken at the centre of the leg's source canvas (a perspective map can
        have det(m) < 0 where it mirrors nothing, with w < 0 over its canvas). That holds for the legs
        of a forward map, where each perspective starts one; an inverse map composes them all, and its
        orientation comes from the forward legs (``flips``)."""
        if self.flips is not None:
            return self.flips
        mirrored = torch.zeros(self.batch, dtype=torch.bool, device=self.device)
        canvas = self.src_hw
        for m, next_canvas in self.legs:
            w = m[:, 2, 0] * (canvas[1] / 2) + m[:, 2, 1] * (canvas[0] / 2) + m[:, 2, 2]
            mirrored ^= torch.linalg.det(m) * w < 0
            canvas = next_canvas
        return mirrored

    def rows(self, index: Tensor) -> Geometry:
        """The geometry of the samples ``index`` (one row per box or point of a list)."""
        return dataclasses.replace(self, legs=[(m[index], canvas) for m, canvas in self.legs],
                                   flips=None if self.flips is None else self.flips[index])


def composed(params: BatchParams, device: torch.device) -> Tensor:
    """(B, 3, 3) output -> source matrix of all resampling passes of a recorded call (index coordinates)."""
    total = geometry.identity(params.batch_size, device)
    for m in params.matrices:
        total = total @ m.to(device)
    return total


# ---- coordinates ----------------------------------------------------------------------------------------------


def _scale(hw: tuple[int, int], width: int, device: torch.device) -> Tensor:
    return torch.tensor([hw[1], hw[0]] * (width // 2), dtype=_F64, device=device)


def _read(coords: Any, hw: tuple[int, int], options: TargetOptions, width: int, what: str,
          device: torch.device) -> Tensor:
    """``coords`` (..., width) as float64 pixels, after checking them."""
    if not isinstance(coords, Tensor):
        raise TypeError(f"{what} must be tensors, got {type(coords).__name__}")
    if coords.ndim < 2 or coords.shape[-1] != width:
        raise ValueError(f"{what} must have shape (..., {width}) with at least 2 dims, got {tuple(coords.shape)}")
    if coords.dtype == torch.bool or coords.dtype.is_complex:
        raise TypeError(f"{what} must be floating point or integer, got {coords.dtype}")
    if coords.device != device:
        raise ValueError(f"{what} are on {coords.device} but the images on {device}")
    if isinstance(coords, (tv_tensors.BoundingBoxes, tv_tensors.KeyPoints)):
        if tuple(coords.canvas_size) != tuple(hw):
            raise ValueError(f"{what} have canvas_size {tuple(coords.canvas_size)} but the images are {tuple(hw)}")
        if options.normalized:
            raise ValueError(f"{what} given as tv_tensors are in pixels: normalized=True is for plain tensors")
    values = coords.as_subclass(Tensor).to(_F64)
    return values * _scale(hw, width, device) if options.normalized else values


def _write(values: Tensor, like: Tensor, hw: tuple[int, int], options: TargetOptions) -> Tensor:
    """float64 pixels in the form of ``like``: its dtype (float32 for integers) and tv_tensor type, or normalized."""
    if options.normalized:
        values = values / _scale(hw, values.shape[-1], values.device)
    out = values.to(like.dtype if like.is_floating_point() else torch.float32)
    if isinstance(like, (tv_tensors.BoundingBoxes, tv_tensors.KeyPoints)):
        return tv_tensors.wrap(out, like=like, canvas_size=hw)
    return out


def _box_format(boxes: Tensor, options: TargetOptions) -> str:
    if isinstance(boxes, tv_tensors.BoundingBoxes):
        name = boxes.format.value.lower()
        if name not in BOX_FORMATS:
            raise ValueError(f"boxes of format {boxes.format.value} are not supported: use XYXY, XYWH or CXCYWH")
        return name
    return options.box_format


def _read_boxes(boxes: Any, hw: tuple[int, int], options: TargetOptions, device: torch.device) -> Tensor:
    box_format = _box_format(boxes, options)
    return box_convert(_read(boxes, hw, options, 4, "boxes", device), box_format, "xyxy")


def _write_boxes(xyxy: Tensor, like: Tensor, hw: tuple[int, int], options: TargetOptions) -> Tensor:
    return _write(box_convert(xyxy, "xyxy", _box_format(like, options)), like, hw, options)


def _carry_boxes(boxes: Tensor, legs: list[Leg], clip: bool) -> tuple[Tensor, Tensor]:
    """(R, N, 4) xyxy boxes along ``legs``: at each canvas the box enclosing the four mapped corners,
    clipped to it when ``clip``; and whether each had some area to start with (an inverted box has
    none: it is dropped, not turned around) and kept some in every canvas."""
    alive = (boxes[..., 2:] > boxes[..., :2]).all(dim=-1)
    for matrix, (h, w) in legs:
        boxes = geometry.map_boxes(matrix, boxes)
        if clip:
            boxes = torch.minimum(boxes.clamp(min=0.0), boxes.new_tensor([w, h, w, h]))
            alive &= (boxes[..., 2:] > boxes[..., :2]).all(dim=-1)
    return boxes, alive


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2:] - boxes[..., :2]).prod(dim=-1)


def _place_boxes(boxes: Tensor, geo: Geometry, options: TargetOptions, filtered: bool) -> tuple[Tensor, Tensor]:
    """Boxes carried along ``geo`` and clipped, and which to keep: all, or where ``filtered`` those
    that no canvas emptied, with ``min_area``, ``min_size`` and ``min_visibility``."""
    clipped, alive = _carry_boxes(boxes, geo.legs, clip=True)
    if not filtered:
        return clipped, torch.ones_like(alive)
    area, full_area = _area(clipped), _area(_carry_boxes(boxes, geo.legs, clip=False)[0])
    wide = (clipped[..., 2:] - clipped[..., :2] >= options.min_size).all(dim=-1)
    return clipped, alive & wide & (area >= options.min_area) & (area >= options.min_visibility * full_area)


def _carry_points(points: Tensor, legs: list[Leg]) -> tuple[Tensor, Tensor]:
    """(R, P, 2) points along ``legs``, and whether each stayed inside every canvas (borders included)."""
    inside = torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
    for matrix, (h, w) in legs:
        points = geometry.map_points(matrix, points)
        x, y = points.unbind(-1)
        inside &= (x >= 0) & (x <= w) & (y >= 0) & (y <= h)
    return points, inside


def _rows(counts: list[int], device: torch.device) -> Tensor:
    """The sample of each row of a list's concatenated items."""
    return torch.repeat_interleave(torch.arange(len(counts), device=device),
                                   torch.tensor(counts, dtype=torch.int64, device=device))


def _check_list(items: Any, batch: int, what: str) -> Sequence:
    if not isinstance(items, Sequence):
        raise TypeError(f"for a batch, {what} must be a list with one tensor per sample, got {type(items).__name__}")
    if len(items) != batch:
        raise ValueError(f"{what} has {len(items)} entries for a batch of {batch}")
    return items


# ---- boxes -----------------------------------------------------------------------------------------------------


def _box_list(boxes: Sequence, labels: Any, geo: Geometry, options: TargetOptions,
              filtered: bool) -> tuple[list[Tensor], list[Tensor] | None]:
    """Per-sample (N_i, 4) boxes and (N_i, ...) labels: the boxes kept, and their labels."""
    xyxy = []
    for b in boxes:
        if isinstance(b, Tensor) and b.ndim != 2:
            raise ValueError(f"each sample's boxes must be (N, 4), got {tuple(b.shape)}")
        xyxy.append(_read_boxes(b, geo.src_hw, options, geo.device))
    counts = [len(b) for b in xyxy]
    if labels is not None:
        labels = _check_list(labels, len(boxes), "labels")
        for i, (lab, n) in enumerate(zip(labels, counts)):
            if not isinstance(lab, Tensor) or lab.ndim == 0 or len(lab) != n:
                raise ValueError(f"labels of sample {i} must be a tensor with one entry per box ({n})")
    flat = torch.cat(xyxy)[:, None] if xyxy else torch.zeros(0, 1, 4, dtype=_F64, device=geo.device)
    placed, keep = _place_boxes(flat, geo.rows(_rows(counts, geo.device)), options, filtered)
    kept = [_write_boxes(part[k], b, geo.dst_hw, options)
            for b, part, k in zip(boxes, placed[:, 0].split(counts), keep[:, 0].split(counts))]
    if labels is None:
        return kept, None
    return kept, [lab[k.to(lab.device)] for lab, k in zip(labels, keep[:, 0].split(counts))]


def _box_padded(boxes: Tensor, valid: Any, labels: Any, geo: Geometry, options: TargetOptions,
                filtered: bool) -> tuple[Tensor, Tensor]:
    """Padded (B, N, 4) boxes: all carried and clipped; the validity (B, N) turns False for dropped ones."""
    if boxes.ndim != 3:
        raise ValueError(
            "for a batch, boxes must be a list of (N_i, 4) tensors or a padded (B, N, 4) tensor, "
            f"got {tuple(boxes.shape)}"
        )
    batch, count = boxes.shape[:2]
    if batch != geo.batch:
        raise ValueError(f"boxes are for {batch} samples, the batch has {geo.batch}")
    is_mask = isinstance(valid, Tensor) and valid.dtype == torch.bool and valid.shape == (batch, count)
    if valid is not None and not is_mask:
        raise ValueError(f"boxes_valid must be a bool tensor of shape {(batch, count)}")
    if labels is not None and (not isinstance(labels, Tensor) or labels.shape[:2] != (batch, count)):
        raise ValueError(f"with padded boxes, labels must be a tensor of shape ({batch}, {count}, ...)")
    placed, keep = _place_boxes(_read_boxes(boxes, geo.src_hw, options, geo.device), geo, options, filtered)
    return _write_boxes(placed, boxes, geo.dst_hw, options), keep if valid is None else keep & valid.to(geo.device)


def _boxes(boxes: Any, labels: Any, valid: Any, geo: Geometry, options: TargetOptions, single: bool,
           filtered: bool) -> tuple[Any, Any, Tensor | None]:
    """Boxes in any of their forms, with their labels: (boxes, labels, validity of padded boxes)."""
    if valid is not None and (single or not isinstance(boxes, Tensor)):
        raise ValueError("boxes_valid goes with padded (B, N, 4) boxes")
    if single:
        kept, kept_labels = _box_list([boxes], None if labels is None else [labels], geo, options, filtered)
        return kept[0], None if kept_labels is None else kept_labels[0], None
    if isinstance(boxes, Tensor):
        placed, valid = _box_padded(boxes, valid, labels, geo, options, filtered)
        return placed, labels, valid
    kept, kept_labels = _box_list(_check_list(boxes, geo.batch, "boxes"), labels, geo, options, filtered)
    return kept, kept_labels, None


# ---- keypoints -------------------------------------------------------------------------------------------------


def _permutation(options: TargetOptions, inverse: bool, device: torch.device) -> Tensor | None:
    if options.flip_map is None:
        return None
    perm = torch.tensor(options.flip_map, device=device)
    return torch.argsort(perm) if inverse else perm


def _check_flip(points: Tensor, perm: Tensor | None) -> None:
    if perm is not None and points.shape[-2] != len(perm):
        raise ValueError(f"flip_map has {len(perm)} entries but the keypoints have {points.shape[-2]} points (dim -2)")


def _check_visible(visible: Any, points: Tensor) -> Tensor:
    if not isinstance(visible, Tensor) or visible.dtype != torch.bool or visible.shape != points.shape[:-1]:
        raise ValueError(f"keypoints_visible must be a bool tensor of shape {tuple(points.shape[:-1])}")
    return visible


def _points_list(points: Sequence, visible: Any, geo: Geometry, options: TargetOptions,
                 perm: Tensor | None) -> tuple[list[Tensor], list[Tensor]]:
    """Per-sample (..., 2) keypoints: mapped, with their visibility; mirrored samples permuted by ``perm``."""
    flat = [_read(p, geo.src_hw, options, 2, "keypoints", geo.device).reshape(-1, 2) for p in points]
    for p in points:
        _check_flip(p, perm)
    if visible is not None:
        visible = [_check_visible(v, p) for v, p in zip(_check_list(visible, len(points), "keypoints_visible"), points)]
    counts = [len(p) for p in flat]
    cat = torch.cat(flat)[:, None] if flat else torch.zeros(0, 1, 2, dtype=_F64, device=geo.device)
    mapped, inside = _carry_points(cat, geo.rows(_rows(counts, geo.device)).legs)
    mirrored = geo.mirrored.tolist() if perm is not None else [False] * len(points)
    out, seen = [], []
    for i, (p, m, v) in enumerate(zip(points, mapped[:, 0].split(counts), inside[:, 0].split(counts))):
        m, v = m.view(p.shape), v.view(p.shape[:-1])
        if visible is not None:
            v = v & visible[i]
        if mirrored[i]:
            m, v = m.index_select(-2, perm), v.index_select(-1, perm)
        out.append(_write(m, p, geo.dst_hw, options))
        seen.append(v)
    return out, seen


def _points_padded(points: Tensor, visible: Any, geo: Geometry, options: TargetOptions,
                   perm: Tensor | None) -> tuple[Tensor, Tensor]:
    """(B, ..., 2) keypoints: mapped, with their visibility; mirrored samples permuted by ``perm``."""
    batch = geo.batch
    if points.ndim < 3 or points.shape[0] != batch:
        raise ValueError(
            f"for a batch of {batch}, keypoints must be a (B, K, 2) tensor or a list, got {tuple(points.shape)}"
        )
    _check_flip(points, perm)
    flat = _read(points, geo.src_hw, options, 2, "keypoints", geo.device).reshape(batch, math.prod(points.shape[1:-1]), 2)
    mapped, inside = _carry_points(flat, geo.legs)
    mapped, inside = mapped.view(points.shape), inside.view(points.shape[:-1])
    if visible is not None:
        inside = inside & _check_visible(visible, points)
    if perm is not None:
        mirrored = geo.mirrored.view(batch, *[1] * (points.ndim - 2))
        inside = torch.where(mirrored, inside.index_select(-1, perm), inside)
        mapped = torch.where(mirrored[..., None], mapped.index_select(-2, perm), mapped)
    return _write(mapped, points, geo.dst_hw, options), inside


# ---- masks -----------------------------------------------------------------------------------------------------


# dtypes whose values float32 resampling would round, and their number of 16-bit pieces (which it keeps exact)
_PIECES = {torch.int32: 2, torch.uint32: 2, torch.int64: 4, torch.uint64: 4, torch.float64: 4}


def _shifts(dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.arange(0, 16 * _PIECES[dtype], 16, device=device).view(-1, 1, 1)


def _split(x: Tensor) -> Tensor:
    """(B, K, H, W) values of a dtype in _PIECES as their 16-bit pieces (B, K * n, H, W) int32, low first."""
    words = x.view(torch.int64) if x.element_size() == 8 else x.to(torch.int64)  # the bits of 64-bit values
    return ((words[:, :, None] >> _shifts(x.dtype, x.device)) & 0xFFFF).to(torch.int32).flatten(1, 2)


def _join(pieces: Tensor, dtype: torch.dtype) -> Tensor:
    """The values of ``dtype`` that :func:`_split` cut into ``pieces``."""
    n = _PIECES[dtype]
    words = (pieces.to(torch.int64).unflatten(1, (-1, n)) << _shifts(dtype, pieces.device)).sum(dim=2)
    return words.view(dtype) if dtype.itemsize == 8 else words.to(dtype)


def _split_with_fill(x: Tensor, fill: float) -> tuple[Tensor, tuple[float, ...]]:
    """:func:`_split` of ``x`` (B, K, H, W), and the fill of each piece channel: the pieces of ``fill``
    as x's dtype holds it, for each of the K channels."""
    value = torch.full((1, 1, 1, 1), fill if x.dtype.is_floating_point else int(fill), dtype=x.dtype)
    return _split(x), tuple(float(v) for v in _split(value).flatten().tolist()) * x.shape[1]


def _mask_padding(padding: Padding | None, fill: tuple[float, ...]) -> Padding | None:
    return None if padding is None else Padding(padding.mode, fill)


def _warp_masks(masks: Tensor, stages: list[Stage], fill: float) -> Tensor:
    """(B, K, H, W) masks through every resampling pass of ``stages``: nearest, ``fill`` wherever the
    image shows a fill, in plain torch ops whatever the images' backend.

    The passes resample in float32, exact only up to 2**24: 32- and 64-bit masks go through them
    as 16-bit pieces (one channel each), put back together at the end.
    """
    x, fills = _split_with_fill(masks, fill) if masks.dtype in _PIECES else (masks, (float(fill),))
    for warp in (s for s in stages if isinstance(s, Warp)):
        if warp.axis_aligned:
            y = _separable_masks(x, warp, fills)
        else:
            y = warp_grid(x, _mask_links(warp, fills), (warp.spec_out.height, warp.spec_out.width), "nearest",
                          window=warp.grid_window)
            if warp.skipped is not None and warp.unrotated is not None:  # as the images: the samples that
                separable = _separable_masks(x, warp.unrotated, fills)  # skip the rotations, separably
                y = torch.where(warp.skipped.view(-1, 1, 1, 1), separable.to(y.dtype), y)
        x = y.to(x.dtype)
    if masks.dtype in _PIECES:
        x = _join(x, masks.dtype)
    return x.clone() if x is masks else x


def _mask_links(warp: Warp, fills: tuple[float, ...]) -> list[Link]:
    """The links of ``warp``, showing the masks' ``fills`` wherever they show a fill."""
    return [dataclasses.replace(link, padding=_mask_padding(link.padding, fills)) for link in warp.links]


def _separable_masks(x: Tensor, warp: Warp, fills: tuple[float, ...]) -> Tensor:
    """Masks through an axis-aligned ``warp``: nearest, exact."""
    out_hw = (warp.spec_out.height, warp.spec_out.width)
    return warp_separable(x, warp.matrix, _mask_links(warp, fills), warp.window, out_hw, "nearest", False, warp.max_scale)


def _check_fill(fill: float, dtype: torch.dtype, name: str = "mask_fill", what: str = "masks") -> None:
    """``fill`` must be a value of the ``what``'s dtype: it is written into them as it is."""
    if dtype.is_floating_point:
        return
    info = torch.iinfo(dtype) if dtype != torch.bool else None
    low, high = (0, 1) if info is None else (info.min, info.max)
    if not math.isfinite(fill) or fill != int(fill) or not low <= fill <= high:
        raise ValueError(f"{name} {fill!r} is not a value of {dtype} {what} (an integer in [{low}, {high}])")


def _masks(masks: Any, stages: list[Stage], options: TargetOptions, batch_shape: tuple[int, ...], single: bool,
           device: torch.device) -> Tensor:
    """Masks of one sample or a batch through the passes of ``stages``, in their form."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a tensor, got {type(masks).__name__}")
    if masks.dtype.is_complex:
        raise TypeError(f"masks must be integer, bool or floating point, got {masks.dtype}")
    batch, height, width = batch_shape
    ranks = (2, 3) if single else (3, 4)
    wrong_batch = not single and masks.shape[0] != batch
    if masks.ndim not in ranks or tuple(masks.shape[-2:]) != (height, width) or wrong_batch:
        expected = "(H, W) or (K, H, W)" if single else "(B, H, W) or (B, K, H, W)"
        raise ValueError(f"masks must be {expected} for images of {(batch, height, width)}, got {tuple(masks.shape)}")
    if masks.device != device:
        raise ValueError(f"masks are on {masks.device} but the images on {device}")
    _check_fill(options.mask_fill, masks.dtype)
    layers = masks.shape[-3] if masks.ndim == ranks[1] else 1
    grouped = masks.as_subclass(Tensor).reshape(1 if single else batch, layers, height, width)
    out = _warp_masks(grouped, stages, options.mask_fill)
    out = out.reshape(*masks.shape[:-2], *out.shape[-2:])
    return tv_tensors.wrap(out, like=masks) if isinstance(masks, tv_tensors.Mask) else out


# ---- entry points ----------------------------------------------------------------------------------------------


def augment_targets(
    images: Tensor,
    params: BatchParams,
    stages: list[Stage],
    options: TargetOptions,
    input_images: Tensor,
    *,
    masks: Any = None,
    boxes: Any = None,
    labels: Any = None,
    keypoints: Any = None,
    boxes_valid: Any = None,
    keypoints_visible: Any = None,
) -> Batch:
    """The :class:`Batch` of a pipeline call: ``images`` augmented from ``input_images`` by ``stages``, with targets."""
    single = input_images.ndim == 3
    batch, device = params.batch_size, images.device
    src_hw, dst_hw = tuple(input_images.shape[-2:]), tuple(images.shape[-2:])
    geo = Geometry.forward(stages, src_hw, dst_hw, batch, device)
    out = Batch(tv_tensors.wrap(images, like=input_images) if isinstance(input_images, tv_tensors.Image) else images,
                params, labels=labels)
    if masks is not None:
        out.masks = _masks(masks, stages, options, (batch, *src_hw), single, device)
    if boxes is not None:
        out.boxes, out.labels, out.boxes_valid = _boxes(boxes, labels, boxes_valid, geo, options, single, filtered=True)
    elif boxes_valid is not None:
        raise ValueError("boxes_valid goes with padded (B, N, 4) boxes")
    elif labels is not None and not single and isinstance(labels, (Tensor, Sequence)) and len(labels) != batch:
        raise ValueError(f"labels has {len(labels)} entries for a batch of {batch}")
    if keypoints is not None:
        perm = _permutation(options, False, device)
        out.keypoints, out.keypoints_visible = _keypoints(keypoints, keypoints_visible, geo, options, perm, single)
    elif keypoints_visible is not None:
        raise ValueError("keypoints_visible goes with keypoints")
    return out


def _keypoints(points: Any, visible: Any, geo: Geometry, options: TargetOptions, perm: Tensor | None,
               single: bool) -> tuple[Any, Any]:
    """Keypoints in any of their forms: (keypoints, visibility)."""
    if single:
        mapped, seen = _points_list([points], None if visible is None else [visible], geo, options, perm)
        return mapped[0], seen[0]
    if isinstance(points, Tensor):
        return _points_padded(points, visible, geo, options, perm)
    return _points_list(_check_list(points, geo.batch, "keypoints"), visible, geo, options, perm)


def _device_of(items: Any, default: torch.device) -> torch.device:
    """The device of ``items`` (a tensor or a list of them), else ``default``."""
    if isinstance(items, Tensor):
        return items.device
    if isinstance(items, Sequence) and items and isinstance(items[0], Tensor):
        return items[0].device
    return default


def inverse_boxes(boxes: Any, params: BatchParams, out_hw: tuple[int, int], options: TargetOptions) -> Any:
    """Boxes in the augmented frame (of ``out_hw``) mapped back into the input frame of ``params``:
    the enclosing box of the corners, clipped to the input frame; none dropped."""
    geo = Geometry.inverse(params, out_hw, _device_of(boxes, params.keys.device))
    return _boxes(boxes, None, None, geo, options, len(params.input_shape) == 3, filtered=False)[0]


def inverse_keypoints(points: Any, params: BatchParams, stages: list[Stage], out_hw: tuple[int, int],
                      options: TargetOptions) -> Any:
    """Keypoints in the augmented frame (of ``out_hw``, made by ``stages``) mapped back into the input
    frame of ``params``; mirrored samples undo ``flip_map``."""
    geo = Geometry.inverse(params, out_hw, _device_of(points, params.keys.device), stages)
    perm = _permutation(options, True, geo.device)
    return _keypoints(points, None, geo, options, perm, len(params.input_shape) == 3)[0]


def inverse_images(
    images: Tensor, params: BatchParams, stages: list[Stage], out_hw: tuple[int, int], interpolation: str, fill: float
) -> Tensor:
    """Maps on the augmented images (of ``out_hw``, made by ``stages``) resampled into the input frame
    of ``params``; ``fill`` where the augmented image does not reach, or shows what one of its steps
    showed outside its input there (a pad's or a rotation's fill, an edge or a mirror image)."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a tensor, got {type(images).__name__}")
    single = len(params.input_shape) == 3
    batch = images.unsqueeze(0) if single else images
    expected = (params.batch_size, *out_hw)
    if images.ndim != len(params.input_shape) or (batch.shape[0], *batch.shape[2:]) != expected:
        layout = "(C, H, W)" if single else "(B, C, H, W)"
        hint = "; give masks a channel dimension (masks[:, None])" if images.ndim == len(params.input_shape) - 1 else ""
        raise ValueError(
            f"images must be {layout} with (B, H, W) = {expected} (the augmented size), got {tuple(images.shape)}{hint}"
        )
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    if images.dtype.is_complex:
        raise TypeError(f"images must be real, got {images.dtype}")
    _check_fill(fill, images.dtype, "fill", "images")
    matrix = geometry.invert(composed(params, images.device))
    x, fills = batch.as_subclass(Tensor), (float(fill),)
    exact = interpolation == "nearest" and images.dtype in _PIECES  # else float32 arithmetic
    if exact:
        x, fills = _split_with_fill(x, fill)
    link = Link(matrix, out_hw[0], out_hw[1], Padding("constant", fills))
    in_hw = tuple(params.input_shape[-2:])
    y = warp_grid(x, [link], in_hw, interpolation)
    legs = Geometry.forward(stages, in_hw, out_hw, params.batch_size, images.device).legs[:-1]
    if legs:  # the last leg's canvas is the augmented image, whose edge the warp's fill already shows
        rows, cols = torch.meshgrid(torch.arange(in_hw[0], dtype=_F64, device=images.device) + 0.5,
                                    torch.arange(in_hw[1], dtype=_F64, device=images.device) + 0.5, indexing="ij")
        centres = torch.stack([cols, rows], dim=-1).view(1, -1, 2).expand(params.batch_size, -1, -1)
        covered = _carry_points(centres, legs)[1].view(-1, 1, *in_hw)
        y = torch.where(covered, y, torch.tensor(fills, dtype=y.dtype, device=y.device).view(1, -1, 1, 1))
    if exact:
        y = _join(y, images.dtype)
    elif images.dtype == torch.bool:
        y = y >= 0.5
    elif not images.dtype.is_floating_point:
        y = y.round_()
    y = y.to(images.dtype)
    return y[0] if single else y
