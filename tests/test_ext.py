"""The fused extension (backend "ext") against the plain-PyTorch backend, the reference.

On the CPU in CI: random pipelines, shapes, dtypes and layouts (hypothesis) give the same output
within 1 uint8 level (float output: 1e-3 relative, or one uint8 level in output units where the
pipeline went through uint8 values); every output element is written (memory poisoned first); the
op passes torch.library.opcheck; the .cu source compiles with nvcc; the CUDA kernels' per-pixel code,
compiled for the CPU (gpuaug::fused_augment_pixelwise), matches too. CUDA tests (extension on CUDA
against the CPU reference, CUDA-graph capture, torch.compile) run where a GPU is present.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from _strategies import SETTINGS, _describe, _input, _n, _straddles_allowed, _tolerance, cases, poisoned_memory
from hypothesis import example, given, settings

import gpuaug as ga
from gpuaug import _ext

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    """The extension must build wherever a C++ compiler exists (CI included)."""
    error = _ext.extension_error()
    if error is None:
        return
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip(f"no C++ compiler here: {error}")
    pytest.fail(f"the extension does not build: {error}")


def imagenet_train(size: int = 24, dtype: torch.dtype = torch.float32) -> list:
    return [
        ga.RandomResizedCrop(size),
        ga.RandomHorizontalFlip(),
        ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        ga.RandomGrayscale(0.2),
        ga.ToDtype(dtype, scale=True),
        ga.Normalize(*IMAGENET),
    ]


def assert_backends_agree(transforms: list, x: torch.Tensor, seed: int = 0, layout=torch.contiguous_format) -> None:
    note = _describe(transforms)
    keep = x.clone()
    expected = ga.Pipeline(transforms, seed=seed, backend="torch", memory_format=layout)(x)
    with poisoned_memory():
        actual = ga.Pipeline(transforms, seed=seed, backend="ext", memory_format=layout)(x)
    assert torch.equal(x, keep), f"input modified: {note}"
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, note
    assert actual.is_contiguous(memory_format=layout), note
    diff = (actual.to(torch.float64) - expected.to(torch.float64)).abs()
    both_nan = actual.to(torch.float64).isnan() & expected.to(torch.float64).isnan()
    bad = (diff > _tolerance(expected, transforms, x)) & ~both_nan | (actual.to(torch.float64).isnan() & ~both_nan)
    assert int(bad.sum()) <= _straddles_allowed(transforms, x, bad.numel()), (
        f"{int(bad.sum())} of {bad.numel()} values differ (max {float(diff[~both_nan].max()):.4g}): {note}"
    )


@settings(max_examples=_n(150), **SETTINGS)
@given(cases())
@example(((1, 3, 23, 3, torch.bfloat16),  # a value resampled to 0.49999997 by one backend, to 0.5 by the other
          [ga.RandomResizedCrop((23, 34), (1.0, 1.0), (1.0, 1.0), antialias=False, p=0.0), ga.RandomPosterize(1, 0.5)],
          None, 0, torch.contiguous_format))
@example(((1, 1, 3, 1, torch.uint8),  # a resize reading an edge pad of a crop: the crop's pixel, not the image's
          [ga.CenterCrop((1, 1)), ga.RandomCrop((2, 1), pad_if_needed=True, padding_mode="edge", p=0.0),
           ga.Resize(2, antialias=False)],
          None, 0, torch.contiguous_format))
@example(((1, 1, 1, 1, torch.uint8),  # a crop of half an enlarged pixel: its source window was empty (all fill)
          [ga.RandomResizedCrop((1, 2), (1.0, 1.0), (1.0, 1.0), interpolation="nearest", antialias=False, p=0.0),
           ga.RandomResizedCrop((1, 1), (1.0, 1.0), (1.0, 1.0), interpolation="nearest", antialias=False, p=0.3)],
          None, 1, torch.contiguous_format))
def test_random_pipelines_match_the_torch_backend(case):
    (b, c, h, w, dtype), transforms, spec, seed, layout = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deterministic mode's warn_only notes
        assert_backends_agree(transforms, _input((b, c, h, w), dtype, seed % 1000), seed, layout)


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_imagenet_train_matches(out_dtype, layout):
    x = _input((8, 3, 40, 52), torch.uint8, 1)
    assert_backends_agree(imagenet_train(24, out_dtype), x, seed=3, layout=layout)


NAMED_PIPELINES = [
    [ga.RandomAffine(15, (0.1, 0.1), (0.9, 1.1), 5), ga.RandomHorizontalFlip(), ga.ColorJitter(0.3, 0.3),
     ga.ToDtype(torch.float32, scale=True), ga.GaussianNoise(sigma=0.05), ga.Normalize(*IMAGENET)],
    [ga.RandomRotation(30, fill=(10, 200, 30)), ga.RandomErasing(p=1.0, value="random"), ga.RandomPosterize(3)],
    [ga.RandomCrop(36, padding=6, padding_mode="reflect"), ga.RandomPerspective(p=1.0), ga.RandomSolarize(0.4)],
    [ga.Pad(3, padding_mode="symmetric"), ga.RandomAffine(20, interpolation="nearest", fill=7), ga.Grayscale(1)],
    [ga.RandomResizedCrop(20), ga.GaussianBlur(5), ga.ColorJitter(0.4, 0.4), ga.RandomAutocontrast(p=1.0),
     ga.ToDtype(torch.float16, scale=True)],  # blur and autocontrast run on the torch backend between fused passes
    [ga.RandomOrder([ga.RandomInvert(), ga.ColorJitter(0.5, 0.5, 0.5, 0.2)]), ga.RandomChoice([ga.RandomGrayscale(1.0), ga.RandomHorizontalFlip(1.0)])],
    [ga.RandomCrop((30, 40)), ga.RandomHorizontalFlip(), ga.Pad(2, fill=9), ga.RandomCrop(36, padding=3, padding_mode="edge")],
    # a fill outside the image's range reaches the hue shift unclamped in a uint8 pipeline: both backends clamp there
    [ga.RandomRotation(40, fill=300.0), ga.ColorJitter(hue=0.2), ga.RandomRotation(40, fill=-50.0), ga.ColorJitter(hue=0.2),
     ga.ToDtype(torch.float32, scale=True)],
    # a uint8 pad's fill outside 0..255 is carried as a float too (the torch backend's uint8 gather once wrapped it)
    [ga.Pad(3, fill=(300, -20, 128.7)), ga.ToDtype(torch.float32, scale=True)],
    [ga.RandomCrop(48, pad_if_needed=True, fill=-5), ga.RandomInvert(p=1.0)],
]
NAMED_IDS = ["affine-heavy", "rotation-fill-erase", "reflect-perspective", "symmetric-nearest-gray1", "mixed-backends",
             "containers", "pad-after-crop", "fill-out-of-range-hue", "pad-fill-out-of-range",
             "crop-fill-out-of-range"]


@pytest.mark.parametrize("transforms", NAMED_PIPELINES, ids=NAMED_IDS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_named_pipelines_match(transforms, dtype):
    assert_backends_agree(transforms, _input((6, 3, 40, 44), dtype, 2), seed=5)


# ----------------------------------------------- the CUDA kernels' per-pixel code, on the CPU


@contextlib.contextmanager
def cuda_pixel_code():
    """The ext backend through gpuaug::fused_augment_pixelwise: the code the CUDA kernels run (the tiles
    of csrc/tile.h, warp_pixel, run_program, finish_pixel, contrast_term in csrc/fused_view.h) compiled
    for the CPU, so that CI checks it without a GPU (the CPU pass itself works row by row, with code of
    its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.ops.gpuaug, "fused_augment", torch.ops.gpuaug.fused_augment_pixelwise)
        yield


