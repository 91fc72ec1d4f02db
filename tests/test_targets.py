"""Targets and inverses: masks, boxes, keypoints and labels follow each sample's geometry; predictions map back.

- parity with torchvision.transforms.v2.functional on tv_tensors, sample by sample from the
  recorded parameters, for every geometric transform and for a chain applied step by step;
- boxes leaving the image are dropped with their labels; formats, normalized coordinates, padded
  boxes; masks (nearest, their own fill, untouched by colour); keypoints (visibility, flip map);
- round trips through the inverses, test-time augmentation example; hypothesis properties over
  random geometry; bad input, inputs never modified, CUDA and the other backend when present.

torchvision's keypoint kernels disagree on the pixel convention: resize, affine, rotate and
perspective use continuous coordinates (the boxes' convention, which gpuaug follows for both),
while horizontal/vertical_flip_keypoints use pixel indices (x -> W - 1 - x). gpuaug flips
keypoints as boxes (x -> W - x): the parity tests expect torchvision's flip plus one pixel, and
test_keypoint_flips_use_the_boxes_convention pins why.
"""

from __future__ import annotations

import runpy
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from _parity_helpers import edge_free_mask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import Tensor
from torchvision import tv_tensors as T
from torchvision.ops import box_convert
from torchvision.transforms.v2 import functional as F

import gpuaug as ga

H, W = 37, 53
B = 6
FILL = 255  # the masks' fill in these tests (the images' is the transform's own)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
HYPOTHESIS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "derandomize": True}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_boxes(n: int, g: torch.Generator, hw: tuple[int, int] = (H, W)) -> Tensor:
    """(n, 4) xyxy float32 boxes inside the image, 5% to 55% of its size."""
    size = torch.tensor([hw[1], hw[0]], dtype=torch.float32)
    wh = (torch.rand(n, 2, generator=g) * 0.5 + 0.05) * size
    xy = torch.rand(n, 2, generator=g) * (size - wh)
    return torch.cat([xy, xy + wh], dim=1)


def _inputs(seed: int = 0, n: int = 5, k: int = 7):
    """uint8 images and tv_tensors targets: per-sample BoundingBoxes, labels and KeyPoints, a (B, H, W) Mask."""
    g = _gen(seed)
    images = torch.randint(0, 256, (B, 3, H, W), dtype=torch.uint8, generator=g)
    boxes = [T.BoundingBoxes(_random_boxes(n, g), format="XYXY", canvas_size=(H, W)) for _ in range(B)]
    labels = [torch.randint(0, 80, (n,), generator=g) for _ in range(B)]
    keypoints = [T.KeyPoints(torch.rand(k, 2, generator=g) * torch.tensor([W, H]), canvas_size=(H, W)) for _ in range(B)]
    masks = T.Mask(torch.randint(0, 5, (B, H, W), dtype=torch.uint8, generator=g))
    return images, boxes, labels, keypoints, masks


def _plain(t: Tensor) -> Tensor:
    return t.as_subclass(Tensor)


def _crop(p, b: int) -> list[int]:
    return [int(p.top[b]), int(p.left[b]), int(p.height[b]), int(p.width[b])]


# name: (transform, torchvision reference of one sample's tv_tensor from the recorded params p)
CASES = {
    "hflip": (lambda: ga.RandomHorizontalFlip(0.5), lambda t, p, b: F.horizontal_flip(t)),
    "vflip": (lambda: ga.RandomVerticalFlip(0.5), lambda t, p, b: F.vertical_flip(t)),
    "crop": (lambda: ga.RandomCrop((30, 40)), lambda t, p, b: F.crop(t, *_crop(p, b))),
    "crop+padding": (
        lambda: ga.RandomCrop((40, 50), padding=4, fill=3),
        lambda t, p, b: F.crop(F.pad(t, [4], fill=FILL), *_crop(p, b)),
    ),
    "center-crop": (lambda: ga.CenterCrop((30, 40)), lambda t, p, b: F.center_crop(t, [30, 40])),
    "resize": (lambda: ga.Resize((24, 31)), lambda t, p, b: F.resize(t, [24, 31])),
    "resize-enlarge": (lambda: ga.Resize((50, 70)), lambda t, p, b: F.resize(t, [50, 70])),
    "resize-short-edge": (lambda: ga.Resize(20), lambda t, p, b: F.resize(t, [20])),
    "random-resized-crop": (
        lambda: ga.RandomResizedCrop((24, 20), scale=(0.25, 1.0)),
        lambda t, p, b: F.resized_crop(t, *_crop(p, b), [24, 20]),
    ),
    "pad": (lambda: ga.Pad([1, 2, 3, 4], fill=9), lambda t, p, b: F.pad(t, [1, 2, 3, 4], fill=FILL)),
    "rotation": (lambda: ga.RandomRotation(40), lambda t, p, b: F.rotate(t, float(p.angle[b]), fill=FILL)),
    "rotation-center": (
        lambda: ga.RandomRotation((-30, 60), center=(10, 5)),
        lambda t, p, b: F.rotate(t, float(p.angle[b]), center=[10, 5], fill=FILL),
    ),
    "affine": (
        lambda: ga.RandomAffine(25, translate=(0.1, 0.2), scale=(0.8, 1.2), shear=(-10, 10, -5, 5)),
        lambda t, p, b: F.affine(
            t, angle=float(p.angle[b]), translate=p.translate[b].tolist(), scale=float(p.scale[b]),
            shear=p.shear[b].tolist(), fill=FILL,
        ),
    ),
    "perspective": (
        lambda: ga.RandomPerspective(0.5, p=0.8),
        lambda t, p, b: F.perspective(t, p.startpoints[b].tolist(), p.endpoints[b].tolist(), fill=FILL),
    ),
}
WARPED = {"rotation", "rotation-center", "affine", "perspective"}  # compared away from the image border
KEYPOINT_FLIP_OFFSET = {"hflip": (1.0, 0.0), "vflip": (0.0, 1.0)}  # see the module docstring


def _sanitize(boxes: T.BoundingBoxes) -> tuple[T.BoundingBoxes, Tensor]:
    """torchvision's SanitizeBoundingBoxes with its defaults (gpuaug's), after clamping to the canvas
    (torchvision's float32 resize can put a clamped edge one ulp past it, which sanitize then drops)."""
    return F.sanitize_bounding_boxes(F.clamp_bounding_boxes(boxes), min_size=1.0, min_area=1.0)


def _assert_boxes(actual: Tensor, expected: Tensor, what: str) -> None:
    torch.testing.assert_close(_plain(actual).double(), _plain(expected).double(), atol=1e-3, rtol=0, msg=what)


