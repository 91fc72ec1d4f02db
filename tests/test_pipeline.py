"""The public Pipeline API: shapes, dtypes, layout, input safety, per-sample randomness and its
distributions, reproducibility, provenance (save/load/replay), containers, folding, CUDA."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode as IM

import gpuaug as ga

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _uint8(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=_gen(seed))


def _float(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=_gen(seed)).to(dtype)


def _images(dtype: torch.dtype, *shape: int, seed: int = 0) -> torch.Tensor:
    return _uint8(*shape, seed=seed) if dtype == torch.uint8 else _float(*shape, seed=seed, dtype=dtype)


def _issue_pipeline(seed: int = 0, size: int = 224) -> ga.Pipeline:
    return ga.Pipeline(
        [
            ga.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            ga.RandomHorizontalFlip(p=0.5),
            ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            ga.RandomGrayscale(p=0.2),
            ga.ToDtype(torch.float16, scale=True),
            ga.Normalize(mean=MEAN, std=STD),
        ],
        seed=seed,
    )


def _rich_pipeline(seed: int = 0, size: int = 12) -> ga.Pipeline:
    """Most kinds of stage: folded warp, gated colour, blur, equalize, noise, erasing, containers."""
    return ga.Pipeline(
        [
            ga.RandomResizedCrop(size),
            ga.RandomHorizontalFlip(),
            ga.RandomRotation(15, interpolation="bilinear"),
            ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            ga.RandomGrayscale(p=0.2),
            ga.GaussianBlur(3, p=0.5),
            ga.RandomEqualize(p=0.3),
            ga.RandomChoice([ga.RandomInvert(1.0), ga.RandomPosterize(3, 1.0)]),
            ga.GaussianNoise(sigma=0.05, p=0.5),
            ga.RandomErasing(p=0.5),
        ],
        seed=seed,
    )


# ---------------------------------------------------------------- the issue's snippet


def test_issue_snippet():
    images = _uint8(4, 3, 256, 256)
    pipe = _issue_pipeline()
    out = pipe(images)
    assert out.shape == (4, 3, 224, 224) and out.dtype == torch.float16
    out, params = pipe(images, return_params=True)
    assert isinstance(params, ga.BatchParams)
    assert torch.equal(pipe.replay(images, params), out)
    idx = torch.tensor([10, 11, 12, 13], dtype=torch.int64)
    out = pipe(images, sample_ids=idx, epoch=3)
    assert out.shape == (4, 3, 224, 224) and out.dtype == torch.float16
    pipe.set_epoch(3)
    assert torch.equal(pipe(images, sample_ids=idx), out)
    pipe.set_epoch(4)
    assert not torch.equal(pipe(images, sample_ids=idx), out)
    assert bool(out.isfinite().all())


# ---------------------------------------------------------------- shapes, dtypes, layout


def test_chw_input_gives_chw_output():
    pipe = _rich_pipeline(size=10)
    x = _uint8(3, 20, 24)
    out = pipe(x, sample_ids=[7])
    assert out.shape == (3, 10, 10) and out.dtype == torch.uint8
    batched = pipe(x[None], sample_ids=[7])
    assert torch.equal(out, batched[0])
    out, params = pipe(x, return_params=True)
    assert params.input_shape == (3, 20, 24)
    assert torch.equal(pipe.replay(x, params), out)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(
    "kind", ["empty", "geometry", "colour", "mixed", "noise"]
)
def test_output_dtype_is_the_input_dtype(dtype, kind):
    transforms = {
        "empty": [],
        "geometry": [ga.RandomResizedCrop(8), ga.RandomHorizontalFlip(), ga.RandomRotation(10)],
        "colour": [ga.ColorJitter(0.3, 0.3, 0.3, 0.05), ga.RandomInvert(), ga.RandomGrayscale(0.5)],
        "mixed": [ga.RandomCrop(8), ga.GaussianBlur(3), ga.RandomErasing(1.0), ga.RandomAutocontrast()],
        "noise": [ga.GaussianNoise(sigma=0.1), ga.RandomPosterize(4), ga.RandomSolarize(0.5)],
    }[kind]
    x = _images(dtype, 3, 3, 12, 12)
    out = ga.Pipeline(transforms, seed=0)(x)
    assert out.dtype == dtype
    assert out.shape[:2] == (3, 3)
    assert bool(out.to(torch.float32).isfinite().all())


@pytest.mark.parametrize(
    "source,target",
    [
        *[(s, t) for s in (torch.uint8, torch.float32) for t in (torch.float32, torch.float16, torch.bfloat16, torch.float64)],
        (torch.float32, torch.uint8),
        (torch.uint8, torch.uint8),
    ],
)
def test_todtype_sets_the_output_dtype(source, target):
    x = _images(source, 2, 3, 9, 9)
    out = ga.Pipeline([ga.RandomHorizontalFlip(), ga.ToDtype(target, scale=True)], seed=0)(x)
    assert out.dtype == target
    # value range follows the dtype: a flip only permutes values, so compare sorted values
    ref = x.to(torch.float64) / (255.0 if source == torch.uint8 else 1.0)
    got = out.to(torch.float64) / (255.0 if target == torch.uint8 else 1.0)
    tol = 1 / 255 + 1e-6 if torch.uint8 in (source, target) else 1e-2
    assert torch.allclose(got.flatten().sort().values, ref.flatten().sort().values, atol=tol, rtol=0)


@pytest.mark.parametrize(
    "transforms",
    [
        [ga.RandomHorizontalFlip()],
        [ga.RandomResizedCrop(8), ga.ColorJitter(0.4, 0.4)],
        [ga.ToDtype(torch.float32, scale=True), ga.Normalize(MEAN, STD)],
        [ga.GaussianBlur(3), ga.RandomInvert()],
        [],
    ],
    ids=["flip", "crop-jitter", "todtype-normalize", "blur-invert", "empty"],
)
def test_channels_last_output(transforms):
    x = _uint8(4, 3, 16, 16)
    contiguous = ga.Pipeline(transforms, seed=1)(x)
    last = ga.Pipeline(transforms, seed=1, memory_format=torch.channels_last)(x)
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert not last.is_contiguous()
    assert contiguous.is_contiguous()
    assert torch.equal(last, contiguous)


def test_channels_last_input_is_accepted():
    x = _uint8(4, 3, 16, 16)
    pipe = ga.Pipeline([ga.RandomResizedCrop(8), ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], seed=2)
    a = pipe(x, sample_ids=torch.arange(4))
    b = pipe(x.contiguous(memory_format=torch.channels_last), sample_ids=torch.arange(4))
    assert torch.equal(a, b)


def test_non_contiguous_input_view():
    big = _float(4, 3, 20, 30)
    view = big[:, :, 2:18, 5:25:2]  # strided view
    pipe = ga.Pipeline([ga.RandomHorizontalFlip(), ga.ColorJitter(0.3)], seed=0)
    assert torch.equal(pipe(view, sample_ids=torch.arange(4)), pipe(view.contiguous(), sample_ids=torch.arange(4)))


# ---------------------------------------------------------------- the input is never modified


_INPUT_SAFETY_PIPELINES = {
    "empty": lambda dt: [],
    "todtype-only": lambda dt: [ga.ToDtype(torch.float32, scale=True)],
    "same-dtype": lambda dt: [ga.ToDtype(dt)],
    "normalize-only": lambda dt: [ga.Normalize([0.5], [0.25])] if dt.is_floating_point else [ga.ToDtype(torch.float32)],
    "pointwise": lambda dt: [ga.RandomInvert(1.0), ga.ColorJitter(0.5, 0.5, 0.5, 0.2), ga.RandomPosterize(3, 1.0)],
    "gated-pointwise": lambda dt: [ga.RandomApply([ga.RandomInvert(1.0)], p=0.5), ga.RandomSolarize(0.5 if dt.is_floating_point else 128)],
    "geometry": lambda dt: [ga.RandomHorizontalFlip(1.0)],
    "identity-geometry": lambda dt: [ga.RandomHorizontalFlip(0.0), ga.RandomCrop(16)],
    "identity-geometry-then-pointwise": lambda dt: [ga.CenterCrop(16), ga.RandomInvert(1.0), ga.ColorJitter(0.5, 0.5)],
    "skipped-flip-then-gated-pointwise": lambda dt: [ga.RandomHorizontalFlip(0.0), ga.RandomApply([ga.RandomInvert(1.0)], p=0.5)],
    "rich": lambda dt: _rich_pipeline().transforms,
    "noise-erase": lambda dt: [ga.GaussianNoise(sigma=0.2), ga.RandomErasing(1.0, value="random")],
}


@pytest.mark.parametrize(
    "name,dtype",
    [(n, d) for n in _INPUT_SAFETY_PIPELINES for d in (torch.uint8, torch.float32, torch.float16)],
)
@pytest.mark.parametrize("rank", [3, 4])
def test_input_never_modified(name, dtype, rank):
    x = _images(dtype, 3, 3, 16, 16)
    if rank == 3:
        x = x[0].clone()
    keep = x.clone()
    pipe = ga.Pipeline(_INPUT_SAFETY_PIPELINES[name](dtype), seed=0)
    out = pipe(x)
    assert torch.equal(x, keep)
    # the output is a new tensor: writing to it leaves the input alone
    out.zero_() if out.dtype != torch.uint8 else out.fill_(7)
    assert torch.equal(x, keep)
    out, params = pipe(x, return_params=True)
    pipe.replay(x, params).zero_()
    assert torch.equal(x, keep)


def test_empty_pipeline_is_identity_and_copies():
    for x in (_uint8(2, 3, 5, 7), _float(2, 1, 5, 7), _float(3, 4, 4, dtype=torch.bfloat16)):
        out = ga.Pipeline([])(x)
        assert out.dtype == x.dtype and torch.equal(out, x)
        assert out.data_ptr() != x.data_ptr()


# ---------------------------------------------------------------- empty batch


@pytest.mark.parametrize(
    "transforms,dtype,expected",
    [
        ([], torch.uint8, (0, 3, 20, 24, torch.uint8)),
        ([ga.RandomHorizontalFlip()], torch.float32, (0, 3, 20, 24, torch.float32)),
        ([ga.RandomCrop(8)], torch.uint8, (0, 3, 8, 8, torch.uint8)),
        ([ga.Resize(10)], torch.float16, (0, 3, 10, 12, torch.float16)),
        ([ga.ColorJitter(0.4, 0.4, 0.4, 0.1), ga.GaussianNoise()], torch.float32, (0, 3, 20, 24, torch.float32)),
        ([ga.Grayscale()], torch.uint8, (0, 1, 20, 24, torch.uint8)),
        ([ga.RandomRotation(10), ga.RandomErasing()], torch.bfloat16, (0, 3, 20, 24, torch.bfloat16)),
        (None, torch.uint8, (0, 3, 16, 16, torch.float16)),
    ],
)
def test_empty_batch(transforms, dtype, expected):
    pipe = _issue_pipeline(size=16) if transforms is None else ga.Pipeline(transforms, seed=0)
    x = torch.empty(0, 3, 20, 24, dtype=dtype)
    out, params = pipe(x, return_params=True)
    assert tuple(out.shape) == expected[:4] and out.dtype == expected[4]
    assert params.batch_size == 0
    assert tuple(pipe.replay(x, params).shape) == expected[:4]
    out = pipe(x, sample_ids=torch.empty(0, dtype=torch.int64))
    assert tuple(out.shape) == expected[:4]


# ---------------------------------------------------------------- per-sample randomness and distributions


def test_identical_images_get_different_outputs():
    x = _uint8(1, 3, 32, 32).expand(16, 3, 32, 32)
    for pipe in (_issue_pipeline(size=16), _rich_pipeline(size=16)):
        out = pipe(x)
        distinct = {tuple(o.flatten().tolist()) for o in out.to(torch.float32)}
        assert len(distinct) >= 15


@pytest.mark.parametrize("cls,dim,p", [(ga.RandomHorizontalFlip, -1, 0.5), (ga.RandomHorizontalFlip, -1, 0.2), (ga.RandomVerticalFlip, -2, 0.7)])
def test_flip_rate_within_three_sigma(cls, dim, p):
    n = 2000
    x = torch.tensor([[[1, 2], [3, 4]]], dtype=torch.uint8).expand(n, 1, 2, 2)
    out, params = ga.Pipeline([cls(p=p)], seed=11)(x, return_params=True)
    flipped = (out == x.flip(dim)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped ^ kept).all())  # every sample is exactly one of the two
    assert torch.equal(flipped, params.transforms[0].applied)
    assert abs(int(flipped.sum()) - n * p) <= 3 * math.sqrt(n * p * (1 - p))


def test_random_resized_crop_parameters_follow_their_ranges():
    n, H, W = 3000, 200, 160
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    pipe = ga.Pipeline([ga.RandomResizedCrop(8, scale=scale, ratio=ratio)], seed=5)
    p = pipe.sample(torch.empty(n, 3, H, W, dtype=torch.uint8)).transforms[0]
    top, left, h, w = (v.to(torch.float64) for v in (p.top, p.left, p.height, p.width))
    assert bool((top >= 0).all() & (left >= 0).all() & (h >= 1).all() & (w >= 1).all())
    assert bool((top + h <= H).all() & (left + w <= W).all())
    # w, h are rounded from an exact area and aspect: bound with +-0.5
    assert bool(((w - 0.5) * (h - 0.5) <= scale[1] * H * W).all())
    assert bool(((w + 0.5) * (h + 0.5) >= scale[0] * H * W).all())
    assert bool(((w - 0.5) / (h + 0.5) <= ratio[1]).all() & ((w + 0.5) / (h - 0.5) >= ratio[0]).all())
    frac = h * w / (H * W)
    assert float(frac.min()) < 0.1 and float(frac.max()) > 0.85
    # the area is drawn uniformly (before rejection): its median is well inside the range
    assert 0.3 < float(frac.median()) < 0.7
    # positions are spread over the free range
    rel_top = top / (H - h + 1)
    assert 0.4 < float(rel_top.mean()) < 0.6


def test_random_crop_corner_uniform():
    n = 4000
    p = ga.Pipeline([ga.RandomCrop(6, padding=2)], seed=3).sample(torch.empty(n, 1, 10, 10)).transforms[0]
    # padded 14x14, crop 6 -> corner in [0, 8]
    for v in (p.top, p.left):
        counts = torch.bincount(v, minlength=9)
        assert counts.numel() == 9
        expected = n / 9
        chi = float(((counts - expected) ** 2 / expected).sum())
        assert chi < 40  # df 8: far in the tail
    assert bool((p.height == 6).all() & (p.width == 6).all())


def test_rotation_angles_uniform_in_range():
    n = 5000
    low, high = -25.0, 40.0
    p = ga.Pipeline([ga.RandomRotation((low, high))], seed=9).sample(torch.empty(n, 3, 8, 8)).transforms[0]
    a = p.angle.to(torch.float64)
    assert float(a.min()) >= low and float(a.max()) <= high
    counts = torch.bincount(((a - low) / (high - low) * 10).floor().clamp(max=9).to(torch.int64), minlength=10)
    expected = n / 10
    assert float(((counts - expected) ** 2 / expected).sum()) < 45  # df 9
    assert bool((p.scale == 1).all() & (p.translate == 0).all() & (p.shear == 0).all())


def test_affine_parameters_follow_their_ranges():
    n, H, W = 4000, 30, 50
    t = ga.RandomAffine(degrees=(-10, 20), translate=(0.1, 0.2), scale=(0.8, 1.3), shear=(-5, 5, 2, 8))
    p = ga.Pipeline([t], seed=4).sample(torch.empty(n, 3, H, W)).transforms[0]
    assert float(p.angle.min()) >= -10 and float(p.angle.max()) <= 20
    tx, ty = p.translate[:, 0], p.translate[:, 1]
    assert bool((tx == tx.round()).all() & (ty == ty.round()).all())  # whole pixels, as torchvision
    assert float(tx.abs().max()) <= round(0.1 * W) and float(ty.abs().max()) <= round(0.2 * H)
    assert float(tx.abs().max()) >= round(0.1 * W) - 1 and float(ty.abs().max()) >= round(0.2 * H) - 1
    assert float(p.scale.min()) >= 0.8 and float(p.scale.max()) <= 1.3
    assert float(p.shear[:, 0].min()) >= -5 and float(p.shear[:, 0].max()) <= 5
    assert float(p.shear[:, 1].min()) >= 2 and float(p.shear[:, 1].max()) <= 8
    assert abs(float(p.scale.mean()) - 1.05) < 0.02


def test_color_jitter_parameters_and_all_24_orders():
    n = 3000
    t = ga.ColorJitter(brightness=0.4, contrast=(0.5, 1.5), saturation=0.2, hue=0.1)
    p = ga.Pipeline([t], seed=8).sample(torch.empty(n, 3, 4, 4)).transforms[0]
    for name, (lo, hi) in (("brightness", (0.6, 1.4)), ("contrast", (0.5, 1.5)), ("saturation", (0.8, 1.2)), ("hue", (-0.1, 0.1))):
        v = getattr(p, name).to(torch.float64)
        assert float(v.min()) >= lo and float(v.max()) <= hi, name
        assert abs(float(v.mean()) - (lo + hi) / 2) < 0.05 * (hi - lo), name
    order = p.order
    assert order.shape == (n, 4)
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(n, 4))
    seen = {tuple(o) for o in order.tolist()}
    assert seen == set(itertools.permutations(range(4)))


def test_color_jitter_order_is_applied_per_sample():
    # brightness x3 (clipped at 1) then contrast 0 (-> the mean) differs from contrast 0 then brightness x3
    n = 64
    x = torch.linspace(0.05, 0.45, 16).view(1, 1, 4, 4).expand(n, 3, 4, 4).contiguous()
    t = ga.ColorJitter(brightness=(3.0, 3.0), contrast=(0.0, 0.0))
    out, params = ga.Pipeline([t], seed=1)(x, return_params=True)
    order = params.transforms[0].order
    b_first = (order == 0).nonzero()[:, 1] < (order == 1).nonzero()[:, 1]
    gray_mean = (x[:, 0] * 0.2989 + x[:, 1] * 0.587 + x[:, 2] * 0.114).mean(dim=(1, 2))
    expect_b_first = (3 * x).clamp(0, 1).mean(dim=(1, 2, 3))  # grayscale of a gray image ~ itself
    expect_c_first = (3 * gray_mean).clamp(0, 1)
    assert float((expect_b_first - expect_c_first).abs().min()) > 0.05
    got = out[:, 0, 0, 0]
    torch.testing.assert_close(got[b_first], expect_b_first[b_first], atol=1e-3, rtol=0)
    torch.testing.assert_close(got[~b_first], expect_c_first[~b_first], atol=1e-3, rtol=0)
    assert 0 < int(b_first.sum()) < n


def test_random_op_applies_exactly_where_its_coin_says():
    x = _float(200, 3, 6, 6)
    out, params = ga.Pipeline([ga.RandomInvert(p=0.4)], seed=2)(x, return_params=True)
    applied = params.transforms[0].applied
    torch.testing.assert_close(out[applied], 1 - x[applied], atol=1e-7, rtol=0)
    assert torch.equal(out[~applied], x[~applied])
    assert 40 < int(applied.sum()) < 120


def test_random_apply_leaves_unselected_samples_unchanged():
    x = _float(64, 3, 8, 8)
    pipe = ga.Pipeline([ga.RandomApply([ga.ColorJitter(0.5, 0.5, 0.5, 0.2), ga.GaussianBlur(3)], p=0.5)], seed=2)
    out, params = pipe(x, return_params=True)
    applied = params.transforms[0].applied
    assert 10 < int(applied.sum()) < 54
    assert torch.equal(out[~applied], x[~applied])
    assert bool(((out[applied] - x[applied]).flatten(1).abs().amax(1) > 1e-3).all())


# ---------------------------------------------------------------- reproducibility


def test_same_seed_same_output_across_pipelines():
    x = _uint8(6, 3, 24, 24)
    a1, a2 = _rich_pipeline(seed=42), _rich_pipeline(seed=42)
    for _ in range(2):  # the call counter advances in step
        o1, p1 = a1(x, return_params=True)
        o2, p2 = a2(x, return_params=True)
        assert torch.equal(o1, o2)
        assert torch.equal(p1.keys, p2.keys)
    assert torch.equal(a1(x, sample_ids=torch.arange(6)), a2(x, sample_ids=torch.arange(6)))


def test_different_seeds_differ():
    x = _uint8(6, 3, 24, 24)
    outs = [_rich_pipeline(seed=s)(x, sample_ids=torch.arange(6)) for s in (0, 1, 2**40)]
    for a, b in itertools.combinations(outs, 2):
        assert not torch.equal(a, b)
        differs = (a != b).flatten(1).any(1)
        assert int(differs.sum()) >= 5


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_sample_ids_invariance_split_and_permute(dtype):
    x = _images(dtype, 8, 3, 20, 20)
    ids = torch.tensor([3, 1000, 7, 2**33, 5, 6, 11, 12])
    pipe = _rich_pipeline(seed=7)
    full, pf = pipe(x, sample_ids=ids, return_params=True)
    tol = {"atol": 1, "rtol": 0} if dtype == torch.uint8 else {"atol": 1e-5, "rtol": 0}
    # split in two
    a, pa = pipe(x[:3], sample_ids=ids[:3], return_params=True)
    b, pb = pipe(x[3:], sample_ids=ids[3:], return_params=True)
    torch.testing.assert_close(torch.cat([a, b]).float(), full.float(), **tol)
    # permuted
    perm = torch.tensor([5, 2, 7, 0, 3, 1, 6, 4])
    c, pc = pipe(x[perm], sample_ids=ids[perm], return_params=True)
    torch.testing.assert_close(c.float(), full[perm].float(), **tol)
    # drawn parameters are identical, bit for bit
    for i, tp in enumerate(pf.transforms):
        for name, value in tp.tensors().items():
            assert torch.equal(torch.cat([pa.transforms[i].tensors()[name], pb.transforms[i].tensors()[name]]), value)
            assert torch.equal(pc.transforms[i].tensors()[name], value[perm])
    torch.testing.assert_close(pc.matrices[0], pf.matrices[0][perm], atol=0, rtol=0)
    # and one at a time
    for i in (0, 3, 7):
        single = pipe(x[i], sample_ids=ids[i : i + 1])
        torch.testing.assert_close(single.float(), full[i].float(), **tol)


def test_large_batch_equals_per_sample_runs():
    # a batch big enough to be processed in pieces (~3 MB of float32 per sample) gives each sample its own result
    x = _uint8(3, 3, 512, 512)
    ids = torch.tensor([4, 17, 9])
    pipe = ga.Pipeline(
        [ga.RandomCrop(500), ga.RandomHorizontalFlip(), ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.5),
         ga.GaussianNoise(sigma=0.05)],
        seed=1,
    )
    full = pipe(x, sample_ids=ids)
    for i in (1, 2):
        single = pipe(x[i : i + 1], sample_ids=ids[i : i + 1])[0]
        assert int((single.int() - full[i].int()).abs().max()) <= 1, i


def test_epoch_changes_the_draw():
    x = _uint8(8, 3, 16, 16)
    pipe = _rich_pipeline(seed=3, size=8)
    ids = torch.arange(8)
    e0 = pipe(x, sample_ids=ids)
    e1, p1 = pipe(x, sample_ids=ids, epoch=1, return_params=True)
    assert p1.epoch == 1
    assert (e0 != e1).flatten(1).any(1).sum() >= 6
    assert torch.equal(pipe(x, sample_ids=ids, epoch=0), e0)
    pipe.set_epoch(1)
    assert torch.equal(pipe(x, sample_ids=ids), e1)
    assert torch.equal(pipe(x, sample_ids=ids, epoch=0), e0)  # the argument wins over set_epoch


def test_calls_without_sample_ids_draw_anew():
    x = _uint8(8, 3, 16, 16)
    pipe = _rich_pipeline(seed=3, size=8)
    outs = [pipe(x) for _ in range(3)]
    for a, b in itertools.combinations(outs, 2):
        assert (a != b).flatten(1).any(1).sum() >= 6
    # but with sample_ids the draw is fixed
    ids = torch.arange(8)
    assert torch.equal(pipe(x, sample_ids=ids), pipe(x, sample_ids=ids))


def test_sample_method_matches_call_params():
    x = _uint8(4, 3, 16, 16)
    pipe = _rich_pipeline(seed=3, size=8)
    params = pipe.sample(x, sample_ids=torch.arange(4))
    out, params2 = pipe(x, sample_ids=torch.arange(4), return_params=True)
    assert torch.equal(pipe.replay(x, params), out)
    assert torch.equal(params.keys, params2.keys)


# ---------------------------------------------------------------- provenance


def _assert_params_equal(a: ga.BatchParams, b: ga.BatchParams) -> None:
    assert (a.seed, a.epoch, a.call, a.names, a.children, a.input_shape, a.output_shape, a.input_dtype) == (
        b.seed, b.epoch, b.call, b.names, b.children, b.input_shape, b.output_shape, b.input_dtype,
    )
    assert torch.equal(a.sample_ids, b.sample_ids) and torch.equal(a.keys, b.keys)
    assert len(a.transforms) == len(b.transforms) and len(a.matrices) == len(b.matrices)
    for ta, tb in zip(a.transforms, b.transforms):
        assert type(ta) is type(tb)
        for name, value in ta.tensors().items():
            assert torch.equal(value, tb.tensors()[name]), name
    for ma, mb in zip(a.matrices, b.matrices):
        assert torch.equal(ma, mb)


def test_params_save_load_round_trip_and_replay(tmp_path):
    x = _uint8(5, 3, 24, 24)
    pipe = _rich_pipeline(seed=12)
    out, params = pipe(x, sample_ids=torch.arange(5) + 100, epoch=2, return_params=True)
    path = tmp_path / "params.pt"
    params.save(path)
    loaded = ga.BatchParams.load(path)
    _assert_params_equal(params, loaded)
    assert torch.equal(pipe.replay(x, loaded), out)
    # replay on a fresh pipeline with the same transforms (another seed: the params decide)
    assert torch.equal(_rich_pipeline(seed=999).replay(x, loaded), out)


def test_params_state_dict_round_trip():
    x = _float(3, 3, 20, 20)
    pipe = _issue_pipeline(size=10)
    out, params = pipe(x, return_params=True)
    state = params.state_dict()
    assert isinstance(state["meta"], str)
    assert all(isinstance(v, torch.Tensor) for k, v in state.items() if k != "meta")
    rebuilt = ga.BatchParams.from_state_dict(state)
    _assert_params_equal(params, rebuilt)
    assert torch.equal(pipe.replay(x, rebuilt), out)


def test_params_to_json_parses():
    x = _uint8(3, 3, 20, 20)
    pipe = _issue_pipeline(size=10)
    _, params = pipe(x, sample_ids=[4, 5, 6], return_params=True)
    doc = json.loads(params.to_json())
    assert doc["names"] == params.names == [
        "RandomResizedCrop", "RandomHorizontalFlip", "RandomApply", "ColorJitter", "RandomGrayscale", "ToDtype", "Normalize",
    ]
    assert doc["seed"] == 0 and doc["input_shape"] == [3, 3, 20, 20]
    values = doc["values"]
    assert values["sample_ids"] == [4, 5, 6]
    crop = params.transforms[0]
    assert values["transforms.0.height"] == crop.height.tolist()
    assert len(values["matrices.0"]) == 3 and len(values["matrices.0"][0]) == 3


def test_params_in_torchvision_units():
    x = torch.empty(500, 3, 40, 60)
    pipe = ga.Pipeline([ga.RandomRotation(30), ga.ColorJitter(0.2, hue=0.05), ga.GaussianBlur(5, sigma=(0.5, 1.5))], seed=0)
    p = pipe.sample(x)
    rot, cj, blur = p.transforms
    assert rot.angle.dtype.is_floating_point and 25 < float(rot.angle.abs().max()) <= 30  # degrees, not radians
    assert float(cj.brightness.min()) >= 0.8 and float(cj.brightness.max()) <= 1.2
    assert float(cj.hue.abs().max()) <= 0.05
    assert blur.sigma.shape == (500, 2) and float(blur.sigma.min()) >= 0.5 and float(blur.sigma.max()) <= 1.5


def test_replay_wrong_shape_raises():
    pipe = _rich_pipeline()
    x = _uint8(4, 3, 24, 24)
    _, params = pipe(x, return_params=True)
    for bad in (_uint8(4, 3, 24, 25), _uint8(5, 3, 24, 24), _uint8(3, 24, 24)):
        with pytest.raises(ValueError, match="shape"):
            pipe.replay(bad, params)


def test_replay_params_from_another_pipeline_raises():
    x = _uint8(4, 3, 24, 24)
    _, params = _rich_pipeline()(x, return_params=True)
    other = ga.Pipeline([ga.RandomHorizontalFlip(), ga.ColorJitter(0.4)], seed=0)
    with pytest.raises(ValueError, match="pipeline"):
        other.replay(x, params)
    nested = ga.Pipeline([ga.RandomApply([ga.RandomHorizontalFlip()], p=1.0)], seed=0)
    _, flip_params = ga.Pipeline([ga.RandomHorizontalFlip()], seed=0)(x, return_params=True)
    with pytest.raises(ValueError):
        nested.replay(x, flip_params)
    # the same names depth first, nested otherwise, or giving another size: they once replayed, wrongly
    pairs = [
        ([ga.RandomApply([ga.RandomInvert(), ga.RandomHorizontalFlip()], p=0.5)],
         [ga.RandomApply([ga.RandomInvert()], p=0.5), ga.RandomHorizontalFlip()]),
        ([ga.RandomChoice([ga.RandomInvert(), ga.RandomInvert(), ga.RandomHorizontalFlip()])],
         [ga.RandomChoice([ga.RandomInvert(), ga.RandomInvert()]), ga.RandomHorizontalFlip()]),
        ([ga.RandomResizedCrop(16)], [ga.RandomResizedCrop(8)]),
    ]
    for recorded, replaying in pairs:
        _, params = ga.Pipeline(recorded, seed=0)(x, return_params=True)
        with pytest.raises(ValueError, match="params come from a (different pipeline|pipeline with other arguments)"):
            ga.Pipeline(replaying, seed=0).replay(x, params)
    old = dataclasses.replace(params, children=None, output_shape=None, arguments=None)  # saved before these were recorded
    assert ga.Pipeline([ga.RandomResizedCrop(16)], seed=1).replay(x, old).shape == (4, 3, 16, 16)
    # the same transforms with other arguments (which the params do not hold): they once replayed, wrongly
    recorded = ga.Pipeline([ga.RandomCrop(16, padding=4), ga.GaussianBlur(3), ga.GaussianNoise(sigma=0.05)], seed=0)
    _, params = recorded(x, return_params=True)
    for replaying in ([ga.RandomCrop(16), ga.GaussianBlur(3), ga.GaussianNoise(sigma=0.05)],
                      [ga.RandomCrop(16, padding=4), ga.GaussianBlur(9), ga.GaussianNoise(sigma=0.05)],
                      [ga.RandomCrop(16, padding=4), ga.GaussianBlur(3), ga.GaussianNoise(sigma=0.5)]):
        with pytest.raises(ValueError, match="other arguments"):
            ga.Pipeline(replaying, seed=0).replay(x, params)
    # the same arguments given as numpy or Python numbers, and inplace either way, replay
    given = [ga.RandomChoice([ga.RandomInvert(), ga.RandomHorizontalFlip()], p=[1, 3]), ga.Resize((8, 8)),
             ga.ToDtype(torch.float32, scale=True), ga.Normalize([0.5] * 3, [0.2] * 3)]
    as_numpy = [ga.RandomChoice([ga.RandomInvert(), ga.RandomHorizontalFlip()], p=np.array([1, 3])),
                ga.Resize((np.int64(8), 8)), ga.ToDtype(torch.float32, scale=True),
                ga.Normalize(np.array([0.5] * 3), torch.tensor([0.2] * 3, dtype=torch.float64), inplace=True)]
    out, numbers = ga.Pipeline(given, seed=0)(x, return_params=True)
    assert torch.equal(ga.Pipeline(as_numpy, seed=0).replay(x, numbers), out)
    # but another seed, or a mix's own seed, replays: the params hold what they drew
    same = [ga.RandomCrop(16, padding=4), ga.GaussianBlur(3), ga.GaussianNoise(sigma=0.05)]
    assert torch.equal(ga.Pipeline(same, seed=3).replay(x, params), recorded.replay(x, params))
    batch = ga.Pipeline([ga.RandomInvert(), ga.MixUp(0.4, 5, seed=1)], seed=0)(x.float(), labels=torch.arange(4), return_params=True)
    again = ga.Pipeline([ga.RandomInvert(), ga.MixUp(0.4, 5, seed=2)], seed=0).replay(x.float(), batch.params)
    assert torch.equal(again, batch.images)


# ---------------------------------------------------------------- containers


def test_random_choice_picks_exactly_one_child():
    n = 600
    x = torch.full((n, 1, 4, 4), 50, dtype=torch.uint8)
    y = torch.full((n, 1, 4, 4), 150, dtype=torch.uint8)
    pipe = ga.Pipeline([ga.RandomChoice([ga.RandomInvert(p=1.0), ga.RandomSolarize(100, p=1.0)])], seed=4)
    ids = torch.arange(n)
    ox, params = pipe(x, sample_ids=ids, return_params=True)
    oy = pipe(y, sample_ids=ids)
    # invert: (50, 150) -> (205, 105); solarize(100): -> (50, 105); none -> (50, 150);
    # invert then solarize -> (50, 150); solarize then invert -> (205, 150)
    pair = torch.stack([ox[:, 0, 0, 0], oy[:, 0, 0, 0]], 1).tolist()
    assert all(p in ([205, 105], [50, 105]) for p in pair)
    assert bool((ox == ox[:, :, :1, :1]).all())
    inverted = ox[:, 0, 0, 0] == 205
    choice = params.transforms[0].choice
    assert torch.equal(inverted, choice == 0)
    assert abs(int(inverted.sum()) - n / 2) <= 3 * math.sqrt(n / 4)


def test_random_choice_weights():
    n = 4000
    pipe = ga.Pipeline([ga.RandomChoice([ga.RandomInvert(1.0), ga.RandomPosterize(2, 1.0), ga.RandomSolarize(0.5, 1.0)], p=[1, 2, 5])], seed=0)
    choice = pipe.sample(torch.empty(n, 3, 2, 2)).transforms[0].choice
    counts = torch.bincount(choice, minlength=3).tolist()
    for c, w in zip(counts, (1 / 8, 2 / 8, 5 / 8)):
        assert abs(c - n * w) <= 4 * math.sqrt(n * w * (1 - w))


def test_random_order_gives_both_orders():
    n = 200
    ids = torch.arange(n)
    pipe = ga.Pipeline([ga.RandomOrder([ga.RandomInvert(p=1.0), ga.RandomSolarize(100, p=1.0)])], seed=6)
    o50, params = pipe(torch.full((n, 1, 3, 3), 50, dtype=torch.uint8), sample_ids=ids, return_params=True)
    o150 = pipe(torch.full((n, 1, 3, 3), 150, dtype=torch.uint8), sample_ids=ids)
    pair = torch.stack([o50[:, 0, 0, 0], o150[:, 0, 0, 0]], 1).tolist()
    # invert then solarize: (50, 150); solarize then invert: (205, 150)
    assert all(p in ([50, 150], [205, 150]) for p in pair)
    invert_first = o50[:, 0, 0, 0] == 50
    order = params.transforms[0].order
    assert torch.equal(invert_first, order[:, 0] == 0)
    assert 60 < int(invert_first.sum()) < 140


def test_random_apply_p0_is_identity_and_p1_always_applies():
    x = _uint8(50, 3, 8, 8)
    xf = _float(50, 3, 8, 8)
    inner = lambda: [ga.RandomInvert(p=1.0), ga.RandomHorizontalFlip(p=1.0)]
    assert torch.equal(ga.Pipeline([ga.RandomApply(inner(), p=0.0)], seed=0)(x), x)
    assert torch.equal(ga.Pipeline([ga.RandomApply(inner(), p=0.0)], seed=0)(xf), xf)
    assert torch.equal(ga.Pipeline([ga.RandomApply(inner(), p=1.0)], seed=0)(x), (255 - x).flip(-1))
    torch.testing.assert_close(ga.Pipeline([ga.RandomApply(inner(), p=1.0)], seed=0)(xf), (1 - xf).flip(-1), atol=1e-7, rtol=0)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
def test_random_apply_p0_around_resampling_geometry_is_identity(interpolation):
    inner = [ga.RandomRotation(30, interpolation=interpolation), ga.RandomAffine(10, translate=(0.1, 0.1), interpolation=interpolation)]
    x = _uint8(3, 3, 17, 23)
    assert torch.equal(ga.Pipeline([ga.RandomApply(inner, p=0.0)], seed=0)(x), x)
    xf = _float(3, 3, 17, 23)
    torch.testing.assert_close(ga.Pipeline([ga.RandomApply(inner, p=0.0)], seed=0)(xf), xf, atol=1e-5, rtol=0)


def test_random_apply_with_geometry_is_per_sample():
    n = 300
    x = torch.tensor([[[1, 2], [3, 4]]], dtype=torch.uint8).expand(n, 1, 2, 2)
    out, params = ga.Pipeline([ga.RandomApply([ga.RandomVerticalFlip(1.0)], p=0.3)], seed=1)(x, return_params=True)
    applied = params.transforms[0].applied
    assert torch.equal(out[applied], x[applied].flip(-2)) and torch.equal(out[~applied], x[~applied])
    assert abs(int(applied.sum()) - 0.3 * n) <= 3 * math.sqrt(n * 0.21)


@pytest.mark.parametrize(
    "child",
    [lambda: ga.RandomCrop(8), lambda: ga.Resize(10), lambda: ga.Grayscale(1), lambda: ga.ToDtype(torch.float32, scale=True),
     lambda: ga.Pad(2)],
    ids=["RandomCrop", "Resize", "Grayscale", "ToDtype", "Pad"],
)
@pytest.mark.parametrize("container", ["apply", "choice", "order"])
def test_size_changing_transform_in_partial_container_raises(child, container):
    wrap = {
        "apply": lambda: ga.RandomApply([child()], p=0.5),
        "choice": lambda: ga.RandomChoice([child(), ga.RandomInvert(1.0)]),
        "order": lambda: ga.RandomOrder([child(), ga.RandomInvert(1.0)]),
    }[container]
    pipe = ga.Pipeline([wrap()], seed=0)
    with pytest.raises(ValueError, match="inside"):
        pipe(_uint8(2, 3, 16, 16))


def test_size_changing_transform_in_random_apply_p1_is_fine():
    out = ga.Pipeline([ga.RandomApply([ga.RandomCrop(8), ga.Grayscale()], p=1.0)], seed=0)(_uint8(2, 3, 16, 16))
    assert out.shape == (2, 1, 8, 8)


def test_compose_nests():
    x = _uint8(4, 3, 8, 8)
    a = ga.Pipeline([ga.Compose([ga.RandomInvert(1.0), ga.RandomHorizontalFlip(1.0)])], seed=0)(x)
    assert torch.equal(a, (255 - x).flip(-1))


# ---------------------------------------------------------------- folding


def test_consecutive_geometry_folds_into_one_matrix():
    pipe = ga.Pipeline(
        [ga.RandomResizedCrop(20), ga.RandomHorizontalFlip(), ga.RandomRotation(10), ga.RandomAffine(5, translate=(0.1, 0.1)),
         ga.RandomPerspective(0.2), ga.RandomVerticalFlip(), ga.CenterCrop(16), ga.ColorJitter(0.2), ga.ToDtype(torch.float32, scale=True)],
        seed=0,
    )
    out, params = pipe(_uint8(3, 3, 32, 32), return_params=True)
    assert len(params.matrices) == 1
    assert params.matrices[0].shape == (3, 3, 3)
    assert out.shape == (3, 3, 16, 16)


def test_gated_geometry_still_folds_into_one_matrix():
    pipe = ga.Pipeline(
        [ga.RandomResizedCrop(16), ga.RandomApply([ga.RandomRotation(20)], p=0.5),
         ga.RandomChoice([ga.RandomHorizontalFlip(1.0), ga.RandomAffine(10, scale=(0.9, 1.1))]),
         ga.RandomOrder([ga.RandomVerticalFlip(), ga.RandomPerspective(0.3)])],
        seed=0,
    )
    out, params = pipe(_uint8(4, 3, 24, 24), return_params=True)
    assert len(params.matrices) == 1 and out.shape == (4, 3, 16, 16)


def test_pixel_stage_between_geometry_gives_two_passes():
    pipe = ga.Pipeline([ga.RandomResizedCrop(16), ga.GaussianBlur(3), ga.RandomRotation(20)], seed=0)
    _, params = pipe(_uint8(2, 3, 24, 24), return_params=True)
    assert len(params.matrices) == 2


def test_folded_flips_compose_to_identity():
    x = _uint8(4, 3, 7, 9)
    out, params = ga.Pipeline([ga.RandomHorizontalFlip(1.0), ga.RandomVerticalFlip(1.0), ga.RandomHorizontalFlip(1.0), ga.RandomVerticalFlip(1.0)])(
        x, return_params=True
    )
    assert torch.equal(out, x)
    assert len(params.matrices) == 1
    torch.testing.assert_close(params.matrices[0], torch.eye(3, dtype=torch.float64).expand(4, 3, 3))


def test_folded_matrix_maps_output_to_source():
    # crop then flip: output pixel (x, y) reads source (W_crop - 1 - x + left, y + top)
    x = _uint8(5, 1, 12, 14)
    out, params = ga.Pipeline([ga.RandomCrop((6, 5)), ga.RandomHorizontalFlip(1.0)], seed=2)(x, return_params=True)
    crop = params.transforms[0]
    m = params.matrices[0]
    for b in range(5):
        t, left = int(crop.top[b]), int(crop.left[b])
        assert torch.equal(out[b], x[b, :, t : t + 6, left : left + 5].flip(-1))
        src = m[b] @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        assert src.tolist() == [left + 4.0, float(t), 1.0]


def _tv_steps(*steps):
    def run(y):
        for step in steps:
            y = step(y)
        return y

    return run


@pytest.mark.parametrize(
    "name,transforms,reference,tol",
    [
        ("flip-pad", [ga.RandomHorizontalFlip(1.0), ga.Pad(2, fill=7)], _tv_steps(TF.horizontal_flip, lambda y: TF.pad(y, [2], fill=7)), 0),
        ("pad-crop", [ga.Pad(2, fill=7), ga.CenterCrop(10)], _tv_steps(lambda y: TF.pad(y, [2], fill=7), lambda y: TF.center_crop(y, [10])), 0),
        ("pad-reflect-crop", [ga.Pad(3, padding_mode="reflect"), ga.CenterCrop(18)],
         _tv_steps(lambda y: TF.pad(y, [3], padding_mode="reflect"), lambda y: TF.center_crop(y, [18])), 0),
        ("crop-resize-nearest", [ga.CenterCrop(8), ga.Resize(16, interpolation="nearest")],
         _tv_steps(lambda y: TF.center_crop(y, [8]), lambda y: TF.resize(y, [16], interpolation=IM.NEAREST)), 0),
        ("crop-resize-bilinear", [ga.CenterCrop(8), ga.Resize(12)], _tv_steps(lambda y: TF.center_crop(y, [8]), lambda y: TF.resize(y, [12])), 1),
        ("pad-resize", [ga.Pad(2, fill=7), ga.Resize(10)], _tv_steps(lambda y: TF.pad(y, [2], fill=7), lambda y: TF.resize(y, [10])), 1),
        ("resize-nearest-down", [ga.Resize(6, interpolation="nearest")], _tv_steps(lambda y: TF.resize(y, [6], interpolation=IM.NEAREST)), 0),
        ("resize-nearest-up", [ga.Resize(24, interpolation="nearest")], _tv_steps(lambda y: TF.resize(y, [24], interpolation=IM.NEAREST)), 0),
        ("resize-nearest-up-odd", [ga.Resize((21, 27), interpolation="nearest")],
         _tv_steps(lambda y: TF.resize(y, [21, 27], interpolation=IM.NEAREST)), 0),
        ("crop-pad", [ga.CenterCrop(8), ga.Pad(2, fill=7)],
                     _tv_steps(lambda y: TF.center_crop(y, [8]), lambda y: TF.pad(y, [2], fill=7)), 0),
        ("crop-pad-edge", [ga.CenterCrop(8), ga.Pad(2, padding_mode="edge")],
                     _tv_steps(lambda y: TF.center_crop(y, [8]), lambda y: TF.pad(y, [2], padding_mode="edge")), 0),
        ("crop-centercrop-larger", [ga.CenterCrop(8), ga.CenterCrop(12)],
                     _tv_steps(lambda y: TF.center_crop(y, [8]), lambda y: TF.center_crop(y, [12])), 0),
        ("resize-pad", [ga.Resize(8), ga.Pad(2, fill=7)],
                     _tv_steps(lambda y: TF.resize(y, [8]), lambda y: TF.pad(y, [2], fill=7)), 1),
        ("resize-nearest-pad", [ga.Resize(8, interpolation="nearest"), ga.Pad(2, fill=7)],
                     _tv_steps(lambda y: TF.resize(y, [8], interpolation=IM.NEAREST), lambda y: TF.pad(y, [2], fill=7)), 0),
        ("resize-bicubic-centercrop", [ga.Resize(8, interpolation="bicubic"), ga.CenterCrop(12)],
                     _tv_steps(lambda y: TF.resize(y, [8], interpolation=IM.BICUBIC), lambda y: TF.center_crop(y, [12])), 1),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_folded_geometry_matches_torchvision_step_by_step(name, transforms, reference, tol):
    x = _uint8(2, 3, 16, 16, seed=3)
    out = ga.Pipeline(transforms, seed=0)(x)
    ref = reference(x)
    assert out.shape == ref.shape
    diff = int((out.int() - ref.int()).abs().max())
    assert diff <= tol, f"{name}: uint8 outputs differ by up to {diff} levels"
    # float input too (finite, within 1/255 where uint8 is within 1 level)
    xf = x.float() / 255
    outf = ga.Pipeline(transforms, seed=0)(xf)
    assert bool(outf.isfinite().all())
    reff = reference(xf)
    if tol == 0:
        assert torch.equal(outf, reff)
    else:
        assert float((outf - reff).abs().max()) <= tol / 255


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_skipped_geometric_transform_does_not_change_the_others(interpolation):
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 3, 5, 5, generator=g), size=(40, 40), mode="bilinear")
    x = (smooth * 255).round().to(torch.uint8)
    with_skipped = ga.Pipeline([ga.RandomResizedCrop(16), ga.RandomApply([ga.RandomRotation(10, interpolation=interpolation)], p=0.0)], seed=0)
    alone = ga.Pipeline([ga.RandomResizedCrop(16)], seed=0)
    assert torch.equal(with_skipped.sample(x).transforms[0].top, alone.sample(x).transforms[0].top)
    diff = int((with_skipped(x).int() - alone(x).int()).abs().max())
    assert diff <= 1, f"a skipped rotation changed the crop's output by up to {diff} levels"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_todtype_normalize_fold_matches_manual(dtype):
    x = _uint8(4, 3, 10, 10)
    out = ga.Pipeline([ga.ToDtype(dtype, scale=True), ga.Normalize(MEAN, STD)])(x)
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    ref = (x.to(torch.float64) / 255 - mean) / std
    assert out.dtype == dtype
    if dtype == torch.float32:
        torch.testing.assert_close(out.to(torch.float64), ref, atol=1e-6, rtol=0)
    else:  # one float16 rounding of the result
        torch.testing.assert_close(out, ref.to(dtype), atol=2e-3, rtol=0)


def test_normalize_on_float_input_and_single_value_mean():
    x = _float(2, 3, 5, 5)
    out = ga.Pipeline([ga.Normalize([0.5], [0.25])])(x)
    torch.testing.assert_close(out.double(), (x.double() - 0.5) / 0.25, atol=1e-6, rtol=0)


def test_todtype_float_to_uint8_as_torchvision():
    tv = pytest.importorskip("torchvision.transforms.v2.functional")
    x = torch.tensor([0.0, 0.001, 0.5, 0.999, 1.0, 0.25]).view(1, 1, 2, 3)
    out = ga.Pipeline([ga.ToDtype(torch.uint8, scale=True)])(x)
    assert torch.equal(out, tv.to_dtype(x, torch.uint8, scale=True))


# ---------------------------------------------------------------- backend selection


def test_backend_names():
    assert ga.Pipeline([], backend="torch").backend == "torch"
    assert ga.Pipeline([], backend="auto").backend in ga.available_backends()
    assert ga.available_backends()["torch"] == "available"


# ---------------------------------------------------------------- CUDA


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_same_params_cpu_and_cuda(dtype):
    x = _images(dtype, 6, 3, 32, 32)
    ids = torch.arange(6) + 50
    pipe = _rich_pipeline(seed=5, size=24)
    out_cpu, p_cpu = pipe(x, sample_ids=ids, return_params=True)
    out_gpu, p_gpu = pipe(x.cuda(), sample_ids=ids.cuda(), return_params=True)
    assert out_gpu.device.type == "cuda" and out_gpu.dtype == dtype
    assert torch.equal(p_gpu.keys.cpu(), p_cpu.keys)
    for a, b in zip(p_cpu.transforms, p_gpu.transforms):
        for name, value in a.tensors().items():
            other = b.tensors()[name].cpu()
            if value.dtype.is_floating_point:
                torch.testing.assert_close(other, value, atol=1e-9, rtol=0)
            else:
                assert torch.equal(other, value), name
    diff = (out_gpu.cpu().float() - out_cpu.float()).abs()
    if dtype == torch.uint8:
        assert float((diff > 1).float().mean()) < 0.01
    else:
        assert float((diff > 1e-3).float().mean()) < 0.01
    # replay on the GPU of params drawn on the CPU
    torch.testing.assert_close(pipe.replay(x.cuda(), p_cpu).cpu().float(), out_gpu.cpu().float(), atol=0, rtol=0)


@pytest.mark.cuda
@CUDA
def test_cuda_issue_pipeline_and_input_untouched():
    x = _uint8(8, 3, 64, 64).cuda()
    keep = x.clone()
    out = _issue_pipeline(size=32)(x, sample_ids=torch.arange(8, device="cuda"))
    assert out.device.type == "cuda" and out.dtype == torch.float16 and out.shape == (8, 3, 32, 32)
    assert torch.equal(x, keep)


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_unclipped_noise_on_uint8_saturates(backend):
    """A uint8 image holds nothing outside [0, 255]: GaussianNoise(clip=False) on one saturates, in one
    fused pass or split over two (a flip after the noise), and whatever dtype comes later."""
    if ga.available_backends()[backend] != "available":
        pytest.skip(f"backend {backend}: {ga.available_backends()[backend]}")
    x = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    noise = ga.GaussianNoise(sigma=0.5, clip=False)
    out = ga.Pipeline([noise], seed=1, backend=backend)(x)
    assert (out == 0).sum() > (x == 0).sum() and (out == 255).sum() > (x == 255).sum()  # the noise left the range
    assert torch.equal(out, ga.Pipeline([ga.GaussianNoise(sigma=0.5, clip=True)], seed=1, backend=backend)(x))
    for tail in ([ga.ToDtype(torch.float32)], [ga.RandomHorizontalFlip(p=0.0), ga.ToDtype(torch.float32)]):
        values = ga.Pipeline([noise, *tail], seed=1, backend=backend)(x)  # the same noise
        assert torch.equal(values, out.to(torch.float32))


def test_editing_returned_params_changes_no_later_call():
    """The params a call returns are the caller's: editing them in place (say, turning a sample's
    flip off before a replay) leaves the pipeline's next calls as they were."""
    pipe = ga.Pipeline([ga.RandomResizedCrop(12), ga.RandomHorizontalFlip(p=1.0), ga.RandomGrayscale(p=0.0)], seed=3)
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    first, params = pipe(x, sample_ids=torch.arange(4), return_params=True)
    for p in params.transforms:
        p.applied[0] = not bool(p.applied[0])
    assert params.transforms[1].applied.tolist() == [False, True, True, True]  # that sample's flip alone
    assert torch.equal(pipe(x, sample_ids=torch.arange(4)), first)
    crop = ga.Pipeline([ga.RandomCrop(12)], seed=3)
    first, params = crop(x, sample_ids=torch.arange(4), return_params=True)
    params.transforms[0].height[0] = 5
    assert params.transforms[0].height.tolist() == [5, 12, 12, 12]
    assert torch.equal(crop(x, sample_ids=torch.arange(4)), first)
    # each field its own: a rotation's translate and shear (both zero) were once one tensor
    rotate = ga.Pipeline([ga.RandomRotation(30)], seed=3)
    first, params = rotate(x.float(), return_params=True)
    params.transforms[0].translate[0, 0] = 3.0
    assert params.transforms[0].shear.abs().sum() == 0
    moved = rotate.replay(x.float(), params)
    assert torch.equal(moved[1:], first[1:]) and not torch.equal(moved[0], first[0])


