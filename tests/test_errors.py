"""Every bad input raises its documented, clear error, whose message names the problem."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T

import gpuaug as ga
from gpuaug import _ext


def _u8(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.uint8)


def _run(transforms, images, **kwargs):
    return ga.Pipeline(transforms, seed=0)(images, **kwargs)


# ---------------------------------------------------------------- bad images


@pytest.mark.parametrize("bad", [[[1, 2]], np.zeros((1, 3, 4, 4), dtype=np.uint8), 3.0, None, "image"], ids=type)
def test_non_tensor_input_raises_type_error(bad):
    with pytest.raises(TypeError, match=r"(?i)tensor"):
        _run([ga.RandomHorizontalFlip()], bad)


@pytest.mark.parametrize("shape", [(8,), (8, 8), (1, 2, 3, 8, 8), ()])
def test_wrong_rank_raises_value_error(shape):
    with pytest.raises(ValueError, match=r"\(C, H, W\)|\(B, C, H, W\)|shape"):
        _run([ga.RandomHorizontalFlip()], torch.zeros(shape))


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64, torch.int8, torch.bool, torch.complex64])
def test_unsupported_dtype_raises_type_error(dtype):
    with pytest.raises(TypeError, match=str(dtype).replace("torch.", "")):
        _run([ga.RandomHorizontalFlip()], torch.zeros(2, 3, 4, 4, dtype=dtype))


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_images_that_require_grad_raise_value_error(backend):
    if backend == "ext" and _ext.extension_error() is not None:
        pytest.skip(f"the extension does not build here: {_ext.extension_error()}")
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    with pytest.raises(ValueError, match=r"require grad.*images.detach\(\)"):
        ga.Pipeline([ga.RandomResizedCrop(6), ga.ColorJitter(0.4)], seed=0, backend=backend)(x)
    with torch.no_grad():
        assert ga.Pipeline([ga.RandomResizedCrop(6)], seed=0, backend=backend)(x).shape == (2, 3, 6, 6)


@pytest.mark.parametrize("shape", [(1, 3, 0, 8), (1, 3, 8, 0), (3, 0, 0), (2, 0, 8, 8)])
def test_zero_size_image_raises_value_error(shape):
    with pytest.raises(ValueError, match=r"> 0|zero|empty|size"):
        _run([ga.RandomHorizontalFlip()], torch.zeros(shape))


@pytest.mark.parametrize("channels", [2, 4])
@pytest.mark.parametrize(
    "make",
    [
        lambda: ga.ColorJitter(0.4, 0.4, 0.4, 0.1),
        lambda: ga.ColorJitter(hue=0.1),
        lambda: ga.RandomGrayscale(p=1.0),
        lambda: ga.Grayscale(),
        lambda: ga.RandomAdjustSharpness(2.0),
        lambda: ga.RandomAutocontrast(),
    ],
    ids=["ColorJitter", "ColorJitter-hue", "RandomGrayscale", "Grayscale", "RandomAdjustSharpness", "RandomAutocontrast"],
)
def test_wrong_channel_count_for_colour_transform(make, channels):
    t = make()
    with pytest.raises(ValueError, match=rf"{type(t).__name__}.*channels.*{channels}"):
        _run([t], _u8(2, channels, 8, 8))
    # also behind other transforms and inside containers
    with pytest.raises(ValueError, match="channels"):
        _run([ga.RandomHorizontalFlip(), ga.RandomApply([make()], p=0.5)], torch.zeros(2, channels, 8, 8))


def test_channel_count_after_grayscale_is_checked():
    with pytest.raises(ValueError, match="Normalize.*3 values.*1-channel"):
        _run([ga.Grayscale(1), ga.ToDtype(torch.float32, scale=True), ga.Normalize([0.1, 0.2, 0.3], [1, 1, 1])], _u8(1, 3, 4, 4))


@pytest.mark.parametrize(
    "t,shape",
    [
        (lambda: ga.RandomCrop(10), (1, 3, 8, 8)),
        (lambda: ga.RandomCrop((4, 10)), (1, 3, 8, 8)),
        (lambda: ga.RandomCrop((12, 4), padding=1), (1, 3, 8, 8)),
    ],
)
def test_crop_larger_than_image_raises(t, shape):
    with pytest.raises(ValueError, match=r"(?i)crop size.*larger"):
        _run([t()], _u8(*shape))


def test_resize_to_nothing_raises():
    """max_size can shrink a thin image's shorter side to 0 rows (torchvision fails inside torch)."""
    with pytest.raises(ValueError, match=r"Resize.*max_size=20.*1x21.*empty 0x20"):
        _run([ga.Resize(5, max_size=20)], _u8(1, 3, 1, 21))