@pytest.mark.parametrize("name", list(CASES))
def test_targets_match_torchvision(name):
    factory, reference = CASES[name]
    images, boxes, labels, keypoints, masks = _inputs(seed=1)
    pipe = ga.Pipeline([factory()], seed=3, targets=ga.TargetOptions(mask_fill=FILL))
    out = pipe(T.Image(images), masks=masks, boxes=boxes, labels=labels, keypoints=keypoints)
    p = out.params.transforms[0]
    out_hw = tuple(out.images.shape[-2:])
    assert type(out.images) is T.Image and type(out.masks) is T.Mask and out.masks.shape == (B, *out_hw)
    edges = edge_free_mask(out.params.matrices[0], out_hw, (H, W))[:, 0] if name in WARPED else None
    for b in range(B):
        applied = bool(p.applied[b])
        ref = partial(reference, p=p, b=b) if applied else (lambda t: t)

        # boxes: torchvision's kernel, then its SanitizeBoundingBoxes with gpuaug's default min_area
        expected, valid = _sanitize(ref(boxes[b]))
        assert type(out.boxes[b]) is T.BoundingBoxes and tuple(out.boxes[b].canvas_size) == out_hw
        _assert_boxes(out.boxes[b], expected, f"{name} sample {b} boxes")
        assert torch.equal(out.labels[b], labels[b][valid]), f"{name} sample {b} labels"
        # keypoints: torchvision's kernel (plus one pixel for its flips); visible as its SanitizeKeyPoints (which
        # drops x = W and y = H, where gpuaug keeps them: no random point lands exactly there)
        expected = _plain(ref(keypoints[b])).clone()
        if applied and name in KEYPOINT_FLIP_OFFSET:
            expected += torch.tensor(KEYPOINT_FLIP_OFFSET[name])
        assert type(out.keypoints[b]) is T.KeyPoints and tuple(out.keypoints[b].canvas_size) == out_hw
        torch.testing.assert_close(_plain(out.keypoints[b]), expected, atol=1e-3, rtol=0)
        _, visible = F.sanitize_keypoints(T.KeyPoints(expected, canvas_size=out_hw))
        assert torch.equal(out.keypoints_visible[b], visible), f"{name} sample {b} visibility"
        # masks: nearest, with the masks' own fill
        expected = _plain(ref(T.Mask(masks[b])))
        if edges is None:
            assert torch.equal(_plain(out.masks[b]), expected), f"{name} sample {b} mask"
        else:
            compare = edges[b] if applied else torch.ones_like(edges[b])
            assert torch.equal(out.masks[b][compare], expected[compare]), f"{name} sample {b} mask"


def test_warped_masks_show_their_fill_and_only_their_values():
    _, _, _, _, masks = _inputs()
    pipe = ga.Pipeline([ga.RandomRotation((30, 50), fill=7)], seed=0, targets=ga.TargetOptions(mask_fill=FILL))
    out = pipe(torch.zeros(B, 3, H, W), masks=masks)
    assert bool((out.masks[:, 0, 0] == FILL).all()), "the corners of a rotated mask are outside the source"
    assert set(out.masks.unique().tolist()) <= set(masks.unique().tolist()) | {FILL}


def test_masks_of_a_resized_crop_and_flips_are_torchvisions():
    """The segmentation recipe: torchvision resizes a Mask nearest, then flips it (gpuaug once
    flipped the nearest footprints of the folded map instead, a pixel off and more)."""
    _, _, _, _, masks = _inputs()
    pipe = ga.Pipeline([ga.RandomResizedCrop((40, 44)), ga.RandomHorizontalFlip(), ga.RandomVerticalFlip()], seed=2)
    out = pipe(torch.rand(B, 3, H, W), masks=masks, return_params=True)
    crop, hflip, vflip = out.params.transforms
    assert bool(hflip.applied.any() & vflip.applied.any())
    for b in range(B):
        ref = F.resized_crop(T.Mask(masks[b]), *_crop(crop, b), [40, 44])
        ref = F.horizontal_flip(ref) if hflip.applied[b] else ref
        ref = F.vertical_flip(ref) if vflip.applied[b] else ref
        assert torch.equal(out.masks[b], ref.as_subclass(Tensor)), f"sample {b}"


@pytest.mark.parametrize("gated", [ga.RandomRotation(30, p=0.5), ga.RandomPerspective(), ga.RandomAffine(20, p=0.5)],
                         ids=["rotation", "perspective", "affine"])
def test_masks_of_samples_that_skip_a_rotation_after_a_flip_are_torchvisions(gated):
    """A sample that skips the pass's gated rotation is resized and flipped as torchvision does it
    (the rotation's link once counted as the resize that nearest footprints are traced to, so a
    flip before it moved those samples a pixel)."""
    masks = torch.randint(0, 200, (16, 21, 27), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    pipe = ga.Pipeline([ga.RandomResizedCrop((15, 19), scale=(0.3, 1.0)), ga.RandomHorizontalFlip(), gated], seed=3)
    out = pipe(torch.zeros(16, 1, 21, 27), masks=masks)
    crop, flip, rotation = out.params.transforms
    skipped = (~rotation.applied).nonzero().flatten().tolist()
    assert bool(flip.applied[skipped].any()), "some sample must skip the rotation after a flip"
    for b in skipped:
        ref = F.resized_crop(T.Mask(masks[b]), *_crop(crop, b), [15, 19])
        ref = F.horizontal_flip(ref) if flip.applied[b] else ref
        assert torch.equal(out.masks[b], ref.as_subclass(Tensor)), f"sample {b}"


def _chain() -> list[ga.Transform]:
    return [
        ga.RandomResizedCrop((40, 44), scale=(0.3, 1.0)),
        ga.RandomVerticalFlip(0.5),
        ga.RandomRotation(30),
        ga.RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.2), shear=5),
        ga.RandomPerspective(0.4, p=0.8),
        ga.RandomCrop((30, 36)),
        ga.Resize((26, 30)),
    ]


def _chain_reference(t, params, b: int, keypoint: bool):
    """torchvision applied step by step; keypoints also report if they stayed inside every canvas."""
    rrc, flip, rot, aff, persp, crop, _ = params.transforms
    inside = torch.ones(t.shape[:-1], dtype=torch.bool) if keypoint else None
    steps = [
        lambda t: F.resized_crop(t, *_crop(rrc, b), [40, 44]),
        lambda t: F.vertical_flip(t) if flip.applied[b] else t,
        lambda t: F.rotate(t, float(rot.angle[b])),
        lambda t: F.affine(t, angle=float(aff.angle[b]), translate=aff.translate[b].tolist(),
                           scale=float(aff.scale[b]), shear=aff.shear[b].tolist()),
        lambda t: F.perspective(t, persp.startpoints[b].tolist(), persp.endpoints[b].tolist()) if persp.applied[b] else t,
        lambda t: F.crop(t, *_crop(crop, b)),
        lambda t: F.resize(t, [26, 30]),
    ]
    alive = None if keypoint else torch.ones(t.shape[0], dtype=torch.bool)
    for i, step in enumerate(steps):
        t = step(t)
        if keypoint:
            if i == 1 and flip.applied[b]:
                t = T.wrap(t + torch.tensor([0.0, 1.0]), like=t)  # the boxes' convention
            inside &= F.sanitize_keypoints(t)[1]
        else:
            alive &= ((t[:, 2:] - t[:, :2]) > 0).all(dim=1)
    return t, (inside if keypoint else alive)


def test_chain_matches_torchvision_step_by_step():
    """Seven folded steps: boxes are clipped to every canvas a step fills outside of and dropped once
    empty in one, keypoints are invisible once outside one, as torchvision applied step by step."""
    images, boxes, labels, keypoints, _ = _inputs(seed=2)
    out = ga.Pipeline(_chain(), seed=5)(images, boxes=boxes, labels=labels, keypoints=keypoints)
    assert len(out.params.matrices) == 1
    dropped = 0
    for b in range(B):
        expected, alive = _chain_reference(boxes[b], out.params, b, keypoint=False)
        expected, valid = _sanitize(expected)
        keep = alive[valid]
        dropped += int((~alive).sum())
        _assert_boxes(out.boxes[b], expected[keep], f"sample {b} boxes")
        assert torch.equal(out.labels[b], labels[b][valid][keep])
        expected, inside = _chain_reference(keypoints[b], out.params, b, keypoint=True)
        torch.testing.assert_close(_plain(out.keypoints[b]), _plain(expected), atol=1e-3, rtol=0)
        assert torch.equal(out.keypoints_visible[b], inside)
    assert 0 < sum(len(x) for x in out.boxes) < B * 5, "the chain should keep some boxes and drop some"