def test_a_pipeline_pickled_without_draw_counts_still_runs():
    """Pipelines pickled before the draw counts existed load and run (with nothing hashed ahead)."""
    pipe = ga.Pipeline([ga.RandomResizedCrop(12), ga.ColorJitter(0.4, 0.4)], seed=3)
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    expected = pipe(x, sample_ids=torch.arange(2))
    state = dict(pipe.__dict__)
    del state["_draw_counts"]
    old = ga.Pipeline.__new__(ga.Pipeline)
    old.__setstate__(state)
    assert torch.equal(old(x, sample_ids=torch.arange(2)), expected)


def test_every_random_transform_takes_p():
    names = [n for n in ga.__all__ if n.startswith("Random") and n not in ("RandomApply", "RandomChoice", "RandomOrder")]
    for name in [*names, "ColorJitter", "GaussianBlur", "GaussianNoise"]:
        assert "p" in inspect.signature(getattr(ga, name)).parameters, name


# transforms whose p was added to torchvision's arguments, and what a sample that p skips gets
# (None: the input as it is)
SKIPPED = {
    "RandomResizedCrop": (lambda p: ga.RandomResizedCrop(24, p=p), lambda: ga.Resize((24, 24))),
    "RandomCrop": (lambda p: ga.RandomCrop(32, padding=(4, 2, 6, 3), p=p), lambda: ga.CenterCrop(32)),
    "RandomRotation": (lambda p: ga.RandomRotation(30, p=p), None),
    "RandomAffine": (lambda p: ga.RandomAffine(20, (0.1, 0.1), (0.8, 1.2), 5, p=p), None),
    # no rotation or shear: every map is axis-aligned, yet an applied sample shows the fill as F.affine does
    "RandomAffine-no-rotation": (lambda p: ga.RandomAffine(0, translate=(0.2, 0.2), scale=(0.6, 1.4), p=p), None),
    "ColorJitter": (lambda p: ga.ColorJitter(0.4, 0.4, 0.4, 0.1, p=p), None),
}


