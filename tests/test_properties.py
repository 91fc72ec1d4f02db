"""Property-based tests (hypothesis): random shapes, dtypes and pipelines of random valid transforms.

Valid input never raises; the output has the shape (tracked here independently, with
torchvision's size rules), dtype and device it should; it is finite; colour-only float pipelines
stay in [0, 1].
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gpuaug as ga
from gpuaug._ext import extension_error

from _strategies import DTYPES, SETTINGS, Spec, _describe, _input, _n, cases, same_spec_transform

# ---------------------------------------------------------------- properties


@settings(max_examples=_n(90), **SETTINGS)
@given(cases())
def test_valid_pipelines_run_with_correct_output(case):
    (b, c, h, w, dtype), transforms, spec, seed, layout = case
    x = _input((b, c, h, w), dtype, seed % 1000)
    keep = x.clone()
    pipe = ga.Pipeline(transforms, seed=seed, memory_format=layout)
    out, params = pipe(x, return_params=True)
    note = _describe(transforms)
    assert tuple(out.shape) == (b, spec.c, spec.h, spec.w), note
    assert out.dtype == spec.dtype, note
    assert out.device == x.device
    assert torch.equal(x, keep), note
    assert params.batch_size == b
    if b:
        assert bool(out.to(torch.float32).isfinite().all()), note
        if layout == torch.channels_last:
            assert out.is_contiguous(memory_format=torch.channels_last)
        if spec.dtype.is_floating_point and spec.in_range:
            # colour ops, blur, clipped noise, fills in range and non-bicubic resampling stay in [0, 1]
            assert float(out.min()) >= -1e-6 and float(out.max()) <= 1 + 1e-6, note
    assert torch.equal(pipe.replay(x, params), out), note


@settings(max_examples=_n(15), **SETTINGS)
@given(cases(batch=(0, 0)))
def test_valid_pipelines_on_empty_batches(case):
    test_valid_pipelines_run_with_correct_output.hypothesis.inner_test(case)


@settings(max_examples=_n(40), **SETTINGS)
@given(cases(max_transforms=3), st.data())
def test_chw_input_and_single_sample_consistency(case, data):
    (b, c, h, w, dtype), transforms, spec, seed, _ = case
    assume(b >= 1)
    x = _input((b, c, h, w), dtype, seed % 1000)
    pipe = ga.Pipeline(transforms, seed=seed)
    ids = torch.arange(b) * 7 + 3
    full = pipe(x, sample_ids=ids)
    i = data.draw(st.integers(0, b - 1))
    single = pipe(x[i], sample_ids=ids[i : i + 1])
    assert tuple(single.shape) == (spec.c, spec.h, spec.w)
    # the same parameters; float arithmetic may differ in the last bit, then round to the dtype
    eps = 1.0 if spec.dtype == torch.uint8 else max(torch.finfo(spec.dtype).eps, 1e-5)
    torch.testing.assert_close(single.to(torch.float32), full[i].to(torch.float32), atol=eps, rtol=2 * eps)


@settings(max_examples=_n(40), **SETTINGS)
@given(
    st.integers(1, 4), st.sampled_from([1, 3]), st.integers(1, 40), st.integers(1, 40), st.sampled_from(DTYPES),
    st.lists(st.sampled_from(["jitter", "rgray", "invert", "solarize", "posterize", "sharpness", "autocontrast",
                              "equalize", "blur", "noise"]), min_size=1, max_size=5),
    st.data(),
)
def test_colour_only_pipelines_stay_in_range(b, c, h, w, dtype, names, data):
    spec = Spec(c, h, w, dtype)
    transforms = []
    for name in names:
        t, _ = data.draw(same_spec_transform(spec, only=name))
        if isinstance(t, ga.GaussianNoise) and not t.clip:
            t = ga.GaussianNoise(t.mean, t.sigma, clip=True, p=t.p)
        transforms.append(t)
    x = _input((b, c, h, w), dtype, b * h + w)
    out = ga.Pipeline(transforms, seed=b + h)(x)
    assert out.dtype == dtype and out.shape == x.shape
    values = out.to(torch.float64)
    assert bool(values.isfinite().all())
    top = 255.0 if dtype == torch.uint8 else 1.0
    assert float(values.min()) >= -1e-6 and float(values.max()) <= top + 1e-6, _describe(transforms)
    if dtype == torch.uint8:
        assert bool((values == values.round()).all())


@settings(max_examples=_n(30), **SETTINGS)
@given(st.integers(1, 3), st.sampled_from([1, 3]), st.integers(1, 12), st.integers(1, 12), st.sampled_from(DTYPES))
def test_geometry_on_tiny_images(b, c, h, w, dtype):
    transforms = [ga.RandomResizedCrop((w, h)), ga.RandomHorizontalFlip(), ga.RandomRotation(45, interpolation="bilinear"),
                  ga.RandomAffine(20, translate=(0.2, 0.2), scale=(0.7, 1.3), shear=10), ga.Resize(5), ga.CenterCrop(3)]
    x = _input((b, c, h, w), dtype)
    out = ga.Pipeline(transforms, seed=h * 13 + w)(x)
    assert out.shape == (b, c, 3, 3) and out.dtype == dtype
    assert bool(out.to(torch.float32).isfinite().all())


BACKENDS = ["torch", pytest.param("ext", marks=pytest.mark.skipif(extension_error() is not None, reason="no extension"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_perspective_whose_corners_collapse_keeps_the_image(backend):
    """A large distortion of a small image can draw end points that leave no map (two meet, or three
    on a line; torchvision raises): those samples keep their image, the others are warped, all finite."""
    x = _input((64, 3, 2, 3), torch.float32)
    out, params = ga.Pipeline([ga.RandomPerspective(1.0, p=1.0)], seed=1, backend=backend)(x, return_params=True)
    p = params.transforms[0]
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    kept = (p.coefficients == identity).all(1) & (p.endpoints != p.startpoints).flatten(1).any(1)
    assert 0 < int(kept.sum()) < 64  # both kinds of sample drawn
    assert bool(out.isfinite().all())
    assert torch.equal(out[kept], x[kept])


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (6, 1)])
@pytest.mark.parametrize("distortion", [0.0, 0.5])
def test_perspective_on_one_pixel_wide_images(h, w, dtype, distortion):
    x = _input((3, 3, h, w), dtype)
    try:
        out, params = ga.Pipeline([ga.RandomPerspective(distortion, p=1.0)], seed=0)(x, return_params=True)
    except ValueError as e:  # a clear error would do too
        assert "perspective" in str(e).lower()
        return
    assert bool(params.matrices[0].isfinite().all())
    values = out.to(torch.float32)
    assert bool(values.isfinite().all())
    if distortion == 0.0:  # no distortion: the identity
        assert torch.equal(out, x)
    else:
        assert float(values.min()) >= 0.0 and float(values.max()) <= x.to(torch.float32).max()
