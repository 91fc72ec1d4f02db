"""Helpers of the parity tests (test_parity.py, test_chains.py): inputs, tolerances, edge masks and
independent float64 references.

Nothing here calls gpuaug's resampling or colour code: the references are torchvision's
functional ops (called by the tests) or the small float64 implementations below, so a shared
bug cannot hide itself.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode

import gpuaug as ga
from gpuaug.geometry import map_points

F64 = torch.float64


def make_images(batch: int, channels: int, height: int, width: int, dtype: torch.dtype, seed: int = 0) -> Tensor:
    """Deterministic white-noise images (the hardest case for resampling): uint8 or float in [0, 1]."""
    g = torch.Generator().manual_seed(1000 + seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (batch, channels, height, width), generator=g, dtype=torch.uint8)
    return torch.rand(batch, channels, height, width, generator=g).to(dtype)


def run_one(transform, images: Tensor, seed: int = 0):
    """(output, params) of a one-transform pipeline."""
    return ga.Pipeline([transform], seed=seed)(images, return_params=True)


def level(dtype: torch.dtype) -> float:
    """One quantisation level: 1 for uint8, 1/255 for float images."""
    return 1.0 if dtype == torch.uint8 else 1.0 / 255.0


def mode(name: str) -> InterpolationMode:
    return InterpolationMode(name)


def fmt(value) -> str:
    return f"{float(value):.6g}"


def assert_close(actual: Tensor, expected: Tensor, atol: float, mask: Tensor | None = None, what: str = "") -> None:
    """|actual - expected| <= atol on every element where ``mask`` (broadcastable) is True.

    The failure message says how many elements are off, by how much at most, and where the first is.
    """
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.to(F64) - expected.to(F64)).abs()
    if mask is not None:
        diff = torch.where(mask.expand_as(diff), diff, torch.zeros_like(diff))
    bad = diff > atol + 1e-9
    if bool(bad.any()):
        where = tuple(bad.nonzero()[0].tolist())
        compared = int(mask.expand_as(diff).sum()) if mask is not None else diff.numel()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {compared} compared values differ by more than {atol:.6g} "
            f"(max {fmt(diff.max())}); first at index {where}: got {fmt(actual[where])}, expected {fmt(expected[where])}"
        )


def assert_equal(actual: Tensor, expected: Tensor, mask: Tensor | None = None, what: str = "") -> None:
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert_close(actual, expected, 0.0, mask, what)


def assert_close_resampled(actual: Tensor, expected: Tensor, what: str = "", exact_uint8: bool = True) -> None:
    """Axis-aligned bilinear/bicubic resampling against F.resize / F.resized_crop.

    Float: within 1/255 everywhere. uint8: torchvision's CPU kernel runs two passes in fixed-point
    arithmetic and rounds the intermediate to uint8, and gpuaug rounds its weights and sums the
    same way, so with ``exact_uint8`` the values must be equal. Otherwise (plain bicubic, whose
    fixed-point weights gpuaug does not reproduce, and CUDA against the CPU) a tie rounded the other
    way in the first pass may leave a final value 2 levels off: allowed within 2 levels everywhere,
    and more than 1 level on at most 1 value in 1000.
    """
    if actual.dtype != torch.uint8:
        assert_close(actual, expected, level(actual.dtype), what=what)
        return
    if exact_uint8:
        assert_equal(actual, expected, what=what)
        return
    assert_close(actual, expected, 2.0, what=what)
    over = int(((actual.to(F64) - expected.to(F64)).abs() > 1).sum())
    assert over <= actual.numel() / 1000, f"{what}: {over} of {actual.numel()} values differ by 2 levels"


def pad_sides(padding: int | list[int]) -> list[int]:
    """[left, top, right, bottom] of torchvision's ``padding`` argument (an int or 1, 2 or 4 ints)."""
    padding = [padding] if isinstance(padding, int) else list(padding)
    return padding * 4 if len(padding) == 1 else padding * 2 if len(padding) == 2 else padding


def tv_random_crop_padding(t_kwargs: dict, height: int, width: int) -> list[int]:
    """[left, top, right, bottom] that torchvision.transforms.v2.RandomCrop pads with (one F.pad call)."""
    left, top, right, bottom = pad_sides(t_kwargs.get("padding") or 0)
    size = t_kwargs["size"]
    ch, cw = (size, size) if isinstance(size, int) else size
    ph, pw = height + top + bottom, width + left + right
    if t_kwargs.get("pad_if_needed"):
        if ph < ch:
            top, bottom = top + ch - ph, bottom + ch - ph
        if pw < cw:
            left, right = left + cw - pw, right + cw - pw
    return [left, top, right, bottom]


def source_points(matrix: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """(B, Ho, Wo, 2) source points (x, y) of every output pixel centre, through output->source ``matrix``."""
    out_h, out_w = out_hw
    ys, xs = torch.meshgrid(torch.arange(out_h, dtype=F64), torch.arange(out_w, dtype=F64), indexing="ij")
    pts = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2).expand(matrix.shape[0], -1, -1)
    return map_points(matrix.to(F64), pts).view(matrix.shape[0], out_h, out_w, 2)