@pytest.mark.parametrize("backend", ["torch", "ext"])
@pytest.mark.parametrize("name", list(SKIPPED))
def test_p_picks_samples(name, backend):
    """With p = 0.5, the samples drawn as applied get what p = 1 gives them (the same draws), and the
    others what p = 0 gives, which is the deterministic counterpart (CenterCrop of the padded image for
    RandomCrop, Resize for RandomResizedCrop) or the input itself."""
    if backend == "ext" and ga.available_backends()["ext"] != "available":
        pytest.skip("no extension")
    make, skipped = SKIPPED[name]
    x, ids = torch.randint(0, 256, (16, 3, 40, 44), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)), torch.arange(16)
    half, params = ga.Pipeline([make(0.5)], seed=3, backend=backend)(x, sample_ids=ids, return_params=True)
    one = ga.Pipeline([make(1.0)], seed=3, backend=backend)(x, sample_ids=ids)
    none = ga.Pipeline([make(0.0)], seed=3, backend=backend)(x, sample_ids=ids)
    applied = params.transforms[0].applied
    assert 0 < int(applied.sum()) < 16
    assert torch.equal(half[applied], one[applied]) and torch.equal(half[~applied], none[~applied])
    if skipped is None:
        assert torch.equal(none, x)
    else:
        padded = TF.pad(x, [4, 2, 6, 3]) if name == "RandomCrop" else x
        assert torch.equal(none, ga.Pipeline([skipped()], backend=backend)(padded))


