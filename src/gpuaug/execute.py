"""The plain-PyTorch backend: run a grouped plan with torch ops, the reference for every other backend.

The working batch is float32 holding values in the image's own range; it is allocated by the
first pass (never the caller's tensor) and then updated in place where the kernels allow.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from . import _alloc, _device
from ._device import constant
from .functional.color import Domain
from .functional.resample import round_half_up, warp_grid, warp_separable
from .plan import FinalWrite, Stage, Step, Warp
from .transforms._base import ImageSpec, apply_selected
from .transforms._dtype import Normalize, ToDtype

__all__ = ["run", "run_stage", "slice_stage", "final_coefficients", "FinalCoefficients"]

_CHUNK_BYTES = 8 << 20


def _warp(x: Tensor, warp: Warp, domain: Domain) -> Tensor:
    """The samples that skip the warp's rotations (``warp.skipped``) take the exact separable path of
    ``warp.unrotated``, the others grid sampling: on the host, each part on its samples; on
    accelerators, both paths over the whole batch, picked per sample (no host synchronisation)."""
    skipped, unrotated = warp.skipped, warp.unrotated
    if skipped is None or unrotated is None:  # no sample can skip every rotation (both None together)
        return _resample(x, warp, domain)
    if not _device.on_host(x.device):
        separable = _resample(x, unrotated, domain).to(torch.float32)
        return torch.where(skipped.view(-1, 1, 1, 1), separable, _resample(x, warp, domain))
    if bool(skipped.all()):
        return _resample(x, unrotated, domain)
    if not bool(skipped.any()):
        return _resample(x, warp, domain)
    rows = skipped.nonzero().squeeze(1), (~skipped).nonzero().squeeze(1)
    parts = [_resample(x[r], slice_stage(w, r), domain) for r, w in zip(rows, (unrotated, warp))]
    y = torch.empty((x.shape[0], *parts[0].shape[1:]), dtype=torch.float32, device=x.device)
    y[rows[0]], y[rows[1]] = parts[0].to(torch.float32), parts[1]
    return y


def _resample(x: Tensor, warp: Warp, domain: Domain) -> Tensor:
    """All samples through the warp's separable path (``warp.axis_aligned``) or grid sampling."""
    out_hw = (warp.spec_out.height, warp.spec_out.width)
    if warp.axis_aligned:
        y = warp_separable(
            x, warp.matrix, warp.links, warp.window, out_hw, warp.interpolation, warp.antialias, warp.max_scale,
            integer=domain.integer, sizes=warp.source_sizes, resampled=warp.resampled,
        )
    else:
        y = warp_grid(x, warp.links, out_hw, warp.interpolation, warp.supersample, warp.source_sizes, warp.grid_window)
    if domain.integer and y.is_floating_point():
        y = round_half_up(y) if warp.axis_aligned else y.round_()  # as torch's uint8 resize, and torchvision's grid sampling
        if warp.interpolation == "bicubic":
            y = y.clamp_(0.0, 255.0)
    return y


def _step(x: Tensor, step: Step, domain: Domain) -> Tensor:
    t = step.transform
    if not step.gated:
        return t.apply(x, step.params, domain)
    return apply_selected(x, step.applied, lambda xs, ps: t.apply(xs, ps, domain), step.params)


@dataclasses.dataclass
class FinalCoefficients:
    """The folded ToDtype/Normalize tail: ``x * scale + shift`` per channel, then the output cast.

    ``to_uint8`` None: a float output (or none of the tail converts to uint8); otherwise the value
    is then truncated to uint8 as torchvision's ``to_dtype`` does, scaled by 255.999 when True.
    """

    scale: Tensor
    shift: Tensor
    to_uint8: bool | None


def final_coefficients(final: FinalWrite, domain: Domain, channels: int, device: torch.device) -> FinalCoefficients:
    """The tail folded on the host (float64 arithmetic, rounded once to float32): no tensor ops."""
    scale, shift = [1.0] * channels, [0.0] * channels
    to_uint8: bool | None = None
    for s in final.steps:
        t = s.transform
        if isinstance(t, Normalize):
            a, b = t.scale_shift(channels)
            scale, shift = [x * ai for x, ai in zip(scale, a)], [x * ai + bi for x, ai, bi in zip(shift, a, b)]
        elif isinstance(t, ToDtype):
            target = Domain(t.dtype)
            if target.integer and not domain.integer:
                to_uint8 = t.scale
            elif domain.integer and not target.integer and t.scale:
                scale, shift = [x / 255.0 for x in scale], [x / 255.0 for x in shift]
            domain = target
    return FinalCoefficients(constant(scale, torch.float32, device), constant(shift, torch.float32, device), to_uint8)


