"""The plan of one batch: transforms with their drawn parameters, grouped into the fewest passes.

:func:`expand` walks the transform tree once (depth first), drawing or taking each transform's
parameters, and returns flat :class:`Step` s whose ``applied`` masks already include every
enclosing container's choice. :func:`group` then folds runs of geometric steps into one
:class:`Warp` (one matrix per sample, one resampling pass; a run is cut only before a step that
interpolates over what a crop or pad after the run's first step padded, or over a uint8 fill of
the first step) and the trailing ToDtype/Normalize into one :class:`FinalWrite`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import geometry
from ._device import constant
from .functional.resample import Link, Padding, Resampled
from .params import Params
from .transforms._base import GeometricTransform, ImageSpec, Transform
from .transforms._container import Compose, RandomApply, RandomChoice, RandomOrder
from .transforms._dtype import Normalize, ToDtype

__all__ = ["Step", "Warp", "FinalWrite", "Stage", "expand", "group", "matrices", "supersample_groups"]

ParamsSource = Callable[[int, Transform, ImageSpec], Params]


@dataclass
class Step:
    """One leaf transform with its parameters; ``gated`` when some samples may skip it."""

    transform: Transform
    params: Params
    applied: Tensor
    gated: bool
    spec_in: ImageSpec
    spec_out: ImageSpec


def _gate(steps: list[Step], mask: Tensor, owner: str) -> list[Step]:
    """AND ``mask`` into every step; such steps may not change the batch's spec."""
    for s in steps:
        if s.spec_in != s.spec_out:
            raise ValueError(
                f"{type(s.transform).__name__} inside {owner} changes the image from {s.spec_in} to {s.spec_out}; "
                "transforms applied to only some samples must keep the size, channels and dtype"
            )
    return [dataclasses.replace(s, applied=s.applied & mask, gated=True) for s in steps]


def expand(transforms: list[Transform], spec: ImageSpec, source: ParamsSource) -> tuple[list[Step], list[Params]]:
    """Flat steps for ``transforms`` on ``spec``; ``source(index, transform, spec)`` gives parameters."""
    drawn: list[Params] = []

    def sequence(children: list[Transform], spec: ImageSpec) -> tuple[list[Step], ImageSpec]:
        steps: list[Step] = []
        for child in children:
            child_steps, spec = visit(child, spec)
            steps += child_steps
        return steps, spec

    def visit(t: Transform, spec: ImageSpec) -> tuple[list[Step], ImageSpec]:
        if spec.sizes is not None and t.kind != "container" and not t.sizes_samples:
            raise ValueError(
                f"{type(t).__name__} cannot take differently sized images (a RaggedBatch) in one pass: start the "
                "pipeline with RandomResizedCrop, RandomCrop, CenterCrop or Resize((height, width)), which give every "
                "sample one size (ga.data.Collate and DeviceLoader take other pipelines size by size)"
            )
        params = source(len(drawn), t, spec)
        drawn.append(params)
        if t.kind != "container":
            out = t.output_spec(spec)
            if t.skips_in_params:  # a crop's parameters already say what a sample it skips gets
                return [Step(t, params, torch.ones_like(params.applied), False, spec, out)], out
            return [Step(t, params, params.applied, t.p < 1.0 or t.skips_without_coin, spec, out)], out
        name = type(t).__name__
        if isinstance(t, RandomChoice):
            steps = []
            for i, child in enumerate(t.transforms):
                child_steps, _ = visit(child, spec)
                steps += _gate(child_steps, params.choice == i, name)
            return steps, spec
        if isinstance(t, RandomOrder):
            per_child = [visit(child, spec)[0] for child in t.transforms]
            steps = []
            for slot in range(len(t.transforms)):
                for i, child_steps in enumerate(per_child):
                    steps += _gate(child_steps, params.order[:, slot] == i, name)
            return steps, spec
        steps, out = sequence(t.transforms, spec)
        if isinstance(t, RandomApply) and t.p < 1.0:
            steps = _gate(steps, params.applied, name)
        assert isinstance(t, (Compose, RandomApply)), f"unknown container {name}"
        return steps, out

    steps, _ = sequence(transforms, spec)
    return steps, drawn


