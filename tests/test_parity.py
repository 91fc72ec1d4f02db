"""Parity with torchvision.transforms.v2.functional, sample by sample, from the recorded parameters.

For every transform: run a batch through ``ga.Pipeline([t], seed=...)`` with ``return_params=True``,
recompute each sample with torchvision's functional op from that sample's own parameters only
(identity where ``applied[b]`` is False), and compare:

- exactly for flips, integer crops and pads, nearest (away from out-of-image edges) and integer
  pixel ops;
- within one quantisation level (uint8: 1, float: 1/255) for interpolating and colour ops, on every
  pixel whose source point is not within 1.5 px of the image border (mask built from the recorded
  matrix, see ``edge_free_mask``).

uint8 bilinear and antialiased bicubic resizes must equal torchvision's bit for bit (gpuaug
rounds as torchvision's fixed-point CPU kernel does, see ``assert_close_resampled``); plain bicubic
allows 2 levels on at most 1 value in 1000.

Then composed geometry against an independent float64 reference built from the parameters (and
the canvas semantics of transforms applied one after the other), flip twice, a 90 degree rotation
against torch.rot90, a kornia cross-check, memory layouts, and the same parity on CUDA when present.

Known gpuaug bugs are ``xfail(strict=True)`` with the reason ``bug: ...``: remove the mark once fixed.
"""

from __future__ import annotations

import pytest
import torch
from _parity_helpers import (
    assert_close,
    assert_close_resampled,
    assert_equal,
    bilinear_reference,
    crop_resize_matrix,
    edge_free_mask,
    hflip_matrix,
    inside_mask,
    level,
    make_images,
    mode,
    normalized,
    run_one,
    tv_random_crop_padding,
    tv_affine_matrix,
    tv_perspective_coefficients,
    tv_perspective_matrix,
)
from torchvision.transforms.v2 import functional as F

import gpuaug as ga
from gpuaug.random import normal_field

