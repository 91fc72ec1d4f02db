"""Hypothesis strategies shared by the property tests: random valid pipelines for random inputs.

A case is ((B, C, H, W), input dtype), the transforms, the Spec the output must have (tracked
independently, with torchvision's size rules), a seed and an output memory format. Also how far two
computations of one pipeline may differ (:func:`_tolerance`, :func:`_straddles_allowed`), and
:class:`poisoned_memory`, which shows an output element that is never written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
from hypothesis import HealthCheck, assume
from hypothesis import strategies as st

import gpuaug as ga

# $GPUAUG_HYPOTHESIS_SCALE multiplies the number of examples and, when set, draws new ones each run
_SCALE = float(os.environ.get("GPUAUG_HYPOTHESIS_SCALE", "1"))
SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "derandomize": "GPUAUG_HYPOTHESIS_SCALE" not in os.environ,
}


def _n(examples: int) -> int:
    return max(1, int(examples * _SCALE))

DTYPES = [torch.uint8, torch.float32, torch.float16, torch.bfloat16]
INTERP = ["nearest", "bilinear", "bicubic"]


@dataclass(frozen=True)
class Spec:
    c: int
    h: int
    w: int
    dtype: torch.dtype
    in_range: bool = True  # float values provably still within [0, 1]

    @property
    def bound(self) -> float:
        return 1.0 if self.dtype.is_floating_point else 255.0


# ---------------------------------------------------------------- strategies per transform

probs = st.sampled_from([0.0, 0.3, 0.5, 1.0])
small_float = st.floats(0.0, 1.0, allow_nan=False)


def _fill(draw, spec: Spec):
    kind = draw(st.sampled_from(["zero", "scalar", "per-channel"]))
    if kind == "zero":
        return 0, True
    top = spec.bound
    if kind == "scalar":
        v = draw(st.floats(0.0, top)) if spec.dtype.is_floating_point else draw(st.integers(0, 255))
        return v, True
    vals = [draw(st.floats(0.0, top)) if spec.dtype.is_floating_point else draw(st.integers(0, 255)) for _ in range(spec.c)]
    return vals, True


def _resized_size(h: int, w: int, size: list[int]) -> tuple[int, int]:
    """torchvision's Resize output size (an int is the shorter edge), written out independently."""
    if len(size) == 2:
        return size[0], size[1]
    short, long = (h, w) if h <= w else (w, h)
    new_short, new_long = size[0], int(size[0] * long / short)
    return (new_short, new_long) if h <= w else (new_long, new_short)


