"""The ``ext`` backend: run a grouped plan with the fused C++/CUDA op ``gpuaug::fused_augment``.

One call of the op does a whole segment of the plan in one pass over the pixels: a Warp (one
resampling through each sample's matrix), the pixel steps after it that it can encode as a
per-sample colour *program* (brightness, contrast, saturation, hue, grayscale, invert, solarize,
posterize, Gaussian noise, erasing, mid-pipeline ToDtype/Normalize), and the final write
(normalize and cast into the output dtype and memory format). A stage the op cannot do
(blur, sharpness, autocontrast, equalize, a multi-canvas warp, bicubic rotation) runs on the
plain-PyTorch backend, and the next segment continues from its float32 result.

The program is a float32 tensor (B, S, 10): for each sample and slot, the op code (:class:`OpCode`),
whether the image is in a uint8 domain there, and up to eight parameters (see csrc/pixel_ops.h).

Example:
    >>> import torch, gpuaug as ga
    >>> from gpuaug.plan import expand
    >>> from gpuaug.random import Stream, sample_keys
    >>> keys = sample_keys(seed=0, epoch=0, call=0, ids=torch.arange(2))
    >>> steps, _ = expand([ga.ColorJitter(0.4, 0.4)], ga.ImageSpec(3, 8, 8, torch.uint8),
    ...                   lambda index, t, spec: t.draw(Stream(keys, index), spec))
    >>> program = encode_steps(steps, batch=2)
    >>> program.rows.shape, program.contrast_passes  # ColorJitter takes 4 slots, in its per-sample order
    (torch.Size([2, 4, 10]), 1)
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

import torch
from torch import Tensor

from . import execute
from ._device import constant
from .functional.color import Domain
from .functional.resample import Padding, separable_taps
from .plan import FinalWrite, Stage, Step, Warp
from .transforms._base import ImageSpec, PixelTransform
from .transforms._color import (
    ColorJitter,
    ColorJitterParams,
    Grayscale,
    RandomGrayscale,
    RandomInvert,
    RandomPosterize,
    RandomSolarize,
)
from .transforms._dtype import Normalize, ToDtype
from .transforms._misc import ErasingParams, GaussianNoise, NoiseParams, RandomErasing

__all__ = ["OpCode", "Program", "encode_steps", "run"]

_WIDTH = 10  # code, integer, p0 .. p7
_MAX_CHANNELS = 3


class OpCode(enum.IntEnum):
    """Colour program op codes; keep in sync with ``OpCode`` in csrc/pixel_ops.h."""

    NOP = 0
    BRIGHTNESS = 1
    CONTRAST = 2
    SATURATION = 3
    HUE = 4
    GRAY = 5
    INVERT = 6
    SOLARIZE = 7
    POSTERIZE = 8
    NOISE = 9
    ERASE = 10
    AFFINE = 11


class _Geometry(enum.IntEnum):
    IDENTITY = 0
    SEPARABLE = 1
    MATRIX = 2


_PADDING_MODES = {"constant": 0, "edge": 1, "reflect": 2, "symmetric": 3}


@dataclasses.dataclass
class Program:
    """The colour program of a run of pixel steps: ``rows`` (B, S, 10) float32, ``keys`` (B, S)
    int32 (the random fields' keys), and the most contrast ops one sample's rows may hold (each needs
    a mean: on CUDA, one reduction launch each)."""

    rows: Tensor
    keys: Tensor
    contrast_passes: int


@dataclasses.dataclass
class Slots:
    """The program slots of one step: ``rows`` (B, S, 10), ``keys`` (B, S) int32 or None (no random
    field), and whether they may hold a contrast op (one at most per sample)."""

    rows: Tensor
    keys: Tensor | None = None
    contrast: bool = False


def _row(batch: int, device: torch.device, code: OpCode, integer: bool, *params: Tensor | float) -> Tensor:
    """One slot's (B, 1, 10) rows: ``code``, then the parameters (numbers, or (B,) per sample),
    padded with zeros. When they are all numbers: a view of a cached constant, no tensor op."""
    values = [float(code), float(integer), *params]
    values += [0.0] * (_WIDTH - len(values))
    columns = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
    template = constant([0.0 if i in columns else v for i, v in enumerate(values)], torch.float32, device)
    if not columns:
        return template.expand(batch, 1, _WIDTH)
    per_sample = torch.stack([values[i] for i in columns], dim=1).to(torch.float32)
    rows = template.repeat(batch, 1).index_copy_(1, constant(columns, torch.int64, device), per_sample)
    return rows.view(batch, 1, _WIDTH)


def _color_jitter(t: ColorJitter, step: Step, integer: bool) -> list[Slots]:
    """Four slots, in each sample's own order of the four parts (code 0 for a part not asked for)."""
    params: ColorJitterParams = step.params
    batch, device = params.order.shape[0], params.order.device
    factors = torch.stack([params.brightness, params.contrast, params.saturation, params.hue], dim=1)
    f = factors.gather(1, params.order)  # (B, 4) float64, slot by slot
    parts = (("brightness", OpCode.BRIGHTNESS), ("contrast", OpCode.CONTRAST),
             ("saturation", OpCode.SATURATION), ("hue", OpCode.HUE))
    codes = constant([float(code) if getattr(t, name) is not None else 0.0 for name, code in parts],
                     torch.float32, device)
    flag = constant((float(integer),), torch.float32, device).expand(batch, 4, 1)
    zeros = constant((0.0,), torch.float32, device).expand(batch, 4, _WIDTH - 4)
    rows = torch.cat([codes[params.order][..., None], flag, f.to(torch.float32)[..., None],
                      (1.0 - f).to(torch.float32)[..., None], zeros], dim=2)
    return [Slots(rows, contrast=t.contrast is not None)]


def _constant(code: OpCode, *params: float) -> Callable[[PixelTransform, Step, bool], list[Slots]]:
    def encode(t: PixelTransform, step: Step, integer: bool) -> list[Slots]:
        return [Slots(_row(step.applied.shape[0], step.applied.device, code, integer, *params))]

    return encode


def _grayscale(t: Grayscale, step: Step, integer: bool) -> list[Slots] | None:
    if step.spec_out.channels > step.spec_in.channels:
        return None  # one channel to three: the op never adds channels
    keep_one = step.spec_out.channels == 1
    return _constant(OpCode.GRAY, float(keep_one))(t, step, integer)


def _noise(t: GaussianNoise, step: Step, integer: bool) -> list[Slots]:
    params: NoiseParams = step.params
    bound = Domain(step.spec_in.dtype).bound
    clip = t.clip or integer  # a uint8 image saturates (functional.misc.gaussian_noise)
    row = _row(len(params.key), params.key.device, OpCode.NOISE, integer, t.sigma * bound, t.mean * bound, float(clip))
    return [Slots(row, params.key.to(torch.int32)[:, None])]


def _erasing(t: RandomErasing, step: Step, integer: bool) -> list[Slots]:
    params: ErasingParams = step.params
    channels = step.spec_in.channels
    value = (0.0,) * channels if t.value is None else (t.value * channels if len(t.value) == 1 else t.value)
    box = (params.top, params.left, params.height, params.width)
    row = _row(len(params.key), params.key.device, OpCode.ERASE, integer, *box, float(t.value is None), *value)
    return [Slots(row, params.key.to(torch.int32)[:, None])]


def _to_dtype(t: ToDtype, step: Step, integer: bool) -> list[Slots]:
    source, target = Domain(step.spec_in.dtype), Domain(t.dtype)
    if target.integer and not source.integer:
        s = 255.999 if t.scale else 1.0
        return _constant(OpCode.AFFINE, s, s, s, 0.0, 0.0, 0.0, 1.0)(t, step, integer)
    if source.integer and not target.integer and t.scale:
        s = 1.0 / 255.0
        return _constant(OpCode.AFFINE, s, s, s)(t, step, integer)
    return _constant(OpCode.NOP)(t, step, integer)


def _normalize(t: Normalize, step: Step, integer: bool) -> list[Slots]:
    channels = step.spec_in.channels
    scale, shift = (v + [0.0] * (_MAX_CHANNELS - channels) for v in t.scale_shift(channels))
    return _constant(OpCode.AFFINE, *scale, *shift)(t, step, integer)


_ENCODERS: dict[type, Callable[..., list[Slots] | None]] = {
    ColorJitter: _color_jitter,
    RandomGrayscale: _constant(OpCode.GRAY, 0.0),
    Grayscale: _grayscale,
    RandomInvert: _constant(OpCode.INVERT),
    RandomSolarize: lambda t, step, integer: _constant(OpCode.SOLARIZE, t.threshold)(t, step, integer),
    RandomPosterize: lambda t, step, integer: _constant(OpCode.POSTERIZE, float(t.bits))(t, step, integer),
    GaussianNoise: _noise,
    RandomErasing: _erasing,
    ToDtype: _to_dtype,
    Normalize: _normalize,
}


def _encode_step(step: Step) -> list[Slots] | None:
    """The program slots of one pixel step, or None when the op cannot run it."""
    encoder = _ENCODERS.get(type(step.transform))
    if encoder is None or step.spec_in.channels > _MAX_CHANNELS:
        return None
    encoded = encoder(step.transform, step, Domain(step.spec_in.dtype).integer)
    if encoded is None or not step.gated:
        return encoded
    device = step.applied.device
    keep_all = constant((1.0,) * _WIDTH, torch.float32, device)
    code_off = constant((0.0,) + (1.0,) * (_WIDTH - 1), torch.float32, device)  # code 0: NOP where skipped
    gate = torch.where(step.applied.view(-1, 1, 1), keep_all, code_off)
    return [dataclasses.replace(slots, rows=slots.rows * gate) for slots in encoded]


def encode_steps(steps: list[Stage], batch: int) -> Program:
    """The colour program of pixel ``steps`` (each must be encodable; see :func:`run`)."""
    slots: list[Slots] = []
    for step in steps:
        encoded = _encode_step(step) if isinstance(step, Step) else None
        if encoded is None:
            raise ValueError(f"{step!r} cannot be encoded in the fused op's colour program")
        slots += encoded
    return _program(slots, batch)


def _program(slots: list[Slots], batch: int) -> Program:
    if not slots:
        return Program(torch.zeros(batch, 0, _WIDTH), torch.zeros(batch, 0, dtype=torch.int32), 0)
    device = slots[0].rows.device
    no_key = constant((0,), torch.int32, device)
    rows = torch.cat([s.rows for s in slots], dim=1)
    keys = torch.cat([no_key.expand(batch, s.rows.shape[1]) if s.keys is None else s.keys for s in slots], dim=1)
    return Program(rows, keys, sum(s.contrast for s in slots))


def _fusable_warp(warp: Warp, channels: int) -> bool:
    """Whether the op can do this Warp: one canvas with a fill (later steps may mirror or repeat
    edges only in separable maps, where the taps fold them), and bicubic only when separable."""
    if channels > _MAX_CHANNELS:
        return False
    outer = [link.padding for link in warp.links[1:] if link.padding is not None]
    if warp.axis_aligned:
        return all(padding.mode != "constant" for padding in outer)
    return not outer and warp.interpolation != "bicubic"


@dataclasses.dataclass
class _GeometryArgs:
    mode: Tensor  # (B,) int8
    taps_x: Tensor
    weights_x: Tensor
    taps_y: Tensor
    weights_y: Tensor
    matrix: Tensor
    fill: Tensor
    has_fill: bool
    interpolation: int
    padding_mode: int
    supersample: int
    rounding: int
    out_hw: tuple[int, int]
    all_separable: bool = False  # every sample kSeparable: the CUDA kernels then compile without the other paths


def _no_taps(batch: int, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Separable taps and weights with no taps: (B, length, 0)."""
    return (torch.zeros(batch, length, 0, dtype=torch.int32, device=device),
            torch.zeros(batch, length, 0, dtype=torch.float32, device=device))


def _identity_geometry(x: Tensor) -> _GeometryArgs:
    batch, channels, height, width = x.shape
    taps_x, weights_x = _no_taps(batch, width, x.device)
    taps_y, weights_y = _no_taps(batch, height, x.device)
    return _GeometryArgs(
        mode=torch.zeros(batch, dtype=torch.int8, device=x.device),
        taps_x=taps_x, weights_x=weights_x, taps_y=taps_y, weights_y=weights_y,
        matrix=torch.zeros(batch, 3, 3, dtype=torch.float64, device=x.device),
        fill=torch.zeros(channels, device=x.device),
        has_fill=False, interpolation=1, padding_mode=0, supersample=1, rounding=0,
        out_hw=(height, width),
    )


def _warp_geometry(x: Tensor, warp: Warp, domain: Domain) -> _GeometryArgs:
    """Arguments for one Warp: separable taps where the map is axis-aligned (also for the samples that
    skip its rotations, from ``warp.unrotated`` as the plain-PyTorch backend routes them), the matrix and
    grid sampling elsewhere."""
    batch, channels = x.shape[:2]
    out_h, out_w = warp.spec_out.height, warp.spec_out.width
    padding = warp.links[0].padding or Padding()
    separable = warp if warp.axis_aligned else warp.unrotated
    if separable is not None:
        (tx, wx, _), (ty, wy, _) = separable_taps(
            x.shape, separable.matrix, separable.links, separable.window, (out_h, out_w), separable.interpolation,
            separable.antialias, separable.max_scale, domain.integer, separable.source_sizes, separable.resampled,
        )
    else:
        (tx, wx), (ty, wy) = _no_taps(batch, out_w, x.device), _no_taps(batch, out_h, x.device)
    if warp.skipped is not None:  # None for an axis-aligned warp
        mode = torch.where(warp.skipped, _Geometry.SEPARABLE, _Geometry.MATRIX).to(torch.int8)
    else:
        mode = torch.full((batch,), _Geometry.SEPARABLE if warp.axis_aligned else _Geometry.MATRIX, dtype=torch.int8,
                          device=x.device)
    fill = padding.fill_tensor(channels, x.device).view(channels)
    if warp.axis_aligned and warp.interpolation == "nearest" and x.dtype == torch.uint8:
        fill = fill.trunc()  # the separable nearest path writes the fill in the image's own dtype
    rounding = (2 if warp.interpolation == "bicubic" else 1) if domain.integer else 0
    return _GeometryArgs(
        mode=mode,
        taps_x=tx.to(torch.int32).contiguous(), weights_x=wx.contiguous(), taps_y=ty.to(torch.int32).contiguous(),
        weights_y=wy.contiguous(),
        matrix=warp.matrix.contiguous(), fill=fill.contiguous(), has_fill=padding.has_fill,
        interpolation=int(warp.interpolation != "nearest"), padding_mode=_PADDING_MODES[padding.mode],
        supersample=warp.supersample, rounding=rounding, out_hw=(out_h, out_w), all_separable=warp.axis_aligned,
    )


def _fused_call(
    x: Tensor, domain: Domain, warp: Warp | None, steps: list[Step], slots: list[Slots], final: FinalWrite | None,
    spec_out: ImageSpec, memory_format: torch.memory_format,
) -> Tensor:
    batch = x.shape[0]
    if x.dtype not in (torch.uint8, torch.float32):
        x = x.to(torch.float32)
    geometry = _identity_geometry(x) if warp is None else _warp_geometry(x, warp, domain)
    program = _program(slots, batch)
    channels = steps[-1].spec_out.channels if steps else x.shape[1]
    after = Domain(steps[-1].spec_out.dtype) if steps else domain
    device = x.device
    if final is None:
        scale, shift = torch.ones(channels, device=device), torch.zeros(channels, device=device)
        mode, mult, dtype = 0, 1.0, torch.float32
        memory_format = torch.contiguous_format
    else:
        k = execute.final_coefficients(final, after, channels, device)
        scale, shift, dtype = k.scale, k.shift, spec_out.dtype
        mode = 2 if k.to_uint8 is not None else (1 if final.steps and dtype.is_floating_point else 0)
        mult = 255.999 if k.to_uint8 else 1.0
    if warp is not None and warp.source_sizes is not None:
        sizes = warp.source_sizes.to(torch.int32)
    else:
        sizes = constant((x.shape[2], x.shape[3]), torch.int32, device).repeat(batch, 1)
    return torch.ops.gpuaug.fused_augment(
        x, sizes, geometry.mode, geometry.taps_x, geometry.weights_x, geometry.taps_y, geometry.weights_y,
        geometry.matrix, geometry.fill, program.rows.to(device), program.keys.to(device),
        scale.to(device, torch.float32), shift.to(device, torch.float32), program.contrast_passes,
        geometry.out_hw[0], geometry.out_hw[1], channels, geometry.interpolation, geometry.padding_mode,
        geometry.supersample, geometry.rounding, geometry.has_fill, mode, mult, dtype,
        memory_format == torch.channels_last, geometry.all_separable,
    )


def run(images: Tensor, stages: list[Stage], spec_out: ImageSpec, memory_format: torch.memory_format) -> Tensor:
    """Apply ``stages`` to ``images`` (B, C, H, W) with the fused op where it can; ``images`` is never written."""
    encoded = [_encode_step(s) if isinstance(s, Step) else None for s in stages]  # once per step
    fusable = any(e is not None for e in encoded) or any(
        isinstance(s, Warp) and _fusable_warp(s, images.shape[1]) for s in stages
    )
    if images.shape[0] == 0 or not fusable:  # nothing to fuse: the plain backend (chunked on CPUs) alone
        return execute.run(images, stages, spec_out, memory_format)
    x, domain = images, Domain(images.dtype)
    i = 0
    while True:
        stage = stages[i]
        warp = stage if isinstance(stage, Warp) and _fusable_warp(stage, x.shape[1]) else None
        j = i + (warp is not None)
        steps: list[Step] = []
        slots: list[Slots] = []
        while encoded[j] is not None:
            steps.append(stages[j])
            slots += encoded[j]
            j += 1
        final = stages[j] if isinstance(stages[j], FinalWrite) else None
        if warp is None and not steps and final is None:  # a stage the op cannot do
            x, domain = execute.run_stage(x, stage, domain, images)
            i += 1
            continue
        x = _fused_call(x, domain, warp, steps, slots, final, spec_out, memory_format)
        if final is not None:
            return x
        domain = Domain(steps[-1].spec_out.dtype) if steps else domain
        i = j
