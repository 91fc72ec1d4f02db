"""Geometric transforms: each is a per-sample output-to-source matrix (torchvision v2 semantics).

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([ga.RandomResizedCrop(8), ga.RandomHorizontalFlip()], seed=0)
    >>> pipe(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2.functional._geometry import _compute_resized_output_size

from .. import geometry
from .._device import constant
from ..functional.resample import Padding
from ..params import Params, register_params
from ..random import Stream
from ._base import (
    GeometricTransform,
    ImageSpec,
    batch_full,
    check_fill,
    first_valid,
    parse_fill,
    parse_interpolation,
    parse_padding,
    parse_pair,
    parse_range,
    parse_size,
    random_boxes,
)

__all__ = [
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "Resize",
    "CenterCrop",
    "RandomCrop",
    "RandomResizedCrop",
    "Pad",
    "RandomRotation",
    "RandomAffine",
    "RandomPerspective",
]

_RESIZE_MODES = ("nearest", "bilinear", "bicubic")


class RandomHorizontalFlip(GeometricTransform):
    """Flip left-right with probability ``p`` per sample.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomHorizontalFlip(p=1.0)])(torch.arange(3.0).view(1, 1, 3)).tolist()
        [[[2.0, 1.0, 0.0]]]
    """

    axis_aligned = True

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)

    def matrix(self, params: Params, spec: ImageSpec) -> Tensor:
        return geometry.horizontal_flip(params.applied, spec.width)


class RandomVerticalFlip(RandomHorizontalFlip):
    """Flip top-bottom with probability ``p`` per sample.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomVerticalFlip(p=1.0)])(torch.arange(3.0).view(1, 3, 1)).flatten().tolist()
        [2.0, 1.0, 0.0]
    """

    def matrix(self, params: Params, spec: ImageSpec) -> Tensor:
        return geometry.vertical_flip(params.applied, spec.height)


class Resize(GeometricTransform):
    """Resize to ``size`` (int: the shorter edge, as torchvision; None: the longer edge to
    ``max_size``), antialiased when shrinking.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.Resize(8)])(torch.rand(2, 3, 16, 32)).shape
        torch.Size([2, 3, 8, 16])
    """

    axis_aligned = True

    @property
    def sizes_samples(self) -> bool:  # type: ignore[override]
        """Resize((h, w)) gives every sample one size; Resize(int) keeps each one's aspect ratio."""
        return self.size is not None and len(self.size) == 2

    def __init__(
        self,
        size: int | Sequence[int] | None,
        interpolation: InterpolationMode | str | int = InterpolationMode.BILINEAR,
        max_size: int | None = None,
        antialias: bool = True,
    ) -> None:
        super().__init__(1.0)
        if isinstance(size, numbers.Integral):
            size = [int(size)]
        if size is None:
            if not isinstance(max_size, numbers.Integral) or max_size <= 0:
                raise ValueError(f"size None needs max_size, a positive int (the longer edge), got {max_size!r}")
        elif (
            not isinstance(size, Sequence)
            or len(size) not in (1, 2)
            or not all(isinstance(v, numbers.Integral) for v in size)
            or min(size) <= 0
        ):
            raise ValueError(f"size must be a positive int or a sequence of one or two positive ints, got {size!r}")
        if max_size is not None and size is not None and len(size) != 1:
            raise ValueError("max_size is only allowed when size is a single int or None")
        self.size = None if size is None else list(size)
        self.max_size = max_size
        self.interpolation = parse_interpolation(interpolation, _RESIZE_MODES)
        self.antialias = bool(antialias)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        h, w = _compute_resized_output_size((spec.height, spec.width), size=self.size, max_size=self.max_size)
        if min(h, w) <= 0:  # max_size shrank the shorter side to nothing
            raise ValueError(
                f"Resize(size={self.size}, max_size={self.max_size}) of a {spec.height}x{spec.width} image "
                f"gives an empty {h}x{w} image"
            )
        return spec.resized(h, w)

    def matrix(self, params: Params, spec: ImageSpec) -> Tensor:
        out = self.output_spec(spec)
        return geometry.resize(spec.sample_sizes(params.applied), (out.height, out.width))