@dataclass
class Warp:
    """A run of geometric steps folded into one resampling pass.

    The pass samples the source once through the composed ``matrix``; ``links`` keep each step's
    own map and canvas, so that where a later step looks outside its input (a pad after a crop, a
    rotation after a crop) the pass shows that step's own fill or mirrored content, as applying the
    steps one after the other would.
    """

    matrix: Tensor  # (B, 3, 3) float64 output -> source
    spec_in: ImageSpec
    spec_out: ImageSpec
    axis_aligned: bool
    interpolation: str
    antialias: bool
    links: list[Link]
    max_scale: tuple[float, float]  # static bound on source pixels per output pixel (y, x)
    window: Tensor  # (B, 4) inclusive source indices (x_lo, x_hi, y_lo, y_hi) the filter may read
    source_sizes: Tensor | None = None  # (B, 2) int64 (height, width) of each image of a ragged batch
    # (B,) bool: the samples that skip every step that is not axis-aligned (a RandomRotation with p < 1),
    # whose maps are then axis-aligned: they take the exact separable path, the others grid sampling
    # (None: no sample can skip them all, or the warp is axis-aligned)
    skipped: Tensor | None = None
    resampled: Resampled | None = None  # the interpolating step's output, where later steps crop or pad it
    # the pass of the ``skipped`` samples, axis-aligned: the same steps, but the rotations, which leave
    # those samples as they are, do not count as interpolating (None where ``skipped`` is None)
    unrotated: Warp | None = None
    # (B, 4) the window that grid sampling clamps its points into, as a resize of a crop repeats the
    # crop's edge pixels: where the first step never looks outside its input (a crop, a resize) and the
    # steps before the last interpolating one are axis-aligned (the window is then exact); else None
    grid_window: Tensor | None = None
    # (scale_y, scale_x) of each sample of a ragged batch whose first step interpolates, in a pass that
    # is not axis-aligned (each shrinks from its own size; max_scale bounds them all), on the host; else
    # None. A pass supersamples its samples alike: Pipeline runs them in groups that need one factor.
    sample_scales: list[tuple[float, float]] | None = None

    @property
    def supersample(self) -> int:
        """Samples per output pixel and axis when the general path shrinks (antialias approximation)."""
        return max(self.supersamples(self.sample_scales or [self.max_scale]))

    def supersamples(self, scales: list[tuple[float, float]]) -> list[int]:
        """The supersampling factor of each of these (scale_y, scale_x)."""
        return [min(max(round(max(scale)), 1), 4) if self.antialias else 1 for scale in scales]


def supersample_groups(stages: list[Stage]) -> list[list[int]] | None:
    """The samples of a ragged batch in groups whose grid-sampling passes supersample alike (each sample
    as it would alone, from its own size), or None where every sample's are alike already."""
    warps = [s for s in stages if isinstance(s, Warp) and s.sample_scales is not None and not s.axis_aligned]
    if not warps:
        return None
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, factors in enumerate(zip(*(w.supersamples(w.sample_scales) for w in warps))):
        groups.setdefault(factors, []).append(b)
    return list(groups.values()) if len(groups) > 1 else None


@dataclass
class FinalWrite:
    """Trailing ToDtype/Normalize: ``x * scale + shift`` per channel, then the output dtype."""

    steps: list[Step]


def _window(prefix: Tensor, box: Tensor, read: Tensor | None) -> Tensor:
    """The source pixels that the canvas pixels ``box`` (B, 4) show, seen through the axis-aligned
    ``prefix`` map, as inclusive source indices: those lying wholly inside the box, and where an
    earlier step interpolated the canvas from the pixels ``read`` (its own window), also the ones on
    either side of the box's edge pixels' centres, which it read for them (an enlarging prefix puts
    those centres, and the box's edges, inside source pixels)."""
    a = torch.stack([prefix[:, 0, 0], prefix[:, 1, 1]], dim=1)
    b = torch.stack([prefix[:, 0, 2], prefix[:, 1, 2]], dim=1)
    edges = torch.stack([a * (box[:, 0::2] - 0.5) + b, a * (box[:, 1::2] + 0.5) + b], dim=2)  # (B, axis, 2)
    lo = (edges.amin(dim=2) + 0.5 - 1e-6).ceil()
    hi = (edges.amax(dim=2) - 0.5 + 1e-6).floor()
    if read is not None:
        centres = torch.stack([a * box[:, 0::2] + b, a * box[:, 1::2] + b], dim=2)
        lo = torch.minimum(lo, torch.maximum((centres.amin(dim=2) + 1e-6).floor(), read[:, 0::2]))
        hi = torch.maximum(hi, torch.minimum((centres.amax(dim=2) - 1e-6).ceil(), read[:, 1::2]))
    return torch.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], dim=1)