@pytest.mark.parametrize("kwargs", [dict(size=(8, 5), pad_if_needed=True), dict(size=(4, 5), padding=[5, 0]),
                                    dict(size=(6, 13), padding=[2, 1], pad_if_needed=True),
                                    dict(size=(6, 5), pad_if_needed=True), dict(size=(6, 11), padding=[2, 1], pad_if_needed=True)])
def test_random_crop_reflect_padding_as_large_as_the_image_raises_as_torchvisions(kwargs):
    """torchvision pads the padding and what pad_if_needed adds at once, and torch refuses a reflect pad
    as large as the image (gpuaug once tiled it silently)."""
    x = torch.rand(1, 3, 4, 5)
    try:
        T.RandomCrop(padding_mode="reflect", **kwargs)(x[0])
    except RuntimeError:
        with pytest.raises(ValueError, match="reflect padding must be smaller"):
            ga.Pipeline([ga.RandomCrop(padding_mode="reflect", **kwargs)])(x)
    else:
        assert ga.Pipeline([ga.RandomCrop(padding_mode="reflect", **kwargs)])(x).shape == (1, 3, *kwargs["size"])


def test_crop_larger_than_image_with_padding_is_fine():
    assert _run([ga.RandomCrop(10, padding=1)], _u8(2, 3, 8, 8)).shape == (2, 3, 10, 10)
    assert _run([ga.RandomCrop((12, 3), pad_if_needed=True)], _u8(2, 3, 8, 8)).shape == (2, 3, 12, 3)
    assert _run([ga.CenterCrop(12)], _u8(2, 3, 8, 8)).shape == (2, 3, 12, 12)  # torchvision pads


def test_normalize_on_uint8_raises_type_error():
    with pytest.raises(TypeError, match=r"Normalize.*float.*uint8"):
        _run([ga.Normalize([0.5], [0.5])], _u8(1, 3, 4, 4))
    with pytest.raises(TypeError, match="Normalize"):  # also after a uint8-keeping transform
        _run([ga.RandomHorizontalFlip(), ga.ColorJitter(0.2), ga.Normalize([0.5], [0.5])], _u8(1, 3, 4, 4))
    with pytest.raises(TypeError, match="Normalize"):  # and after a conversion back to uint8
        _run([ga.ToDtype(torch.float32, scale=True), ga.ToDtype(torch.uint8, scale=True), ga.Normalize([0.5], [0.5])], _u8(1, 3, 4, 4))


@pytest.mark.parametrize("mean,std,what", [([0.5, 0.5], [0.5], "mean"), ([0.5], [0.5, 0.5, 0.5, 0.5], "std")])
def test_normalize_wrong_lengths_raise(mean, std, what):
    with pytest.raises(ValueError, match=rf"Normalize {what} has \d values for 3-channel"):
        _run([ga.Normalize(mean, std)], torch.zeros(1, 3, 4, 4))


def test_input_dependent_argument_checks():
    x = _u8(2, 3, 8, 8)
    with pytest.raises(ValueError, match="kernel_size"):
        _run([ga.GaussianBlur(17)], x)
    with pytest.raises(ValueError, match="reflect"):
        _run([ga.Pad(8, padding_mode="reflect")], x)
    with pytest.raises(ValueError, match="fill has 2 values"):
        _run([ga.Pad(2, fill=[1, 2])], x)
    with pytest.raises(ValueError, match="fill has 2 values"):
        _run([ga.RandomRotation(10, fill=[1, 2])], x)
    with pytest.raises(ValueError, match="value has 2"):
        _run([ga.RandomErasing(value=[1, 2])], x)
    with pytest.raises(ValueError, match="threshold"):
        _run([ga.RandomSolarize(300)], x)
    with pytest.raises(ValueError, match="threshold"):
        _run([ga.RandomSolarize(2.0)], x.float())