def _smallest(spec: ImageSpec) -> tuple[int, int]:
    """The smallest height and width of the batch's samples (no device read: ragged sizes live on the CPU)."""
    if spec.sizes is None or spec.sizes.numel() == 0:
        return spec.height, spec.width
    height, width = spec.sizes.amin(dim=0).tolist()
    return height, width


def _center_crop_offset(length: Tensor, crop: int) -> Tensor:
    """torchvision's centre-crop anchor along one axis, (B,) float64: negative where it pads first."""
    pad = ((crop - length) // 2).clamp(min=0)
    padded = length + pad + ((crop - length + 1) // 2).clamp(min=0)
    return torch.round((padded - crop) / 2.0) - pad


class CenterCrop(GeometricTransform):
    """Crop the centre (zero-padded when the crop is larger than the image, as torchvision).

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.CenterCrop(2)])(torch.arange(16.0).view(1, 4, 4)).tolist()
        [[[5.0, 6.0], [9.0, 10.0]]]
    """

    axis_aligned = True
    sizes_samples = True

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__(1.0)
        self.size = parse_size(size)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        return spec.resized(*self.size)

    def padding_for(self, spec: ImageSpec) -> Padding | None:
        height, width = _smallest(spec)
        return Padding() if height < self.size[0] or width < self.size[1] else None

    def matrix(self, params: Params, spec: ImageSpec) -> Tensor:
        height, width = spec.sample_sizes(params.applied)
        return geometry.crop(_center_crop_offset(height, self.size[0]), _center_crop_offset(width, self.size[1]))


def _parse_pad(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) from torchvision's 1-, 2- or 4-element padding."""
    if isinstance(padding, numbers.Integral):
        padding = [int(padding)]
    if not isinstance(padding, Sequence) or len(padding) not in (1, 2, 4):
        raise ValueError(f"padding must be an int or a sequence of 1, 2 or 4 ints, got {padding!r}")
    if not all(isinstance(v, numbers.Integral) for v in padding):
        raise TypeError(f"padding must hold ints, got {padding!r}")
    if len(padding) == 1:
        padding = list(padding) * 4
    elif len(padding) == 2:
        padding = [padding[0], padding[1], padding[0], padding[1]]
    if min(padding) < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    return tuple(int(v) for v in padding)  # type: ignore[return-value]


class Pad(GeometricTransform):
    """Pad the borders by ``padding`` (left, top, right, bottom) with ``padding_mode``.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.Pad(1, fill=9)])(torch.zeros(1, 1, 1)).tolist()
        [[[9.0, 9.0, 9.0], [9.0, 0.0, 9.0], [9.0, 9.0, 9.0]]]
    """

    axis_aligned = True

    def __init__(
        self, padding: int | Sequence[int], fill: float | Sequence[float] = 0, padding_mode: str = "constant"
    ) -> None:
        super().__init__(1.0)
        self.pad = _parse_pad(padding)
        self.padding = parse_padding(fill, padding_mode)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        check_fill(self.padding.fill, spec)
        left, top, right, bottom = self.pad
        if self.padding.mode == "reflect" and (max(left, right) >= spec.width or max(top, bottom) >= spec.height):
            raise ValueError(f"reflect padding {self.pad} must be smaller than the image ({spec.height}x{spec.width})")
        return spec.resized(spec.height + top + bottom, spec.width + left + right)

    def matrix(self, params: Params, spec: ImageSpec) -> Tensor:
        like = params.applied
        return geometry.crop(batch_full(-self.pad[1], like), batch_full(-self.pad[0], like))


@register_params
class CropParams(Params):
    """top, left (B,) int64: the crop's corner in the (padded) input; height, width (B,) int64.
    ``applied`` False: the sample got the crop's deterministic fallback (centre crop, whole image)."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor


class RandomCrop(GeometricTransform):
    """Crop a random ``size`` window, optionally after padding, as torchvision. A sample that ``p``
    skips gets the centre window of the padded image instead (as CenterCrop places it).

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomCrop(32, padding=4)], seed=0)(torch.rand(8, 3, 32, 32)).shape
        torch.Size([8, 3, 32, 32])
    """

    axis_aligned = True
    sizes_samples = True
    skips_in_params = True

    def __init__(
        self,
        size: int | Sequence[int],
        padding: int | Sequence[int] | None = None,
        pad_if_needed: bool = False,
        fill: float | Sequence[float] = 0,
        padding_mode: str = "constant",
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        self.size = parse_size(size)
        self.pad = _parse_pad(padding) if padding is not None else (0, 0, 0, 0)
        self.pad_if_needed = pad_if_needed
        self.padding = parse_padding(fill, padding_mode)

    def _padded(self, height: Tensor, width: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(padded height, padded width, pad top, pad left) per sample, as torchvision's RandomCrop
        pads an image of ``height`` x ``width`` (float64 tensors)."""
        left, top, right, bottom = self.pad
        height, width = height + top + bottom, width + left + right
        top, left = torch.full_like(height, top), torch.full_like(width, left)
        if self.pad_if_needed:
            extra_h = (self.size[0] - height).clamp(min=0)
            extra_w = (self.size[1] - width).clamp(min=0)
            height, width, top, left = height + 2 * extra_h, width + 2 * extra_w, top + extra_h, left + extra_w
        return height, width, top, left

    def padding_for(self, spec: ImageSpec) -> Padding | None:
        height, width = _smallest(spec)
        needed = self.pad_if_needed and (height < self.size[0] or width < self.size[1])
        return self.padding if any(self.pad) or needed else None

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        check_fill(self.padding.fill, spec)
        if spec.sizes is not None and self.padding.mode != "constant":
            raise ValueError(f"RandomCrop on a RaggedBatch pads with a constant fill only, got padding_mode={self.padding.mode!r}")
        smallest = torch.tensor(_smallest(spec), dtype=torch.float64)
        height, width, _, _ = (int(v) for v in self._padded(smallest[0], smallest[1]))
        left, top, right, bottom = self.pad
        extra_h = (height - spec.height - top - bottom) // 2  # what pad_if_needed adds on either side
        extra_w = (width - spec.width - left - right) // 2
        if self.padding.mode == "reflect" and (  # torchvision pads both at once, and torch's reflect pad refuses
            max(left, right) + extra_w >= spec.width or max(top, bottom) + extra_h >= spec.height  # the image's size
        ):
            raise ValueError(f"reflect padding must be smaller than the image it pads ({spec.height}x{spec.width}, "
                             f"padding {self.pad}, pad_if_needed to {self.size})")
        if height < self.size[0] or width < self.size[1]:
            raise ValueError(
                f"Required crop size {self.size} is larger than the (padded) input image size {(height, width)}"
            )
        return spec.resized(*self.size)

    def draw(self, rng: Stream, spec: ImageSpec) -> CropParams:
        applied = self.coin(rng)
        height, width, _, _ = self._padded(*spec.sample_sizes(applied))
        slack = torch.stack([height - self.size[0], width - self.size[1]], dim=1)
        corner = rng.randint(slack + 1, 2)
        if self.p < 1.0:  # the others: the centre crop, as torchvision's CenterCrop places it
            centre = torch.stack([_center_crop_offset(height, self.size[0]), _center_crop_offset(width, self.size[1])], 1)
            corner = torch.where(applied[:, None], corner, centre.to(torch.int64))
        size = constant(self.size, torch.int64, applied.device).repeat(applied.shape[0], 1)  # the caller's to edit
        return CropParams(applied, corner[:, 0], corner[:, 1], size[:, 0], size[:, 1])

    def matrix(self, params: CropParams, spec: ImageSpec) -> Tensor:
        _, _, pad_top, pad_left = self._padded(*spec.sample_sizes(params.applied))
        return geometry.crop(params.top - pad_top, params.left - pad_left)