Stage = Step | Warp | FinalWrite


def _unbounded(batch: int, device: torch.device) -> Tensor:
    big = float(2**40)
    return constant((-big, big, -big, big), torch.float64, device).expand(batch, 4)


_INTERPOLATION_RANK = {"nearest": 0, "bilinear": 1, "bicubic": 2}


def _skipping_every_rotation(steps: list[Step]) -> Tensor | None:
    """Warp.skipped: the samples that skip every step of ``steps`` that is not axis-aligned."""
    rotating = [s for s in steps if not getattr(s.transform, "axis_aligned", False)]
    if not rotating or not all(s.gated for s in rotating):
        return None
    return functools.reduce(operator.and_, (~s.applied for s in rotating))


def _same_canvas(spec: ImageSpec, resampled: Resampled, later: list[Link]) -> bool:
    """Whether the steps after the interpolating one (their ``later`` links) keep its output's rows:
    the same size, and no step that looks outside its canvas (a flip, not a crop or a pad)."""
    same_size = (spec.height, spec.width) == (resampled.height, resampled.width)
    return same_size and all(link.padding is None for link in later)


def _fold_geometry(steps: list[Step]) -> Warp:
    batch, device = steps[0].applied.shape[0], steps[0].applied.device
    eye = geometry.identity(batch, device)
    maps: list[Tensor] = []
    prefixes: list[Tensor] = []  # the composed map of the steps up to each one
    for s in steps:
        assert isinstance(s.transform, GeometricTransform)
        m = s.transform.matrix(s.params, s.spec_in)
        maps.append(torch.where(s.applied.view(-1, 1, 1), m, eye) if s.gated else m)
        prefixes.append(maps[-1] if not prefixes else prefixes[-1] @ maps[-1])
    sizes = None if steps[0].spec_in.sizes is None else steps[0].spec_in.sizes.to(device, non_blocking=True)
    skipped = _skipping_every_rotation(steps)
    unrotated = None if skipped is None else _fold(steps, maps, prefixes, sizes, rotations_skipped=True)
    warp = _fold(steps, maps, prefixes, sizes, rotations_skipped=False)
    return dataclasses.replace(warp, skipped=skipped, unrotated=unrotated)


def _fold(steps: list[Step], maps: list[Tensor], prefixes: list[Tensor], source_sizes: Tensor | None,
          rotations_skipped: bool) -> Warp:
    """The Warp of ``steps`` from their (gated) ``maps`` and the ``prefixes`` they compose to, one by
    one; ``rotations_skipped``: the pass of the samples that skip every rotation, which leaves them as
    they are (the pass is then axis-aligned, and the rotations interpolate nothing)."""
    batch, device = prefixes[0].shape[0], prefixes[0].device
    aligned = [getattr(s.transform, "axis_aligned", False) for s in steps]
    window = None
    resampled: Resampled | None = None
    kept = 0  # links up to the interpolating step
    interpolations = []
    links = []
    scale_y = scale_x = 1.0
    later_y = later_x = 1.0  # the interpolating steps' after the first
    first_interpolates = False
    for i, s in enumerate(steps):
        t = s.transform
        interpolates = t.interpolation is not None and not (rotations_skipped and not aligned[i])  # a rotation that does nothing
        if interpolates:
            interpolations.append(t.interpolation)
            box = t.source_box(s.params, s.spec_in)  # whole pixel indices: the window itself, seen directly
            window = box if i == 0 else _window(prefixes[i - 1], box, window)
            resampled, kept = Resampled(prefixes[i], s.spec_out.height, s.spec_out.width), i + 1
            step_y = max(s.spec_in.height / s.spec_out.height, 1.0)  # a crop shrinks nothing
            step_x = max(s.spec_in.width / s.spec_out.width, 1.0)
            scale_y, scale_x = scale_y * step_y, scale_x * step_x
            if i == 0:
                first_interpolates = True
            else:
                later_y, later_x = later_y * step_y, later_x * step_x
        links.append(Link(maps[i], s.spec_in.height, s.spec_in.width, t.padding_for(s.spec_in), interpolates))
    if resampled is not None and _same_canvas(steps[-1].spec_out, resampled, links[kept:]):
        resampled = None  # later steps only flip it: the output's rows are the resampled ones
    exact = all(aligned[: max(kept - 1, 0)])  # the window is exact only through axis-aligned maps
    sample_scales = None
    if first_interpolates and steps[0].spec_in.sizes is not None and not (rotations_skipped or all(aligned)):
        first = steps[0].spec_out
        sample_scales = [(max(h / first.height, 1.0) * later_y, max(w / first.width, 1.0) * later_x)
                         for h, w in steps[0].spec_in.sizes.tolist()]
    grid_window = window if window is not None and links[0].padding is None and exact else None
    return Warp(
        matrix=prefixes[-1],
        spec_in=steps[0].spec_in,
        spec_out=steps[-1].spec_out,
        axis_aligned=rotations_skipped or all(aligned),
        interpolation=max(interpolations, key=_INTERPOLATION_RANK.__getitem__, default="nearest"),
        antialias=any(s.transform.antialias for s in steps if s.transform.interpolation not in (None, "nearest")),
        links=links,
        max_scale=(scale_y, scale_x),
        window=window if window is not None else _unbounded(batch, device),
        grid_window=grid_window,
        source_sizes=source_sizes,
        resampled=resampled,
        sample_scales=sample_scales,
    )