def test_targets_follow_every_resampling_pass():
    """A blur between two geometric steps splits them into two passes; targets go through both."""
    images, boxes, labels, keypoints, masks = _inputs(seed=3)
    pipe = ga.Pipeline([ga.RandomResizedCrop((30, 40)), ga.GaussianBlur(3), ga.RandomRotation(30)], seed=2)
    out = pipe(images, masks=masks, boxes=boxes, labels=labels, keypoints=keypoints)
    assert len(out.params.matrices) == 2
    crop, _, rotation = out.params.transforms
    edges = edge_free_mask(out.params.matrices[1], (30, 40), (30, 40))[:, 0]
    for b in range(B):

        def first(t, b=b):
            return F.resized_crop(t, *_crop(crop, b), [30, 40])

        def second(t, b=b):
            return F.rotate(t, float(rotation.angle[b]))

        cropped = first(boxes[b])
        expected, valid = _sanitize(second(cropped))
        keep = ((cropped[:, 2:] > cropped[:, :2]).all(dim=1))[valid]  # a box the crop emptied stays dropped
        _assert_boxes(out.boxes[b], expected[keep], f"sample {b} boxes")
        assert torch.equal(out.labels[b], labels[b][valid][keep])
        torch.testing.assert_close(_plain(out.keypoints[b]), _plain(second(first(keypoints[b]))), atol=1e-3, rtol=0)
        assert torch.equal(out.masks[b][edges[b]], _plain(second(first(T.Mask(masks[b]))))[edges[b]])


# ---------------------------------------------------------------- boxes: dropping, forms, formats


def _three_boxes() -> Tensor:
    # CenterCrop((10, 20)) of 37x53 keeps x in [16, 36], y in [14, 24]
    return torch.tensor([[20.0, 16.0, 30.0, 22.0], [0.0, 0.0, 10.0, 10.0], [30.0, 15.0, 45.0, 20.0]])


def test_boxes_leaving_the_image_are_dropped_with_their_labels():
    pipe = ga.Pipeline([ga.CenterCrop((10, 20))], seed=0)
    out = pipe(torch.zeros(1, 3, H, W), boxes=[_three_boxes()], labels=[torch.tensor([1, 2, 3])])
    assert torch.equal(out.boxes[0], torch.tensor([[4.0, 2.0, 14.0, 8.0], [14.0, 1.0, 20.0, 6.0]]))
    assert torch.equal(out.labels[0], torch.tensor([1, 3]))
    # padded: every box stays, clipped; the validity marks the dropped one; labels unchanged
    padded_labels = torch.tensor([[1, 2, 3]])
    out = pipe(torch.zeros(1, 3, H, W), boxes=_three_boxes()[None], labels=padded_labels)
    assert torch.equal(out.boxes_valid, torch.tensor([[True, False, True]]))
    assert torch.equal(out.boxes[0, [0, 2]], torch.tensor([[4.0, 2.0, 14.0, 8.0], [14.0, 1.0, 20.0, 6.0]]))
    assert out.labels is padded_labels
    # the partly visible box keeps 30 of its 75 px: min_visibility 0.5 or min_area 40 drop it too
    for options in (ga.TargetOptions(min_visibility=0.5), ga.TargetOptions(min_area=40)):
        pipe = ga.Pipeline([ga.CenterCrop((10, 20))], seed=0, targets=options)
        out = pipe(torch.zeros(1, 3, H, W), boxes=[_three_boxes()], labels=[torch.tensor([1, 2, 3])])
        assert torch.equal(out.labels[0], torch.tensor([1])), options


@pytest.mark.parametrize("transforms", [[ga.RandomHorizontalFlip(p=1.0)], [ga.ColorJitter(0.1)]], ids=["flip", "no-geometry"])
def test_inverted_and_empty_boxes_are_dropped_as_torchvision_sanitizes_them(transforms):
    """torchvision's flip keeps an inverted box inverted, and SanitizeBoundingBoxes then drops it;
    gpuaug once turned it around and kept it."""
    boxes = torch.tensor([[12.0, 5.0, 4.0, 10.0], [4.0, 5.0, 4.0, 10.0], [4.0, 5.0, 12.0, 10.0], [4.0, 9.0, 12.0, 5.0]])
    out = ga.Pipeline(transforms, seed=0)(torch.rand(1, 3, 20, 30), boxes=[boxes], labels=[torch.arange(4)])
    ref = T.BoundingBoxes(boxes, format="XYXY", canvas_size=(20, 30))
    ref = F.horizontal_flip(ref) if isinstance(transforms[0], ga.RandomHorizontalFlip) else ref
    _, keep = F.sanitize_bounding_boxes(ref, min_size=1.0, min_area=1.0)
    assert torch.equal(out.labels[0], torch.arange(4)[keep])
    assert torch.equal(out.boxes[0], ref.as_subclass(Tensor)[keep])


@pytest.mark.parametrize("padding_mode", ["edge", "reflect", "symmetric"])
def test_a_pad_after_a_crop_shows_no_box_or_keypoint_in_its_mirrored_margin(padding_mode):
    """Boxes and keypoints move with the image as a constant pad moves them (torchvision's only mode
    for them): what the crop cut off stays cut off, though the margin shows the edge or a mirror image."""
    boxes = torch.tensor([[2.0, 5.0, 12.0, 10.0], [16.0, 8.0, 20.0, 12.0], [1.0, 1.0, 6.0, 4.0]])
    points = torch.tensor([[3.0, 7.0], [8.5, 10.5], [17.0, 9.0]])
    pipe = ga.Pipeline([ga.CenterCrop((10, 10)), ga.Pad([4, 3], padding_mode=padding_mode)], seed=0)
    out = pipe(torch.rand(1, 3, 20, 30), boxes=[boxes], labels=[torch.arange(3)], keypoints=[points])
    ref = F.pad(F.center_crop(T.BoundingBoxes(boxes, format="XYXY", canvas_size=(20, 30)), [10, 10]), [4, 3])
    ref, keep = _sanitize(ref)
    assert torch.equal(out.labels[0], torch.arange(3)[keep])
    _assert_boxes(out.boxes[0], ref, "boxes")
    cropped = F.center_crop(T.KeyPoints(points, canvas_size=(20, 30)), [10, 10])
    inside = ((cropped >= 0) & (cropped <= 10)).all(dim=-1)
    torch.testing.assert_close(_plain(out.keypoints[0]), _plain(F.pad(cropped, [4, 3])))
    assert torch.equal(out.keypoints_visible[0], inside) and bool(inside.any() & ~inside.all())


def test_thin_boxes_are_dropped_as_sanitize_bounding_boxes_drops_them():
    boxes = torch.tensor([[4.0, 5.0, 4.5, 15.0], [4.0, 5.0, 14.0, 5.8], [4.0, 5.0, 6.0, 7.0], [2.0, 2.0, 2.9, 2.9]])
    for min_size, min_area in ((1.0, 1.0), (0.5, 0.5), (0.0, 0.0), (2.0, 1.0)):
        pipe = ga.Pipeline([ga.RandomHorizontalFlip(p=1.0)], targets=ga.TargetOptions(min_size=min_size, min_area=min_area))
        out = pipe(torch.rand(1, 3, 20, 30), boxes=[boxes], labels=[torch.arange(4)])
        ref = F.horizontal_flip(T.BoundingBoxes(boxes, format="XYXY", canvas_size=(20, 30)))
        _, keep = F.sanitize_bounding_boxes(ref, min_size=min_size, min_area=min_area)
        assert torch.equal(out.labels[0], torch.arange(4)[keep]), (min_size, min_area)
    # an invalid padded box stays invalid
    out = ga.Pipeline([ga.CenterCrop((10, 20))])(
        torch.zeros(1, 3, H, W), boxes=_three_boxes()[None], boxes_valid=torch.tensor([[False, True, True]])
    )
    assert torch.equal(out.boxes_valid, torch.tensor([[False, False, True]]))


