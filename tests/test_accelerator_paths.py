"""The accelerator paths of both backends, run on the CPU, compute what the host paths compute.

On an accelerator the backends never read values back: a gated transform is computed for every
sample and blended with ``where``, ColorJitter runs its four slots over the whole batch, a separable
warp sums every sample's taps at once, a warp whose rotation some samples skip runs both resampling paths over
the whole batch and picks per sample, and the batch is not cut into chunks. Without a GPU those paths would run nowhere in CI, so here
``gpuaug._device.on_host`` says False for the CPU and the results are compared with the host paths.
The CUDA tests run them on a GPU as well.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from _strategies import SETTINGS, _describe, _input, _n, _straddles_allowed, _tolerance, cases, poisoned_memory
from hypothesis import given, settings
from torch.utils._python_dispatch import TorchDispatchMode

import gpuaug as ga
from gpuaug import _device
from gpuaug._ext import extension_error
from gpuaug.functional import resample

BACKENDS = ["torch", pytest.param("ext", marks=pytest.mark.skipif(extension_error() is not None, reason="no extension"))]


@contextlib.contextmanager
def accelerator_paths():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_device, "on_host", lambda device: False)
        yield


def assert_paths_agree(transforms: list, x: torch.Tensor, backend: str, seed: int, layout=torch.contiguous_format) -> None:
    pipe = ga.Pipeline(transforms, seed=seed, backend=backend, memory_format=layout)
    ids = torch.arange(x.shape[0])  # both calls draw the same parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deterministic mode's warn_only notes
        expected = pipe(x, sample_ids=ids)
        with accelerator_paths(), poisoned_memory():
            actual = pipe(x, sample_ids=ids)
    note = f"{backend}: {_describe(transforms)}"
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, note
    assert actual.is_contiguous(memory_format=layout), note
    assert torch.equal(actual.isnan(), expected.isnan()), note
    diff = (actual.to(torch.float64) - expected.to(torch.float64)).abs().nan_to_num()
    bad = diff > _tolerance(expected, transforms, x)
    assert int(bad.sum()) <= _straddles_allowed(transforms, x, bad.numel()), (
        f"{int(bad.sum())} of {bad.numel()} values differ (max {float(diff.max()):.4g}): {note}"
    )


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=_n(60), **SETTINGS)
@given(case=cases())
def test_random_pipelines(backend, case):
    (b, c, h, w, dtype), transforms, spec, seed, layout = case
    assert_paths_agree(transforms, _input((b, c, h, w), dtype, seed % 1000), backend, seed, layout)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("transforms", [
    [ga.RandomResizedCrop(24), ga.RandomHorizontalFlip(), ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
     ga.RandomGrayscale(0.2), ga.ToDtype(torch.float16, scale=True), ga.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))],
    [ga.RandomRotation(30, p=0.5), ga.RandomInvert(0.5), ga.RandomSolarize(100, 0.5), ga.RandomPosterize(3, 0.5),
     ga.RandomEqualize(0.5), ga.RandomAutocontrast(0.5), ga.RandomAdjustSharpness(2.0, 0.5)],
    [ga.RandomAffine(15, (0.1, 0.1), (0.8, 1.2), 5, p=0.5), ga.GaussianBlur(5, (0.1, 2.0)), ga.RandomErasing(p=0.5),
     ga.ToDtype(torch.float32, scale=True), ga.GaussianNoise(sigma=0.05)],
    # the skipped rotations' samples resample separably (antialiased), the others on the grid (supersampled)
    [ga.RandomResizedCrop(20, scale=(0.2, 0.5)), ga.RandomRotation(20, interpolation="bilinear", p=0.5),
     ga.ToDtype(torch.float32, scale=True)],
    [ga.RandomRotation(20, interpolation="bilinear", p=0.5), ga.RandomResizedCrop(20, scale=(0.2, 0.5)),
     ga.ToDtype(torch.float32, scale=True)],  # one fused op call, with a geometry mode per sample
], ids=["imagenet-train", "gated-colour", "affine-blur-erase-noise", "crop-then-gated-rotation", "gated-rotation-then-crop"])
def test_named_pipelines(backend, transforms):
    assert_paths_agree(transforms, _input((40, 3, 36, 44), torch.uint8, 3), backend, seed=2)


@pytest.mark.parametrize("transforms", [
    [ga.RandomResizedCrop(24), ga.RandomHorizontalFlip(), ga.RandomVerticalFlip()],
    [ga.RandomResizedCrop((30, 17), scale=(0.05, 1.0), interpolation="bicubic")],
    [ga.RandomResizedCrop(50, antialias=False)],
    [ga.Resize((20, 60)), ga.RandomHorizontalFlip()],
    [ga.CenterCrop(30), ga.Resize(19), ga.RandomVerticalFlip()],
    [ga.RandomCrop(30, padding=6), ga.Resize(23)],  # some boxes reach into the padding: tap sums there
    [ga.RandomCrop(30, padding=6, fill=255), ga.Resize((23, 9), interpolation="bicubic")],
], ids=["crop-flips", "bicubic", "bilinear-no-antialias", "resize-flip", "crop-resize-flip", "padded-crop-resize",
        "filled-crop-resize"])
def test_uint8_resizes_are_the_same_bits_on_every_path(transforms):
    """On the CPU a uint8 crop-resize calls torch's own resize per sample; its bits are those of the tap
    sums (the host path for any other map) and of the accelerators' batched tap sums."""

    native_resize = resample._native_resize
    x = _input((24, 3, 36, 44), torch.uint8, 5)
    pipe = ga.Pipeline(transforms, seed=4, backend="torch")
    ids = torch.arange(x.shape[0])
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resample, "_native_resize", lambda *args: calls.append(args) or native_resize(*args))
        native = pipe(x, sample_ids=ids)
    assert 0 < len(calls) <= x.shape[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resample, "_native_resizes", lambda *args: False)
        taps = pipe(x, sample_ids=ids)
    with accelerator_paths():
        batched = pipe(x, sample_ids=ids)
    assert torch.equal(native, taps) and torch.equal(native, batched)