@settings(max_examples=_n(100), **SETTINGS)
@given(cases())
@example(((3, 3, 30, 34, torch.uint8), [ga.RandomResizedCrop(20), ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], None, 1,
          torch.channels_last))  # uint8 rows rounded between the passes, a contrast slot
def test_gpu_pixel_code_equals_the_cpu_pass(case):
    """Bit for bit: both add the same terms in the same order, but for a contrast slot's luma sum (exact
    for uint8 values; for float values it has not moved a float32 mean in 3,000 random pipelines)."""
    (b, c, h, w, dtype), transforms, spec, seed, layout = case
    x = _input((b, c, h, w), dtype, seed % 1000)
    pipe = ga.Pipeline(transforms, seed=seed, backend="ext", memory_format=layout)
    ids = torch.arange(b)  # both calls draw the same parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deterministic mode's warn_only notes
        expected = pipe(x, sample_ids=ids)
        with cuda_pixel_code(), poisoned_memory():
            actual = pipe(x, sample_ids=ids)
    assert torch.equal(actual.isnan(), expected.isnan()), _describe(transforms)
    assert torch.equal(actual.nan_to_num(), expected.nan_to_num()), _describe(transforms)


@pytest.mark.parametrize("transforms", [imagenet_train(24, torch.float16), *NAMED_PIPELINES],
                         ids=["imagenet-train-fp16", *NAMED_IDS])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_gpu_pixel_code_matches_on_named_pipelines(transforms, dtype):
    with cuda_pixel_code():
        assert_backends_agree(transforms, _input((6, 3, 40, 44), dtype, 2), seed=5, layout=torch.channels_last)