@st.composite
def same_spec_transform(draw, spec: Spec, only: str | None = None):
    """A transform that keeps the spec (allowed inside partial containers); returns (t, spec)."""
    options = ["hflip", "vflip", "rotation", "affine", "jitter", "rgray", "invert", "solarize", "posterize",
               "sharpness", "autocontrast", "equalize", "noise", "erasing"]
    if spec.h >= 2 and spec.w >= 2:
        options.append("perspective")  # 1-pixel images: see test_errors / the xfail in test_properties
    if spec.dtype.is_floating_point:
        options.append("normalize")
    blur_x = [k for k in (1, 3, 5, 7) if k // 2 < spec.w]
    blur_y = [k for k in (1, 3, 5, 7) if k // 2 < spec.h]
    options.append("blur")
    name = only or draw(st.sampled_from(options))
    p = draw(probs)
    if name == "hflip":
        return ga.RandomHorizontalFlip(p), spec
    if name == "vflip":
        return ga.RandomVerticalFlip(p), spec
    if name in ("rotation", "affine", "perspective"):
        interp = draw(st.sampled_from(INTERP))
        fill, _ = _fill(draw, spec)
        keeps = spec.in_range and interp != "bicubic"
        if name == "rotation":
            deg = draw(st.one_of(st.floats(0, 180), st.tuples(st.floats(-180, 0), st.floats(0, 180))))
            center = draw(st.none() | st.tuples(st.floats(0, spec.w), st.floats(0, spec.h)))
            return ga.RandomRotation(deg, interpolation=interp, center=center, fill=fill, p=p), replace(spec, in_range=keeps)
        if name == "affine":
            t = ga.RandomAffine(
                degrees=draw(st.floats(0, 90)),
                translate=draw(st.none() | st.tuples(small_float, small_float)),
                scale=draw(st.none() | st.tuples(st.floats(0.3, 1.0), st.floats(1.0, 2.0))),
                shear=draw(st.none() | st.floats(0, 30) | st.tuples(st.floats(-30, 0), st.floats(0, 30), st.floats(-20, 0), st.floats(0, 20))),
                interpolation=interp,
                fill=fill,
                p=p,
            )
            return t, replace(spec, in_range=keeps)
        return ga.RandomPerspective(draw(small_float), p=p, interpolation=interp, fill=fill), replace(spec, in_range=keeps)
    if name == "jitter":
        def factor():
            return draw(st.none() | st.floats(0.0, 1.5) | st.tuples(st.floats(0.0, 1.0), st.floats(1.0, 2.0)))
        hue = draw(st.none() | st.floats(0.0, 0.5) | st.tuples(st.floats(-0.5, 0.0), st.floats(0.0, 0.5)))
        return ga.ColorJitter(factor(), factor(), factor(), hue, p=p), spec
    if name == "rgray":
        return ga.RandomGrayscale(p), spec
    if name == "invert":
        return ga.RandomInvert(p), spec
    if name == "solarize":
        thr = draw(st.floats(0.0, 1.0)) if spec.dtype.is_floating_point else draw(st.integers(0, 255))
        return ga.RandomSolarize(thr, p), spec
    if name == "posterize":
        return ga.RandomPosterize(draw(st.integers(0, 8)), p), spec
    if name == "sharpness":
        return ga.RandomAdjustSharpness(draw(st.floats(0.0, 4.0)), p), spec
    if name == "autocontrast":
        return ga.RandomAutocontrast(p), spec
    if name == "equalize":
        return ga.RandomEqualize(p), spec
    if name == "blur":
        k = (draw(st.sampled_from(blur_x)), draw(st.sampled_from(blur_y)))
        sigma = draw(st.floats(0.05, 3.0) | st.tuples(st.floats(0.05, 1.0), st.floats(1.0, 3.0)))
        return ga.GaussianBlur(k, sigma=sigma, p=p), spec
    if name == "noise":
        clip = draw(st.booleans())
        t = ga.GaussianNoise(mean=draw(st.floats(-0.1, 0.1)), sigma=draw(st.floats(0.0, 0.3)), clip=clip, p=p)
        return t, replace(spec, in_range=spec.in_range and clip)
    if name == "erasing":
        value = draw(st.sampled_from(["zero", "scalar", "channels", "random"]))
        if value == "random":
            v, ok = "random", False
        elif value == "channels":
            v, ok = [draw(st.floats(0.0, spec.bound)) for _ in range(spec.c)], True
        else:
            v, ok = (0 if value == "zero" else draw(st.floats(0.0, spec.bound))), True
        lo = draw(st.floats(0.0, 0.5))
        t = ga.RandomErasing(p=p, scale=(lo, draw(st.floats(lo, 1.0))), ratio=(0.3, 3.3), value=v)
        return t, replace(spec, in_range=spec.in_range and ok)
    if name == "normalize":
        n = draw(st.sampled_from([1, spec.c]))
        mean = [draw(st.floats(0.0, 1.0)) for _ in range(n)]
        std = [draw(st.floats(0.1, 2.0)) for _ in range(n)]
        return ga.Normalize(mean, std), replace(spec, in_range=False)
    raise AssertionError(name)


@st.composite
def any_transform(draw, spec: Spec, depth: int = 0):
    """Any transform valid for ``spec``; returns (transform, spec after it)."""
    kinds = ["same", "same", "resize", "centercrop", "randomcrop", "rrc", "pad", "grayscale", "todtype"]
    if depth == 0:
        kinds += ["apply", "choice", "order", "apply1"]
    kind = draw(st.sampled_from(kinds))
    if kind == "same":
        return draw(same_spec_transform(spec))
    if kind == "resize":
        size = draw(st.lists(st.integers(1, 40), min_size=1, max_size=2))
        interp = draw(st.sampled_from(INTERP))
        h, w = _resized_size(spec.h, spec.w, size)
        assume(min(h, w) >= 1)
        t = ga.Resize(size if len(size) == 2 else size[0], interpolation=interp, antialias=draw(st.booleans()))
        return t, replace(spec, h=h, w=w, in_range=spec.in_range and interp != "bicubic")
    if kind == "centercrop":
        h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
        return ga.CenterCrop((h, w)), replace(spec, h=h, w=w)
    if kind == "randomcrop":
        mode = draw(st.sampled_from(["constant", "edge", "reflect", "symmetric"]))
        limit = min(spec.h, spec.w) - 1 if mode == "reflect" else min(spec.h, spec.w)
        pad = draw(st.none() | st.integers(0, max(0, min(limit, 4))))
        ph = spec.h + 2 * (pad or 0)
        pw = spec.w + 2 * (pad or 0)
        pad_if_needed = mode in ("constant", "edge") and draw(st.booleans())
        h = draw(st.integers(1, ph + (6 if pad_if_needed else 0)))
        w = draw(st.integers(1, pw + (6 if pad_if_needed else 0)))
        fill, _ = _fill(draw, spec) if mode == "constant" else (0, True)
        t = ga.RandomCrop((h, w), padding=pad, pad_if_needed=pad_if_needed, fill=fill, padding_mode=mode, p=draw(probs))
        return t, replace(spec, h=h, w=w)
    if kind == "rrc":
        h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        lo = draw(st.floats(0.01, 1.0))
        rlo = draw(st.floats(0.2, 1.0))
        interp = draw(st.sampled_from(INTERP))
        t = ga.RandomResizedCrop((h, w), scale=(lo, draw(st.floats(lo, 1.0))), ratio=(rlo, draw(st.floats(1.0, 5.0))),
                                 interpolation=interp, antialias=draw(st.booleans()), p=draw(probs))
        return t, replace(spec, h=h, w=w, in_range=spec.in_range and interp != "bicubic")
    if kind == "pad":
        mode = draw(st.sampled_from(["constant", "edge", "reflect", "symmetric"]))
        hi = min(spec.h, spec.w) - 1 if mode == "reflect" else 5
        if hi < 0:
            mode, hi = "edge", 5
        pads = draw(st.lists(st.integers(0, min(hi, 5)), min_size=1, max_size=4).filter(lambda v: len(v) != 3))
        left, top, right, bottom = (pads * 4)[:4] if len(pads) == 1 else (pads * 2 if len(pads) == 2 else pads)
        fill, _ = _fill(draw, spec) if mode == "constant" else (0, True)
        t = ga.Pad(pads if len(pads) > 1 else pads[0], fill=fill, padding_mode=mode)
        return t, replace(spec, h=spec.h + top + bottom, w=spec.w + left + right)
    if kind == "grayscale":
        n = draw(st.sampled_from([1, 3]))
        return ga.Grayscale(n), replace(spec, c=n)
    if kind == "todtype":
        dtype = draw(st.sampled_from(DTYPES + [torch.float64]))
        scale = draw(st.booleans())
        same_domain = dtype.is_floating_point == spec.dtype.is_floating_point
        # int -> float without scale leaves 0..255 values; float -> uint8 (scaled or not) lands in range
        stays = spec.in_range and (same_domain or scale or not dtype.is_floating_point)
        return ga.ToDtype(dtype, scale=scale), replace(spec, dtype=dtype, in_range=stays)
    # containers
    if kind == "apply1":
        children, out = [], spec
        for _ in range(draw(st.integers(1, 2))):
            t, out = draw(any_transform(out, depth + 1))
            children.append(t)
        return ga.RandomApply(children, p=1.0), out
    n = draw(st.integers(1, 3))
    children, out = [], spec
    for _ in range(n):
        t, out = draw(same_spec_transform(out))
        children.append(t)
    if kind == "apply":
        return ga.RandomApply(children, p=draw(st.sampled_from([0.0, 0.5, 0.9]))), out
    if kind == "choice":
        # each child sees the container's input spec
        flags = []
        kids = []
        for _ in range(n):
            t, s = draw(same_spec_transform(spec))
            kids.append(t)
            flags.append(s.in_range)
        return ga.RandomChoice(kids), replace(spec, in_range=all(flags))
    return ga.RandomOrder(children), out


@st.composite
def cases(draw, max_transforms: int = 4, batch: tuple[int, int] = (1, 4)):
    b = draw(st.integers(*batch))
    c = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    dtype = draw(st.sampled_from(DTYPES))
    spec = Spec(c, h, w, dtype)
    transforms = []
    for _ in range(draw(st.integers(0, max_transforms))):
        t, spec = draw(any_transform(spec))
        transforms.append(t)
    if draw(st.booleans()):  # the usual tail
        if not spec.dtype.is_floating_point:
            t = ga.ToDtype(draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16])), scale=True)
            spec = replace(spec, dtype=t.dtype)
            transforms.append(t)
        if draw(st.booleans()):
            transforms.append(ga.Normalize([0.5] * spec.c, [0.25] * spec.c))
            spec = replace(spec, in_range=False)
    seed = draw(st.integers(0, 2**40))
    layout = draw(st.sampled_from([torch.contiguous_format, torch.channels_last]))
    return (b, c, h, w, dtype), transforms, spec, seed, layout