def test_padded_boxes_match_lists():
    images, boxes, labels, _, _ = _inputs(seed=4)
    pipe = ga.Pipeline([ga.RandomResizedCrop(28, scale=(0.2, 0.6)), ga.RandomRotation(20)], seed=1)
    listed = pipe(images, boxes=[_plain(b) for b in boxes], labels=labels, sample_ids=torch.arange(B))
    padded = pipe(images, boxes=torch.stack([_plain(b) for b in boxes]), labels=torch.stack(labels), sample_ids=torch.arange(B))
    assert padded.boxes.shape == (B, 5, 4) and padded.boxes_valid.shape == (B, 5)
    assert 0 < int(padded.boxes_valid.sum()) < B * 5
    for b in range(B):
        assert torch.equal(padded.boxes[b][padded.boxes_valid[b]], listed.boxes[b])
        assert torch.equal(padded.labels[b][padded.boxes_valid[b]], listed.labels[b])


@pytest.mark.parametrize("box_format", ["xywh", "cxcywh"])
@pytest.mark.parametrize("normalized", [False, True])
def test_formats_and_normalized_coordinates(box_format, normalized):
    images, boxes, _, keypoints, _ = _inputs(seed=5)
    transforms = [ga.RandomResizedCrop((30, 20), scale=(0.3, 1.0)), ga.RandomHorizontalFlip(), ga.RandomAffine(15)]
    ids = torch.arange(B)
    reference = ga.Pipeline(transforms, seed=2)(images, boxes=[_plain(b) for b in boxes], keypoints=keypoints, sample_ids=ids)
    in_scale = torch.tensor([W, H, W, H]) if normalized else torch.ones(4)
    out_scale = torch.tensor([20, 30, 20, 30]) if normalized else torch.ones(4)
    pipe = ga.Pipeline(transforms, seed=2, targets=ga.TargetOptions(box_format=box_format, normalized=normalized))
    given = [box_convert(_plain(b), "xyxy", box_format) / in_scale for b in boxes]
    given_points = [_plain(k) / in_scale[:2] for k in keypoints]
    out = pipe(images, boxes=given, keypoints=given_points, sample_ids=ids)
    for b in range(B):
        back = box_convert(out.boxes[b] * out_scale, box_format, "xyxy")
        torch.testing.assert_close(back, reference.boxes[b], atol=1e-4, rtol=0)
        torch.testing.assert_close(out.keypoints[b] * out_scale[:2], _plain(reference.keypoints[b]), atol=1e-4, rtol=0)
    # tv_tensors keep their own format
    tv = [T.BoundingBoxes(box_convert(_plain(b), "xyxy", "cxcywh"), format="CXCYWH", canvas_size=(H, W)) for b in boxes]
    out = ga.Pipeline(transforms, seed=2)(images, boxes=tv, sample_ids=ids)
    assert out.boxes[0].format == T.BoundingBoxFormat.CXCYWH
    torch.testing.assert_close(box_convert(_plain(out.boxes[0]), "cxcywh", "xyxy"), reference.boxes[0], atol=1e-4, rtol=0)


def test_integer_and_empty_boxes():
    pipe = ga.Pipeline([ga.RandomHorizontalFlip(1.0)], seed=0)
    boxes = [torch.tensor([[1, 2, 5, 6]]), torch.zeros(0, 4)]
    out = pipe(torch.zeros(2, 3, 8, 10), boxes=boxes, labels=[torch.tensor([4]), torch.zeros(0, dtype=torch.int64)])
    assert torch.equal(out.boxes[0], torch.tensor([[5.0, 2.0, 9.0, 6.0]])) and out.boxes[0].dtype == torch.float32
    assert out.boxes[1].shape == (0, 4) and out.labels[1].shape == (0,)


def test_an_empty_batch_with_targets():
    pipe = ga.Pipeline([ga.RandomHorizontalFlip()], seed=0)
    images = torch.zeros(0, 3, 8, 10)
    assert pipe(images, boxes=[]).boxes == []
    assert pipe(images, keypoints=[]).keypoints == []
    out = pipe(images, keypoints=torch.zeros(0, 4, 2), return_params=True)
    assert out.keypoints.shape == (0, 4, 2) and out.keypoints_visible.shape == (0, 4)
    assert pipe.inverse_keypoints(out.keypoints, out.params).shape == (0, 4, 2)
    assert pipe.inverse_boxes([], out.params) == []


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
@pytest.mark.parametrize("layers", [None, 3])
def test_mask_shapes_and_dtypes(dtype, layers):
    shape = (B, H, W) if layers is None else (B, layers, H, W)
    masks = torch.randint(0, 2 if dtype == torch.bool else 300, shape, generator=_gen(0)).to(dtype)
    pipe = ga.Pipeline([ga.RandomResizedCrop((20, 24)), ga.RandomRotation(25)], seed=0)
    out = pipe(torch.zeros(B, 3, H, W), masks=masks)
    assert out.masks.dtype == dtype and out.masks.shape == (*shape[:-2], 20, 24)
    assert set(out.masks.unique().tolist()) <= set(masks.unique().tolist()) | {0}
    # the layers of one sample move together
    if layers is not None:
        single = pipe(torch.zeros(B, 3, H, W), masks=masks[:, 1], sample_ids=torch.arange(B))
        assert torch.equal(pipe(torch.zeros(B, 3, H, W), masks=masks, sample_ids=torch.arange(B)).masks[:, 1], single.masks)


def test_colour_and_noise_leave_masks_alone():
    _, _, _, _, masks = _inputs()
    pipe = ga.Pipeline(
        [ga.ColorJitter(0.4, 0.4, 0.4, 0.1), ga.GaussianBlur(3), ga.GaussianNoise(0.1), ga.RandomErasing(p=1.0),
         ga.ToDtype(torch.float32, scale=True), ga.Normalize((0.5,) * 3, (0.2,) * 3)],
        seed=0,
    )
    out = pipe(torch.rand(B, 3, H, W), masks=masks)
    assert torch.equal(out.masks, masks) and out.masks.data_ptr() != masks.data_ptr()


# ---------------------------------------------------------------- keypoints


def test_keypoint_flips_use_the_boxes_convention():
    """A flipped box's corners are the flipped corners (x -> W - x); torchvision's keypoint flip is
    x -> W - 1 - x, one pixel off its own box flip and its resize/affine keypoint kernels."""
    box = T.BoundingBoxes(torch.tensor([[2.0, 3.0, 7.0, 9.0]]), format="XYXY", canvas_size=(H, W))
    corners = T.KeyPoints(torch.tensor([[2.0, 3.0], [7.0, 9.0]]), canvas_size=(H, W))
    out = ga.Pipeline([ga.RandomHorizontalFlip(1.0)])(torch.zeros(1, 3, H, W), boxes=[box], keypoints=[corners])
    assert torch.equal(_plain(out.keypoints[0]), torch.tensor([[W - 2.0, 3.0], [W - 7.0, 9.0]]))
    assert torch.equal(_plain(out.boxes[0]), _plain(F.horizontal_flip(box)))
    assert torch.equal(_plain(F.horizontal_flip(corners)), torch.tensor([[W - 3.0, 3.0], [W - 8.0, 9.0]]))
    # and torchvision's resize maps keypoints as gpuaug does (continuous coordinates)
    out = ga.Pipeline([ga.Resize((74, 106))])(torch.zeros(1, 3, H, W), keypoints=[corners])
    assert torch.equal(_plain(out.keypoints[0]), _plain(F.resize(corners, [74, 106])))