def test_gpu_pixel_code_on_a_ragged_batch():
    """Each sample read within its own size, in one op call (checked), through the pixel code as the CPU pass."""
    g = torch.Generator().manual_seed(3)
    sizes = [(37, 52), (64, 41), (23, 23)]
    batch = ga.RaggedBatch.pack([torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in sizes])
    transforms = [ga.RandomResizedCrop(28), ga.RandomHorizontalFlip(), ga.ColorJitter(0.4, 0.4, 0.4, 0.1),
                  ga.ToDtype(torch.float32, scale=True)]
    pipe, ids = ga.Pipeline(transforms, seed=4, backend="ext"), torch.arange(3)
    expected = pipe(batch, sample_ids=ids)
    calls = []
    with cuda_pixel_code(), pytest.MonkeyPatch.context() as patch:
        op = torch.ops.gpuaug.fused_augment
        patch.setattr(torch.ops.gpuaug, "fused_augment", lambda *args: calls.append(args) or op(*args))
        actual = pipe(batch, sample_ids=ids)
    (args,) = calls
    assert args[1].tolist() == [list(s) for s in sizes]  # src_size: each image's own
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("warp", [ga.RandomResizedCrop(40, scale=(0.3, 1.0)), ga.RandomAffine(10, scale=(0.8, 1.2))],
                         ids=["separable", "matrix"])
@pytest.mark.parametrize("batch", [1, 7])  # 1: one sample's rows split over the threads; 7: whole samples
def test_cpu_output_does_not_depend_on_the_thread_count(warp, batch):
    """The same bits on 1 and 2 threads, through a warp and two contrast slots (each one more pass that
    sums the rows): catches races and rows lost or done twice (with uint8 input the contrast sums are
    exact in any order, so a change of summation order would not show)."""
    transforms = [warp, ga.ColorJitter(0.4, 0.4, 0.4, 0.1), ga.ColorJitter(contrast=0.5),
                  ga.ToDtype(torch.float32, scale=True), ga.Normalize(*IMAGENET)]
    x = _input((batch, 3, 48, 56), torch.uint8, 6)
    threads = torch.get_num_threads()
    outputs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outputs.append(ga.Pipeline(transforms, seed=7, backend="ext")(x))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outputs[0], outputs[1])


def test_replay_and_sample_ids_on_ext():
    pipe = ga.Pipeline(imagenet_train(), seed=1, backend="ext")
    x = _input((6, 3, 32, 32), torch.uint8, 4)
    ids = torch.tensor([10, 11, 12, 13, 14, 15])
    out, params = pipe(x, sample_ids=ids, return_params=True)
    assert torch.equal(pipe.replay(x, params), out)
    order = torch.tensor([5, 3, 1, 0, 2, 4])
    assert torch.equal(pipe(x[order], sample_ids=ids[order]), out[order])
    assert torch.equal(pipe(x[:2], sample_ids=ids[:2]), out[:2])


def test_empty_batch_and_chw_input():
    pipe = ga.Pipeline(imagenet_train(), seed=1, backend="ext")
    assert pipe(torch.zeros(0, 3, 32, 32, dtype=torch.uint8)).shape == (0, 3, 24, 24)
    x = _input((1, 3, 32, 32), torch.uint8, 4)
    assert torch.equal(pipe(x[0], sample_ids=[7]), pipe(x, sample_ids=[7])[0])