def _round(v: float | Tensor) -> float | Tensor:
    """Round halves to even, a number (Python's round) or a tensor (torch.round) alike."""
    return torch.round(v) if isinstance(v, Tensor) else float(round(v))


def _choose(condition: bool | Tensor, a: float | Tensor, b: float | Tensor) -> float | Tensor:
    """``a`` where ``condition`` holds, else ``b``: torch.where for tensors, a plain choice for numbers."""
    return torch.where(condition, a, b) if isinstance(condition, Tensor) else (a if condition else b)


class RandomResizedCrop(GeometricTransform):
    """Crop a random area and aspect ratio, resized to ``size`` (torchvision's 10 tries + fallback).
    A sample that ``p`` skips is resized whole instead.

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomResizedCrop(224)], seed=0)(torch.rand(2, 3, 256, 256)).shape
        torch.Size([2, 3, 224, 224])
    """

    axis_aligned = True
    sizes_samples = True
    skips_in_params = True

    def __init__(
        self,
        size: int | Sequence[int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: InterpolationMode | str = InterpolationMode.BILINEAR,
        antialias: bool = True,
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        self.size = parse_size(size)
        self.scale = parse_pair(scale, "scale")
        self.ratio = parse_pair(ratio, "ratio")
        if self.scale[0] < 0 or self.ratio[0] <= 0:  # a try of area 0 fails and is drawn again, as torchvision's
            raise ValueError(f"scale must be non-negative and ratio positive, got {self.scale} and {self.ratio}")
        self.interpolation = parse_interpolation(interpolation, _RESIZE_MODES)
        self.antialias = bool(antialias)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        return spec.resized(*self.size)

    def draw(self, rng: Stream, spec: ImageSpec) -> CropParams:
        applied = self.coin(rng)
        if spec.sizes is None:  # one size for the batch: its bounds and fallback box are numbers
            height, width = float(spec.height), float(spec.width)
            bounds = height, width
        else:
            height, width = spec.sample_sizes(applied)
            bounds = height[:, None], width[:, None]
        top, left, h, w = random_boxes(rng, *bounds, self.scale, self.ratio, tall=False)
        ok = (w > 0) & (w <= bounds[1]) & (h > 0) & (h <= bounds[0])
        found, box = first_valid(ok, (top, left, h, w))
        box = [torch.where(found, v, fb) for v, fb in zip(box, self._fallback(height, width))]
        if self.p < 1.0:  # the others: the whole image, resized
            box = [torch.where(applied, v, whole) for v, whole in zip(box, (0.0, 0.0, height, width))]
        return CropParams(applied, *(v.to(torch.int64) for v in box))

    def _fallback(self, height: float | Tensor, width: float | Tensor) -> tuple[float | Tensor, ...]:
        """torchvision's central crop when no try fits: (top, left, height, width) as numbers for one
        image size, or (B,) float64 per sample; at least one pixel wide and high (where an extreme
        ratio rounds a side to 0, torchvision's resize raises)."""
        low, high = min(self.ratio), max(self.ratio)
        in_ratio = width / height
        h = _choose(in_ratio < low, _round(width / low), height)
        w = _choose(in_ratio > high, _round(height * high), width)
        h, w = (v.clamp(min=1.0) if isinstance(v, Tensor) else max(v, 1.0) for v in (h, w))
        return (height - h) // 2, (width - w) // 2, h, w

    def matrix(self, params: CropParams, spec: ImageSpec) -> Tensor:
        return geometry.crop(params.top, params.left) @ geometry.resize((params.height, params.width), self.size)

    def source_box(self, params: CropParams, spec: ImageSpec) -> Tensor:
        left, top = params.left, params.top
        return torch.stack([left, left + params.width - 1, top, top + params.height - 1], dim=1).to(torch.float64)


@register_params
class AffineParams(Params):
    """angle (B,) degrees as F.affine takes it; translate (B, 2) pixels; scale (B,); shear (B, 2) degrees."""

    angle: Tensor
    translate: Tensor
    scale: Tensor
    shear: Tensor


def _parse_center(center: Sequence[float] | None) -> tuple[float, float] | None:
    if center is None:
        return None
    if not isinstance(center, Sequence) or len(center) != 2:
        raise ValueError(f"center must be a sequence of two numbers, got {center!r}")
    return float(center[0]), float(center[1])


class _FillMixin(GeometricTransform):
    """Transforms that may look outside the image and show a constant ``fill`` there."""

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        check_fill(self.padding.fill, spec)
        return spec


class _Affine(_FillMixin):
    """Shared by RandomRotation and RandomAffine: one affine matrix about ``center``."""

    angle_sign: ClassVar[float] = 1.0  # F.affine's angle is clockwise; F.rotate's counter-clockwise

    def __init__(
        self,
        degrees: float | Sequence[float],
        interpolation: InterpolationMode | str,
        center: Sequence[float] | None,
        fill: float | Sequence[float],
        p: float,
    ) -> None:
        super().__init__(p)
        self.degrees = parse_range(degrees, "degrees")
        self.interpolation = parse_interpolation(interpolation, _RESIZE_MODES)
        self.center = _parse_center(center)
        self.padding = Padding("constant", parse_fill(fill))

    def matrix(self, params: AffineParams, spec: ImageSpec) -> Tensor:
        cx, cy = geometry.rotation_center(spec.height, spec.width, self.center)
        center = constant((cx, cy), torch.float64, params.angle.device).expand(params.angle.shape[0], 2)
        angle = self.angle_sign * params.angle
        return geometry.affine(angle, params.translate, params.scale, params.shear, center)


class RandomRotation(_Affine):
    """Rotate by a random angle in ``degrees`` (counter-clockwise, as torchvision).

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomRotation(30)], seed=0)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    angle_sign = -1.0

    def __init__(
        self,
        degrees: float | Sequence[float],
        interpolation: InterpolationMode | str = InterpolationMode.NEAREST,
        expand: bool = False,
        center: Sequence[float] | None = None,
        fill: float | Sequence[float] = 0,
        p: float = 1.0,
    ) -> None:
        if expand:
            raise ValueError("expand=True is not supported: it would give every sample its own output size")
        super().__init__(degrees, interpolation, center, fill, p)

    def draw(self, rng: Stream, spec: ImageSpec) -> AffineParams:
        applied = self.coin(rng)
        angle = rng.uniform(1, *self.degrees)[:, 0]
        translate, shear = torch.zeros(2, angle.shape[0], 2, dtype=torch.float64, device=angle.device)  # two tensors
        return AffineParams(applied, angle, translate, torch.ones_like(angle), shear)


class RandomAffine(_Affine):
    """Random affine map: rotation, translation, scale and shear about the centre, as torchvision.

    Example:
        >>> import torch, gpuaug as ga
        >>> t = ga.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5)
        >>> ga.Pipeline([t], seed=0)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        degrees: float | Sequence[float],
        translate: Sequence[float] | None = None,
        scale: Sequence[float] | None = None,
        shear: float | Sequence[float] | None = None,
        interpolation: InterpolationMode | str = InterpolationMode.NEAREST,
        fill: float | Sequence[float] = 0,
        center: Sequence[float] | None = None,
        p: float = 1.0,
    ) -> None:
        super().__init__(degrees, interpolation, center, fill, p)
        if translate is not None:
            if not isinstance(translate, Sequence) or len(translate) != 2 or not all(0 <= t <= 1 for t in translate):
                raise ValueError(f"translate must be two fractions in [0, 1], got {translate!r}")
            translate = (float(translate[0]), float(translate[1]))
        self.translate = translate
        self.scale = parse_range(scale, "scale") if scale is not None else None
        if self.scale is not None and self.scale[0] <= 0:
            raise ValueError(f"scale values must be positive, got {self.scale}")
        self.shear = self._parse_shear(shear)

    @staticmethod
    def _parse_shear(shear: float | Sequence[float] | None) -> tuple[float, float, float, float] | None:
        if shear is None:
            return None
        if isinstance(shear, numbers.Real):
            return (*parse_range(shear, "shear"), 0.0, 0.0)
        if isinstance(shear, Sequence) and len(shear) == 2:
            return (*parse_range(shear, "shear"), 0.0, 0.0)
        if isinstance(shear, Sequence) and len(shear) == 4:
            return (*parse_range(shear[:2], "shear"), *parse_range(shear[2:], "shear"))
        raise ValueError(f"shear must be a number or a sequence of 2 or 4 numbers, got {shear!r}")

    def draw(self, rng: Stream, spec: ImageSpec) -> AffineParams:
        applied = self.coin(rng)
        angle = rng.uniform(1, *self.degrees)[:, 0]
        translate = torch.zeros(angle.shape[0], 2, dtype=torch.float64, device=angle.device)
        if self.translate is not None:
            max_shift = (self.translate[0] * spec.width, self.translate[1] * spec.height)
            max_shift = constant(max_shift, torch.float64, angle.device)
            translate = torch.round((2 * rng.uniform(2) - 1) * max_shift)
        scale = rng.uniform(1, *self.scale)[:, 0] if self.scale is not None else torch.ones_like(angle)
        shear = torch.zeros_like(translate)
        if self.shear is not None:
            shear = torch.cat([rng.uniform(1, *self.shear[:2]), rng.uniform(1, *self.shear[2:])], dim=1)
        return AffineParams(applied, angle, translate, scale, shear)


