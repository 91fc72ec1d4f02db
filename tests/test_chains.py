"""Random chains of axis-aligned geometry against torchvision, step by step, sample by sample.

Hypothesis draws a chain of crops, centre crops (larger than the image too), pads (every mode),
flips and at most one resize (to a size, or of the shorter side with max_size) or resized crop, on
a uint8 or float32 batch with int64 masks. gpuaug folds the chain into as few resampling passes as
it may; the reference runs torchvision's functional ops one after the other on each sample, with
the sample's recorded crop boxes. Crops, pads and flips move whole pixels, and gpuaug reproduces
torchvision's uint8 resizes bit for bit, so the outputs must be equal (float32 within one level of
1/255; plain bicubic, and resizes to one column, within 2 levels: see ``assert_close_resampled`` and
``Chain.exact_uint8``); masks exactly, as
torchvision's Mask (nearest, filled with 0). One interpolating step a pass only: gpuaug resamples
two resizes in one pass, which is meant to differ from resizing twice. A second test puts exact
uint8 colour steps (invert, posterize, grayscale, equalize, ...) among the steps: each ends a pass,
so a chain may resize again after it, and each pass must hand the next torchvision's uint8 values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from _parity_helpers import assert_close, assert_close_resampled, assert_equal, make_images, mode, pad_sides, tv_random_crop_padding
from _strategies import SETTINGS, _n
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from torch import Tensor
from torchvision.transforms.v2 import functional as F

import gpuaug as ga

# (one sample's image, its params, the sample, whether the image is its mask) -> the image after the step
Reference = Callable[[Tensor, object, int, bool], Tensor]


@dataclass
class Step:
    transform: ga.Transform
    reference: Reference
    size: tuple[int, int]  # the (height, width) after the step


@dataclass
class Chain:
    shape: tuple[int, int, int, int]
    dtype: torch.dtype
    steps: list[Step]

    @property
    def resamples(self) -> bool:  # interpolates (colour steps are exact)
        return any(isinstance(s.transform, (ga.Resize, ga.RandomResizedCrop)) and s.transform.interpolation != "nearest"
                   for s in self.steps)

    @property
    def exact_uint8(self) -> bool:
        """Not after a plain bicubic resize (see assert_close_resampled), nor after a resize to one
        column: torch then takes its generic kernel instead of the AVX2 one whose fixed-point rounding
        gpuaug reproduces, and a tie may round the other way (about 1 value in 10,000)."""
        return not any(
            (getattr(s.transform, "interpolation", None) == "bicubic" and not s.transform.antialias)
            or (isinstance(s.transform, (ga.Resize, ga.RandomResizedCrop)) and s.size[1] == 1)
            for s in self.steps
        )

    def __repr__(self) -> str:  # what a failing example shows
        return f"Chain({self.shape}, {self.dtype}, {[s.transform for s in self.steps]!r})"


# ------------------------------------------------------------------ the steps and their references


def _box(p, b: int) -> list[int]:
    return [int(p.top[b]), int(p.left[b]), int(p.height[b]), int(p.width[b])]


def centre_crop(size: list[int]) -> Step:
    return Step(ga.CenterCrop(size), lambda img, p, b, mask: F.center_crop(img, size), tuple(size))


def pad(padding: list[int], fill: float, padding_mode: str, height: int, width: int) -> Step:
    left, top, right, bottom = pad_sides(padding)
    return Step(
        ga.Pad(padding, fill=fill, padding_mode=padding_mode),
        lambda img, p, b, mask: F.pad(img, padding, fill=0 if mask else fill, padding_mode=padding_mode),
        (height + top + bottom, width + left + right),
    )


def random_crop(kwargs: dict, height: int, width: int) -> Step:
    """torchvision pads once, by ``padding`` and what pad_if_needed adds, then crops the recorded box."""
    padding, fill, padding_mode = tv_random_crop_padding(kwargs, height, width), kwargs["fill"], kwargs["padding_mode"]
    return Step(
        ga.RandomCrop(**kwargs),
        lambda img, p, b, mask: F.crop(F.pad(img, padding, fill=0 if mask else fill, padding_mode=padding_mode), *_box(p, b)),
        tuple(kwargs["size"]),
    )


def flip(horizontal: bool, height: int, width: int) -> Step:
    transform, reference = (ga.RandomHorizontalFlip, F.horizontal_flip) if horizontal else (ga.RandomVerticalFlip, F.vertical_flip)
    return Step(transform(p=0.5), lambda img, p, b, mask: reference(img) if p.applied[b] else img, (height, width))


def resize(transform: ga.Resize | ga.RandomResizedCrop, size: list[int]) -> Step:
    """A Resize to ``size`` (its result, for one given as the shorter side), or a RandomResizedCrop;
    masks nearest, as torchvision's Mask."""
    crops, interpolation, antialias = isinstance(transform, ga.RandomResizedCrop), transform.interpolation, transform.antialias

    def reference(img: Tensor, p, b: int, mask: bool) -> Tensor:
        img = F.crop(img, *_box(p, b)) if crops else img
        return _tv_resize(img, size, "nearest" if mask else interpolation, antialias and not mask)

    return Step(transform, reference, tuple(size))