def test_backend_selection(monkeypatch):
    assert ga.Pipeline([ga.RandomHorizontalFlip()], backend="ext").backend == "ext"
    monkeypatch.setenv("GPUAUG_BACKEND", "ext")
    assert ga.Pipeline([ga.RandomHorizontalFlip()]).backend == "ext"
    monkeypatch.setenv("GPUAUG_BACKEND", "torch")
    assert ga.Pipeline([ga.RandomHorizontalFlip()]).backend == "torch"
    assert ga.Pipeline([ga.RandomHorizontalFlip()], backend="auto").backend == "ext"


def test_auto_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setenv("GPUAUG_NO_EXT", "1")
    _ext.extension_error.cache_clear()
    _ext._warn_fallback.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="GPUAUG_NO_EXT") as record:
            assert ga.Pipeline([ga.RandomHorizontalFlip()], backend="auto").backend == "torch"
            assert ga.Pipeline([ga.RandomHorizontalFlip()], backend="auto").backend == "torch"
        assert len(record) == 1
        with pytest.raises(ValueError, match="'ext' is not available"):
            ga.Pipeline([ga.RandomHorizontalFlip()], backend="ext")
    finally:
        monkeypatch.delenv("GPUAUG_NO_EXT")
        _ext.extension_error.cache_clear()
        _ext._warn_fallback.cache_clear()
    assert _ext.extension_error() is None


@pytest.mark.parametrize("value", ["0", "false", "No", ""])
def test_a_false_gpuaug_no_ext_leaves_the_extension_on(monkeypatch, value):
    monkeypatch.setenv("GPUAUG_NO_EXT", value)
    _ext.extension_error.cache_clear()
    try:
        assert _ext.extension_error() is None
    finally:
        _ext.extension_error.cache_clear()


def _captured_arguments(monkeypatch, transforms: list, x: torch.Tensor) -> list[tuple]:
    """The arguments of every fused_augment call that a pipeline makes."""
    calls = []
    op = torch.ops.gpuaug.fused_augment

    def spy(*args):
        calls.append(args)
        return op(*args)

    with monkeypatch.context() as patch:
        patch.setattr(torch.ops.gpuaug, "fused_augment", spy)
        ga.Pipeline(transforms, seed=0, backend="ext")(x)
    return calls


@pytest.mark.parametrize("op", ["fused_augment", "fused_augment_pixelwise"])
@pytest.mark.parametrize("transforms", [imagenet_train(), [ga.RandomRotation(20), ga.GaussianNoise()]],
                         ids=["imagenet-train", "rotation-noise"])
def test_opcheck(monkeypatch, transforms, op):
    x = _input((3, 3, 30, 34), torch.float32 if isinstance(transforms[-1], ga.GaussianNoise) else torch.uint8, 0)
    (args,) = _captured_arguments(monkeypatch, transforms, x)
    torch.library.opcheck(getattr(torch.ops.gpuaug, op).default, args)


def _tile_row_spans(args: tuple) -> list[int]:
    """How many source rows each tile of a call's separable kernels reads (csrc/tile.h: tiles of 16
    output rows; a tile whose rows of nonzero weight span more than 64 resamples pixel by pixel)."""
    taps, weights = args[5], args[6]  # (B, Ho, Ky)
    spans = []
    for b in range(taps.shape[0]):
        for i0 in range(0, taps.shape[1], 16):
            used = taps[b, i0:i0 + 16][weights[b, i0:i0 + 16] != 0]
            spans.append(int(used.max() - used.min()) + 1 if used.numel() else 0)
    return spans


SEPARABLE_CALLS = [
    (imagenet_train(), (4, 3, 37, 53), "fit"),
    # crops of 0.5-100% of 300 px to 12: some tiles read 64 rows or fewer, the others more (pixel by pixel)
    ([ga.RandomResizedCrop(12, scale=(0.005, 1.0)), ga.ColorJitter(0.4, 0.4), ga.ToDtype(torch.float32, scale=True)],
     (6, 3, 300, 300), "both"),
    # mostly padding: constant fill, and tiles that read no row at all
    ([ga.RandomCrop((47, 41), padding=20, fill=1), ga.ColorJitter(contrast=0.5), ga.ToDtype(torch.float32, scale=True)],
     (2, 3, 12, 8), "empty"),
]
SEPARABLE_IDS = ["imagenet-train", "tiles-that-do-not-fit", "fill"]