def test_a_crop_inside_a_container_still_centres_the_samples_it_skips():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pipe = ga.Pipeline([ga.RandomApply([ga.RandomCrop(32, padding=(4, 2, 6, 3), p=0.5)], p=0.6)], seed=1)
    out, params = pipe(x, sample_ids=torch.arange(16), return_params=True)
    container, crop = params.transforms[0].applied, params.transforms[1].applied
    centred = TF.center_crop(TF.pad(x, [4, 2, 6, 3]), [32, 32])
    skipped = container & ~crop
    assert bool(skipped.any()) and bool((~container).any())
    assert torch.equal(out[skipped], centred[skipped]) and torch.equal(out[~container], x[~container])


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_masks_follow_the_images_where_a_rotation_is_skipped(backend):
    """Samples that skip the rotation take the separable path (torchvision's resize); their masks too."""
    if backend == "ext" and ga.available_backends()["ext"] != "available":
        pytest.skip("no extension")
    x = torch.randint(0, 256, (8, 1, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pipe = ga.Pipeline([ga.Resize(17, interpolation="nearest", antialias=False), ga.RandomRotation(30, p=0.5)],
                       seed=3, backend=backend)
    batch = pipe(x, masks=x[:, 0].clone(), sample_ids=torch.arange(8))
    skipped = ~batch.params.transforms[1].applied
    assert bool(skipped.any()) and bool((~skipped).any())
    resized = TF.resize(x, [17, 17], interpolation=IM.NEAREST)
    assert torch.equal(batch.images[skipped], resized[skipped])
    assert torch.equal(batch.masks[skipped], resized[skipped, 0])
    assert torch.equal(batch.masks, batch.images[:, 0])  # nearest everywhere: the same pixels