@register_params
class PerspectiveParams(Params):
    """startpoints, endpoints (B, 4, 2) corners (x, y); coefficients (B, 8) as F.perspective takes them."""

    startpoints: Tensor
    endpoints: Tensor
    coefficients: Tensor


class RandomPerspective(_FillMixin):
    """Random perspective distortion of the corners, as torchvision.

    A large distortion of a small image can draw corners that leave no map (two meet, or three lie
    on a line); where torchvision raises, that sample keeps its image (identity coefficients).

    Example:
        >>> import torch, gpuaug as ga
        >>> ga.Pipeline([ga.RandomPerspective(0.5, p=1.0)], seed=0)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        distortion_scale: float = 0.5,
        p: float = 0.5,
        interpolation: InterpolationMode | str = InterpolationMode.BILINEAR,
        fill: float | Sequence[float] = 0,
    ) -> None:
        super().__init__(p)
        if not 0 <= distortion_scale <= 1:
            raise ValueError(f"distortion_scale must be in [0, 1], got {distortion_scale}")
        self.distortion_scale = float(distortion_scale)
        self.interpolation = parse_interpolation(interpolation, _RESIZE_MODES)
        self.padding = Padding("constant", parse_fill(fill))

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        if spec.height < 2 or spec.width < 2:
            raise ValueError(f"RandomPerspective needs images of at least 2x2 pixels, got {spec.height}x{spec.width}")
        return super().output_spec(spec)

    def draw(self, rng: Stream, spec: ImageSpec) -> PerspectiveParams:
        height, width = spec.height, spec.width
        applied = self.coin(rng)
        bound_h = int(self.distortion_scale * (height // 2)) + 1
        bound_w = int(self.distortion_scale * (width // 2)) + 1
        r = rng.randint(constant((bound_w, bound_h) * 4, torch.int64, applied.device), 8).view(-1, 4, 2)
        far = ((0, 0), (width - bound_w, 0), (width - bound_w, height - bound_h), (0, height - bound_h))
        endpoints = r + constant(far, torch.int64, r.device)
        start = constant(((0, 0), (width - 1, 0), (width - 1, height - 1), (0, height - 1)), torch.int64, r.device)
        startpoints = start.expand_as(endpoints).clone()
        coefficients = geometry.perspective_coefficients(startpoints, endpoints)
        return PerspectiveParams(applied, startpoints, endpoints, coefficients)

    def matrix(self, params: PerspectiveParams, spec: ImageSpec) -> Tensor:
        return geometry.perspective(params.coefficients)