@pytest.mark.parametrize("transforms,shape,spans", SEPARABLE_CALLS, ids=SEPARABLE_IDS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_all_separable_kernels_compute_what_the_general_ones_do(monkeypatch, transforms, shape, spans, dtype):
    """A call whose samples are all resampled through separable taps runs the tiled kernels (csrc/tile.h:
    source rows filtered once into shared memory per tile, or pixel by pixel where they do not fit):
    the same bits as the general per-pixel code on the same arguments, contrast sums included."""
    (args,) = _captured_arguments(monkeypatch, transforms, _input(shape, dtype, 0))
    assert args[-1] is True  # crops, resizes and flips: every sample separable
    rows = _tile_row_spans(args)
    assert {"fit": max(rows) <= 64, "both": min(rows) <= 64 < max(rows), "empty": min(rows) == 0}[spans], rows
    general = torch.ops.gpuaug.fused_augment_pixelwise(*args[:-1], False)
    assert torch.equal(torch.ops.gpuaug.fused_augment_pixelwise(*args), general)


def test_a_call_with_a_sample_that_is_not_separable_runs_the_general_kernels(monkeypatch):
    (args,) = _captured_arguments(monkeypatch, [ga.RandomRotation(20, p=0.5), ga.ToDtype(torch.float32)],
                                  _input((4, 3, 37, 53), torch.uint8, 0))
    assert args[-1] is False  # samples that skip the rotation are separable, the others not


def test_an_infinite_pixel_stays_infinite_through_separable_resampling():
    """Taps of weight 0 add nothing on both ext paths: an upscaled sample's last tap weighs 0, and 0 * inf
    once made NaNs next to an infinite pixel."""
    x = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    x[:, 0, 4, 4] = float("inf")
    transforms = [ga.RandomResizedCrop(24, scale=(0.5, 1.0)), ga.ToDtype(torch.float32)]
    outputs = []
    for op in ("fused_augment", "fused_augment_pixelwise"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.ops.gpuaug, "fused_augment", getattr(torch.ops.gpuaug, op))
            outputs.append(ga.Pipeline(transforms, seed=0, backend="ext")(x))
    assert all(bool(out.isinf().any()) and not bool(out.isnan().any()) for out in outputs)
    assert torch.equal(outputs[0], outputs[1])


def test_op_rejects_bad_arguments(monkeypatch):
    (args,) = _captured_arguments(monkeypatch, imagenet_train(), _input((2, 3, 30, 34), torch.uint8, 0))
    bad = list(args)
    bad[2] = bad[2].to(torch.int64)  # geometry must be int8
    with pytest.raises(RuntimeError, match="geometry must be Char"):
        torch.ops.gpuaug.fused_augment(*bad)
    bad = list(args)
    bad[0] = bad[0].to(torch.int16)
    with pytest.raises(RuntimeError, match="images must be uint8 or float32"):
        torch.ops.gpuaug.fused_augment(*bad)


@pytest.mark.parametrize("field,value,message", [
    (1, (31, 34), "src_size must hold sizes within"),  # a row past the images' 30
    (1, (30, 0), "src_size must hold sizes within"),
    (3, 34, "taps_x must be column indices"),
    (5, -1, "taps_y must be row indices"),
    (2, 3, "geometry must hold modes"),
])
def test_op_rejects_indices_outside_the_images(monkeypatch, field, value, message):
    """Sizes, taps and modes that would read outside the batch raise instead (on the CPU, where they are read)."""
    (args,) = _captured_arguments(monkeypatch, imagenet_train(), _input((2, 3, 30, 34), torch.uint8, 0))
    bad = list(args)
    bad[field] = bad[field].clone()
    bad[field][-1] = torch.tensor(value)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.gpuaug.fused_augment(*bad)
    torch.ops.gpuaug.fused_augment(*args)  # the arguments as captured pass


def test_op_rejects_an_output_larger_than_an_unresampled_input(monkeypatch):
    (args,) = _captured_arguments(monkeypatch, [ga.ColorJitter(0.4)], _input((2, 3, 8, 8), torch.uint8, 0))
    assert not args[2].any()  # every sample kIdentity: read where it is written
    bad = list(args)
    bad[14] = 9  # output height
    bad[5], bad[6] = torch.zeros(2, 9, 0, dtype=torch.int32), torch.zeros(2, 9, 0)  # taps_y, weights_y to match
    with pytest.raises(RuntimeError, match="not resampled"):
        torch.ops.gpuaug.fused_augment(*bad)


def test_op_rejects_arguments_that_disagree(monkeypatch):
    """Taps past a sample's own size (read past the CPU pass's row buffer), output sizes past int, flags
    that the CUDA kernels trust (contrast_passes, all_separable) and tensors on another device raise."""
    sizes = [(30, 34), (20, 24)]
    ragged = ga.RaggedBatch.pack([_input((1, 3, h, w), torch.uint8, i)[0] for i, (h, w) in enumerate(sizes)])
    (args,) = _captured_arguments(monkeypatch, [ga.RandomResizedCrop(16), ga.ColorJitter(0.4, 0.4)], ragged)
    assert args[1].tolist() == [list(s) for s in sizes]
    taps_x, taps_y = args[3].clone(), args[5].clone()
    taps_x[1, 0, 0], taps_y[1, 0, 0] = 30, 22  # inside the padded images, past sample 1's 24 x 20
    for field, taps, message in ((3, taps_x, "taps_x must be column indices within each sample's src_size"),
                                 (5, taps_y, "taps_y must be row indices within each sample's src_size")):
        bad = list(args)
        bad[field] = taps
        with pytest.raises(RuntimeError, match=message):
            torch.ops.gpuaug.fused_augment(*bad)
    assert args[13] == 1  # one contrast slot
    bad = list(args)
    bad[13] = 0
    with pytest.raises(RuntimeError, match="contrast_passes must be at least"):
        torch.ops.gpuaug.fused_augment(*bad)
    bad = list(args)
    bad[2] = torch.full_like(args[2], 2)  # every sample through its matrix, yet all_separable
    with pytest.raises(RuntimeError, match="all_separable"):
        torch.ops.gpuaug.fused_augment(*bad)
    bad = list(args)
    bad[14] = 2**31  # output height: the kernels index rows with int
    bad[5], bad[6] = torch.zeros(2, 1, 0, dtype=torch.int32).expand(2, 2**31, 0), torch.zeros(2, 1, 0).expand(2, 2**31, 0)
    with pytest.raises(RuntimeError, match="below 2\\*\\*31"):
        torch.ops.gpuaug.fused_augment(*bad)
    bad = list(args)
    bad[9] = args[9].to("meta")  # the program: the call would go to the fake kernel and return garbage
    with pytest.raises(RuntimeError, match="program is on meta"):
        torch.ops.gpuaug.fused_augment(*bad)
    torch.ops.gpuaug.fused_augment(*args)  # the arguments as captured pass


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_an_infinite_pixel_stays_infinite_through_grid_sampling(interpolation):
    """Taps of weight 0 (outside the image, or nearest's unused three) add nothing: 0 * inf once made
    NaNs where grid_sample reads no pixel."""
    x = torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, :] = float("inf")
    x[0, 0, 4, 4] = float("inf")
    transforms = [ga.RandomRotation((30, 30), interpolation=interpolation)]
    expected = ga.Pipeline(transforms, seed=0, backend="torch")(x)
    for op in ("fused_augment", "fused_augment_pixelwise"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.ops.gpuaug, "fused_augment", getattr(torch.ops.gpuaug, op))
            actual = ga.Pipeline(transforms, seed=0, backend="ext")(x)
        assert not bool((actual.isnan() & ~expected.isnan()).any()), op
        if interpolation == "nearest":  # (bilinear: grid_sample makes NaN of an inside tap of weight 0 too)
            assert torch.equal(actual.isnan(), expected.isnan()) and torch.equal(actual.isinf(), expected.isinf()), op