FLIP_MAP = (0, 2, 1, 4, 3)  # nose, left/right eye, left/right ear


def test_flip_map_swaps_points_of_mirrored_samples():
    points = torch.rand(B, 5, 2, generator=_gen(3)) * torch.tensor([W, H])
    options = ga.TargetOptions(flip_map=list(FLIP_MAP))
    pipe = ga.Pipeline([ga.RandomHorizontalFlip(0.5), ga.Resize((30, 40))], seed=1, targets=options)
    ids = torch.arange(B)
    out = pipe(torch.zeros(B, 3, H, W), keypoints=points, keypoints_visible=torch.arange(5).expand(B, 5) != 3, sample_ids=ids)
    flipped = out.params.transforms[0].applied
    assert 0 < int(flipped.sum()) < B
    scale = torch.tensor([40 / W, 30 / H])
    for b in range(B):
        x = points[b].clone()
        if flipped[b]:
            x[:, 0] = W - x[:, 0]
            x = x[list(FLIP_MAP)]
        torch.testing.assert_close(out.keypoints[b], x * scale)
        # the invisible input point (index 3) stays invisible, wherever the swap takes it
        hidden = FLIP_MAP.index(3) if flipped[b] else 3
        assert out.keypoints_visible[b].tolist() == [k != hidden for k in range(5)]
    # lists give the same; the inverse swaps back
    listed = pipe(torch.zeros(B, 3, H, W), keypoints=list(points), sample_ids=ids)
    torch.testing.assert_close(torch.stack(listed.keypoints), out.keypoints)
    torch.testing.assert_close(pipe.inverse_keypoints(out.keypoints, out.params), points)


def test_flip_map_follows_the_orientation_of_a_perspective_map():
    """A sample is mirrored where its map turns a small triangle at the input's centre over: a perspective
    map can have a negative determinant without mirroring anything (w < 0 over its canvas)."""
    cx, cy = W / 2, H / 2
    triangle = torch.tensor([[cx, cy], [cx + 0.5, cy], [cx, cy + 0.5]]).expand(200, 3, 2)
    ids = torch.arange(200)
    for flip in (0.0, 1.0):
        transforms = [ga.RandomPerspective(0.8, p=1.0), ga.RandomHorizontalFlip(flip)]
        plain = ga.Pipeline(transforms, seed=0)(torch.zeros(200, 1, H, W), keypoints=triangle, sample_ids=ids).keypoints
        options = ga.TargetOptions(flip_map=(0, 2, 1))
        swapped = ga.Pipeline(transforms, seed=0, targets=options)(
            torch.zeros(200, 1, H, W), keypoints=triangle, sample_ids=ids).keypoints
        edges = plain[:, 1:] - plain[:, :1]
        turned = edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0] < 0  # the input's is > 0
        assert int(turned.sum()) == (200 if flip else 0)  # (none of these 200 draws is degenerate)
        expected = torch.where(turned[:, None, None], plain[:, [0, 2, 1]], plain)
        torch.testing.assert_close(swapped, expected)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_inverse_flip_map_follows_the_forward_orientation(flip):
    """A crop after a strong perspective: the inverse's one composed map cannot tell its orientation at
    the augmented image's centre (beyond the perspective's horizon there); the forward legs can."""
    transforms = [ga.RandomPerspective(0.8, p=1.0), ga.RandomCrop(16), ga.RandomHorizontalFlip(flip)]
    points = torch.tensor([[8.0, 8.0], [9.0, 8.0], [8.0, 9.0]]).expand(2000, 3, 2)
    plain = ga.Pipeline(transforms, seed=0)
    swapping = ga.Pipeline(transforms, seed=0, targets=ga.TargetOptions(flip_map=(0, 2, 1)))
    _, params = plain(torch.zeros(2000, 1, 64, 64), return_params=True)
    back, swapped = plain.inverse_keypoints(points, params), swapping.inverse_keypoints(points, params)
    expected = back[:, [0, 2, 1]] if flip else back
    # (a draw whose end quad is not convex is no projective map of the canvas: its orientation turns inside)
    quad = params.transforms[0].endpoints.double()
    edges = quad.roll(-1, dims=1) - quad
    turns = edges[:, :, 0] * edges.roll(-1, dims=1)[:, :, 1] - edges[:, :, 1] * edges.roll(-1, dims=1)[:, :, 0]
    convex = (turns > 0).all(dim=1) | (turns < 0).all(dim=1)
    assert int(convex.sum()) >= 1990
    torch.testing.assert_close(swapped[convex], expected[convex])


def test_two_flips_do_not_swap():
    points = torch.rand(2, 5, 2, generator=_gen(4)) * torch.tensor([W, H])
    pipe = ga.Pipeline([ga.RandomHorizontalFlip(1.0), ga.RandomVerticalFlip(1.0)], targets=ga.TargetOptions(flip_map=FLIP_MAP))
    out = pipe(torch.zeros(2, 3, H, W), keypoints=points)
    torch.testing.assert_close(out.keypoints, torch.tensor([W, H]) - points)


# ---------------------------------------------------------------- call forms


def test_single_image_targets_and_labels_without_boxes():
    image = torch.rand(3, H, W)
    pipe = ga.Pipeline([ga.CenterCrop((10, 20))], seed=0)
    out = pipe(image, masks=torch.ones(H, W, dtype=torch.uint8), boxes=_three_boxes(), labels=torch.tensor([1, 2, 3]),
               keypoints=torch.tensor([[25.0, 20.0], [1.0, 1.0]]))
    assert out.images.shape == (3, 10, 20) and out.masks.shape == (10, 20)
    assert torch.equal(out.labels, torch.tensor([1, 3])) and out.boxes.shape == (2, 4)
    assert out.keypoints_visible.tolist() == [True, False]
    labels = torch.tensor([3, 1])
    out = ga.Pipeline([ga.RandomHorizontalFlip()])(torch.rand(2, 3, H, W), labels=labels)
    assert isinstance(out, ga.Batch) and out.labels is labels and out.masks is None


def test_images_alone_return_the_tensor_as_before():
    x = torch.rand(2, 3, H, W)
    pipe = ga.Pipeline([ga.RandomHorizontalFlip()], seed=0)
    assert isinstance(pipe(x), Tensor) and isinstance(pipe(x, return_params=True), tuple)


# ---------------------------------------------------------------- inverses


AXIS_ALIGNED_PIPELINES = {
    "rrc+flip": lambda: [ga.RandomResizedCrop((32, 40), scale=(0.5, 1.0)), ga.RandomHorizontalFlip()],
    "pad+crop+vflip+resize": lambda: [ga.Pad(3), ga.RandomCrop((36, 50)), ga.RandomVerticalFlip(), ga.Resize((50, 70))],
}


@pytest.mark.parametrize("name", list(AXIS_ALIGNED_PIPELINES))
def test_round_trip_of_unclipped_boxes_is_within_a_pixel(name):
    images, boxes, _, keypoints, _ = _inputs(seed=6)
    options = ga.TargetOptions(min_area=0.0, min_size=0.0, min_visibility=1.0)  # keep only boxes nothing clipped
    pipe = ga.Pipeline(AXIS_ALIGNED_PIPELINES[name](), seed=0, targets=options)
    out = pipe(images, boxes=boxes, labels=[torch.arange(5)] * B, keypoints=keypoints)
    back = pipe.inverse_boxes(out.boxes, out.params)
    assert sum(len(b) for b in back) > 0
    for b in range(B):
        assert type(back[b]) is T.BoundingBoxes and tuple(back[b].canvas_size) == (H, W)
        expected = boxes[b][out.labels[b]]
        assert bool(((_plain(back[b]) - _plain(expected)).abs() <= 1.0).all())
    for b, points in enumerate(pipe.inverse_keypoints(out.keypoints, out.params)):
        torch.testing.assert_close(_plain(points), _plain(keypoints[b]), atol=1e-4, rtol=0)