H, W = 37, 53  # odd, non-square
B = 5
DTYPES = [torch.uint8, torch.float32]
CHANNELS = [1, 3]
dtype_ids = {torch.uint8: "uint8", torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _id(value):
    return dtype_ids.get(value) if isinstance(value, torch.dtype) else None


def as_float(params_field, b: int) -> float:
    return float(params_field[b])


def as_int(params_field, b: int) -> int:
    return int(params_field[b])


# =============================================================================================================
# Crops, resizes, pads, flips (axis-aligned)
# =============================================================================================================


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", [(24, 20), (45, 61)], ids=["shrink", "enlarge"])
@pytest.mark.parametrize(
    "interpolation, antialias",
    [("bilinear", True), ("bilinear", False), ("bicubic", True)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_resized_crop(dtype, channels, size, interpolation, antialias, seed):
    x = make_images(B, channels, H, W, dtype, seed)
    t = ga.RandomResizedCrop(size, scale=(0.25, 1.0), interpolation=interpolation, antialias=antialias)
    out, params = run_one(t, x, seed)
    p = params.transforms[0]
    assert out.shape == (B, channels, *size) and out.dtype == dtype
    for b in range(B):
        box = [as_int(p.top, b), as_int(p.left, b), as_int(p.height, b), as_int(p.width, b)]
        assert box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= H and box[1] + box[3] <= W
        ref = F.resized_crop(x[b], *box, list(size), interpolation=mode(interpolation), antialias=antialias)
        assert_close_resampled(out[b], ref, what=f"sample {b} crop {box}")


@pytest.mark.parametrize("interpolation, antialias", [("bilinear", True), ("bilinear", False), ("bicubic", True),
                                                     ("bicubic", False)])
def test_float_crop_resizes_are_torchvisions_bit_for_bit_on_the_cpu(interpolation, antialias):
    """On the CPU the plain-PyTorch backend resizes each float32 crop with torch's own kernel, as
    torchvision's resized_crop does (its taps came within float rounding, several times slower)."""
    x = make_images(B, 3, H, W, torch.float32, 4)
    for t in (ga.RandomResizedCrop((24, 20), scale=(0.25, 1.0), interpolation=interpolation, antialias=antialias),
              ga.Resize((19, 41), interpolation=interpolation, antialias=antialias)):
        out, params = ga.Pipeline([t, ga.RandomHorizontalFlip()], seed=3, backend="torch")(x, return_params=True)
        crop, flip = params.transforms
        for b in range(B):
            ref = x[b]
            if isinstance(t, ga.RandomResizedCrop):
                ref = F.crop(ref, as_int(crop.top, b), as_int(crop.left, b), as_int(crop.height, b), as_int(crop.width, b))
            ref = F.resize(ref, list(out.shape[-2:]), interpolation=mode(interpolation), antialias=antialias)
            assert_equal(out[b], F.horizontal_flip(ref) if bool(flip.applied[b]) else ref, what=f"{t} sample {b}")


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_hue_of_float_values_outside_the_unit_range_is_torchvisions(backend):
    """torchvision's HSV round trip clamps two channels to [0, 1] and leaves V (the largest) as it is:
    a float image after unclipped noise once lost its highlights and negative values to a clamp."""
    x = torch.rand(16, 3, 9, 11, generator=torch.Generator().manual_seed(0)) * 3.0 - 1.0
    x[:, :, 0, :3] = 1.3  # grey pixels outside the range
    out, params = ga.Pipeline([ga.ColorJitter(hue=0.3)], seed=0, backend=backend)(x, return_params=True)
    hue = params.transforms[0].hue
    ref = torch.stack([F.adjust_hue(x[b], float(hue[b])) for b in range(16)])
    assert_close(out, ref, 1e-5, what=backend)
    # shifts that land a channel exactly on a sextant's start (k = 0: clamped, as torchvision's q)
    pixels = torch.tensor([[1.5, 0.0, 0.0], [1.3, 1.3, 1.3], [-0.2, 0.4, 1.2]]).view(3, 3, 1, 1)
    for shift in (0.5, -0.5, 1 / 6, -1 / 6):
        out = ga.Pipeline([ga.ColorJitter(hue=(shift, shift))], seed=0, backend=backend)(pixels)
        assert_close(out, F.adjust_hue(pixels, shift), 1e-5, what=f"{backend} shift {shift}")


def test_a_float_resize_to_one_column_blends_its_rows_on_both_backends():
    """torch's antialiased float kernel leaves enlarged rows unblended at an output width of 1
    (torchvision's F.resize gives [0, 0, 0] here): both backends take the taps there."""
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]).view(1, 1, 2, 4)
    expected = torch.nn.functional.interpolate(x[..., :1], size=(3, 1), mode="bilinear", align_corners=False)
    for backend in ("torch", "ext"):
        assert_close(ga.Pipeline([ga.Resize((3, 1))], backend=backend)(x), expected, 1e-6, what=backend)


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
def test_random_resized_crop_nearest_is_exact(dtype):
    bad = []
    for seed in range(6):
        x = make_images(B, 3, H, W, dtype, seed)
        out, params = run_one(ga.RandomResizedCrop((24, 20), interpolation="nearest"), x, seed)
        p = params.transforms[0]
        for b in range(B):
            box = [as_int(p.top, b), as_int(p.left, b), as_int(p.height, b), as_int(p.width, b)]
            ref = F.resized_crop(x[b], *box, [24, 20], interpolation=mode("nearest"))
            if not torch.equal(out[b], ref):
                bad.append((seed, b, box, int((out[b] != ref).sum())))
    assert not bad, f"(seed, sample, crop, differing values): {bad}"


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
def test_resize_nearest_rational_scale_is_exact(dtype):
    x = make_images(2, 3, 32, 48, dtype)
    out = ga.Pipeline([ga.Resize((24, 36), interpolation="nearest")])(x)
    assert_equal(out, F.resize(x, [24, 36], interpolation=mode("nearest")), what="nearest 32x48 -> 24x36")


# torch's nearest rounds where the resize's own output pixels lie: a flip, crop or pad after it moves
# whole pixels of that output (before the fix, folding them into the map moved each footprint instead)
NEAREST_CHAINS = {
    "resize-then-flip": (
        lambda size: [ga.Resize(size, interpolation="nearest"), ga.RandomHorizontalFlip(1.0), ga.RandomVerticalFlip(1.0)],
        lambda x, size: F.vertical_flip(F.horizontal_flip(F.resize(x, size, interpolation=mode("nearest")))),
    ),
    "resize-then-larger-centre-crop": (
        lambda size: [ga.Resize(size, interpolation="nearest"), ga.CenterCrop((size[0] + 5, size[1] + 4))],
        lambda x, size: F.center_crop(F.resize(x, size, interpolation=mode("nearest")), [size[0] + 5, size[1] + 4]),
    ),
    "flip-resize-then-edge-pad": (
        lambda size: [ga.RandomHorizontalFlip(1.0), ga.Resize(size, interpolation="nearest"), ga.Pad([3, 2], padding_mode="edge")],
        lambda x, size: F.pad(F.resize(F.horizontal_flip(x), size, interpolation=mode("nearest")), [3, 2], padding_mode="edge"),
    ),
    "resize-then-reflect-pad": (
        lambda size: [ga.Resize(size, interpolation="nearest"), ga.Pad([3, 2, 1, 4], padding_mode="reflect")],
        lambda x, size: F.pad(F.resize(x, size, interpolation=mode("nearest")), [3, 2, 1, 4], padding_mode="reflect"),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("chain", list(NEAREST_CHAINS))
@pytest.mark.parametrize("size", [(24, 36), (7, 45), (41, 12), (64, 29)], ids=str)
def test_nearest_resize_chains_are_exact(dtype, chain, size):
    build, reference = NEAREST_CHAINS[chain]
    x = make_images(2, 3, 20, 30, dtype)  # 20x30: every chain was off on the old code for some size
    out = ga.Pipeline(build(size))(x)
    assert_equal(out, reference(x, list(size)), what=f"{chain} {size}")


def test_random_resized_crop_fallback_is_torchvisions():
    """No try fits (aspect ratio far from the image's): torchvision's centre-crop fallback."""
    x = make_images(4, 3, H, W, torch.float32)
    out, params = run_one(ga.RandomResizedCrop(16, scale=(0.9, 1.0), ratio=(3.0, 4.0)), x)
    p = params.transforms[0]
    # torchvision: in_ratio = 53/37 < min(ratio) -> w = width, h = round(w / min(ratio)), centred
    h, w = int(round(W / 3.0)), W
    expected = [(H - h) // 2, (W - w) // 2, h, w]
    for b in range(4):
        box = [as_int(p.top, b), as_int(p.left, b), as_int(p.height, b), as_int(p.width, b)]
        assert box == expected
        assert_close_resampled(out[b], F.resized_crop(x[b], *box, [16, 16]), what=f"sample {b}")


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_a_fallback_crop_is_at_least_a_pixel_wide(backend):
    """A ratio so extreme that torchvision's fallback rounds a side to 0 (its resize then raises; the
    ext backend once returned black images): one pixel, centred, resized."""
    x = make_images(2, 3, 9, 14, torch.float32)
    transform = ga.RandomResizedCrop([5, 7], scale=(0.5, 0.5), ratio=(1e-3, 1e-3))
    out, params = ga.Pipeline([transform], seed=0, backend=backend)(x, return_params=True)
    p = params.transforms[0]
    for b in range(2):
        box = [as_int(p.top, b), as_int(p.left, b), as_int(p.height, b), as_int(p.width, b)]
        assert box == [0, 6, 9, 1]  # torchvision's centring of a width of 1: (14 - 1) // 2
        assert_close_resampled(out[b], F.resized_crop(x[b], *box, [5, 7]), what=f"sample {b}")


RESIZE_SIZES = {
    "int-shrink": 20,
    "hw-shrink": (24, 31),
    "hw-enlarge": (50, 70),
    "hw-mixed": (30, 80),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", list(RESIZE_SIZES.values()), ids=list(RESIZE_SIZES))
@pytest.mark.parametrize(
    "interpolation, antialias",
    [
        ("nearest", True),
        ("bilinear", True),
        ("bilinear", False),
        ("bicubic", True),
        ("bicubic", False),
    ],
)
def test_resize(dtype, channels, size, interpolation, antialias):
    x = make_images(3, channels, H, W, dtype)
    out = ga.Pipeline([ga.Resize(size, interpolation=interpolation, antialias=antialias)])(x)
    tv_size = [size] if isinstance(size, int) else list(size)
    ref = F.resize(x, tv_size, interpolation=mode(interpolation), antialias=antialias)
    assert out.shape == ref.shape and out.dtype == dtype
    if interpolation == "nearest":
        assert_equal(out, ref, what="nearest resize")
    else:
        exact = interpolation == "bilinear" or antialias
        assert_close_resampled(out, ref, what=f"{interpolation} resize", exact_uint8=exact)


# uint8 chains whose resize torchvision computes in fixed point: a crop after the resize (torch sets
# its precision over the whole resized image), a crop reaching past the image before it (the fill is
# part of what torch resizes), a fill that the crop never reaches, a fill, edge or reflect pad of a
# crop (what the resize reads there is the pad's, not the image's beyond the crop), a fill the resize
# reads, a 1x1 output, and rows of a bicubic resize's canvas that a pad then covers
UINT8_RESIZE_CHAINS = {
    "resize-then-smaller-centre-crop": (
        lambda oh, ow, mode: [ga.Resize((oh, ow), interpolation=mode), ga.CenterCrop((oh // 3 + 1, ow // 2 + 1))],
        lambda x, oh, ow, mode: F.center_crop(F.resize(x, [oh, ow], interpolation=mode), [oh // 3 + 1, ow // 2 + 1]),
    ),
    "larger-centre-crop-then-resize": (
        lambda oh, ow, mode: [ga.CenterCrop((H + 5, W + 2)), ga.Resize((oh, ow), interpolation=mode)],
        lambda x, oh, ow, mode: F.resize(F.center_crop(x, [H + 5, W + 2]), [oh, ow], interpolation=mode),
    ),
    "pad-fill-crop-inside-then-resize": (
        lambda oh, ow, mode: [ga.Pad(3, fill=255), ga.CenterCrop((H - 4, W - 2)), ga.Resize((oh, ow), interpolation=mode)],
        lambda x, oh, ow, mode: F.resize(F.center_crop(F.pad(x, [3], fill=255), [H - 4, W - 2]), [oh, ow], interpolation=mode),
    ),
    "resize-to-one-pixel": (  # torch's kernel fails on 3 channels there: torchvision's, a channel at a time
        lambda oh, ow, mode: [ga.Resize((1, 1), interpolation=mode)],
        lambda x, oh, ow, mode: torch.cat([F.resize(c, [1, 1], interpolation=mode) for c in x.split(1, dim=1)], dim=1),
    ),
    "centre-crop-edge-pad-then-resize": (  # the pad shows the crop's edge, not the pixels beyond it
        lambda oh, ow, mode: [ga.CenterCrop((H - 10, W - 8)), ga.Pad([4, 3], padding_mode="edge"),
                              ga.Resize((oh, ow), interpolation=mode)],
        lambda x, oh, ow, mode: F.resize(F.pad(F.center_crop(x, [H - 10, W - 8]), [4, 3], padding_mode="edge"),
                                         [oh, ow], interpolation=mode),
    ),
    "centre-crop-fill-pad-then-resize": (
        lambda oh, ow, mode: [ga.CenterCrop((H - 10, W - 8)), ga.Pad([3, 2], fill=200),
                              ga.Resize((oh, ow), interpolation=mode)],
        lambda x, oh, ow, mode: F.resize(F.pad(F.center_crop(x, [H - 10, W - 8]), [3, 2], fill=200),
                                         [oh, ow], interpolation=mode),
    ),
    "centre-crop-reflect-pad-then-resize": (
        lambda oh, ow, mode: [ga.CenterCrop((H - 10, W - 8)), ga.Pad([2, 5, 4, 1], padding_mode="reflect"),
                              ga.Resize((oh, ow), interpolation=mode)],
        lambda x, oh, ow, mode: F.resize(F.pad(F.center_crop(x, [H - 10, W - 8]), [2, 5, 4, 1], padding_mode="reflect"),
                                         [oh, ow], interpolation=mode),
    ),
    "fill-pad-then-resize": (  # the resize reads the fill, whose taps torch rounds as the image's
        lambda oh, ow, mode: [ga.Pad([3, 1, 2, 4], fill=7), ga.Resize((oh, ow), interpolation=mode)],
        lambda x, oh, ow, mode: F.resize(F.pad(x, [3, 1, 2, 4], fill=7), [oh, ow], interpolation=mode),
    ),
    "resize-then-pad-fill": (
        lambda oh, ow, mode: [ga.Resize((oh, ow), interpolation=mode), ga.Pad([2, 3, 1, 2], fill=100)],
        lambda x, oh, ow, mode: F.pad(F.resize(x, [oh, ow], interpolation=mode), [2, 3, 1, 2], fill=100),
    ),
}


@pytest.mark.parametrize("chain", list(UINT8_RESIZE_CHAINS))
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("out_hw", [(7, 45), (41, 12), (64, 29)], ids=str)
def test_uint8_resize_chains_are_torchvisions_bits(chain, interpolation, out_hw):
    build, reference = UINT8_RESIZE_CHAINS[chain]
    x = make_images(3, 3, H, W, torch.uint8, seed=sum(out_hw))
    out = ga.Pipeline(build(*out_hw, interpolation), seed=0)(x)
    assert_equal(out, reference(x, *out_hw, mode(interpolation)), what=f"{chain} {interpolation} {out_hw}")


def test_resize_max_size():
    x = make_images(2, 3, H, W, torch.float32)
    out = ga.Pipeline([ga.Resize(20, max_size=25)])(x)
    ref = F.resize(x, [20], max_size=25)
    assert out.shape == ref.shape == (2, 3, 17, 25)
    assert_close_resampled(out, ref, what="resize with max_size")
    # size None: the longer edge to max_size; interpolation as PIL's code, as torchvision takes them
    out = ga.Pipeline([ga.Resize(None, max_size=25, interpolation=0)])(x)
    ref = F.resize(x, None, max_size=25, interpolation=mode("nearest"))
    assert out.shape == ref.shape == (2, 3, 17, 25)
    assert_equal(out, ref, what="resize to max_size, nearest")


RANDOM_CROP_CASES = {
    "plain": dict(size=20),
    "padding": dict(size=(30, 40), padding=4),
    "pad_if_needed": dict(size=(45, 60), pad_if_needed=True),
    "fill": dict(size=(40, 56), padding=[2, 3], fill=7),
    "edge": dict(size=(40, 56), padding=[1, 2, 3, 4], padding_mode="edge"),
    "reflect": dict(size=(40, 56), padding=[1, 2, 3, 4], padding_mode="reflect"),
    "symmetric": dict(size=(40, 56), padding=[1, 2, 3, 4], padding_mode="symmetric"),
    "reflect+pad_if_needed": dict(size=(45, 60), padding=3, pad_if_needed=True, padding_mode="reflect"),
    "symmetric+pad_if_needed": dict(size=(41, 66), padding=1, pad_if_needed=True, padding_mode="symmetric"),
    "fill-per-channel": dict(size=(40, 56), padding=2, fill="per-channel"),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("case", list(RANDOM_CROP_CASES))
def test_random_crop(dtype, channels, case):
    kwargs = dict(RANDOM_CROP_CASES[case])
    if kwargs.get("fill") == "per-channel":
        kwargs["fill"] = [1, 2, 3][:channels] if channels == 3 else [5]
    x = make_images(B, channels, H, W, dtype, seed=2)
    out, params = run_one(ga.RandomCrop(**kwargs), x, seed=2)
    p = params.transforms[0]
    padding = tv_random_crop_padding(kwargs, H, W)
    fill, padding_mode = kwargs.get("fill", 0), kwargs.get("padding_mode", "constant")
    for b in range(B):
        img = F.pad(x[b], padding, fill=fill, padding_mode=padding_mode) if any(padding) else x[b]
        box = [as_int(p.top, b), as_int(p.left, b), as_int(p.height, b), as_int(p.width, b)]
        assert box[0] + box[2] <= img.shape[-2] and box[1] + box[3] <= img.shape[-1]
        assert_equal(out[b], F.crop(img, *box), what=f"sample {b} crop {box} of padded {tuple(img.shape)}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("size", [20, (30, 41), (36, 52), (38, 54), (40, 60), (60, 20)], ids=str)
def test_center_crop(dtype, channels, size):
    x = make_images(2, channels, H, W, dtype)
    out = ga.Pipeline([ga.CenterCrop(size)])(x)
    assert_equal(out, F.center_crop(x, [size] if isinstance(size, int) else list(size)), what=f"center crop {size}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("padding", [3, [2, 5], [1, 2, 3, 4]], ids=str)
@pytest.mark.parametrize(
    "padding_mode, fill",
    [("constant", 0), ("constant", 9), ("constant", "per-channel"), ("edge", 0), ("reflect", 0), ("symmetric", 0)],
)
def test_pad(dtype, channels, padding, padding_mode, fill):
    if fill == "per-channel":
        fill = [4, 5, 6] if channels == 3 else [4]
    x = make_images(2, channels, H, W, dtype)
    out = ga.Pipeline([ga.Pad(padding, fill=fill, padding_mode=padding_mode)])(x)
    ref = F.pad(x, [padding] if isinstance(padding, int) else padding, fill=fill, padding_mode=padding_mode)
    assert_equal(out, ref, what=f"pad {padding} {padding_mode}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize(
    "transform, functional",
    [(ga.RandomHorizontalFlip, F.horizontal_flip), (ga.RandomVerticalFlip, F.vertical_flip)],
    ids=["horizontal", "vertical"],
)
def test_flip(dtype, channels, transform, functional):
    x = make_images(8, channels, H, W, dtype)
    out, params = run_one(transform(p=0.5), x, seed=3)
    applied = params.transforms[0].applied
    for b in range(x.shape[0]):
        assert_equal(out[b], functional(x[b]) if applied[b] else x[b], what=f"sample {b} applied={bool(applied[b])}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
def test_flip_twice_is_identity(dtype):
    x = make_images(4, 3, H, W, dtype)
    for flip in (ga.RandomHorizontalFlip, ga.RandomVerticalFlip):
        out, params = ga.Pipeline([flip(p=1.0), flip(p=1.0)], seed=0)(x, return_params=True)
        assert_equal(out, x, what=f"{flip.__name__} twice")
        torch.testing.assert_close(params.matrices[0], torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    # both flips twice, interleaved, also compose to the identity
    both = [ga.RandomHorizontalFlip(1.0), ga.RandomVerticalFlip(1.0), ga.RandomHorizontalFlip(1.0), ga.RandomVerticalFlip(1.0)]
    assert_equal(ga.Pipeline(both, seed=0)(x), x, what="h, v, h, v")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_integer_geometry_is_exact_in_other_float_dtypes(dtype):
    x = make_images(4, 3, H, W, torch.float64).to(dtype)
    cases = [
        (ga.RandomHorizontalFlip(1.0), F.horizontal_flip),
        (ga.RandomVerticalFlip(1.0), F.vertical_flip),
        (ga.Pad([1, 2, 3, 4], fill=0.5), lambda img: F.pad(img, [1, 2, 3, 4], fill=0.5)),
        (ga.Pad(3, padding_mode="symmetric"), lambda img: F.pad(img, [3], padding_mode="symmetric")),
        (ga.CenterCrop((20, 60)), lambda img: F.center_crop(img, [20, 60])),
    ]
    for transform, functional in cases:
        out = ga.Pipeline([transform])(x)
        assert_equal(out, functional(x), what=type(transform).__name__)


# =============================================================================================================
# Rotation, affine, perspective (compared away from the image border)
# =============================================================================================================


def _check_warp(x, out, params, reference, interpolation, what):
    """Compare every sample away from out-of-image edges; identity where not applied."""
    p = params.transforms[0]
    mask = edge_free_mask(params.matrices[0], tuple(out.shape[-2:]), tuple(x.shape[-2:]))
    assert mask.any(), "the edge mask leaves nothing to compare"
    for b in range(x.shape[0]):
        ref = reference(x[b], b) if p.applied[b] else x[b]
        if interpolation == "nearest":
            assert_equal(out[b], ref, mask[b], what=f"{what} sample {b}")
        else:
            assert_close(out[b], ref, level(x.dtype), mask[b], what=f"{what} sample {b}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("variant", ["default", "center+fill"])
def test_random_rotation(dtype, channels, interpolation, variant):
    x = make_images(B, channels, H, W, dtype, seed=4)
    kwargs = {} if variant == "default" else dict(center=(10, 5), fill=[7.0] * channels)
    degrees = 40 if variant == "default" else (-30, 60)
    out, params = run_one(ga.RandomRotation(degrees, interpolation=interpolation, **kwargs), x, seed=4)
    p = params.transforms[0]
    lo, hi = (-40, 40) if variant == "default" else (-30, 60)
    assert bool(((p.angle >= lo) & (p.angle <= hi)).all())

    def reference(img, b):
        return F.rotate(img, as_float(p.angle, b), interpolation=mode(interpolation), **kwargs)

    _check_warp(x, out, params, reference, interpolation, f"rotate {variant}")


AFFINE_CASES = {
    "degrees": dict(degrees=30),
    "all": dict(degrees=25, translate=(0.1, 0.2), scale=(0.8, 1.2), shear=(-10, 10, -5, 5)),
    "center+fill": dict(degrees=(-20, 40), translate=(0.05, 0.05), scale=(0.9, 1.3), shear=8, center=(20, 10), fill=3),
    "shear-x-only": dict(degrees=0, shear=(-15, 15)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("case", list(AFFINE_CASES))
def test_random_affine(dtype, channels, interpolation, case):
    kwargs = dict(AFFINE_CASES[case])
    x = make_images(B, channels, H, W, dtype, seed=5)
    out, params = run_one(ga.RandomAffine(**kwargs, interpolation=interpolation), x, seed=5)
    p = params.transforms[0]
    extra = {k: kwargs[k] for k in ("center", "fill") if k in kwargs}

    def reference(img, b):
        return F.affine(
            img,
            angle=as_float(p.angle, b),
            translate=[float(v) for v in p.translate[b]],
            scale=as_float(p.scale, b),
            shear=[float(v) for v in p.shear[b]],
            interpolation=mode(interpolation),
            **extra,
        )

    _check_warp(x, out, params, reference, interpolation, f"affine {case}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("via", ["points", "coefficients"])
def test_random_perspective(dtype, channels, interpolation, via):
    x = make_images(B, channels, H, W, dtype, seed=6)
    fill = 0 if via == "points" else 5
    out, params = run_one(ga.RandomPerspective(0.5, p=0.8, interpolation=interpolation, fill=fill), x, seed=6)
    p = params.transforms[0]

    def reference(img, b):
        if via == "points":
            return F.perspective(
                img, p.startpoints[b].tolist(), p.endpoints[b].tolist(), interpolation=mode(interpolation), fill=fill
            )
        return F.perspective(
            img, None, None, interpolation=mode(interpolation), fill=fill, coefficients=p.coefficients[b].tolist()
        )

    _check_warp(x, out, params, reference, interpolation, f"perspective via {via}")


def test_perspective_coefficients_are_torchvisions():
    x = make_images(B, 3, H, W, torch.float32)
    _, params = run_one(ga.RandomPerspective(0.6, p=1.0), x, seed=7)
    p = params.transforms[0]
    for b in range(B):
        expected = tv_perspective_coefficients(p.startpoints[b].tolist(), p.endpoints[b].tolist())
        torch.testing.assert_close(p.coefficients[b], torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("size", [16, 17])
def test_rotation_by_90_degrees_is_rot90(dtype, size):
    x = make_images(3, 3, size, size, dtype)
    out = ga.Pipeline([ga.RandomRotation((90, 90), interpolation="nearest")], seed=0)(x)
    # torchvision's rotate is counter-clockwise: the top row becomes the left column, read bottom-up
    expected = torch.rot90(x, k=1, dims=(-2, -1))
    assert_equal(out, expected, what="rotation by +90")
    assert_equal(F.rotate(x, 90.0), expected, what="torchvision's own rotate(90) (direction check)")
    out = ga.Pipeline([ga.RandomRotation((-90, -90), interpolation="nearest")], seed=0)(x)
    assert_equal(out, torch.rot90(x, k=-1, dims=(-2, -1)), what="rotation by -90")


# =============================================================================================================
# Composed geometry against an independent float64 reference
# =============================================================================================================


def _compare_with_f64_reference(x, out, params, expected_matrices, canvases, what):
    """The recorded matrix equals the independently composed one, and the output equals a float64
    bilinear resampling of the source through it, away from the image border.

    ``canvases``: [(matrices (B, 3, 3) from the output to an intermediate image, its (h, w))]: only
    pixels well inside every intermediate image are compared, where folding cannot change the
    meaning (see test_rotation_after_another_geometric_transform_shows_its_fill for the rest).
    """
    recorded = params.matrices[0]
    assert len(params.matrices) == 1, "consecutive geometric transforms must fold into one resampling pass"
    torch.testing.assert_close(normalized(recorded), normalized(expected_matrices), rtol=1e-6, atol=1e-6)
    out_hw = tuple(out.shape[-2:])
    mask = edge_free_mask(expected_matrices, out_hw, tuple(x.shape[-2:]))
    for matrices_k, canvas_hw in canvases:
        mask &= inside_mask(matrices_k, out_hw, canvas_hw)
    assert mask.float().mean() > 0.2, "too little left to compare"
    for b in range(x.shape[0]):
        ref = bilinear_reference(x[b], expected_matrices[b], out_hw)
        if x.dtype == torch.uint8:
            ref = ref.round()
        assert_close(out[b], ref, level(x.dtype), mask[b], what=f"{what} sample {b}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("seed", [0, 1])
def test_composed_rrc_flip_affine(dtype, channels, seed):
    size = (40, 44)  # RandomResizedCrop enlarges (no supersampling approximation in the folded warp)
    x = make_images(B, channels, H, W, dtype, seed)
    pipe = ga.Pipeline(
        [
            ga.RandomResizedCrop(size, scale=(0.3, 1.0), antialias=False),
            ga.RandomHorizontalFlip(p=0.5),
            ga.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=(-5, 5, -5, 5), interpolation="bilinear"),
        ],
        seed=seed,
    )
    out, params = pipe(x, return_params=True)
    crop, flip, aff = params.transforms
    affine = torch.stack(
        [
            tv_affine_matrix(
                *size,
                angle=as_float(aff.angle, b),
                translate=aff.translate[b].tolist(),
                scale=as_float(aff.scale, b),
                shear=aff.shear[b].tolist(),
            )
            for b in range(B)
        ]
    )
    expected = torch.stack(
        [
            crop_resize_matrix(as_int(crop.top, b), as_int(crop.left, b), as_int(crop.height, b), as_int(crop.width, b), size)
            @ hflip_matrix(bool(flip.applied[b]), size[1])
            @ affine[b]
            for b in range(B)
        ]
    )
    # the affine's input canvas is the crop's output: inside it means inside the crop box
    _compare_with_f64_reference(x, out, params, expected, [(affine, size)], "rrc+flip+affine")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("seed", [0, 1])
def test_composed_rotation_perspective(dtype, channels, seed):
    x = make_images(B, channels, H, W, dtype, seed)
    pipe = ga.Pipeline(
        [ga.RandomRotation(30, interpolation="bilinear"), ga.RandomPerspective(0.4, p=0.8, interpolation="bilinear")],
        seed=seed,
    )
    out, params = pipe(x, return_params=True)
    rot, persp = params.transforms
    expected, perspective = [], []
    for b in range(B):
        m = tv_affine_matrix(H, W, angle=-as_float(rot.angle, b), translate=[0, 0], scale=1.0, shear=[0, 0])
        q = torch.eye(3, dtype=torch.float64)
        if persp.applied[b]:
            coefficients = tv_perspective_coefficients(persp.startpoints[b].tolist(), persp.endpoints[b].tolist())
            q = tv_perspective_matrix(coefficients)
        expected.append(m @ q)
        perspective.append(q)
    canvases = [(torch.stack(perspective), (H, W))]  # the perspective's input is the rotation's output
    _compare_with_f64_reference(x, out, params, torch.stack(expected), canvases, "rotation+perspective")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
def test_composed_crop_pad_flip_is_exact(dtype):
    """Integer-only geometry composes to exact pixel copies (any interpolation would show)."""
    x = make_images(B, 3, H, W, dtype)
    pipe = ga.Pipeline([ga.Pad([2, 3]), ga.RandomCrop((30, 40)), ga.RandomVerticalFlip(0.5), ga.CenterCrop(28)], seed=8)
    out, params = pipe(x, return_params=True)
    _, crop, flip, _ = params.transforms
    for b in range(B):
        ref = F.pad(x[b], [2, 3])
        ref = F.crop(ref, as_int(crop.top, b), as_int(crop.left, b), 30, 40)
        ref = F.vertical_flip(ref) if flip.applied[b] else ref
        assert_equal(out[b], F.center_crop(ref, [28, 28]), what=f"sample {b}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
def test_samples_that_skip_a_rotation_are_resized_and_flipped_exactly(dtype):
    """A sample that skips the pass's gated rotation takes the crop, resize and flip alone, with the
    crop's own nearest interpolation (not the rotation's bilinear), flipped after resizing as
    torchvision does it (once a pixel off where a flip came before the skipped rotation)."""
    x = make_images(16, 3, H, W, dtype, seed=5)
    pipe = ga.Pipeline([ga.RandomResizedCrop((24, 20), scale=(0.3, 1.0), interpolation="nearest"),
                        ga.RandomHorizontalFlip(), ga.RandomRotation(30, interpolation="bilinear", p=0.5)], seed=3)
    out, params = pipe(x, return_params=True)
    crop, flip, rotation = params.transforms
    skipped = (~rotation.applied).nonzero().flatten().tolist()
    assert bool(flip.applied[skipped].any()) and not bool(flip.applied[skipped].all())
    for b in skipped:
        box = [as_int(crop.top, b), as_int(crop.left, b), as_int(crop.height, b), as_int(crop.width, b)]
        ref = F.resized_crop(x[b], *box, [24, 20], interpolation=mode("nearest"))
        assert_equal(out[b], F.horizontal_flip(ref) if flip.applied[b] else ref, what=f"sample {b}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("chain", ["resize-rrc", "resize-crop-resize"])
def test_a_crop_of_an_enlarged_image_reads_the_pixels_at_its_edges(dtype, chain):
    """One pass through two resizes is the composed map's interpolation, exact on a linear ramp. The
    window of source pixels the second resize may read once held only those wholly inside the crop, so
    an enlarging first resize (CIFAR images to ImageNet size) left black rows at the crop's edges."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    x = (torch.stack([xx * 8, yy * 8, (xx + yy) * 4]) / 255).expand(8, 3, 32, 32).contiguous()
    x = x if dtype.is_floating_point else (x * 255).round().to(dtype)
    if chain == "resize-rrc":
        pipe = ga.Pipeline([ga.Resize(256), ga.RandomResizedCrop(224, scale=(0.05, 1.0))], seed=1)
    else:
        pipe = ga.Pipeline([ga.Resize(100), ga.RandomCrop(80), ga.Resize(40)], seed=1)
    out, params = pipe(x, return_params=True)
    p = params.transforms[1]
    for b in range(x.shape[0]):
        box = [as_int(p.top, b), as_int(p.left, b), as_int(p.height, b), as_int(p.width, b)]
        if chain == "resize-rrc":
            ref = F.resized_crop(F.resize(x[b], [256]), *box, [224, 224])
        else:
            ref = F.resize(F.crop(F.resize(x[b], [100]), *box), [40])
        assert_close(out[b], ref, 2 * level(dtype), what=f"sample {b} crop {box}")  # uint8: rounded twice


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
def test_grid_sampling_after_an_enlarging_crop_repeats_the_crops_edge_pixels(dtype):
    """A rotation or affine in the same pass as a resized crop samples the source once, clamped into
    the crop as torchvision's resize of the crop is (it once read the pixels beyond the crop, and zeros
    beyond the image, in a band a few output pixels wide at the edges)."""
    x = make_images(8, 3, 32, 32, dtype, seed=4)
    pipe = ga.Pipeline([ga.RandomResizedCrop(64, scale=(0.08, 0.3)), ga.RandomAffine(0, interpolation="bilinear")], seed=0)
    out, params = pipe(x, return_params=True)
    crop = params.transforms[0]
    for b in range(x.shape[0]):
        box = [as_int(crop.top, b), as_int(crop.left, b), as_int(crop.height, b), as_int(crop.width, b)]
        assert_close(out[b], F.resized_crop(x[b], *box, [64, 64]), level(dtype), what=f"sample {b} crop {box}")


@pytest.mark.parametrize("chain", [[ga.RandomHorizontalFlip(), ga.RandomRotation(30), ga.RandomResizedCrop(24)],
                                   [ga.Resize(40), ga.RandomRotation(45), ga.Resize(24)]], ids=["flip-rotate-rrc", "resize-rotate-resize"])
def test_grid_sampling_is_not_clamped_through_a_rotation(chain):
    """The crop window holds source pixels only through axis-aligned maps: where a rotation comes before
    the last resize, clamping into it would cut the rotated image (it once did, hundreds of pixels off)."""
    from gpuaug import plan

    x = make_images(4, 3, 32, 32, torch.float32, seed=2)
    pipe = ga.Pipeline(chain, seed=1)
    _, params = pipe(x, return_params=True)
    (warp,) = [s for s in plan.group(pipe._recorded_steps(params, x.device)) if isinstance(s, plan.Warp)]
    assert warp.grid_window is None
    crop = ga.Pipeline([ga.RandomResizedCrop(24), ga.RandomRotation(30)], seed=1)
    _, params = crop(x, return_params=True)
    (warp,) = [s for s in plan.group(crop._recorded_steps(params, x.device)) if isinstance(s, plan.Warp)]
    assert warp.grid_window is not None and torch.equal(warp.grid_window, warp.window)


def test_a_crop_is_no_shrink_and_a_nearest_resize_no_antialiasing():
    """A pass that crops and rotates samples each output pixel once: a crop does not shrink the image
    (a pass once counted it as a 2x shrink and supersampled 2x2) and a nearest resize's antialias flag
    does nothing, as in torchvision (it once turned supersampling on, averaging nearest pixels)."""
    x = make_images(4, 3, 64, 64, torch.uint8, seed=3) // 17 * 17  # every value a multiple of 17
    for resize in (ga.Resize(64, interpolation="nearest"), ga.Resize(64, interpolation="nearest", antialias=False)):
        pipe = ga.Pipeline([resize, ga.CenterCrop(32), ga.RandomRotation(10)], seed=0)
        out, params = pipe(x, return_params=True)
        rotation = params.transforms[2]
        assert int((out % 17 != 0).sum()) == 0, "nearest sampling gives image values only"
        for b in range(x.shape[0]):
            ref = F.rotate(F.center_crop(x[b], [32, 32]), float(rotation.angle[b]), fill=0)
            assert_equal(out[b], ref, what=f"sample {b}")


# =============================================================================================================
# Colour
# =============================================================================================================

JITTER_PARTS = ("brightness", "contrast", "saturation", "hue")
JITTER_FNS = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)


def jitter_reference(img, p, b, enabled):
    """torchvision's four adjustments in the sample's recorded order, skipping the disabled parts."""
    for part in p.order[b].tolist():
        name = JITTER_PARTS[part]
        if name in enabled:
            img = JITTER_FNS[part](img, as_float(getattr(p, name), b))
    return img


JITTER_CASES = {
    "brightness": dict(brightness=0.5),
    "contrast": dict(contrast=0.6),
    "saturation": dict(saturation=0.7),
    "hue": dict(hue=0.3),
    "hue-full-range": dict(hue=(-0.5, 0.5)),
    "brightness-range+hue": dict(brightness=(0.2, 1.8), hue=0.2),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("case", list(JITTER_CASES))
def test_color_jitter(dtype, channels, case):
    kwargs = JITTER_CASES[case]
    x = make_images(6, channels, H, W, dtype, seed=9)
    out, params = run_one(ga.ColorJitter(**kwargs), x, seed=9)
    p = params.transforms[0]
    for b in range(x.shape[0]):
        ref = jitter_reference(x[b], p, b, kwargs)
        assert_close(out[b], ref, level(dtype), what=f"sample {b} {case}")


@pytest.mark.parametrize(
    "dtype, channels",
    [(torch.float32, 1), (torch.float32, 3), (torch.uint8, 1)],
    ids=["float32-1", "float32-3", "uint8-1"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_color_jitter_all_four(dtype, channels, seed):
    kwargs = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    x = make_images(6, channels, H, W, dtype, seed)
    out, params = run_one(ga.ColorJitter(**kwargs), x, seed)
    p = params.transforms[0]
    for b in range(x.shape[0]):
        assert_close(out[b], jitter_reference(x[b], p, b, kwargs), level(dtype), what=f"sample {b} order {p.order[b].tolist()}")


def test_color_jitter_all_four_uint8_rgb_mostly_within_one_level():
    """uint8 RGB with all four parts: a 1-level difference in one part can grow in the next ones.

    Holds today: at most 3 levels anywhere, and more than 1 level on fewer than 1 in 1000 values.
    The strict version is test_color_jitter_all_four_uint8_rgb_within_one_level.
    """
    kwargs = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    worst, over, total = 0.0, 0, 0
    for seed in range(4):
        x = make_images(6, 3, H, W, torch.uint8, seed)
        out, params = run_one(ga.ColorJitter(**kwargs), x, seed)
        p = params.transforms[0]
        for b in range(x.shape[0]):
            d = (out[b].double() - jitter_reference(x[b], p, b, kwargs).double()).abs()
            worst, over, total = max(worst, float(d.max())), over + int((d > 1).sum()), total + d.numel()
    assert worst <= 3, f"max difference {worst} levels"
    assert over / total < 1e-3, f"{over} of {total} values differ by more than 1 level"


def test_color_jitter_all_four_uint8_rgb_within_one_level():
    kwargs = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    bad = []
    for seed in range(4):
        x = make_images(6, 3, H, W, torch.uint8, seed)
        out, params = run_one(ga.ColorJitter(**kwargs), x, seed)
        p = params.transforms[0]
        for b in range(x.shape[0]):
            d = (out[b].double() - jitter_reference(x[b], p, b, kwargs).double()).abs()
            if d.max() > 1:
                bad.append((seed, b, float(d.max()), int((d > 1).sum())))
    assert not bad, f"(seed, sample, max levels, values over 1 level): {bad}"


def test_color_jitter_order_is_a_per_sample_permutation():
    x = make_images(32, 3, 8, 8, torch.float32)
    _, params = run_one(ga.ColorJitter(0.4, 0.4, 0.4, 0.1), x, seed=10)
    order = params.transforms[0].order
    assert order.shape == (32, 4)
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(32, 4))
    assert len({tuple(o) for o in order.tolist()}) > 4, "the order must vary from sample to sample"


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
def test_random_grayscale(dtype, channels):
    x = make_images(8, channels, H, W, dtype)
    out, params = run_one(ga.RandomGrayscale(p=0.5), x, seed=11)
    applied = params.transforms[0].applied
    for b in range(x.shape[0]):
        ref = F.rgb_to_grayscale(x[b], num_output_channels=channels) if applied[b] else x[b]
        assert_close(out[b], ref, level(dtype), what=f"sample {b}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("num_output_channels", [1, 3])
def test_grayscale(dtype, channels, num_output_channels):
    x = make_images(3, channels, H, W, dtype)
    out = ga.Pipeline([ga.Grayscale(num_output_channels)])(x)
    ref = F.rgb_to_grayscale(x, num_output_channels=num_output_channels)
    assert out.shape == ref.shape
    assert_close(out, ref, level(dtype), what="grayscale")


def _per_sample_parity(transform, functional, dtype, channels, exact, seed=12, images=None):
    x = make_images(8, channels, H, W, dtype, seed) if images is None else images
    out, params = run_one(transform, x, seed)
    p = params.transforms[0]
    for b in range(x.shape[0]):
        ref = functional(x[b], p, b) if p.applied[b] else x[b]
        if exact:
            assert_equal(out[b], ref, what=f"sample {b}")
        else:
            assert_close(out[b], ref, level(dtype), what=f"sample {b}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
def test_random_invert(dtype, channels):
    _per_sample_parity(ga.RandomInvert(0.5), lambda img, p, b: F.invert(img), dtype, channels, exact=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("threshold", [0.0, 0.4, 1.0], ids=["t0", "t0.4", "tmax"])
def test_random_solarize(dtype, channels, threshold):
    threshold = threshold * 255 if dtype == torch.uint8 else threshold
    _per_sample_parity(
        ga.RandomSolarize(threshold, 0.5), lambda img, p, b: F.solarize(img, threshold), dtype, channels, exact=True
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("bits", [0, 1, 3, 8])
def test_random_posterize(dtype, channels, bits):
    _per_sample_parity(ga.RandomPosterize(bits, 0.7), lambda img, p, b: F.posterize(img, bits), dtype, channels, exact=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("factor", [0.0, 0.5, 2.0])
def test_random_adjust_sharpness(dtype, channels, factor):
    _per_sample_parity(
        ga.RandomAdjustSharpness(factor, 0.7),
        lambda img, p, b: F.adjust_sharpness(img, as_float(p.factor, b)),
        dtype,
        channels,
        exact=False,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("contrast", ["full", "low", "flat"])
def test_random_autocontrast(dtype, channels, contrast):
    x = make_images(8, channels, H, W, dtype, seed=13)
    if contrast == "low":
        x = (x.float() * 0.5 + (64 if dtype == torch.uint8 else 0.2)).to(dtype)
    elif contrast == "flat":
        x[::2] = x[::2, :, :1, :1]  # some images of one value per channel: torchvision leaves them unchanged
    _per_sample_parity(ga.RandomAutocontrast(0.7), lambda img, p, b: F.autocontrast(img), dtype, channels, exact=False, images=x)


def test_random_autocontrast_uint8_is_exact():
    x = make_images(8, 3, H, W, torch.uint8, seed=13)
    x = (x.float() * 0.5 + 64).to(torch.uint8)
    _per_sample_parity(ga.RandomAutocontrast(1.0), lambda img, p, b: F.autocontrast(img), torch.uint8, 3, exact=True, images=x)


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("contrast", ["full", "low"])
def test_random_equalize(dtype, channels, contrast):
    x = make_images(8, channels, H, W, dtype, seed=14)
    if contrast == "low":
        x = (x.float() * 0.25 + (100 if dtype == torch.uint8 else 0.4)).to(dtype)
    _per_sample_parity(
        ga.RandomEqualize(0.7), lambda img, p, b: F.equalize(img), dtype, channels, exact=dtype == torch.uint8, images=x
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", [2, 4])
def test_channelwise_colour_ops_take_any_channel_count(dtype, channels):
    """Invert, solarize, posterize and equalize work channel by channel, and torchvision takes any count."""
    threshold = 100 if dtype == torch.uint8 else 0.4
    for transform, functional in ((ga.RandomInvert(0.7), F.invert), (ga.RandomSolarize(threshold, 0.7), lambda x: F.solarize(x, threshold)),
                                  (ga.RandomPosterize(3, 0.7), lambda x: F.posterize(x, 3)), (ga.RandomEqualize(0.7), F.equalize)):
        if dtype == torch.uint8 or not isinstance(transform, ga.RandomPosterize):  # torchvision posterizes uint8 only
            _per_sample_parity(transform, lambda img, p, b, f=functional: f(img), dtype, channels, exact=dtype == torch.uint8)


# =============================================================================================================
# Blur, noise, erasing
# =============================================================================================================


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("kernel_size", [3, (5, 3), 7, (17, 5)], ids=str)  # (17, 5): a long kernel is a convolution on CPUs too
def test_gaussian_blur(dtype, channels, kernel_size):
    x = make_images(B, channels, H, W, dtype, seed=15)
    out, params = run_one(ga.GaussianBlur(kernel_size, sigma=(0.1, 2.0), p=0.8), x, seed=15)
    p = params.transforms[0]
    assert p.sigma.shape == (B, 2)
    assert len(set(p.sigma[:, 0].tolist())) > 1, "sigma must vary from sample to sample"
    ks = [kernel_size, kernel_size] if isinstance(kernel_size, int) else list(kernel_size)
    for b in range(B):
        ref = F.gaussian_blur(x[b], ks, p.sigma[b].tolist()) if p.applied[b] else x[b]
        assert_close(out[b], ref, level(dtype), what=f"sample {b} sigma {p.sigma[b].tolist()}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
def test_gaussian_noise_statistics(dtype, channels):
    mean, sigma = 0.02, 0.1
    value = 128 if dtype == torch.uint8 else 0.5
    x = torch.full((6, channels, 64, 64), value, dtype=dtype)
    out, params = run_one(ga.GaussianNoise(mean=mean, sigma=sigma, p=0.7), x, seed=16)
    applied = params.transforms[0].applied
    scale = 255.0 if dtype == torch.uint8 else 1.0
    n = channels * 64 * 64
    for b in range(x.shape[0]):
        d = (out[b].double() - x[b].double()) / scale
        if not applied[b]:
            assert float(d.abs().max()) == 0.0
            continue
        # uint8 truncates the noise toward zero (as torchvision): mean shrinks by ~0.5 level * sign
        tol_mean = 4 * sigma / n**0.5 + (0.5 / 255 if dtype == torch.uint8 else 0.0)
        assert abs(float(d.mean()) - mean) < tol_mean, f"sample {b}: mean {float(d.mean())}"
        assert abs(float(d.std()) - sigma) < 0.1 * sigma, f"sample {b}: std {float(d.std())}"
    # different samples get different noise
    applied_idx = applied.nonzero().flatten()
    if len(applied_idx) >= 2:
        assert not torch.equal(out[applied_idx[0]], out[applied_idx[1]])


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("clip", [True, False])
def test_gaussian_noise_is_torchvisions_with_the_recorded_noise(dtype, channels, clip, monkeypatch):
    """F.gaussian_noise, fed the per-pixel normals that the sample's recorded key gives."""
    if dtype == torch.uint8 and not clip:
        pytest.skip("unclipped uint8 noise wraps around in torchvision (int16 -> uint8): not a contract")
    x = make_images(6, channels, H, W, dtype, seed=17)
    mean, sigma = 0.01, 0.2
    out, params = run_one(ga.GaussianNoise(mean=mean, sigma=sigma, clip=clip, p=0.7), x, seed=17)
    p = params.transforms[0]
    for b in range(x.shape[0]):
        if not p.applied[b]:
            assert_equal(out[b], x[b], what=f"sample {b} (not applied)")
            continue
        z = normal_field(p.key[b : b + 1], tuple(x.shape[1:]))[0]
        monkeypatch.setattr(torch, "randn_like", lambda img, dtype=None, z=z: z.to(dtype or img.dtype).clone())
        ref = F.gaussian_noise(x[b], mean=mean, sigma=sigma, clip=clip)
        monkeypatch.undo()
        assert_close(out[b], ref, 0.0 if dtype == torch.uint8 else 1e-6, what=f"sample {b}")


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("value", ["zero", "number", "per-channel", "random"])
def test_random_erasing(dtype, channels, value):
    v = {"zero": 0, "number": 7 if dtype == torch.uint8 else 0.7, "random": "random"}.get(value)
    if value == "per-channel":
        v = [10, 20, 30][:channels] if dtype == torch.uint8 else [0.1, 0.2, 0.3][:channels]
    x = make_images(8, channels, H, W, dtype, seed=18)
    out, params = run_one(ga.RandomErasing(p=0.8, value=v), x, seed=18)
    p = params.transforms[0]
    for b in range(x.shape[0]):
        if not p.applied[b]:
            assert_equal(out[b], x[b], what=f"sample {b} (not applied)")
            continue
        i, j, h, w = (as_int(getattr(p, k), b) for k in ("top", "left", "height", "width"))
        assert 0 <= i and i + h <= H and 0 <= j and j + w <= W and h < H and w < W
        if value == "random":
            fill = normal_field(p.key[b : b + 1], tuple(x.shape[1:]))[0][:, i : i + h, j : j + w]
        else:
            fill = torch.tensor(v if isinstance(v, list) else [v], dtype=torch.float32)[:, None, None].expand(channels, h, w)
        if dtype == torch.uint8:
            fill = fill.trunc().clamp(0, 255)  # torchvision assigns float values into a uint8 image
        ref = F.erase(x[b], i, j, h, w, fill.to(dtype))
        # random values: the fused backend's log/sin/cos may differ from torch's by float rounding
        atol = 1e-6 if value == "random" and dtype != torch.uint8 else 0.0
        assert_close(out[b], ref, atol, what=f"sample {b} box {(i, j, h, w)}")


def test_random_erasing_records_torchvisions_box_when_no_try_fits():
    """torchvision's get_params returns (0, 0, H, W) and the image itself when none of its 10 tries fits:
    that box is recorded, and the sample is left as it is (at p=1 it was once erased whole, its params
    saying not applied, with try 0's box)."""
    x = make_images(6, 3, 8, 8, torch.float32, seed=1)
    out, params = run_one(ga.RandomErasing(p=1.0, scale=(0.99, 1.0), ratio=(1.0, 1.0)), x, seed=3)
    p = params.transforms[0]
    assert not bool(p.applied.any()) and torch.equal(out, x)
    box = torch.stack([p.top, p.left, p.height, p.width], dim=1)
    assert torch.equal(box, torch.tensor([[0, 0, 8, 8]]).expand(6, 4))


# =============================================================================================================
# Normalize, ToDtype, low-precision floats
# =============================================================================================================


@pytest.mark.parametrize("channels", CHANNELS)
def test_normalize(channels):
    mean, std = [0.485, 0.456, 0.406][:channels], [0.229, 0.224, 0.225][:channels]
    x = make_images(3, channels, H, W, torch.float32)
    out = ga.Pipeline([ga.Normalize(mean, std)])(x)
    assert_close(out, F.normalize(x, mean, std), 1e-5, what="normalize")


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16], ids=_id)
def test_to_dtype_then_normalize_from_uint8(out_dtype):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = make_images(3, 3, H, W, torch.uint8)
    out = ga.Pipeline([ga.ToDtype(out_dtype, scale=True), ga.Normalize(mean, std)])(x)
    ref = F.normalize(F.to_dtype(x, torch.float32, scale=True), mean, std)
    assert out.dtype == out_dtype
    tol = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}[out_dtype]
    assert_close(out, ref, tol, what="to_dtype + normalize")


@pytest.mark.parametrize("src", [torch.uint8, torch.float32], ids=_id)
@pytest.mark.parametrize("dst", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("scale", [True, False])
def test_to_dtype(src, dst, scale):
    x = make_images(3, 3, H, W, src)
    out = ga.Pipeline([ga.ToDtype(dst, scale=scale)])(x)
    ref = F.to_dtype(x, dst, scale=scale)
    assert out.dtype == dst
    assert_close(out, ref, 1e-6 if dst == torch.float64 else 0.0, what=f"to_dtype {src} -> {dst} scale={scale}")


@pytest.mark.parametrize("scale", [True, False])
def test_to_dtype_uint8_to_uint8(scale):
    x = make_images(3, 3, H, W, torch.uint8)
    out = ga.Pipeline([ga.ToDtype(torch.uint8, scale=scale)])(x)
    assert_equal(out, F.to_dtype(x, torch.uint8, scale=scale), what="uint8 -> uint8")


@pytest.mark.parametrize("scale", [True, False])
def test_to_dtype_float_to_uint8(scale):
    x = make_images(3, 3, H, W, torch.float32)
    if not scale:
        x = x * 300 - 20  # out of range values clamp
    out = ga.Pipeline([ga.ToDtype(torch.uint8, scale=scale)])(x)
    ref = F.to_dtype(x.clamp(0, 255) if not scale else x, torch.uint8, scale=scale)
    assert_equal(out, ref, what=f"float32 -> uint8 scale={scale}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=_id)
def test_low_precision_float_smoke(dtype):
    """float16/bfloat16 input: same parameters as float32, output in the input dtype, close to
    the float32 result and to torchvision's per-sample float32 result."""
    x32 = make_images(4, 3, H, W, torch.float32).to(dtype).float()  # values exactly representable in dtype
    transforms = lambda: [  # noqa: E731
        ga.RandomResizedCrop(24, scale=(0.3, 1.0)),
        ga.RandomHorizontalFlip(),
        ga.ColorJitter(0.4, 0.4, 0.4, 0.1),
        ga.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]),
    ]
    out, params = ga.Pipeline(transforms(), seed=19)(x32.to(dtype), return_params=True)
    out32, params32 = ga.Pipeline(transforms(), seed=19)(x32, return_params=True)
    assert out.dtype == dtype and out.shape == (4, 3, 24, 24)
    assert bool(torch.isfinite(out).all())
    for p, q in zip(params.transforms, params32.transforms):
        for name, value in p.tensors().items():
            assert torch.equal(value, q.tensors()[name]), f"{type(p).__name__}.{name} depends on the dtype"
    tol = {torch.float16: 1e-2, torch.bfloat16: 6e-2}[dtype]  # in normalised units (x4)
    assert_close(out.float(), out32, tol, what=f"{dtype} vs float32")
    crop, flip, jitter = params.transforms[:3]
    for b in range(4):
        box = [as_int(crop.top, b), as_int(crop.left, b), as_int(crop.height, b), as_int(crop.width, b)]
        ref = F.resized_crop(x32[b], *box, [24, 24])
        ref = F.horizontal_flip(ref) if flip.applied[b] else ref
        ref = jitter_reference(ref, jitter, b, JITTER_PARTS)
        ref = F.normalize(ref, [0.5] * 3, [0.25] * 3)
        assert_close(out[b].float(), ref, 4 * level(torch.float32) + tol, what=f"{dtype} sample {b} vs torchvision")


# =============================================================================================================
# kornia cross-check
# =============================================================================================================


@pytest.mark.parametrize(
    "transform",
    [
        ga.RandomAffine(25, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=10, interpolation="bilinear"),
        ga.RandomPerspective(0.5, p=1.0),
    ],
    ids=["affine", "perspective"],
)
def test_kornia_warp_perspective_agrees(transform):
    """kornia resamples through the inverse (source -> output) of the recorded matrix the same image."""
    kornia = pytest.importorskip("kornia", reason="kornia is not installed")
    x = make_images(B, 3, H, W, torch.float32, seed=20)
    out, params = run_one(transform, x, seed=20)
    forward = torch.linalg.inv(params.matrices[0]).to(torch.float32)
    ref = kornia.geometry.transform.warp_perspective(
        x, forward, (H, W), mode="bilinear", padding_mode="zeros", align_corners=True
    )
    assert_close(out, ref, 1e-4, what="kornia warp_perspective")


def test_kornia_gaussian_blur_agrees():
    kornia = pytest.importorskip("kornia", reason="kornia is not installed")
    x = make_images(B, 3, H, W, torch.float32, seed=21)
    out, params = run_one(ga.GaussianBlur(5, sigma=(0.1, 2.0)), x, seed=21)
    sigma = params.transforms[0].sigma.to(torch.float32)
    ref = kornia.filters.gaussian_blur2d(x, (5, 5), sigma, border_type="reflect")
    assert_close(out, ref, 1e-5, what="kornia gaussian_blur2d")


# =============================================================================================================
# Memory layout, CUDA
# =============================================================================================================

LAYOUT_TRANSFORMS = {
    "rrc": lambda: ga.RandomResizedCrop(24),
    "rotation": lambda: ga.RandomRotation(20, interpolation="bilinear"),
    "pad-reflect": lambda: ga.Pad([1, 2, 3, 4], padding_mode="reflect"),
    "jitter": lambda: ga.ColorJitter(0.4, 0.4, 0.4, 0.1),
    "blur": lambda: ga.GaussianBlur(3),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("name", list(LAYOUT_TRANSFORMS))
def test_input_and_output_layout_do_not_change_values(dtype, name):
    x = make_images(4, 3, H, W, dtype, seed=22)
    expected = ga.Pipeline([LAYOUT_TRANSFORMS[name]()], seed=22)(x)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    strided = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    for variant, images in (("channels_last input", channels_last), ("transposed-strides input", strided)):
        assert_equal(ga.Pipeline([LAYOUT_TRANSFORMS[name]()], seed=22)(images), expected, what=variant)
    out = ga.Pipeline([LAYOUT_TRANSFORMS[name]()], seed=22, memory_format=torch.channels_last)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_equal(out, expected, what="channels_last output")


def _cuda_cases():
    """(name, transform factory, torchvision reference(img, params, b), tolerance kind)."""
    return {
        "rrc-bilinear": (
            lambda: ga.RandomResizedCrop((24, 20), scale=(0.25, 1.0)),
            lambda img, p, b: F.resized_crop(img, as_int(p.top, b), as_int(p.left, b), as_int(p.height, b), as_int(p.width, b), [24, 20]),
            "resampled",
        ),
        "hflip": (lambda: ga.RandomHorizontalFlip(), lambda img, p, b: F.horizontal_flip(img), "exact"),
        "jitter": (
            lambda: ga.ColorJitter(0.4, 0.4, 0.4, 0.1),
            lambda img, p, b: jitter_reference(img, p, b, JITTER_PARTS),
            "jitter",
        ),
        "blur": (lambda: ga.GaussianBlur(5, p=0.8), lambda img, p, b: F.gaussian_blur(img, [5, 5], p.sigma[b].tolist()), "level"),
        "erasing": (
            lambda: ga.RandomErasing(p=0.8, value=3),
            lambda img, p, b: F.erase(img, *(as_int(getattr(p, k), b) for k in ("top", "left", "height", "width")), torch.tensor(3).to(img.dtype)),
            "exact",
        ),
        "invert": (lambda: ga.RandomInvert(), lambda img, p, b: F.invert(img), "exact"),
        "equalize": (lambda: ga.RandomEqualize(), lambda img, p, b: F.equalize(img), "level"),
    }


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES, ids=_id)
@pytest.mark.parametrize("name", list(_cuda_cases()))
def test_cuda_matches_torchvision(dtype, name):
    """On the GPU: the same parameters as on the CPU, and each sample as torchvision computes it on the CPU."""
    factory, reference, kind = _cuda_cases()[name]
    x = make_images(B, 3, H, W, dtype, seed=23)
    out, params = ga.Pipeline([factory()], seed=23)(x.cuda(), return_params=True)
    _, params_cpu = ga.Pipeline([factory()], seed=23)(x, return_params=True)
    p, p_cpu = params.transforms[0].to("cpu"), params_cpu.transforms[0]
    for field_name, value in p.tensors().items():
        assert torch.equal(value, p_cpu.tensors()[field_name]), f"{field_name} differs between CUDA and CPU"
    out = out.cpu()
    for b in range(B):
        ref = reference(x[b], p, b) if p.applied[b] else x[b]
        if kind == "exact":
            assert_equal(out[b], ref, what=f"sample {b}")
        elif kind == "resampled":
            assert_close_resampled(out[b], ref, what=f"sample {b}", exact_uint8=False)
        elif kind == "jitter" and dtype == torch.uint8:
            assert_close(out[b], ref, 3.0, what=f"sample {b}")  # see test_color_jitter_all_four_uint8_rgb_*
        else:
            assert_close(out[b], ref, level(dtype), what=f"sample {b}")