def pixel(transform: ga.Transform, reference: Callable[[Tensor], Tensor], height: int, width: int) -> Step:
    """A colour step (masks pass unchanged); between two resizes, it ends the first one's pass."""
    return Step(transform, lambda img, p, b, mask: img if mask else reference(img), (height, width))


# colour steps whose uint8 results torchvision's kernels give exactly, and gpuaug too
_PIXEL_STEPS = {
    "invert": (lambda: ga.RandomInvert(1.0), F.invert),
    "posterize": (lambda: ga.RandomPosterize(3, p=1.0), lambda img: F.posterize(img, 3)),
    "solarize": (lambda: ga.RandomSolarize(100, p=1.0), lambda img: F.solarize(img, 100)),
    "grayscale": (lambda: ga.Grayscale(3), lambda img: F.rgb_to_grayscale(img, 3)),
    "equalize": (lambda: ga.RandomEqualize(1.0), F.equalize),
    "autocontrast": (lambda: ga.RandomAutocontrast(1.0), F.autocontrast),
}


def _tv_resize(img: Tensor, size: list[int], interpolation: str, antialias: bool) -> Tensor:
    """F.resize, around two faults of torch's kernels at an output width of 1: the uint8 kernel fails
    on 3 channels there (one channel at a time then), and the float antialiased kernel gives every
    row the first row's value (e.g. (0.2, 0.8) to (0.2, 0.2, 0.2); transposed it is right)."""
    options = dict(interpolation=mode(interpolation), antialias=antialias)
    if size[1] == 1 and img.dtype == torch.uint8:
        return torch.cat([F.resize(c, size, **options) for c in img.split(1)])
    if size[1] == 1 and antialias:
        return F.resize(img.transpose(-1, -2), size[::-1], **options).transpose(-1, -2)
    return F.resize(img, size, **options)


# ------------------------------------------------------------------ drawing a chain

_SLACK = {"reflect": 1, "symmetric": 0}  # torchvision mirrors less than a side, or up to it


def _mirrors(padding: list[int], height: int, width: int, padding_mode: str) -> bool:
    """Whether torchvision pads a (height, width) image by ``padding`` (left, top, right, bottom)."""
    slack = _SLACK.get(padding_mode)
    left, top, right, bottom = padding
    return slack is None or (max(left, right) <= width - slack and max(top, bottom) <= height - slack)


def _pad_amounts(draw, height: int, width: int, padding_mode: str) -> list[int]:
    """1, 2 or 4 pad amounts that torchvision takes for ``padding_mode`` on a (height, width) image."""
    slack = _SLACK.get(padding_mode)
    limit_w, limit_h = (4, 4) if slack is None else (min(4, width - slack), min(4, height - slack))
    amounts = [draw(st.integers(0, limit_w)), draw(st.integers(0, limit_h)), draw(st.integers(0, limit_w)),
               draw(st.integers(0, limit_h))]
    form = draw(st.sampled_from([1, 2, 4]))
    if form == 1:
        return [min(amounts[0], limit_h)]
    return amounts[:2] if form == 2 else amounts


def _fill(draw, dtype: torch.dtype) -> int | float:
    return draw(st.sampled_from([0, 7, 255])) if dtype == torch.uint8 else draw(st.sampled_from([0.0, 0.1, 1.0]))


def _shorter_side_size(height: int, width: int, side: int, max_size: int | None) -> list[int]:
    """What torchvision's Resize(side, max_size=...) makes of a (height, width) image; [] if nothing."""
    try:
        return list(F.resize(torch.zeros(1, height, width), [side], max_size=max_size).shape[1:])
    except RuntimeError:  # torch refuses an empty output
        return []


