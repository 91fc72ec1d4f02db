"""3x3 matrices per sample: output pixel -> source pixel, in pixel-index coordinates.

Pixel ``(x, y)`` of an image is the point at its centre, with integer indices, so a matrix ``A``
maps output pixel ``(x, y, 1)`` to the source point ``A @ (x, y, 1)`` (then divided by the third
coordinate for a perspective). A chain of geometric transforms ``T1, T2, ...`` composes as
``A1 @ A2 @ ...``. Matrices are float64 and batched: shape (B, 3, 3).

The formulas follow torchvision.transforms.v2.functional exactly (its affine angle is clockwise,
its rotate angle counter-clockwise; its centre is in continuous coordinates, half a pixel off the
index coordinates used here).

Example:
    >>> import torch
    >>> A = horizontal_flip(torch.tensor([True]), width=4)
    >>> map_points(A, torch.tensor([[[0.0, 2.0]]]))
    tensor([[[3., 2.]]], dtype=torch.float64)
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._device import constant

__all__ = [
    "identity",
    "translation",
    "scaling",
    "horizontal_flip",
    "vertical_flip",
    "crop",
    "resize",
    "affine",
    "perspective",
    "perspective_coefficients",
    "map_points",
    "map_boxes",
    "continuous",
    "invert",
    "rotation_center",
]

_F64 = torch.float64


def identity(batch: int, device: torch.device | str | None = None) -> Tensor:
    """(B, 3, 3) identity matrices."""
    eye = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    return constant(eye, _F64, device if device is not None else "cpu").view(3, 3).repeat(batch, 1, 1)


def _affine_rows(*entries: Tensor | float) -> Tensor:
    """Matrices [[e0, e1, e2], [e3, e4, e5], [0, 0, 1]] from six (B,) float64 tensors or numbers."""
    like = next(v for v in entries if isinstance(v, Tensor))

    def column(v: Tensor | float) -> Tensor:  # a number: a constant's view, which stack copies (no fill op)
        return v if isinstance(v, Tensor) else constant((v,), _F64, like.device).expand_as(like)

    return torch.stack([column(v) for v in (*entries, 0.0, 0.0, 1.0)], dim=1).view(-1, 3, 3)


def _diag_affine(sx: Tensor | float, sy: Tensor | float, tx: Tensor | float, ty: Tensor | float) -> Tensor:
    """Matrices [[sx, 0, tx], [0, sy, ty], [0, 0, 1]]."""
    return _affine_rows(sx, 0.0, tx, 0.0, sy, ty)


def translation(tx: Tensor, ty: Tensor) -> Tensor:
    """src = out + (tx, ty)."""
    return _diag_affine(1.0, 1.0, tx.to(_F64), ty.to(_F64))


def scaling(sx: Tensor, sy: Tensor) -> Tensor:
    """src = out * (sx, sy) about the origin."""
    return _diag_affine(sx.to(_F64), sy.to(_F64), 0.0, 0.0)


def _flip(flag: Tensor, size: int, axis: int) -> Tensor:
    flag = flag.to(_F64)
    sign, shift = 1.0 - 2.0 * flag, flag * (size - 1)
    return _diag_affine(sign, 1.0, shift, 0.0) if axis == 0 else _diag_affine(1.0, sign, 0.0, shift)


def horizontal_flip(flag: Tensor, width: int) -> Tensor:
    """x_src = width - 1 - x where ``flag``; identity elsewhere."""
    return _flip(flag, width, 0)


def vertical_flip(flag: Tensor, height: int) -> Tensor:
    """y_src = height - 1 - y where ``flag``; identity elsewhere."""
    return _flip(flag, height, 1)


def crop(top: Tensor, left: Tensor) -> Tensor:
    """Output pixel (x, y) is source pixel (x + left, y + top)."""
    return translation(left.to(_F64), top.to(_F64))


def resize(in_hw: tuple[Tensor, Tensor], out_hw: tuple[int, int]) -> Tensor:
    """Resize (half-pixel centres, as torch's interpolate with align_corners=False)."""
    sy = in_hw[0].to(_F64) / out_hw[0]
    sx = in_hw[1].to(_F64) / out_hw[1]
    return _diag_affine(sx, sy, 0.5 * sx - 0.5, 0.5 * sy - 0.5)


def affine(
    angle: Tensor,
    translate: Tensor,
    scale: Tensor,
    shear: Tensor,
    center: Tensor,
) -> Tensor:
    """torchvision's ``_get_inverse_affine_matrix`` per sample, in index coordinates.

    ``angle`` (B,) degrees clockwise as F.affine takes it (F.rotate passes ``-angle``),
    ``translate`` (B, 2) pixels, ``scale`` (B,), ``shear`` (B, 2) degrees, ``center`` (B, 2) in
    index coordinates.
    """
    rot = torch.deg2rad(angle.to(_F64))
    sx, sy = torch.deg2rad(shear.to(_F64)).unbind(1)
    scale = scale.to(_F64)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m00, m01, m10, m11 = d / scale, -b / scale, -c / scale, a / scale
    cx, cy = center.to(_F64).unbind(1)
    tx, ty = translate.to(_F64).unbind(1)
    m02 = m00 * (-cx - tx) + m01 * (-cy - ty) + cx
    m12 = m10 * (-cx - tx) + m11 * (-cy - ty) + cy
    return _affine_rows(m00, m01, m02, m10, m11, m12)


def perspective_coefficients(startpoints: Tensor, endpoints: Tensor) -> Tensor:
    """(B, 8) coefficients mapping end points to start points, as torchvision computes them.

    ``startpoints``/``endpoints``: (B, 4, 2) corners (x, y). Solved in float64 without a host
    synchronisation (``solve_ex`` does not check for singular systems). Where the end points
    leave no map (two of them meet, or three lie on a line: a large distortion of a small image
    can draw that, and torchvision then raises), the identity's coefficients.

    Example:
        >>> square = torch.tensor([[[0, 0], [1, 0], [1, 1], [0, 1]]])
        >>> perspective_coefficients(square, torch.tensor([[[1, 0], [0, 0], [0, 0], [0, 1]]])).tolist()
        [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    """
    e = endpoints.to(_F64)
    s = startpoints.to(_F64)
    ex, ey = e.unbind(2)
    sx, sy = s.unbind(2)
    one, zero = torch.ones_like(ex), torch.zeros_like(ex)
    rows_x = torch.stack([ex, ey, one, zero, zero, zero, -sx * ex, -sx * ey], dim=2)
    rows_y = torch.stack([zero, zero, zero, ex, ey, one, -sy * ex, -sy * ey], dim=2)
    a = torch.stack([rows_x, rows_y], dim=2).reshape(-1, 8, 8)
    b = s.reshape(-1, 8)
    coeffs, info = torch.linalg.solve_ex(a, b)
    coeffs = coeffs.to(torch.float32).to(_F64)  # torchvision rounds the coefficients to float32
    solved = (info == 0) & coeffs.isfinite().all(1)
    return torch.where(solved[:, None], coeffs, constant((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0), _F64, coeffs.device))


def perspective(coefficients: Tensor) -> Tensor:
    """Matrices in index coordinates for torchvision's perspective ``coefficients`` (B, 8).

    torchvision applies them in continuous coordinates (pixel centres at i + 0.5).
    """
    c = coefficients.to(_F64)
    h = torch.cat([c, torch.ones_like(c[:, :1])], dim=1).view(-1, 3, 3)
    half = torch.full_like(c[:, 0], 0.5)
    return translation(-half, -half) @ h @ translation(half, half)


def map_points(matrix: Tensor, points: Tensor) -> Tensor:
    """Apply (B, 3, 3) matrices to (B, N, 2) points, with the perspective divide."""
    p = points.to(_F64)
    homog = torch.cat([p, torch.ones_like(p[..., :1])], dim=-1) @ matrix.transpose(1, 2)
    return homog[..., :2] / homog[..., 2:]


def map_boxes(matrix: Tensor, boxes: Tensor) -> Tensor:
    """Map (B, N, 4) xyxy boxes through (B, 3, 3) matrices: the box enclosing the four mapped corners.

    Example:
        >>> A = continuous(horizontal_flip(torch.tensor([True]), width=10))
        >>> map_boxes(A, torch.tensor([[[1.0, 2.0, 4.0, 3.0]]]))
        tensor([[[6., 2., 9., 3.]]], dtype=torch.float64)
    """
    x0, y0, x1, y1 = boxes.unbind(-1)
    batch, count = boxes.shape[:2]
    corners = torch.stack([x0, y0, x1, y0, x1, y1, x0, y1], dim=-1).view(batch, count * 4, 2)
    mapped = map_points(matrix, corners).view(batch, count, 4, 2)
    return torch.cat([mapped.amin(dim=2), mapped.amax(dim=2)], dim=-1)


def continuous(matrix: Tensor) -> Tensor:
    """The same map in continuous coordinates, where pixel (x, y) spans [x, x + 1) x [y, y + 1)
    (torchvision's coordinates of boxes and keypoints): ``T(0.5) @ matrix @ T(-0.5)``."""
    half = torch.full(matrix.shape[:1], 0.5, dtype=_F64, device=matrix.device)
    return translation(half, half) @ matrix.to(_F64) @ translation(-half, -half)


def invert(matrix: Tensor) -> Tensor:
    """Batched inverse: swaps the roles of source and output."""
    return torch.linalg.inv_ex(matrix)[0]


def rotation_center(height: int, width: int, center: tuple[float, float] | None) -> tuple[float, float]:
    """torchvision's rotation centre in index coordinates (default: the image centre)."""
    if center is None:
        return (width - 1) * 0.5, (height - 1) * 0.5
    return center[0] - 0.5, center[1] - 0.5