@pytest.mark.parametrize("transforms", [
    [ga.RandomResizedCrop(24, scale=(0.05, 1.0)), ga.RandomHorizontalFlip()],
    [ga.Resize((20, 60), interpolation="bicubic"), ga.RandomVerticalFlip()],
    [ga.RandomCrop(30, padding=6, padding_mode="reflect"), ga.Resize(23)],
    [ga.Pad(4, fill=0.5), ga.RandomResizedCrop(19, antialias=False)],
], ids=["crop-flip", "bicubic-flip", "reflect-crop-resize", "filled-crop-no-antialias"])
def test_float_separable_warps_are_the_same_bits_on_both_paths(transforms):
    """The accelerators sum every sample's taps in the host path's order with its products, with no
    float32 matrix product (TF32 would round one; the plan's float64 3x3 maps may multiply): the same
    bits as the host's taps (which, for a plain crop-resize, call torch's own resize instead)."""
    x = _input((12, 3, 36, 44), torch.float32, 6)
    pipe = ga.Pipeline(transforms, seed=3, backend="torch")
    ids = torch.arange(x.shape[0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resample, "_native_resizes", lambda *args: False)
        expected = pipe(x, sample_ids=ids)
    with accelerator_paths(), _OpNames() as ops:
        actual = pipe(x, sample_ids=ids)
    assert torch.equal(actual, expected)
    assert not {(name, dtype) for name, dtype in ops.names if "mm" in name and dtype != torch.float64}


class _OpNames(TorchDispatchMode):
    """The (name, first argument's dtype) of the ops run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[tuple[str, torch.dtype | None]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add((func.__name__, args[0].dtype if args and isinstance(args[0], torch.Tensor) else None))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8], ids=["float32", "uint8"])
def test_color_jitter_is_the_same_bits_on_both_paths(dtype, layout):
    """The CPU's per-sample loop passes each sample's factors as numbers, the batched kernels as
    tensors: both round alike, also in the last values of a sample (33 x 29 pixels end off any vector
    width), where a scalar broadcast once rounded differently."""
    x = _input((6, 3, 33, 29), dtype, 1).contiguous(memory_format=layout)
    pipe = ga.Pipeline([ga.ColorJitter(0.5, 0.9, 0.7, 0.3)], seed=11, backend="torch")
    ids = torch.arange(x.shape[0])
    expected = pipe(x, sample_ids=ids)
    with accelerator_paths():
        actual = pipe(x, sample_ids=ids)
    assert torch.equal(actual, expected)