@pytest.mark.parametrize("first", [ga.RandomHorizontalFlip(), ga.RandomRotation(20)], ids=["flip", "rotation"])
def test_torch_compile_traces_a_pipeline_without_graph_breaks(first):
    """(A rotation holds a Padding dataclass, whose repr torch.compile cannot trace: a call reads none.)"""
    pipe = ga.Pipeline([first, ga.ColorJitter(0.4, 0.4), ga.ToDtype(torch.float32, scale=True)], seed=0, backend="ext")
    x, ids = _input((2, 3, 8, 8), torch.uint8, 0), torch.arange(2)
    compiled = torch.compile(lambda x, ids: pipe(x, sample_ids=ids), fullgraph=True, backend="eager")
    assert torch.equal(compiled(x, ids), pipe(x, sample_ids=ids))


def test_torch_export_keeps_the_fused_op():
    pipe = ga.Pipeline([ga.RandomResizedCrop(8), ga.RandomHorizontalFlip(), ga.ColorJitter(0.4, 0.4),
                        ga.ToDtype(torch.float32, scale=True)], seed=0, backend="ext")

    class Augment(torch.nn.Module):
        def forward(self, x, ids):
            return pipe(x, sample_ids=ids)

    x, ids = _input((2, 3, 12, 12), torch.uint8, 0), torch.arange(2)
    exported = torch.export.export(Augment(), (x, ids))
    assert any(node.target is torch.ops.gpuaug.fused_augment.default for node in exported.graph.nodes)
    assert torch.equal(exported.module()(x, ids), pipe(x, sample_ids=ids))


@pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists(), reason="no nvcc")
def test_cuda_source_compiles_with_nvcc(tmp_path):
    """A broken .cu file fails CI even without a GPU: compile it (no link) for one architecture."""
    from torch.utils import cpp_extension

    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    includes = cpp_extension.include_paths(device_type="cuda") + _ext._cuda_include_dirs()
    cmd = [nvcc, "-c", str(_ext.source_dir() / "fused_cuda.cu"), "-o", str(tmp_path / "fused_cuda.o"),
           "-std=c++20", *_ext.CUDA_FLAGS, "-DGPUAUG_WITH_CUDA", "-Xcompiler", "-fPIC",
           f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
           "-gencode", "arch=compute_90,code=sm_90", *(f"-I{p}" for p in includes)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]


# ---------------------------------------------------------------- CUDA (GPU machine)


@cuda
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cuda_ext_matches_cpu_reference(dtype):
    x = _input((16, 3, 64, 72), dtype, 3)
    for transforms in (imagenet_train(48), [ga.RandomAffine(20, (0.1, 0.1), (0.8, 1.2), 10), ga.ColorJitter(0.4, 0.4, 0.4, 0.1),
                                            ga.ToDtype(torch.float32, scale=True), ga.GaussianNoise(sigma=0.05)]):
        ref = ga.Pipeline(transforms, seed=9, backend="torch")(x)
        out = ga.Pipeline(transforms, seed=9, backend="ext")(x.cuda()).cpu()
        diff = (out.double() - ref.double()).abs()
        assert float((diff > _tolerance(ref, transforms, x)).double().mean()) < 1e-3, _describe(transforms)


@cuda
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cuda_kernel_equals_its_pixel_code_on_the_cpu(dtype):
    """The per-pixel code compiled by nvcc and by the host compiler (both without contracted FMAs): within
    the parity tolerance everywhere and the same bits almost everywhere (a contrast sum's additions come
    in another order, which can move a mean by an ulp)."""
    x = _input((16, 3, 64, 72), dtype, 3)
    for transforms in (imagenet_train(48), [ga.RandomAffine(20, (0.1, 0.1), (0.8, 1.2), 10), ga.ColorJitter(0.4, 0.4, 0.4, 0.1),
                                            ga.RandomPosterize(4), ga.ToDtype(torch.float16, scale=True)]):
        pipe = ga.Pipeline(transforms, seed=9, backend="ext", memory_format=torch.channels_last)
        ids = torch.arange(16)  # both calls draw the same parameters
        with cuda_pixel_code():
            ref = pipe(x, sample_ids=ids)
        out = pipe(x.cuda(), sample_ids=ids.cuda()).cpu()
        diff = (out.double() - ref.double()).abs()
        assert int((diff > _tolerance(ref, transforms, x)).sum()) <= _straddles_allowed(transforms, x, diff.numel()), \
            _describe(transforms)
        assert float((diff == 0).double().mean()) > 0.99, _describe(transforms)


CUDA_PIPELINES = [
    *NAMED_PIPELINES,
    # a rotation after a shrink: supersampled grid taps
    [ga.RandomResizedCrop(16, scale=(0.9, 1.0)), ga.RandomRotation(10), ga.ToDtype(torch.bfloat16, scale=True)],
    # noise in a uint8 domain (truncated, saturated) and a uint8 output
    [ga.RandomHorizontalFlip(), ga.GaussianNoise(sigma=0.1, clip=False), ga.ColorJitter(0.5, 0.5)],
]


