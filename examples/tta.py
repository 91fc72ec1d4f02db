"""Test-time augmentation with gpuaug: flip + multi-scale views, predictions mapped back and averaged.

A toy dense model (the edge strength of the grey image, standing in for a segmentation network)
and a toy detector (the box around the strongest edges) run on six views of a bundled photo,
{1.0, 0.75, 1.25} scale x {no flip, horizontal flip}. ``pipe.inverse_images`` resamples each
view's map back into the photo's frame and ``pipe.inverse_boxes`` maps each view's box back; the
maps are averaged with the coverage of each view as its weight, the boxes by their coordinates.

Run: python examples/tta.py   (a few seconds on a CPU)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import gpuaug as ga
from gpuaug.assets import load_samples

SCALES = (1.0, 0.75, 1.25)


def edge_model(images: Tensor) -> Tensor:
    """(B, 1, H, W) Sobel edge strength of (B, 3, H, W) float images."""
    grey = F.pad(images.mean(dim=1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device) / 8
    gx = F.conv2d(grey, kx.view(1, 1, 3, 3))
    gy = F.conv2d(grey, kx.t().reshape(1, 1, 3, 3))
    return torch.sqrt(gx**2 + gy**2)


def detector(edges: Tensor) -> list[Tensor]:
    """One (1, 4) xyxy box per image, around the pixels with its strongest 2% edges."""
    boxes = []
    for e in edges[:, 0]:
        ys, xs = torch.nonzero(e >= torch.quantile(e.flatten(), 0.98), as_tuple=True)
        boxes.append(torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).to(torch.float32)[None])
    return boxes


def views(height: int, width: int) -> list[ga.Pipeline]:
    """One deterministic pipeline per view: resize by a scale, then flip or not."""
    return [
        ga.Pipeline([ga.Resize((round(height * s), round(width * s))), ga.RandomHorizontalFlip(p=flip)], seed=0)
        for s in SCALES
        for flip in (0.0, 1.0)
    ]


def _rounded(box: Tensor) -> list[float]:
    return [round(v, 1) for v in box[0].tolist()]


def main() -> dict[str, float]:
    photo = load_samples()[0][None].to(torch.float32) / 255  # (1, 3, H, W)
    plain_map, plain_box = edge_model(photo), detector(edge_model(photo))[0]
    maps, weights, boxes = [], [], []
    for pipe in views(*photo.shape[-2:]):
        view, params = pipe(photo, return_params=True)
        prediction = edge_model(view)
        maps.append(pipe.inverse_images(prediction, params))
        weights.append(pipe.inverse_images(torch.ones_like(prediction), params))
        boxes.append(pipe.inverse_boxes(detector(prediction), params)[0])
    tta_map = torch.stack(maps).sum(dim=0) / torch.stack(weights).sum(dim=0).clamp(min=1e-6)
    tta_box = torch.stack(boxes).mean(dim=0)
    report = {
        "views": len(maps),
        # the flipped view at scale 1, mapped back, is the plain prediction (the model is flip-equivariant)
        "flip_only_error": float((maps[1] - plain_map).abs().max()),
        "map_change": float((tta_map - plain_map).abs().mean() / plain_map.abs().mean()),
        "box_spread": float((torch.stack(boxes) - tta_box).abs().max()),
    }
    print(f"photo {tuple(photo.shape[-2:])}, {report['views']} views (scales {SCALES} x flip)")
    for (scale, flip), box in zip([(s, f) for s in SCALES for f in ("no", "yes")], boxes):
        print(f"  scale {scale:4.2f} flip {flip:3s} -> box mapped back {_rounded(box)}")
    print(f"box on the photo {_rounded(plain_box)}, averaged over the views {_rounded(tta_box)}")
    print(f"flipped view mapped back vs plain map: max error {report['flip_only_error']:.2e}")
    print(f"averaged map vs plain map: mean relative change {report['map_change']:.3f}")
    return report


if __name__ == "__main__":
    main()