def test_inverse_images_undoes_flips_and_crops():
    x = torch.rand(B, 3, H, W, generator=_gen(7))
    pipe = ga.Pipeline([ga.RandomCrop((30, 40)), ga.RandomHorizontalFlip()], seed=0)
    out, params = pipe(x, return_params=True)
    back = pipe.inverse_images(out, params, interpolation="nearest")
    covered = pipe.inverse_images(torch.ones_like(out), params, interpolation="nearest") == 1
    assert back.shape == x.shape and 0.5 < covered.float().mean() < 1.0
    assert torch.equal(back[covered], x[covered]) and bool((back[~covered] == 0).all())
    torch.testing.assert_close(pipe.inverse_images(out, params)[covered], x[covered], atol=1e-5, rtol=0)
    labels = (out[:, :1] > 0.5).to(torch.uint8)
    assert pipe.inverse_images(labels, params, fill=255).dtype == torch.uint8


def test_inverse_images_cover_only_what_every_step_showed_of_its_input():
    """Input pixels that land in a later step's fill (a pad after a crop, a rotation's corners) are not
    covered: they once got the pad's or fill's values back as if they were predictions."""
    x = torch.arange(1.0, 65.0).view(1, 1, 8, 8)
    pipe = ga.Pipeline([ga.CenterCrop(4), ga.Pad(2, fill=-5)], seed=0)
    out, params = pipe(x, return_params=True)
    covered = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    covered[..., 2:6, 2:6] = True  # the centre crop of 8 by 4: offset 2
    for interpolation in ("nearest", "bilinear"):
        assert torch.equal(pipe.inverse_images(torch.ones_like(out), params, interpolation=interpolation) == 1, covered)
        back = pipe.inverse_images(out, params, interpolation=interpolation, fill=0.0)
        assert torch.equal(back, torch.where(covered, x, 0.0))
    assert torch.equal(pipe.inverse_images(out.long(), params, interpolation="nearest", fill=-1), torch.where(covered, x, -1).long())
    # a crop then a rotation: nothing outside each sample's crop box is covered
    images = torch.rand(6, 3, 48, 40, generator=_gen(3))
    pipe = ga.Pipeline([ga.RandomResizedCrop(32, scale=(0.2, 0.3)), ga.RandomRotation((30, 30), fill=1.0)], seed=0)
    out, params = pipe(images, return_params=True)
    coverage = pipe.inverse_images(torch.ones_like(out), params, interpolation="nearest")[:, 0] == 1
    crop = params.transforms[0]
    for b in range(6):
        top, left, height, width = (int(v[b]) for v in (crop.top, crop.left, crop.height, crop.width))
        box = torch.zeros(48, 40, dtype=torch.bool)
        box[top : top + height, left : left + width] = True
        assert bool(coverage[b].any()) and not bool((coverage[b] & ~box).any())


def test_tta_example_runs():
    example = runpy.run_path(str(Path(__file__).parent.parent / "examples" / "tta.py"))
    report = example["main"]()
    assert report["views"] == 6 and report["flip_only_error"] < 1e-5


# ---------------------------------------------------------------- hypothesis: random geometry


@st.composite
def geometric_transform(draw, axis_aligned: bool):
    size = st.tuples(st.integers(12, 40), st.integers(12, 40))
    choices = [
        lambda: ga.RandomResizedCrop(draw(size), scale=(draw(st.sampled_from([0.1, 0.5, 1.0])), 1.0)),
        lambda: ga.RandomHorizontalFlip(draw(st.sampled_from([0.0, 0.5, 1.0]))),
        lambda: ga.RandomVerticalFlip(draw(st.sampled_from([0.0, 0.5, 1.0]))),
        lambda: ga.Resize(draw(size)),
        lambda: ga.Pad(draw(st.lists(st.integers(0, 5), min_size=4, max_size=4))),
        lambda: ga.RandomCrop(draw(size), pad_if_needed=True),
        lambda: ga.CenterCrop(draw(size)),
    ]
    if not axis_aligned:
        choices += [
            lambda: ga.RandomRotation(draw(st.sampled_from([10, 45, 180]))),
            lambda: ga.RandomAffine(20, translate=(0.2, 0.2), scale=(0.7, 1.3), shear=10),
            lambda: ga.RandomPerspective(draw(st.sampled_from([0.2, 0.6])), p=0.7),
        ]
    return draw(st.sampled_from(choices))()


def pipelines(axis_aligned: bool = False):
    return st.lists(geometric_transform(axis_aligned), min_size=1, max_size=3)


def _interior_points(boxes: list[Tensor], per_box: int, g: torch.Generator) -> list[Tensor]:
    """(N, per_box, 2) random points strictly inside each box."""
    return [b[:, None, :2] + torch.rand(len(b), per_box, 2, generator=g) * (b[:, None, 2:] - b[:, None, :2]) for b in boxes]


@settings(max_examples=40, **HYPOTHESIS)
@given(pipelines(), st.integers(0, 2**16))
def test_property_keypoints_round_trip_and_boxes_enclose_their_points(transforms, seed):
    g = _gen(seed)
    boxes = [_random_boxes(3, g, (24, 32)) for _ in range(3)]
    points = _interior_points(boxes, 4, g)
    pipe = ga.Pipeline(transforms, seed=seed, targets=ga.TargetOptions(min_area=0.0, min_size=0.0))
    out = pipe(torch.zeros(3, 1, 24, 32), boxes=boxes, labels=[torch.arange(3)] * 3, keypoints=points)
    for b in range(3):
        # every visible point of a box lies in its box, and a box with a visible point is kept
        seen = out.keypoints_visible[b].any(dim=1)
        assert set(torch.nonzero(seen).flatten().tolist()) <= set(out.labels[b].tolist())
        for box, label in zip(out.boxes[b], out.labels[b]):
            inside = out.keypoints[b][label][out.keypoints_visible[b][label]]
            assert bool(((inside >= box[:2] - 1e-4) & (inside <= box[2:] + 1e-4)).all())
    back = pipe.inverse_keypoints(out.keypoints, out.params)
    for b in range(3):
        torch.testing.assert_close(back[b], points[b], atol=1e-3, rtol=0)