@cuda
@pytest.mark.parametrize("transforms", CUDA_PIPELINES, ids=[*NAMED_IDS, "supersampled-bf16", "uint8-noise"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_cuda_kernels_match_their_pixel_code_on_named_pipelines(transforms, dtype, layout):
    """Every geometry mode, padding, fill, colour op and output dtype of the CUDA kernels against the same
    per-pixel code on the CPU, for the same parameters."""
    x = _input((6, 3, 40, 44), dtype, 2)
    pipe, ids = ga.Pipeline(transforms, seed=5, backend="ext", memory_format=layout), torch.arange(6)
    with cuda_pixel_code():
        ref = pipe(x, sample_ids=ids)
    out = pipe(x.cuda(), sample_ids=ids.cuda()).cpu()
    assert out.shape == ref.shape and out.dtype == ref.dtype and out.is_contiguous(memory_format=layout)
    diff = (out.double() - ref.double()).abs()
    bad = (diff > _tolerance(ref, transforms, x)) | (out.double().isnan() != ref.double().isnan())
    assert int(bad.sum()) <= _straddles_allowed(transforms, x, bad.numel()), _describe(transforms)


@cuda
@pytest.mark.parametrize("transforms,shape,spans", SEPARABLE_CALLS, ids=SEPARABLE_IDS)
def test_cuda_tiles_compute_what_the_per_pixel_kernels_do(monkeypatch, transforms, shape, spans):
    """The tiled CUDA kernels (barriers, shared memory, atomics) against the per-pixel ones on the device,
    on the same arguments: the same bits (uint8 input: the contrast sums are exact in any order)."""
    (args,) = _captured_arguments(monkeypatch, transforms, _input(shape, torch.uint8, 0).cuda())
    assert args[-1] is True
    per_pixel = torch.ops.gpuaug.fused_augment(*args[:-1], False)
    assert torch.equal(torch.ops.gpuaug.fused_augment(*args), per_pixel)


@cuda
def test_cuda_batches_beyond_the_grid_limit():
    """More samples than a grid dimension holds (65,535): the batch is launched in parts."""
    x = torch.randint(0, 256, (70_000, 3, 2, 3), dtype=torch.uint8)
    transforms = [ga.RandomHorizontalFlip(), ga.ColorJitter(0.4, 0.4, 0.4, 0.1), ga.ToDtype(torch.float32, scale=True)]
    pipe, ids = ga.Pipeline(transforms, seed=1, backend="ext"), torch.arange(70_000)
    with cuda_pixel_code():
        ref = pipe(x, sample_ids=ids)
    out = pipe(x.cuda(), sample_ids=ids.cuda()).cpu()
    assert bool(((out - ref).abs() <= 1e-3 * ref.abs().clamp(min=1.0)).all())


@cuda
def test_cuda_graph_capture():
    pipe = ga.Pipeline(imagenet_train(48, torch.float16), seed=2, backend="ext")
    x = _input((32, 3, 64, 64), torch.uint8, 0).cuda()
    ids = torch.arange(32, device="cuda")
    expected = pipe(x, sample_ids=ids)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        pipe(x, sample_ids=ids)  # warm up on the side stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = pipe(x, sample_ids=ids)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, expected)


@cuda
@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_cuda_torch_compile(mode):
    """Compiled (and in mode reduce-overhead replayed as a CUDA graph), the call is the eager call.

    Triton may contract the parameter maths' multiply-adds, one float rounding apart from eager,
    which can move a crop edge by a pixel in a rare sample, or a value by one uint8 level: so every
    sample but at most one must match within a level, and most elements exactly.
    """
    pipe = ga.Pipeline(imagenet_train(48, torch.float16), seed=2, backend="ext")
    x, ids = _input((8, 3, 64, 64), torch.uint8, 0).cuda(), torch.arange(8, device="cuda")
    expected = pipe(x, sample_ids=ids)  # eager first: the pipeline learns how many draws it takes
    compiled = torch.compile(lambda x, ids: pipe(x, sample_ids=ids), fullgraph=True, mode=mode)
    for _ in range(3):  # compile; record the graph; replay it
        out = compiled(x, ids).clone()
    level = 1.0 / 255 / 0.224 + 2e-3  # one uint8 level after Normalize, plus float16 rounding
    close = ((out.float() - expected.float()).abs().amax(dim=(1, 2, 3)) <= level).sum().item()
    assert close >= 7
    assert (out == expected).float().mean().item() > 0.8