@st.composite
def chains(draw, pixels: bool = False) -> Chain:
    """Geometric steps, at most one resize in a pass; with ``pixels``, uint8 images with exact colour
    steps among them, each ending a pass (so another resize may follow), and resizes that are exact."""
    dtype = torch.uint8 if pixels else draw(st.sampled_from([torch.uint8, torch.float32]))
    shape = (3, draw(st.sampled_from([1, 3])), draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    steps: list[Step] = []
    height, width = shape[2:]
    resized = False  # in this pass
    for _ in range(draw(st.integers(1, 7 if pixels else 5))):
        kinds = ["centre-crop", "pad", "random-crop", "hflip", "vflip"] + ([] if resized else ["resize", "resized-crop"])
        kind = draw(st.sampled_from(kinds + (["pixel"] if pixels else [])))
        resized = resized or kind in ("resize", "resized-crop")
        if kind == "pixel":
            names = [n for n in _PIXEL_STEPS if n != "grayscale" or shape[1] == 3]
            make, reference = _PIXEL_STEPS[draw(st.sampled_from(names))]
            step, resized = pixel(make(), reference, height, width), False
        elif kind == "centre-crop":
            step = centre_crop([draw(st.integers(1, height + 6)), draw(st.integers(1, width + 6))])
        elif kind == "pad":
            padding_mode = draw(st.sampled_from(["constant", "edge", *_SLACK]))
            step = pad(_pad_amounts(draw, height, width, padding_mode), _fill(draw, dtype), padding_mode, height, width)
        elif kind == "random-crop":
            padding_mode = draw(st.sampled_from(["constant", "edge", *_SLACK]))
            kwargs = dict(padding=_pad_amounts(draw, height, width, padding_mode) if draw(st.booleans()) else None,
                          pad_if_needed=draw(st.booleans()), fill=_fill(draw, dtype), padding_mode=padding_mode)
            left, top, right, bottom = tv_random_crop_padding(dict(kwargs, size=1), height, width)
            grow = 4 if kwargs["pad_if_needed"] else 0
            kwargs["size"] = [draw(st.integers(1, height + top + bottom + grow)), draw(st.integers(1, width + left + right + grow))]
            assume(_mirrors(tv_random_crop_padding(kwargs, height, width), height, width, padding_mode))  # one F.pad
            step = random_crop(kwargs, height, width)
        elif kind in ("hflip", "vflip"):
            step = flip(kind == "hflip", height, width)
        else:
            options = dict(interpolation=draw(st.sampled_from(["nearest", "bilinear", "bicubic"])), antialias=draw(st.booleans()))
            if pixels and options["interpolation"] == "bicubic":  # exact only antialiased: colour steps would amplify
                options["antialias"] = True
            size = [draw(st.integers(1, 30)), draw(st.integers(1, 30))]
            if kind == "resized-crop":
                step = resize(ga.RandomResizedCrop(size, scale=(0.2, 1.0), **options), size)
            elif draw(st.booleans()):
                step = resize(ga.Resize(size, **options), size)
            else:  # the shorter side to a length, the longer at most max_size
                side, max_size = size[0], draw(st.sampled_from([None, size[0] + 1, size[0] + 10]))
                size = _shorter_side_size(height, width, side, max_size)
                assume(size)
                step = resize(ga.Resize(side, max_size=max_size, **options), size)
        steps.append(step)
        height, width = step.size
    return Chain(shape, dtype, steps)


def _check(chain: Chain, seed: int, device: str = "cpu") -> None:
    """The images, and their masks (int64 labels: nearest, filled with 0) as torchvision's Mask;
    on CUDA, resampled uint8 values within the CPU's allowance against CUDA (see assert_close_resampled)."""
    x = make_images(*chain.shape, chain.dtype, seed=seed)
    masks = torch.randint(0, 1000, (chain.shape[0], 1, *chain.shape[2:]), generator=torch.Generator().manual_seed(seed))
    pipe = ga.Pipeline([s.transform for s in chain.steps], seed=seed)
    batch = pipe(x.to(device), masks=masks.to(device), return_params=True)
    images, out_masks = batch.images.cpu(), batch.masks.cpu()
    for b in range(x.shape[0]):
        image, mask = x[b], masks[b].to(torch.float64)  # torch mirrors no int64 tensors
        for step, p in zip(chain.steps, batch.params.transforms):
            image, mask = step.reference(image, p, b, False), step.reference(mask, p, b, True)
        what = f"sample {b} of {chain}"
        assert_equal(out_masks[b], mask.to(torch.int64), what=f"mask of {what}")
        if not chain.resamples:
            assert_equal(images[b], image, what=what)
        elif chain.exact_uint8:
            assert_close_resampled(images[b], image, what=what, exact_uint8=device == "cpu")
        else:  # uint8 ties rounded otherwise (see Chain.exact_uint8)
            assert_close(images[b], image, 2.0 if x.dtype == torch.uint8 else 1 / 255, what=what)


@settings(max_examples=_n(150), **SETTINGS)
@given(chains(), st.integers(0, 2**16))
# a first step's fill that a uint8 resize reads (blended by its share, a level off); a nearest resize
# then a flip (each flipped footprint rounded, a pixel off) and a centre crop that pads; a float fill
# blended over an image pixel (y + (fill - y) is not always the fill)
@example(Chain((3, 3, 9, 7), torch.uint8, [pad([2], 255, "constant", 9, 7), resize(ga.Resize([5, 4]), [5, 4])]), 0)
@example(Chain((3, 1, 5, 6), torch.float32, [resize(ga.Resize([7, 9], interpolation="nearest"), [7, 9]),
                                              flip(True, 7, 9), centre_crop([9, 12])]), 1)
@example(Chain((3, 1, 4, 5), torch.float32, [flip(True, 4, 5), pad([3], 0.1, "constant", 4, 5)]), 2)
def test_random_chains_match_torchvision_step_by_step(chain: Chain, seed: int):
    _check(chain, seed)


@settings(max_examples=_n(60), **SETTINGS)
@given(chains(pixels=True), st.integers(0, 2**16))
def test_random_chains_of_several_passes_match_torchvision(chain: Chain, seed: int):
    """uint8 geometry with exact colour steps in between: each pass hands the next one torchvision's
    uint8 values (rounded as its resize rounds)."""
    _check(chain, seed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@settings(max_examples=_n(60), **SETTINGS)
@given(chains(), st.integers(0, 2**16))
def test_random_chains_on_cuda_match_torchvision(chain: Chain, seed: int):
    _check(chain, seed, "cuda")



_BILINEAR = mode("bilinear")
PAD_THEN_ROTATE = {  # gpuaug steps, and torchvision's, one after the other
    "fill": ([ga.Pad([0, 0, 2, 2]), ga.RandomRotation((30, 30), interpolation="bilinear")],
             lambda x: F.rotate(F.pad(x, [0, 0, 2, 2]), 30.0, interpolation=_BILINEAR)),
    "reflect": ([ga.Pad(2, padding_mode="reflect"), ga.RandomRotation((30, 30), interpolation="bilinear")],
                lambda x: F.rotate(F.pad(x, [2], padding_mode="reflect"), 30.0, interpolation=_BILINEAR)),
    "symmetric-affine": ([ga.Pad(3, padding_mode="symmetric"),
                          ga.RandomAffine((20, 20), shear=(10, 10, 0, 0), interpolation="bilinear")],
                         lambda x: F.affine(F.pad(x, [3], padding_mode="symmetric"), angle=20.0, translate=[0, 0],
                                            scale=1.0, shear=[10.0, 0.0], interpolation=_BILINEAR)),
    "fill-90": ([ga.Pad([1, 4], fill=90), ga.RandomRotation((-15, -15), interpolation="bilinear")],
                lambda x: F.rotate(F.pad(x, [1, 4], fill=90), -15.0, interpolation=_BILINEAR)),
}


@pytest.mark.parametrize("backend", ["torch", "ext"])
@pytest.mark.parametrize("name", PAD_THEN_ROTATE)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])  # (float images with a fill of 90 too)
def test_a_pad_then_a_bilinear_rotation_is_torchvisions(name, dtype, backend):
    """The rotation blends its own fill along the padded canvas' edge (torchvision pads, then rotates):
    folded into one pass, grid sampling once blended what lies beyond the pad (the pad continued, or
    the fill counted twice) into it, up to 63 uint8 levels off in RandomCrop(32, padding=4) + RandomRotation."""
    transforms, reference = PAD_THEN_ROTATE[name]
    x = make_images(2, 3, 11, 9, dtype, 4)
    out = ga.Pipeline(transforms, seed=0, backend=backend)(x)
    for b in range(2):
        ref = reference(x[b])
        if dtype == torch.uint8:
            assert int((out[b].int() - ref.int()).abs().max()) <= 1, b
        else:
            torch.testing.assert_close(out[b], ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_a_padded_random_crop_then_a_bilinear_rotation_is_torchvisions(backend):
    """The CIFAR recipe, RandomCrop(padding=...) then RandomRotation, with samples that skip the rotation:
    each sample as torchvision's pad, crop and rotate give it (from the drawn parameters)."""
    x = make_images(6, 3, 12, 12, torch.uint8, 5)
    pipe = ga.Pipeline([ga.RandomCrop(12, padding=3), ga.RandomRotation(20, interpolation="bilinear", p=0.5)],
                       seed=3, backend=backend)
    out, params = pipe(x, return_params=True)
    crop, rotation = params.transforms
    assert 0 < int(rotation.applied.sum()) < 6
    for b in range(6):
        ref = F.crop(F.pad(x[b], [3]), int(crop.top[b]), int(crop.left[b]), 12, 12)
        if rotation.applied[b]:
            ref = F.rotate(ref, float(rotation.angle[b]), interpolation=_BILINEAR)
        assert int((out[b].int() - ref.int()).abs().max()) <= 1, b
