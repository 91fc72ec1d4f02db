"""The plain-PyTorch backend: run a grouped plan with torch ops, the reference for every other backend.

The working batch is float32 holding values in the image's own range; it is allocated by the
first pass (never the caller's tensor) and then updated in place where the kernels allow.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .functional.color import Domain
from .functional.resample import warp_grid, warp_separable
from .plan import FinalWrite, Step, Warp
from .transforms._base import apply_selected
from .transforms._dtype import Normalize, ToDtype

__all__ = ["run"]


def _warp(x: Tensor, warp: Warp, domain: Domain) -> Tensor:
    out_hw = (warp.spec_out.height, warp.spec_out.width)
    m = warp.matrix
    if warp.axis_aligned:
        scale = torch.stack([m[:, 0, 0], m[:, 1, 1]], dim=1)
        offset = torch.stack([m[:, 0, 2], m[:, 1, 2]], dim=1)
        y = warp_separable(
            x, scale, offset, warp.window, out_hw, warp.interpolation, warp.antialias, warp.max_scale, warp.padding
        )
    else:
        y = warp_grid(x, m, out_hw, warp.interpolation, warp.padding, warp.supersample)
    if domain.integer:
        y = y.round_()
        if warp.interpolation == "bicubic":
            y = y.clamp_(0.0, 255.0)
    return y


def _step(x: Tensor, step: Step, domain: Domain) -> Tensor:
    t = step.transform
    if not step.gated:
        return t.apply(x, step.params, domain)
    return apply_selected(x, step.applied, lambda xs, ps: t.apply(xs, ps, domain), step.params)


def _final_write(x: Tensor, final: FinalWrite, domain: Domain, memory_format: torch.memory_format) -> Tensor:
    channels = x.shape[1]
    scale = torch.ones(channels, device=x.device)
    shift = torch.zeros(channels, device=x.device)
    to_uint8_scaled: bool | None = None
    for s in final.steps:
        t = s.transform
        if isinstance(t, Normalize):
            a, b = t.coefficients(channels, x.device)
            scale, shift = scale * a, shift * a + b
        elif isinstance(t, ToDtype):
            target = Domain(t.dtype)
            if target.integer and not domain.integer:
                to_uint8_scaled = t.scale
            elif domain.integer and not target.integer and t.scale:
                scale, shift = scale / 255.0, shift / 255.0
            domain = target
    out = torch.empty(x.shape, dtype=domain.dtype, device=x.device, memory_format=memory_format)
    if to_uint8_scaled is not None:
        y = x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        return out.copy_((y * 255.999 if to_uint8_scaled else y).floor_().clamp_(0.0, 255.0))
    if final.steps:
        return torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1), out=out)
    return out.copy_(x)


def run(images: Tensor, stages: list[Step | Warp | FinalWrite], memory_format: torch.memory_format) -> Tensor:
    """Apply ``stages`` to ``images`` (B, C, H, W); ``images`` is never written."""
    domain = Domain(images.dtype)
    x = images
    for stage in stages:
        if isinstance(stage, FinalWrite):
            return _final_write(x, stage, domain, memory_format)
        if isinstance(stage, Warp):
            x = _warp(x, stage, domain)
            continue
        if x is images:
            x = images.to(torch.float32, copy=True)
        x = _step(x, stage, domain)
        domain = Domain(stage.spec_out.dtype)
    raise AssertionError("a plan ends with its final write")