# ---------------------------------------------------------------- constructor arguments (as torchvision raises them)


def _tv_raises(make_tv) -> bool:
    try:
        make_tv()
    except (ValueError, TypeError):
        return True
    return False


CONSTRUCTOR_CASES = [
    # (id, gpuaug constructor, torchvision equivalent or None, exception, message pattern)
    ("p<0", lambda: ga.RandomHorizontalFlip(-0.1), lambda: T.RandomHorizontalFlip(-0.1), ValueError, r"p.*\[0, 1\]"),
    ("p>1", lambda: ga.RandomVerticalFlip(1.5), lambda: T.RandomVerticalFlip(1.5), ValueError, r"p.*\[0, 1\]"),
    ("p>1-invert", lambda: ga.RandomInvert(2.0), lambda: T.RandomInvert(2.0), ValueError, r"p.*\[0, 1\]"),
    ("p<0-grayscale", lambda: ga.RandomGrayscale(-1), lambda: T.RandomGrayscale(-1), ValueError, r"p.*\[0, 1\]"),
    ("p>1-apply", lambda: ga.RandomApply([ga.RandomInvert()], p=1.2), lambda: T.RandomApply([T.RandomInvert()], p=1.2), ValueError, r"p.*\[0, 1\]"),
    ("p>1-perspective", lambda: ga.RandomPerspective(p=3), lambda: T.RandomPerspective(p=3), ValueError, r"p.*\[0, 1\]"),
    ("p>1-erasing", lambda: ga.RandomErasing(p=1.5), lambda: T.RandomErasing(p=1.5), ValueError, r"p.*\[0, 1\]"),
    ("brightness<0", lambda: ga.ColorJitter(brightness=-0.1), lambda: T.ColorJitter(brightness=-0.1), ValueError, "brightness"),
    ("contrast-range<0", lambda: ga.ColorJitter(contrast=(-1, 1)), lambda: T.ColorJitter(contrast=(-1, 1)), ValueError, "contrast"),
    ("saturation<0", lambda: ga.ColorJitter(saturation=-2), lambda: T.ColorJitter(saturation=-2), ValueError, "saturation"),
    ("hue>0.5", lambda: ga.ColorJitter(hue=0.6), lambda: T.ColorJitter(hue=0.6), ValueError, "hue"),
    ("hue-range", lambda: ga.ColorJitter(hue=(-0.7, 0.1)), lambda: T.ColorJitter(hue=(-0.7, 0.1)), ValueError, "hue"),
    ("hue<0", lambda: ga.ColorJitter(hue=-0.1), lambda: T.ColorJitter(hue=-0.1), ValueError, "hue"),
    ("jitter-3-seq", lambda: ga.ColorJitter(brightness=(1, 2, 3)), lambda: T.ColorJitter(brightness=(1, 2, 3)), TypeError, "brightness"),
    ("even-kernel", lambda: ga.GaussianBlur(4), lambda: T.GaussianBlur(4), ValueError, "kernel_size.*odd"),
    ("even-kernel-pair", lambda: ga.GaussianBlur((3, 6)), lambda: T.GaussianBlur((3, 6)), ValueError, "kernel_size.*odd"),
    ("zero-kernel", lambda: ga.GaussianBlur(0), lambda: T.GaussianBlur(0), ValueError, "kernel_size"),
    ("negative-kernel", lambda: ga.GaussianBlur(-3), lambda: T.GaussianBlur(-3), ValueError, "kernel_size"),
    ("sigma=0", lambda: ga.GaussianBlur(3, sigma=0), lambda: T.GaussianBlur(3, sigma=0), ValueError, "sigma"),
    ("sigma<0", lambda: ga.GaussianBlur(3, sigma=-1.0), lambda: T.GaussianBlur(3, sigma=-1.0), ValueError, "sigma"),
    ("sigma-range<=0", lambda: ga.GaussianBlur(3, sigma=(0.0, 1.0)), lambda: T.GaussianBlur(3, sigma=(0.0, 1.0)), ValueError, "sigma"),
    ("sigma-range-reversed", lambda: ga.GaussianBlur(3, sigma=(2.0, 1.0)), lambda: T.GaussianBlur(3, sigma=(2.0, 1.0)), ValueError, "sigma"),
    ("bits>8", lambda: ga.RandomPosterize(9), None, ValueError, "bits"),
    ("bits<0", lambda: ga.RandomPosterize(-1), None, ValueError, "bits"),
    ("pad-mode", lambda: ga.Pad(2, padding_mode="wrap"), lambda: T.Pad(2, padding_mode="wrap"), ValueError, "padding_mode"),
    ("crop-pad-mode", lambda: ga.RandomCrop(4, padding=1, padding_mode="foo"), lambda: T.RandomCrop(4, padding=1, padding_mode="foo"), ValueError, "padding_mode"),
    ("pad-3", lambda: ga.Pad([1, 2, 3]), lambda: T.Pad([1, 2, 3]), ValueError, "padding"),
    ("pad<0", lambda: ga.Pad(-1), None, ValueError, "padding"),
    ("rotation-interp", lambda: ga.RandomRotation(10, interpolation="lanczos"), None, ValueError, "interpolation"),
    ("resize-interp", lambda: ga.Resize(8, interpolation="box"), None, ValueError, "interpolation"),
    ("rrc-interp", lambda: ga.RandomResizedCrop(8, interpolation="area"), None, ValueError, "interpolation"),
    ("affine-interp", lambda: ga.RandomAffine(10, interpolation=1), None, ValueError, "interpolation"),
    ("degrees<0", lambda: ga.RandomRotation(-5), lambda: T.RandomRotation(-5), ValueError, "degrees"),
    ("degrees-min>max", lambda: ga.RandomRotation((10, -10)), None, ValueError, "degrees"),
    ("affine-degrees-min>max", lambda: ga.RandomAffine((20, 10)), None, ValueError, "degrees"),
    ("affine-degrees-3", lambda: ga.RandomAffine((1, 2, 3)), lambda: T.RandomAffine((1, 2, 3)), (ValueError, TypeError), "degrees"),
    ("translate>1", lambda: ga.RandomAffine(0, translate=(1.5, 0)), lambda: T.RandomAffine(0, translate=(1.5, 0)), ValueError, "translate"),
    ("translate<0", lambda: ga.RandomAffine(0, translate=(-0.1, 0.1)), lambda: T.RandomAffine(0, translate=(-0.1, 0.1)), ValueError, "translate"),
    ("affine-scale<=0", lambda: ga.RandomAffine(0, scale=(0.0, 1.0)), lambda: T.RandomAffine(0, scale=(0.0, 1.0)), ValueError, "scale"),
    ("affine-scale-reversed", lambda: ga.RandomAffine(0, scale=(1.5, 0.5)), None, ValueError, "scale"),
    ("shear<0", lambda: ga.RandomAffine(0, shear=-5), lambda: T.RandomAffine(0, shear=-5), ValueError, "shear"),
    ("shear-3", lambda: ga.RandomAffine(0, shear=(1, 2, 3)), lambda: T.RandomAffine(0, shear=(1, 2, 3)), ValueError, "shear"),
    ("distortion>1", lambda: ga.RandomPerspective(1.5), lambda: T.RandomPerspective(1.5), ValueError, "distortion_scale"),
    ("distortion<0", lambda: ga.RandomPerspective(-0.1), lambda: T.RandomPerspective(-0.1), ValueError, "distortion_scale"),
    ("rrc-scale-reversed", lambda: ga.RandomResizedCrop(8, scale=(0.9, 0.1)), None, ValueError, "scale"),
    ("rrc-scale<=0", lambda: ga.RandomResizedCrop(8, scale=(-0.1, 1.0)), None, ValueError, "scale"),
    ("rrc-ratio-reversed", lambda: ga.RandomResizedCrop(8, ratio=(2.0, 1.0)), None, ValueError, "ratio"),
    ("erasing-scale>1", lambda: ga.RandomErasing(scale=(0.5, 1.5)), lambda: T.RandomErasing(scale=(0.5, 1.5)), ValueError, "scale"),
    ("erasing-scale<0", lambda: ga.RandomErasing(scale=(-0.1, 0.5)), lambda: T.RandomErasing(scale=(-0.1, 0.5)), ValueError, "scale"),
    ("erasing-value", lambda: ga.RandomErasing(value="foo"), lambda: T.RandomErasing(value="foo"), ValueError, "value"),
    ("std=0", lambda: ga.Normalize([0.5], [0.0]), None, ValueError, "std.*zero"),
    ("std-one-zero", lambda: ga.Normalize([0.5, 0.5, 0.5], [1.0, 0.0, 1.0]), None, ValueError, "std.*zero"),
    ("mean-not-numbers", lambda: ga.Normalize("abc", [1.0]), None, TypeError, "mean"),
    ("grayscale-2", lambda: ga.Grayscale(2), None, ValueError, "num_output_channels"),
    ("size-0", lambda: ga.CenterCrop(0), None, ValueError, "size"),
    ("resize-0", lambda: ga.Resize(0), None, ValueError, "size"),
    ("resize-max-size-pair", lambda: ga.Resize([10, 12], max_size=20), None, ValueError, "max_size"),
    ("resize-none", lambda: ga.Resize(None), lambda: T.Resize(None), ValueError, "max_size"),
    ("resize-pil-lanczos", lambda: ga.Resize(8, interpolation=1), None, ValueError, "interpolation"),
    ("rrc-size-float", lambda: ga.RandomResizedCrop(8.5), None, (TypeError, ValueError), "size"),
    ("solarize<0", lambda: ga.RandomSolarize(-1), None, ValueError, "threshold"),
    ("sharpness<0", lambda: ga.RandomAdjustSharpness(-1), None, ValueError, "sharpness"),
    ("noise-sigma<0", lambda: ga.GaussianNoise(sigma=-1.0), None, ValueError, "sigma"),
    ("rotation-expand", lambda: ga.RandomRotation(10, expand=True), None, ValueError, "expand"),
    ("fill-str", lambda: ga.RandomRotation(10, fill="red"), None, TypeError, "fill"),
    ("center-3", lambda: ga.RandomAffine(0, center=(1, 2, 3)), None, ValueError, "center"),
    ("choice-weights", lambda: ga.RandomChoice([ga.RandomInvert()], p=[0.5, 0.5]), lambda: T.RandomChoice([T.RandomInvert()], p=[0.5, 0.5]), ValueError, "p"),
    ("choice-negative", lambda: ga.RandomChoice([ga.RandomInvert(), ga.RandomInvert()], p=[-1, 2]), None, ValueError, "p"),
    ("choice-nan", lambda: ga.RandomChoice([ga.RandomInvert(), ga.RandomInvert()], p=[float("nan"), 1]), None, ValueError, "finite"),
    ("choice-inf", lambda: ga.RandomChoice([ga.RandomInvert(), ga.RandomInvert()], p=[float("inf"), 1]), None, ValueError, "finite"),
    ("todtype-int32", lambda: ga.ToDtype(torch.int32), None, TypeError, "int32"),
    ("erasing-value-none", lambda: ga.RandomErasing(value=None), lambda: T.RandomErasing(value=None), TypeError, "value"),
    ("blur-kernel-3-values", lambda: ga.GaussianBlur((3, 3, 3)), lambda: T.GaussianBlur((3, 3, 3)), ValueError, "kernel_size"),
    # not finite: torchvision raises here or at the call ("from/to is out of bounds"); never black or NaN images
    ("degrees-nan", lambda: ga.RandomRotation(float("nan")), None, ValueError, "degrees.*finite"),
    ("affine-scale-nan", lambda: ga.RandomAffine(0, scale=(float("nan"), 1.0)), None, ValueError, "scale.*finite"),
    ("affine-shear-nan", lambda: ga.RandomAffine(0, shear=float("nan")), None, ValueError, "shear.*finite"),
    ("brightness-inf", lambda: ga.ColorJitter(brightness=float("inf")), None, ValueError, "brightness.*finite"),
    ("sigma-nan", lambda: ga.GaussianBlur(3, sigma=float("nan")), lambda: T.GaussianBlur(3, sigma=float("nan")), ValueError, "sigma"),
    ("rrc-ratio-inf", lambda: ga.RandomResizedCrop(8, ratio=(1.0, float("inf"))), None, ValueError, "ratio.*finite"),
    ("rrc-scale-nan", lambda: ga.RandomResizedCrop(8, scale=(float("nan"), 1.0)), None, ValueError, "scale.*finite"),
    ("erasing-ratio-inf", lambda: ga.RandomErasing(ratio=(1.0, float("inf"))), None, ValueError, "ratio.*finite"),
    # scale and ratio are (min, max) sequences only, as torchvision's
    ("rrc-scale-number", lambda: ga.RandomResizedCrop(8, scale=0.5), lambda: T.RandomResizedCrop(8, scale=0.5), TypeError, "scale.*sequence"),
    ("erasing-scale-number", lambda: ga.RandomErasing(scale=0.0), lambda: T.RandomErasing(scale=0.0), TypeError, "scale.*sequence"),
    ("erasing-ratio-number", lambda: ga.RandomErasing(ratio=2.0), lambda: T.RandomErasing(ratio=2.0), TypeError, "ratio.*sequence"),
]


