"""Random chains of axis-aligned geometry against torchvision, step by step, sample by sample.

Hypothesis draws a chain of crops, centre crops (larger than the image too), pads (every mode),
flips and at most one resize (to a size, or of the shorter side with max_size) or resized crop, on
a uint8 or float32 batch with int64 masks. gpuaug folds the chain into as few resampling passes as
it may; the reference runs torchvision's functional ops one after the other on each sample, with
the sample's recorded crop boxes. Crops, pads and flips move whole pixels, and gpuaug reproduces
torchvision's uint8 resizes bit for bit, so the outputs must be equal (float32 within one level of
1/255, plain bicubic within 2 levels: see ``assert_close_resampled``); masks exactly, as
torchvision's Mask (nearest, filled with 0). One interpolating step only: gpuaug resamples two
resizes in one pass, which is meant to differ from resizing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from _parity_helpers import assert_close, assert_close_resampled, assert_equal, make_images, mode, pad_sides, tv_random_crop_padding
from _strategies import SETTINGS, _n
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional._geometry import _compute_resized_output_size

import gpuaug as ga

# (one sample's image, its params, the sample, whether the image is its mask) -> the image after the step
Reference = Callable[[Tensor, object, int, bool], Tensor]


@dataclass
class Chain:
    shape: tuple[int, int, int, int]
    dtype: torch.dtype
    transforms: list
    references: list[Reference]
    exact_uint8: bool = True  # False after a plain bicubic resize (see assert_close_resampled)

    def __repr__(self) -> str:  # what a failing example shows
        return f"Chain({self.shape}, {self.dtype}, {self.transforms!r})"


_SLACK = {"reflect": 1, "symmetric": 0}  # torchvision mirrors less than a side, or up to it


def _padding_mode(draw, height: int, width: int) -> str:
    """A padding mode torchvision can pad a (height, width) image in (it mirrors no 1-pixel side)."""
    return draw(st.sampled_from(["constant", "edge"] + (list(_SLACK) if min(height, width) > 1 else [])))


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
    return draw(st.sampled_from([0, 7, 255])) if dtype == torch.uint8 else draw(st.sampled_from([0.0, 0.25, 1.0]))


def _box(p, b: int) -> list[int]:
    return [int(p.top[b]), int(p.left[b]), int(p.height[b]), int(p.width[b])]


@st.composite
def chains(draw) -> Chain:
    dtype = draw(st.sampled_from([torch.uint8, torch.float32]))
    channels = draw(st.sampled_from([1, 3]))
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    chain = Chain((3, channels, height, width), dtype, [], [])
    resized = False
    for _ in range(draw(st.integers(1, 5))):
        kinds = ["centre-crop", "pad", "random-crop", "hflip", "vflip"] + ([] if resized else ["resize", "resized-crop"])
        kind = draw(st.sampled_from(kinds))
        if kind == "centre-crop":
            size = [draw(st.integers(1, height + 6)), draw(st.integers(1, width + 6))]
            chain.transforms.append(ga.CenterCrop(size))
            chain.references.append(lambda img, p, b, mask, size=size: F.center_crop(img, size))
            height, width = size
        elif kind == "pad":
            padding_mode = _padding_mode(draw, height, width)
            padding, fill = _pad_amounts(draw, height, width, padding_mode), _fill(draw, dtype)
            chain.transforms.append(ga.Pad(padding, fill=fill, padding_mode=padding_mode))
            chain.references.append(
                lambda img, p, b, mask, a=(padding, fill, padding_mode): F.pad(img, a[0], fill=0 if mask else a[1], padding_mode=a[2])
            )
            left, top, right, bottom = pad_sides(padding)
            height, width = height + top + bottom, width + left + right
        elif kind == "random-crop":
            padding_mode = _padding_mode(draw, height, width)
            kwargs = dict(padding=_pad_amounts(draw, height, width, padding_mode) if draw(st.booleans()) else None,
                          pad_if_needed=draw(st.booleans()), fill=_fill(draw, dtype), padding_mode=padding_mode)
            left, top, right, bottom = tv_random_crop_padding(dict(kwargs, size=1), height, width)
            padded = (height + top + bottom, width + left + right)
            grow = 4 if kwargs["pad_if_needed"] else 0
            kwargs["size"] = size = [draw(st.integers(1, padded[0] + grow)), draw(st.integers(1, padded[1] + grow))]
            padding = tv_random_crop_padding(kwargs, height, width)
            assume(_mirrors(padding, height, width, padding_mode))  # torchvision pads in one go
            chain.transforms.append(ga.RandomCrop(**kwargs))
            chain.references.append(
                lambda img, p, b, mask, a=(padding, kwargs["fill"], padding_mode):
                F.crop(F.pad(img, a[0], fill=0 if mask else a[1], padding_mode=a[2]), *_box(p, b))
            )
            height, width = size
        elif kind in ("hflip", "vflip"):
            flip, reference = (ga.RandomHorizontalFlip, F.horizontal_flip) if kind == "hflip" else (ga.RandomVerticalFlip, F.vertical_flip)
            chain.transforms.append(flip(p=0.5))
            chain.references.append(lambda img, p, b, mask, f=reference: f(img) if p.applied[b] else img)
        else:
            resized = True
            interpolation = draw(st.sampled_from(["nearest", "bilinear", "bicubic"]))
            antialias = draw(st.booleans())
            chain.exact_uint8 = interpolation != "bicubic" or antialias
            size = [draw(st.integers(1, 30)), draw(st.integers(1, 30))]
            if kind == "resize" and draw(st.booleans()):  # the shorter side to a length, the longer at most max_size
                side, max_size = size[0], draw(st.sampled_from([None, size[0] + 1, size[0] + 10]))
                size = list(_compute_resized_output_size((height, width), size=[side], max_size=max_size))
                assume(min(size) > 0)
                chain.transforms.append(ga.Resize(side, interpolation=interpolation, max_size=max_size, antialias=antialias))
            elif kind == "resize":
                chain.transforms.append(ga.Resize(size, interpolation=interpolation, antialias=antialias))
            else:
                chain.transforms.append(ga.RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=interpolation, antialias=antialias))
            chain.references.append(
                lambda img, p, b, mask, s=size, crops=kind == "resized-crop", o=(interpolation, antialias):
                _resize(F.crop(img, *_box(p, b)) if crops else img, s, "nearest" if mask else o[0], o[1] and not mask)
            )
            height, width = size
    return chain


def _resize(img: Tensor, size: list[int], interpolation: str, antialias: bool) -> Tensor:
    """F.resize, around two faults of torch's kernels at an output width of 1: the uint8 kernel fails
    on 3 channels there (one channel at a time then), and the float antialiased kernel gives every
    row the first row's value (e.g. (0.2, 0.8) to (0.2, 0.2, 0.2); transposed it is right)."""
    options = dict(interpolation=mode(interpolation), antialias=antialias)
    if size[1] == 1 and img.dtype == torch.uint8:
        return torch.cat([F.resize(c, size, **options) for c in img.split(1)])
    if size[1] == 1 and antialias:
        return F.resize(img.transpose(-1, -2), size[::-1], **options).transpose(-1, -2)
    return F.resize(img, size, **options)