def edge_free_mask(matrix: Tensor, out_hw: tuple[int, int], in_hw: tuple[int, int], margin: float = 1.5) -> Tensor:
    """(B, 1, Ho, Wo) bool: output pixels whose source point is at least ``margin`` px away from the
    image border (the border is the outer edge of the edge pixels, at -0.5 and size - 0.5).

    Pixels well inside compare with the image; pixels well outside compare with the fill. Only the
    band around the border, where torchvision and gpuaug legitimately blend image and fill
    differently, is left out.
    """
    height, width = in_hw
    src = source_points(matrix, out_hw)
    x, y = src[..., 0], src[..., 1]
    inside = (x >= -0.5 + margin) & (x <= width - 0.5 - margin) & (y >= -0.5 + margin) & (y <= height - 0.5 - margin)
    outside = (x < -0.5 - margin) | (x > width - 0.5 + margin) | (y < -0.5 - margin) | (y > height - 0.5 + margin)
    return (inside | outside)[:, None]


def far_outside_mask(matrix: Tensor, out_hw: tuple[int, int], canvas_hw: tuple[int, int], margin: float = 1.5) -> Tensor:
    """(Ho, Wo) bool: output pixels that one (3, 3) ``matrix`` maps at least ``margin`` px outside ``canvas_hw``."""
    src = source_points(matrix[None], out_hw)[0]
    x, y = src[..., 0], src[..., 1]
    height, width = canvas_hw
    return (x < -0.5 - margin) | (x > width - 0.5 + margin) | (y < -0.5 - margin) | (y > height - 0.5 + margin)


def inside_mask(matrix: Tensor, out_hw: tuple[int, int], canvas_hw: tuple[int, int], margin: float = 1.5) -> Tensor:
    """(B, 1, Ho, Wo) bool: output pixels that (B, 3, 3) ``matrix`` maps at least ``margin`` px inside ``canvas_hw``."""
    height, width = canvas_hw
    src = source_points(matrix, out_hw)
    x, y = src[..., 0], src[..., 1]
    inside = (x >= -0.5 + margin) & (x <= width - 0.5 - margin) & (y >= -0.5 + margin) & (y <= height - 0.5 - margin)
    return inside[:, None]


# ---- independent output->source matrices in pixel-index coordinates (float64) -------------------------------


def translation(tx: float, ty: float) -> Tensor:
    return torch.tensor([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]], dtype=F64)


def crop_resize_matrix(top: float, left: float, height: float, width: float, out_hw: tuple[int, int]) -> Tensor:
    """F.resized_crop: half-pixel centres, src = (out + 0.5) * in / out - 0.5 + corner."""
    sy, sx = height / out_hw[0], width / out_hw[1]
    return torch.tensor([[sx, 0.0, 0.5 * sx - 0.5 + left], [0.0, sy, 0.5 * sy - 0.5 + top], [0.0, 0.0, 1.0]], dtype=F64)


def hflip_matrix(flip: bool, width: int) -> Tensor:
    if not flip:
        return torch.eye(3, dtype=F64)
    return torch.tensor([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)


def tv_affine_matrix(
    height: int, width: int, angle: float, translate, scale: float, shear, center=None
) -> Tensor:
    """F.affine's output->source map in index coordinates, from torchvision's own inverse-matrix helper.

    torchvision works relative to the image centre in continuous coordinates; pixel centres sit at
    index - (size - 1) / 2 in that frame. ``angle`` is F.affine's (F.rotate(a) is F.affine(-a)).
    """
    from torchvision.transforms.v2.functional._geometry import (
        _get_inverse_affine_matrix,
    )

    center_f = [0.0, 0.0] if center is None else [c - s * 0.5 for c, s in zip(center, (width, height))]
    m = _get_inverse_affine_matrix(center_f, angle, [float(t) for t in translate], scale, [float(s) for s in shear])
    a = torch.tensor([m[0:3], m[3:6], [0.0, 0.0, 1.0]], dtype=F64)
    cx, cy = (width - 1) * 0.5, (height - 1) * 0.5
    return translation(cx, cy) @ a @ translation(-cx, -cy)


def tv_perspective_matrix(coefficients) -> Tensor:
    """F.perspective's map: continuous coordinates (index + 0.5) through the 8 coefficients."""
    c = [float(v) for v in coefficients]
    h = torch.tensor([c[0:3], c[3:6], [c[6], c[7], 1.0]], dtype=F64)
    return translation(-0.5, -0.5) @ h @ translation(0.5, 0.5)


def tv_perspective_coefficients(startpoints, endpoints) -> list[float]:
    from torchvision.transforms.v2.functional._geometry import _get_perspective_coeffs

    return _get_perspective_coeffs(startpoints, endpoints)


def normalized(matrix: Tensor) -> Tensor:
    """A homogeneous matrix scaled so that its [2, 2] entry is 1 (perspective matrices are defined up to scale)."""
    return matrix / matrix[..., 2:3, 2:3]


def bilinear_reference(image: Tensor, matrix: Tensor, out_hw: tuple[int, int], fill: float = 0.0) -> Tensor:
    """Resample one (C, H, W) image through an output->source ``matrix`` (3, 3), bilinear, in float64.

    Neighbours outside the image read ``fill`` (zero padding, as grid_sample's 'zeros'); written
    with plain indexing, independently of gpuaug's and torch's resampling code.
    """
    channels, height, width = image.shape
    src = source_points(matrix[None], out_hw)[0]
    x, y = src[..., 0], src[..., 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    padded = torch.full((channels, height + 2, width + 2), float(fill), dtype=F64)
    padded[:, 1:-1, 1:-1] = image.to(F64)
    out = torch.zeros(channels, *out_hw, dtype=F64)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            # indices into the padded image, clamped into its fill ring when far outside
            iy = (y0 + dy + 1).clamp(0, height + 1).long()
            ix = (x0 + dx + 1).clamp(0, width + 1).long()
            out += (wy * wx)[None] * padded[:, iy, ix]
    return out