@settings(max_examples=30, **HYPOTHESIS)
@given(pipelines(), st.integers(0, 2**16))
@example([ga.CenterCrop((31, 12)), ga.Resize((12, 12))], 56)  # the crop pads rows: the box is clipped to the image
def test_property_masks_stay_inside_their_boxes(transforms, seed):
    """A box painted into a mask stays inside the box's own output (widened by what nearest sampling may
    shift, in the input, and again in the output: where a canvas edge clips the widened box, a mask
    pixel of the image's last row can still land on an output pixel that maps past that edge)."""
    g = _gen(seed)
    boxes = torch.stack([_random_boxes(1, g, (24, 32))[0] for _ in range(3)])  # (3, 4): one box per sample
    ys, xs = torch.meshgrid(torch.arange(24) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    masks = torch.stack(
        [((xs > b[0]) & (xs < b[2]) & (ys > b[1]) & (ys < b[3])).to(torch.uint8) for b in boxes]
    )
    pipe = ga.Pipeline(transforms, seed=seed, targets=ga.TargetOptions(min_area=0.0, min_size=0.0))
    _, params = pipe(torch.zeros(3, 1, 24, 32), return_params=True, sample_ids=torch.arange(3))
    total = torch.eye(3, dtype=torch.float64)[None]
    for m in params.matrices:
        total = total @ m
    margin = 0.5 + 0.5 * total[:, :2, :2].abs().amax(dim=(1, 2)).clamp(min=1.0)  # source pixels per sample
    widened = boxes + margin[:, None].float() * torch.tensor([-1.0, -1.0, 1.0, 1.0])
    out = pipe(torch.zeros(3, 1, 24, 32), masks=masks, boxes=widened[:, None], sample_ids=torch.arange(3))
    slack = (margin * torch.linalg.inv(total)[:, :2, :2].abs().sum(dim=2).amax(dim=1)).float()  # output pixels
    h, w = out.masks.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    for b in range(3):
        painted = out.masks[b] == 1
        if not bool(out.boxes_valid[b, 0]):
            assert not bool(painted.any()), "a mask shows what its box says is gone"
            continue
        x0, y0, x1, y1 = out.boxes[b, 0] + slack[b] * torch.tensor([-1.0, -1.0, 1.0, 1.0])
        assert bool(((xs[painted] >= x0) & (xs[painted] <= x1) & (ys[painted] >= y0) & (ys[painted] <= y1)).all())


@settings(max_examples=30, **HYPOTHESIS)
@given(pipelines(axis_aligned=True), st.integers(0, 2**16))
def test_property_unclipped_boxes_round_trip(transforms, seed):
    g = _gen(seed)
    boxes = [_random_boxes(4, g, (24, 32)) for _ in range(3)]
    pipe = ga.Pipeline(transforms, seed=seed, targets=ga.TargetOptions(min_area=0.0, min_size=0.0, min_visibility=1.0))
    out = pipe(torch.zeros(3, 1, 24, 32), boxes=boxes, labels=[torch.arange(4)] * 3)
    for b, back in enumerate(pipe.inverse_boxes(out.boxes, out.params)):
        assert bool(((back - boxes[b][out.labels[b]]).abs() <= 1.0).all())


# ---------------------------------------------------------------- bad input, input safety


def _call(**targets):
    return ga.Pipeline([ga.RandomHorizontalFlip()], seed=0)(torch.zeros(2, 3, 8, 10), **targets)


BOX = torch.tensor([[1.0, 1.0, 4.0, 4.0]])
BAD_CALLS = {
    "boxes-not-list": (dict(boxes=BOX), ValueError, r"a list of \(N_i, 4\) tensors or a padded \(B, N, 4\) tensor"),
    "boxes-list-length": (dict(boxes=[BOX]), ValueError, "boxes has 1 entries for a batch of 2"),
    "boxes-last-dim": (dict(boxes=[BOX[:, :3], BOX[:, :3]]), ValueError, r"boxes must have shape \(\.\.\., 4\)"),
    "boxes-not-tensor": (dict(boxes=[[1, 2, 3, 4], BOX]), TypeError, "boxes must be tensors"),
    "boxes-bool": (dict(boxes=[BOX > 0, BOX > 0]), TypeError, "floating point or integer"),
    "boxes-canvas": (dict(boxes=[T.BoundingBoxes(BOX, format="XYXY", canvas_size=(9, 10))] * 2), ValueError, "canvas_size"),
    "boxes-rotated": (dict(boxes=[T.BoundingBoxes(torch.zeros(1, 5), format="XYWHR", canvas_size=(8, 10))] * 2), ValueError, "not supported"),
    "labels-count": (dict(boxes=[BOX, BOX], labels=[torch.tensor([1, 2]), torch.tensor([1])]), ValueError, "one entry per box"),
    "labels-batch": (dict(labels=torch.tensor([1, 2, 3])), ValueError, "3 entries for a batch of 2"),
    "valid-without-padded": (dict(boxes=[BOX, BOX], boxes_valid=torch.ones(2, 1, dtype=torch.bool)), ValueError, "padded"),
    "valid-shape": (dict(boxes=torch.zeros(2, 3, 4), boxes_valid=torch.ones(2, 2, dtype=torch.bool)), ValueError, "boxes_valid"),
    "masks-size": (dict(masks=torch.zeros(2, 8, 9)), ValueError, r"masks must be \(B, H, W\) or \(B, K, H, W\)"),
    "masks-batch": (dict(masks=torch.zeros(3, 8, 10)), ValueError, "masks must be"),
    "masks-type": (dict(masks=[torch.zeros(8, 10)] * 2), TypeError, "masks must be a tensor"),
    "keypoints-last-dim": (dict(keypoints=torch.zeros(2, 4, 3)), ValueError, r"keypoints must have shape \(\.\.\., 2\)"),
    "keypoints-batch": (dict(keypoints=torch.zeros(3, 4, 2)), ValueError, "keypoints must be a"),
    "visible-shape": (dict(keypoints=torch.zeros(2, 4, 2), keypoints_visible=torch.ones(2, 3, dtype=torch.bool)), ValueError, "keypoints_visible"),
    "visible-alone": (dict(keypoints_visible=torch.ones(2, 3, dtype=torch.bool)), ValueError, "goes with keypoints"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_targets_raise_clear_errors(case):
    kwargs, error, message = BAD_CALLS[case]
    with pytest.raises(error, match=message):
        _call(**kwargs)


def test_bad_options_and_inverse_arguments_raise():
    with pytest.raises(ValueError, match="box_format"):
        ga.TargetOptions(box_format="xyzw")
    with pytest.raises(ValueError, match="min_visibility"):
        ga.TargetOptions(min_visibility=1.5)
    with pytest.raises(ValueError, match="permutation"):
        ga.TargetOptions(flip_map=(0, 0, 1))
    with pytest.raises(TypeError, match="flip_map must hold ints"):
        ga.TargetOptions(flip_map=(True, False))
    assert ga.TargetOptions(flip_map=np.array([1, 0])).flip_map == (1, 0)
    for fill, dtype in ((300, torch.uint8), (-1, torch.uint8), (2.5, torch.int64), (255, torch.bool)):
        pipe = ga.Pipeline([ga.Pad(1)], targets=ga.TargetOptions(mask_fill=fill))
        with pytest.raises(ValueError, match=f"mask_fill {fill} is not a value of {dtype} masks"):
            pipe(torch.zeros(1, 3, 8, 10), masks=torch.zeros(1, 8, 10, dtype=dtype))
    with pytest.raises(TypeError, match="TargetOptions"):
        ga.Pipeline([], targets={"min_area": 1})
    normalized = ga.Pipeline([ga.RandomHorizontalFlip()], targets=ga.TargetOptions(normalized=True))
    with pytest.raises(ValueError, match="normalized=True is for plain tensors"):
        normalized(torch.zeros(1, 3, 8, 10), boxes=[T.BoundingBoxes(BOX, format="XYXY", canvas_size=(8, 10))])
    flip_map = ga.Pipeline([ga.RandomHorizontalFlip()], targets=ga.TargetOptions(flip_map=(1, 0)))
    with pytest.raises(ValueError, match="flip_map has 2 entries"):
        flip_map(torch.zeros(1, 3, 8, 10), keypoints=torch.zeros(1, 3, 2))
    pipe = ga.Pipeline([ga.Resize((4, 5))], seed=0)
    out, params = pipe(torch.zeros(2, 3, 8, 10), return_params=True)
    with pytest.raises(ValueError, match="augmented size"):
        pipe.inverse_images(torch.zeros(2, 3, 8, 10), params)
    with pytest.raises(ValueError, match=r"give masks a channel dimension \(masks\[:, None\]\)"):
        pipe.inverse_images(torch.zeros(2, 4, 5, dtype=torch.uint8), params)
    with pytest.raises(ValueError, match="interpolation"):
        pipe.inverse_images(out, params, interpolation="bicubic")
    for fill in (-1, 256, 2.5):  # once wrapped around (-1 gave 255)
        with pytest.raises(ValueError, match=f"fill {fill} is not a value of torch.uint8 images"):
            pipe.inverse_images(out.to(torch.uint8), params, interpolation="nearest", fill=fill)
    with pytest.raises(ValueError, match="different pipeline"):
        ga.Pipeline([ga.RandomVerticalFlip()]).inverse_boxes([BOX, BOX], params)


def test_inputs_are_never_modified():
    images, boxes, labels, keypoints, masks = _inputs(seed=8)
    given = dict(masks=masks, boxes=boxes, labels=labels, keypoints=keypoints,
                 keypoints_visible=[torch.ones(7, dtype=torch.bool)] * B)
    snapshot = {k: [t.clone() for t in v] if isinstance(v, list) else v.clone() for k, v in given.items()}
    pipe = ga.Pipeline([ga.RandomResizedCrop(30), ga.RandomHorizontalFlip(), ga.RandomRotation(20)], seed=0,
                       targets=ga.TargetOptions(flip_map=(0, 2, 1, 3, 4, 6, 5)))
    out = pipe(images, **given)
    before = [b.clone() for b in out.boxes], [k.clone() for k in out.keypoints], out.images.clone()
    pipe.inverse_boxes(out.boxes, out.params)
    pipe.inverse_keypoints(out.keypoints, out.params)
    pipe.inverse_images(out.images, out.params)
    for name, value in given.items():
        expected = snapshot[name]
        pairs = zip(value, expected) if isinstance(value, list) else [(value, expected)]
        assert all(torch.equal(a, e) for a, e in pairs), f"{name} was modified"
    assert all(torch.equal(a, e) for a, e in zip(out.boxes, before[0]))
    assert all(torch.equal(a, e) for a, e in zip(out.keypoints, before[1]))
    assert torch.equal(out.images, before[2])


# ---------------------------------------------------------------- devices and backends


@pytest.mark.cuda
@CUDA
def test_cuda_targets_match_cpu():
    images, boxes, labels, keypoints, masks = _inputs(seed=9)
    pipe = ga.Pipeline(_chain(), seed=4, targets=ga.TargetOptions(mask_fill=FILL))
    cpu = pipe(images, masks=masks, boxes=boxes, labels=labels, keypoints=keypoints, sample_ids=torch.arange(B))
    cuda = pipe(images.cuda(), masks=masks.cuda(), boxes=[b.cuda() for b in boxes], labels=[x.cuda() for x in labels],
                keypoints=[k.cuda() for k in keypoints], sample_ids=torch.arange(B))
    assert cuda.masks.is_cuda and cuda.boxes[0].is_cuda
    for b in range(B):
        torch.testing.assert_close(_plain(cuda.boxes[b]).cpu(), _plain(cpu.boxes[b]), atol=1e-4, rtol=0)
        assert torch.equal(cuda.labels[b].cpu(), cpu.labels[b])
        torch.testing.assert_close(_plain(cuda.keypoints[b]).cpu(), _plain(cpu.keypoints[b]), atol=1e-4, rtol=0)
    assert (cuda.masks.cpu() == cpu.masks).float().mean() > 0.999  # nearest ties may round apart
    back = pipe.inverse_boxes(cuda.boxes, cuda.params)
    assert back[0].is_cuda


def _nearest_chain() -> list[ga.Transform]:
    """A chain like _chain with nearest sampling and no antialiasing, so that the images' pass moves
    pixels as the masks' pass does."""
    nearest = {"interpolation": "nearest", "antialias": False}
    return [
        ga.RandomResizedCrop((40, 44), scale=(0.3, 1.0), **nearest),
        ga.RandomVerticalFlip(0.5),
        ga.RandomRotation(30),
        ga.RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.2), shear=5),
        ga.RandomPerspective(0.4, p=0.8, interpolation="nearest"),
        ga.Pad(3, fill=0),
        ga.RandomCrop((30, 36)),
        ga.Resize((26, 30), **nearest),
    ]


BACKENDS = [
    "torch",
    pytest.param("ext", marks=pytest.mark.skipif(ga.available_backends()["ext"] != "available",
                                                 reason="the fused extension (ext) is not available here")),
]
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_move_as_the_images_of_each_backend(backend, device):
    """The masks' own pass (plain torch) against the images' pass of each backend: an image whose
    channels are the mask, resampled nearest with the masks' fill, comes out as the mask does."""
    _, _, _, _, masks = _inputs(seed=10)
    masks = _plain(masks).to(device) + 1  # 0: only the fill
    images = masks[:, None].expand(B, 3, H, W).contiguous()
    pipe = ga.Pipeline(_nearest_chain(), seed=4, backend=backend)
    out = pipe(images, masks=masks, sample_ids=torch.arange(B))
    assert out.masks.device.type == device
    assert 0.05 < float((out.masks == 0).float().mean()) < 0.9, "the chain should show some fill, and not only fill"
    assert torch.equal(out.images[:, 0], out.masks) and torch.equal(out.images[:, 2], out.masks)


def _wide_table(dtype: torch.dtype) -> tuple[Tensor, float]:
    """256 values of ``dtype`` that float32 cannot hold (some negative, or with the top bit set), and a fill."""
    bits = torch.randint(-(2**62), 2**62, (256,), generator=_gen(11)) * 2 + 1
    if dtype == torch.float64:
        return bits.to(torch.float64) / 2**61 + 0.1, 0.1
    if dtype == torch.uint64:
        return bits.view(torch.uint64), 7.0
    if dtype == torch.uint32:
        return (bits % 2**32).to(torch.uint32), 7.0
    return (bits % 2**31 if dtype == torch.int32 else bits).to(dtype), -1.0


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint64, torch.uint32, torch.float64], ids=str)
def test_wide_masks_keep_their_values(dtype):
    """Ids beyond float32's 2**24 (negative ones, 64-bit ones, float64 values) come out exactly: the
    same pixels as a small index mask moved by the same geometry, looked up."""
    _, _, _, _, masks = _inputs(seed=11)
    table, fill = _wide_table(dtype)
    table[FILL] = fill
    index = _plain(masks)
    run = {}
    for name, mask, mask_fill in (("index", index, FILL), ("wide", table[index.long()], fill)):
        pipe = ga.Pipeline(_chain(), seed=6, targets=ga.TargetOptions(mask_fill=mask_fill))
        run[name] = pipe(torch.zeros(B, 1, H, W), masks=mask, sample_ids=torch.arange(B)).masks
    assert bool((run["index"] == FILL).any()) and run["wide"].dtype == dtype
    assert torch.equal(run["wide"].view(torch.uint8), table[run["index"].long()].view(torch.uint8))  # bit for bit


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint32, torch.float64], ids=str)
def test_inverse_images_nearest_keeps_wide_values(dtype):
    table, fill = _wide_table(dtype)
    ids = torch.randint(0, 256, (B, 1, H, W), generator=_gen(12))
    pipe = ga.Pipeline([ga.RandomCrop((30, 40)), ga.RandomHorizontalFlip(), ga.RandomRotation(90)], seed=0)
    out, params = pipe(ids.to(torch.float32), return_params=True)
    back = pipe.inverse_images(table[out.long()], params, interpolation="nearest", fill=fill)
    expected = pipe.inverse_images(out.long(), params, interpolation="nearest", fill=-1)
    assert bool((expected == -1).any()) and back.dtype == dtype
    table = torch.cat([table, torch.full((1,), fill, dtype=torch.float64).to(dtype)])  # index -1: the fill
    assert torch.equal(back.view(torch.uint8), table[expected].view(torch.uint8))