def _final_write(x: Tensor, final: FinalWrite, domain: Domain, out: Tensor) -> None:
    """Write the folded ToDtype/Normalize tail of ``x`` into ``out``, cast on the way."""
    k = final_coefficients(final, domain, x.shape[1], x.device)
    scale, shift = k.scale.view(1, -1, 1, 1), k.shift.view(1, -1, 1, 1)
    if k.to_uint8 is not None:
        y = x * scale + shift
        out.copy_((y * 255.999 if k.to_uint8 else y).floor_().clamp_(0.0, 255.0))
    elif final.steps and out.is_floating_point() and _device.on_host(out.device):
        # a mul and an add in float32 (rounded once into out): CPUs run addcmul with a broadcast ``self`` 3x slower
        if out.dtype == torch.float32:
            torch.mul(x, scale, out=out).add_(shift)
        else:
            out.copy_(torch.mul(x, scale).add_(shift))
    elif final.steps and out.is_floating_point():
        torch.addcmul(shift, x, scale, out=out)
    elif x.is_floating_point() and not out.is_floating_point():  # uint8 saturates (e.g. after unclipped noise)
        out.copy_(x.clamp(0.0, 255.0))
    else:
        out.copy_(x)


def run_stage(x: Tensor, stage: Step | Warp, domain: Domain, source: Tensor) -> tuple[Tensor, Domain]:
    """One Warp or pixel Step on working values ``x`` (``source``: the caller's tensor, never written)."""
    if isinstance(stage, Warp):
        return _warp(x, stage, domain), domain
    if x.dtype != torch.float32 or x is source:  # contiguous: every input layout then rounds alike
        # (a copy into a contiguous tensor: half the time ``to`` takes from channels-last uint8)
        x = torch.empty(x.shape, dtype=torch.float32, device=x.device).copy_(x)
    return _step(x, stage, domain), Domain(stage.spec_out.dtype)


def _run_chunk(images: Tensor, stages: list[Stage], out: Tensor) -> None:
    domain = Domain(images.dtype)
    x = images
    for stage in stages:
        if isinstance(stage, FinalWrite):
            _final_write(x, stage, domain, out)
        else:
            x, domain = run_stage(x, stage, domain, images)


def slice_stage(stage: Stage, rows: slice | Tensor) -> Stage:
    """The part of a stage that concerns the samples ``rows`` (a Warp's ``sample_scales`` kept whole:
    its samples supersample alike already, see plan.supersample_groups)."""
    if isinstance(stage, Step):
        return dataclasses.replace(stage, params=stage.params.select(rows), applied=stage.applied[rows])
    if isinstance(stage, Warp):
        links = [dataclasses.replace(link, matrix=link.matrix[rows]) for link in stage.links]
        sizes = None if stage.source_sizes is None else stage.source_sizes[rows]
        skipped = None if stage.skipped is None else stage.skipped[rows]
        unrotated = None if stage.unrotated is None else slice_stage(stage.unrotated, rows)
        grid_window = None if stage.grid_window is None else stage.grid_window[rows]
        resampled = None if stage.resampled is None else stage.resampled._replace(matrix=stage.resampled.matrix[rows])
        return dataclasses.replace(stage, matrix=stage.matrix[rows], window=stage.window[rows], links=links,
                                   source_sizes=sizes, skipped=skipped, unrotated=unrotated, resampled=resampled,
                                   grid_window=grid_window)
    return stage


def _chunk_size(images: Tensor, spec_out: ImageSpec) -> int:
    """Samples per chunk on the CPU: working tensors of a few MB stay in cache and in malloc's heap."""
    per_sample = 4 * max(math.prod(images.shape[1:]), spec_out.channels * spec_out.height * spec_out.width)
    return max(1, min(images.shape[0], _CHUNK_BYTES // per_sample))


def run(
    images: Tensor, stages: list[Stage], spec_out: ImageSpec, memory_format: torch.memory_format
) -> Tensor:
    """Apply ``stages`` to ``images`` (B, C, H, W) into a new tensor; ``images`` is never written.

    On the CPU the batch runs in chunks of a few samples (all parameters were drawn for the whole
    batch already), which keeps every intermediate small; accelerators take the batch at once.
    """
    batch = images.shape[0]
    shape = (batch, spec_out.channels, spec_out.height, spec_out.width)
    out = _alloc.empty(shape, spec_out.dtype, images.device, memory_format)
    chunk = _chunk_size(images, spec_out) if _device.on_host(images.device) else batch
    if batch == 0:
        return out
    if chunk >= batch:
        _run_chunk(images, stages, out)
        return out
    for start in range(0, batch, chunk):
        rows = slice(start, start + chunk)
        _run_chunk(images[rows], [slice_stage(s, rows) for s in stages], out[rows])
    return out