def _input(shape, dtype, seed=0):
    b, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=g)
    return torch.rand((b, c, h, w), generator=g).to(dtype)


def _describe(transforms):
    return ga.Pipeline(transforms, seed=0).__repr__()


def _each(transforms: list) -> list:
    """The transforms, and those inside containers (RandomApply, RandomChoice, RandomOrder)."""
    return [u for t in transforms for u in [t, *_each(getattr(t, "transforms", []))]]


def _tolerance(reference: torch.Tensor, transforms: list, x: torch.Tensor) -> torch.Tensor:
    """Per element: 1 uint8 level for uint8 output; for float output 1e-3 relative or two steps of the
    output dtype, and at least: 1e-5 at the input's scale (on the CPU the torch backend resizes float crops with torch's own
    kernel, as torchvision, which places its taps in float32 arithmetic; the fused pass's taps come
    within a few 1e-6 of it at the suite's sizes, about 2e-5 at 224 px, where a resize's negative lobes
    cancel to a small value too); where values
    passed through uint8, one uint8 level; for a float16 or bfloat16 input, two steps of that dtype at
    the input's scale (the torch backend crops and pads in the input dtype, rounding a fill to it; the
    fused pass keeps float32); all amplified by the Normalize factors."""
    ref = reference.to(torch.float64)
    if not reference.dtype.is_floating_point:
        return torch.ones_like(ref)
    gain = 1.0
    for t in _each(transforms):
        if isinstance(t, ga.Normalize):
            gain /= min(abs(s) for s in t.std)
    scale = max(1.0, float(x.to(torch.float64).abs().nan_to_num(posinf=0.0, neginf=0.0).max())) if x.numel() else 1.0
    level = 1e-5 * gain * scale
    if x.dtype == torch.uint8 or "ToDtype(dtype=torch.uint8" in _describe(transforms):
        level = gain / 255.0
    if x.dtype in (torch.float16, torch.bfloat16):
        level = max(level, 2 * torch.finfo(x.dtype).eps * gain * scale)
    step = torch.finfo(reference.dtype).eps
    return torch.maximum(ref.abs() * max(1e-3, 2 * step), torch.full_like(ref, level))


def _straddles_allowed(transforms: list, x: torch.Tensor, numel: int) -> int:
    """How many of ``numel`` output values may differ by more than :func:`_tolerance`: where a posterize,
    a solarize or an equalize runs on float values, two computations of a value an ulp apart can fall
    on either side of its threshold or bin edge, and the outputs then differ by a whole step (allowed:
    one value in a thousand, at least one)."""
    each = _each(transforms)
    to_float = any(isinstance(t, ga.ToDtype) and t.dtype.is_floating_point for t in each)
    floats = x.dtype.is_floating_point or to_float
    thresholds = any(isinstance(t, (ga.RandomPosterize, ga.RandomSolarize, ga.RandomEqualize)) for t in each)
    return max(1, numel // 1000) if floats and thresholds else 0


class poisoned_memory:
    """Fill new tensors with NaN (floats) or the largest value (integers), as torch's deterministic
    mode does, so that an output element the op never writes shows up."""

    def __enter__(self) -> None:
        self.before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = True

    def __exit__(self, *exc) -> None:
        torch.use_deterministic_algorithms(self.before[0], warn_only=self.before[1])