@pytest.mark.parametrize(
    "make,make_tv,exc,pattern", [c[1:] for c in CONSTRUCTOR_CASES], ids=[c[0] for c in CONSTRUCTOR_CASES]
)
def test_invalid_constructor_arguments(make, make_tv, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()
    if make_tv is not None:  # the case is one torchvision rejects too: keep the list honest
        assert _tv_raises(make_tv)


def test_valid_edge_arguments_are_accepted():
    # the bounds themselves are valid, as in torchvision
    ga.RandomHorizontalFlip(0.0), ga.RandomHorizontalFlip(1.0)
    ga.ColorJitter(brightness=0, contrast=0, saturation=0, hue=0.5)
    ga.ColorJitter(brightness=(0.0, 2.0), hue=(-0.5, 0.5))
    ga.GaussianBlur(1, sigma=1e-3)
    assert ga.GaussianBlur((3,), sigma=[1.5]).kernel_size == (3, 3) and ga.GaussianBlur(3, sigma=(1.5,)).sigma == (1.5, 1.5)
    ga.RandomPosterize(0), ga.RandomPosterize(8)
    ga.RandomPerspective(0.0), ga.RandomPerspective(1.0)
    ga.RandomAffine(0, translate=(0.0, 1.0), shear=(-10, 10, -5, 5))
    ga.RandomErasing(scale=(0.0, 1.0))
    ga.Normalize([0.5], [-1.0])  # a negative std is allowed, as torchvision
    x = torch.rand(4, 3, 37, 53)
    # a try of area 0 fails and is drawn again (or falls back to the centre crop), as in torchvision
    out = ga.Pipeline([ga.RandomResizedCrop(20, scale=(0.0, 0.05))], seed=0)(x)
    assert out.shape == (4, 3, 20, 20) and out.isfinite().all()
    # Grayscale(1.0) and (3.0) as torchvision takes them: 1 and 3 channels
    assert ga.Pipeline([ga.Grayscale(1.0)])(x).shape == (4, 1, 37, 53)
    assert ga.Pipeline([ga.Grayscale(3.0)])(x).shape == (4, 3, 37, 53)
    # Normalize's mean and std as tensors or numpy arrays, as torchvision's normalize takes them
    expected = ga.Pipeline([ga.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])(x)
    for mean, std in [(torch.tensor([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])),
                      (np.array([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64))]:
        assert ga.Normalize(mean, std).mean == pytest.approx((0.485, 0.456, 0.406))
        torch.testing.assert_close(ga.Pipeline([ga.Normalize(mean, std)])(x), expected)


# ---------------------------------------------------------------- pipeline arguments


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'"):
        ga.Pipeline([], backend="nope")


def test_unavailable_ext_backend_raises(monkeypatch):
    from gpuaug import _ext

    monkeypatch.setattr(_ext, "extension_error", lambda: "no compiler here")
    assert ga.available_backends()["ext"] == "no compiler here"
    with pytest.raises(ValueError, match=r"backend 'ext' is not available: no compiler here"):
        ga.Pipeline([], backend="ext")


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv("GPUAUG_BACKEND", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        ga.Pipeline([], backend=None)
    monkeypatch.setenv("GPUAUG_BACKEND", "torch")
    assert ga.Pipeline([], backend=None).backend == "torch"


def test_bad_seed_and_memory_format():
    with pytest.raises(TypeError, match="seed"):
        ga.Pipeline([], seed="0")
    with pytest.raises(TypeError, match="seed"):
        ga.Pipeline([], seed=1.5)
    with pytest.raises(ValueError, match="memory_format"):
        ga.Pipeline([], memory_format=torch.channels_last_3d)
    with pytest.raises(TypeError, match="seed"):
        ga.Pipeline([], seed=True)
    assert ga.Pipeline([], seed=np.int64(3)).seed == 3 and ga.MixUp(1.0, 2, seed=np.int64(3)).seed == 3
    for epoch in (1.7, "3", True):
        with pytest.raises(TypeError, match="epoch must be an int"):
            ga.Pipeline([]).set_epoch(epoch)
        with pytest.raises(TypeError, match="epoch must be an int"):
            _run([ga.RandomHorizontalFlip()], _u8(2, 3, 4, 4), epoch=epoch)
    assert _run([ga.RandomHorizontalFlip()], _u8(0, 3, 4, 4), sample_ids=[]).shape == (0, 3, 4, 4)


@pytest.mark.parametrize(
    "ids,exc,pattern",
    [
        (torch.arange(3), ValueError, r"sample_ids must have shape \(2,\)"),
        (torch.zeros(2, 1, dtype=torch.int64), ValueError, r"sample_ids must have shape \(2,\)"),
        (torch.tensor(1), ValueError, r"sample_ids must have shape"),
        (torch.tensor([0.0, 1.0]), TypeError, r"sample_ids must be integers"),
        (torch.tensor([0.0, 1.0], dtype=torch.float64), TypeError, r"sample_ids must be integers"),
        (torch.tensor([True, False]), TypeError, r"sample_ids must be integers"),
        ([0.5, 1.5], TypeError, r"sample_ids must be integers"),
        ([1, 2, 3], ValueError, r"sample_ids must have shape"),
    ],
    ids=["too-long", "2d", "scalar", "float32", "float64", "bool", "float-list", "long-list"],
)
def test_bad_sample_ids(ids, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _run([ga.RandomHorizontalFlip()], _u8(2, 3, 4, 4), sample_ids=ids)


def test_good_sample_ids_types():
    x = _u8(2, 3, 4, 4)
    a = _run([ga.RandomHorizontalFlip()], x, sample_ids=torch.tensor([5, 6]))
    for ids in ([5, 6], (5, 6), torch.tensor([5, 6], dtype=torch.int32)):
        assert torch.equal(_run([ga.RandomHorizontalFlip()], x, sample_ids=ids), a)


# ---------------------------------------------------------------- containers take only gpuaug transforms


@pytest.mark.parametrize(
    "make",
    [
        lambda: ga.Pipeline([T.RandomHorizontalFlip()]),
        lambda: ga.Pipeline([ga.RandomInvert(), T.RandomInvert()]),
        lambda: ga.RandomApply([T.RandomHorizontalFlip()]),
        lambda: ga.RandomChoice([ga.RandomInvert(), T.RandomInvert()]),
        lambda: ga.RandomOrder([T.RandomInvert()]),
        lambda: ga.Compose([T.RandomInvert()]),
        lambda: ga.Pipeline([lambda x: x]),
        lambda: ga.Pipeline([ga.RandomApply([ga.RandomChoice([ga.RandomInvert(), torch.nn.Identity()])])]),
    ],
    ids=["pipeline-tv", "pipeline-mixed", "apply", "choice", "order", "compose", "lambda", "nested-module"],
)
def test_non_gpuaug_transforms_in_containers_raise_type_error(make):
    with pytest.raises(TypeError, match=r"gpuaug transforms"):
        make()


@pytest.mark.parametrize("bad", [ga.RandomInvert(), "flip", None, 3], ids=["single-transform", "str", "None", "int"])
def test_containers_take_lists(bad):
    with pytest.raises(TypeError, match="list|gpuaug transforms"):
        ga.Pipeline(bad)
    with pytest.raises(TypeError, match="list|gpuaug transforms"):
        ga.RandomApply(bad)


# ---------------------------------------------------------------- replay


def test_replay_errors():
    pipe = ga.Pipeline([ga.RandomHorizontalFlip(), ga.ColorJitter(0.2)], seed=0)
    x = _u8(3, 3, 8, 8)
    _, params = pipe(x, return_params=True)
    with pytest.raises(ValueError, match=r"shape"):
        pipe.replay(_u8(3, 3, 8, 9), params)
    with pytest.raises(ValueError, match=r"different pipeline"):
        ga.Pipeline([ga.RandomVerticalFlip(), ga.ColorJitter(0.2)], seed=0).replay(x, params)
    with pytest.raises(ValueError, match=r"different pipeline"):
        ga.Pipeline([ga.RandomHorizontalFlip()], seed=0).replay(x, params)
    with pytest.raises((TypeError, ValueError), match=r"(?i)tensor|shape"):
        pipe.replay(x.numpy(), params)
    for bad in (None, {"seed": 0}, "params.pt"):
        with pytest.raises(TypeError, match="params must be the BatchParams"):
            pipe.replay(x, bad)
        for inverse in (pipe.inverse_images, pipe.inverse_boxes, pipe.inverse_keypoints):
            with pytest.raises(TypeError, match="params must be the BatchParams"):
                inverse(x, bad)


def test_params_record_copies_of_the_callers_ids_epoch_and_sizes():
    """(The README's capture recipe reuses static id and epoch tensors: the params of a call must not change.)"""
    pipe = ga.Pipeline([ga.RandomResizedCrop(4), ga.ColorJitter(0.4)], seed=0)
    ids, epoch = torch.tensor([10, 11]), torch.tensor(3)
    batch = ga.RaggedBatch.pack([_u8(1, 3, 6, 5)[0], _u8(1, 3, 7, 8)[0]])
    _, params = pipe(batch, sample_ids=ids, epoch=epoch, return_params=True)
    ids.add_(2), epoch.fill_(7), batch.sizes.add_(-1)
    assert params.sample_ids.tolist() == [10, 11] and int(params.epoch) == 3
    assert params.input_sizes.tolist() == [[6, 5], [7, 8]]


def test_params_of_unregistered_or_clashing_types():
    import gpuaug.params as gp

    @dataclasses.dataclass
    class LocalParams(ga.Params):
        gain: torch.Tensor

    class Gain(ga.PixelTransform):
        def draw(self, rng, spec):
            return LocalParams(applied=self.coin(rng), gain=rng.uniform(1)[:, 0])

        def apply(self, x, params, domain):
            return x * 0.5

    pipe = ga.Pipeline([Gain()], seed=0)
    _, params = pipe(_u8(2, 3, 4, 4), return_params=True)
    with pytest.raises(ValueError, match="'LocalParams', which is not registered: decorate"):
        ga.BatchParams.from_state_dict(params.state_dict())
    ga.register_params(LocalParams)
    try:
        assert torch.equal(pipe.replay(_u8(2, 3, 4, 4), ga.BatchParams.from_state_dict(params.state_dict())),
                           pipe(_u8(2, 3, 4, 4), sample_ids=params.sample_ids))
        with pytest.raises(ValueError, match="registered already"):
            @ga.register_params
            class FactorParams(ga.Params):  # the name of a built-in type
                factor: torch.Tensor
    finally:
        del gp._TYPES["LocalParams"]


# ---------------------------------------------------------------- edge cases that must not silently misbehave


@pytest.mark.parametrize("container", ["Compose", "RandomApply", "RandomChoice", "RandomOrder"])
def test_empty_containers_raise_at_construction_as_torchvisions(container):
    with pytest.raises(ValueError, match="at least one transform"):
        getattr(ga, container)([])
    assert _tv_raises(lambda: getattr(T, container)([]))
    assert torch.equal(_run([], _u8(2, 3, 4, 4)), _u8(2, 3, 4, 4))  # an empty Pipeline is the identity