def _pads_before_interpolating(run: list[Step], step: Step) -> bool:
    """Whether ``step`` interpolates over a canvas that a crop or pad of ``run`` padded after the
    run's first step, that the first step filled where ``step`` resamples uint8 values, or that the
    first step padded where ``step`` is a bilinear (or bicubic) rotation, affine or perspective.

    A pass folds a later step's pad (fill, edge or mirror) into where each output pixel lands, but
    an interpolating step reads the padded pixels around that point too (a resize of a shrinking
    crop many of them). The first step's own edge or mirror pad folds into the taps exactly, and
    so does its fill, blended in by the share of the weights outside the image, but for uint8
    values: torch's fixed-point resize of the padded canvas rounds that share otherwise (a level
    off). Nor does any pad of the first step under a bilinear (or bicubic) rotation, affine or
    perspective: grid sampling would blend what lies beyond the padded canvas (the pad continued,
    or pixels outside a crop) into the pixels along the rotated canvas' edge, where torchvision
    blends the step's own fill. The padded canvas is then made by a pass of its own, and ``step``
    starts the next one. (A rotation's own fill stays folded: its edge is blended per output pixel.)"""
    interpolation = step.transform.interpolation
    if interpolation is None:
        return False

    def pads(s: Step) -> Padding | None:
        return s.transform.padding_for(s.spec_in) if s.transform.interpolation is None else None

    first = pads(run[0])
    blends = interpolation != "nearest"
    rounds = blends and not step.spec_in.dtype.is_floating_point
    grid = blends and not step.transform.axis_aligned
    return ((rounds and first is not None and first.has_fill) or (grid and first is not None)
            or any(pads(s) is not None for s in run[1:]))


def group(steps: list[Step]) -> list[Stage]:
    """Fold consecutive geometric steps into one Warp and the ungated ToDtype/Normalize tail into a FinalWrite."""
    tail = len(steps)
    while tail > 0 and isinstance(steps[tail - 1].transform, (ToDtype, Normalize)) and not steps[tail - 1].gated:
        tail -= 1
    # a conversion to uint8 can only be the very last thing the final write does
    for i in range(len(steps) - 2, tail - 1, -1):
        t = steps[i].transform
        if isinstance(t, ToDtype) and not t.dtype.is_floating_point:
            tail = i + 1
            break
    stages: list[Stage] = []
    run: list[Step] = []
    for s in steps[:tail]:
        if s.transform.kind == "geometry":
            if run and _pads_before_interpolating(run, s):
                stages.append(_fold_geometry(run))
                run = []
            run.append(s)
            continue
        if run:
            stages.append(_fold_geometry(run))
            run = []
        stages.append(s)
    if run:
        stages.append(_fold_geometry(run))
    stages.append(FinalWrite(steps[tail:]))
    return stages


def matrices(stages: list[Stage]) -> list[Tensor]:
    """The composed matrix of every resampling pass, in order."""
    return [s.matrix for s in stages if isinstance(s, Warp)]