@settings(max_examples=_n(150), **SETTINGS)
@given(chains(), st.integers(0, 2**16))
def test_random_chains_match_torchvision_step_by_step(chain: Chain, seed: int):
    """The images, and their masks (int64 labels: nearest, filled with 0) as torchvision's Mask."""
    x = make_images(*chain.shape, chain.dtype, seed=seed)
    masks = torch.randint(0, 1000, (chain.shape[0], 1, *chain.shape[2:]), generator=torch.Generator().manual_seed(seed))
    batch = ga.Pipeline(chain.transforms, seed=seed)(x, masks=masks, return_params=True)
    resamples = any(isinstance(t, (ga.Resize, ga.RandomResizedCrop)) and t.interpolation != "nearest" for t in chain.transforms)
    for b in range(x.shape[0]):
        image, mask = x[b], masks[b].to(torch.float64)  # torch mirrors no int64 tensors
        for reference, p in zip(chain.references, batch.params.transforms):
            image, mask = reference(image, p, b, False), reference(mask, p, b, True)
        what = f"sample {b} of {chain}"
        assert_equal(batch.masks[b], mask.to(torch.int64), what=f"mask of {what}")
        if not resamples:
            assert_equal(batch.images[b], image, what=what)
        elif chain.exact_uint8:
            assert_close_resampled(batch.images[b], image, what=what)
        else:  # plain bicubic on uint8 values: first-pass ties rounded otherwise (see assert_close_resampled)
            assert_close(batch.images[b], image, 2.0 if x.dtype == torch.uint8 else 1 / 255, what=what)
