"""Small deterministic datasets for the data-loading tests and the torchrun script."""

from __future__ import annotations

import torch

import gpuaug as ga


def image(index: int, ragged: bool = False) -> torch.Tensor:
    """A (3, H, W) uint8 image determined by ``index``; (12 + index % 3, 12) when ``ragged``."""
    height = 12 + index % 3 if ragged else 12
    generator = torch.Generator().manual_seed(1000 + index)
    return torch.randint(0, 256, (3, height, 12), dtype=torch.uint8, generator=generator)


def label(index: int) -> int:
    return (index * 7) % 5


def dataset(size: int, ragged: bool = False) -> ga.data.WithIndex:
    """``size`` samples ``(image(i), label(i), i)``."""
    return ga.data.WithIndex([(image(i, ragged), label(i)) for i in range(size)])


def pipeline(seed: int = 7) -> ga.Pipeline:
    """A fixed-size augmentation that takes any input size (ragged batches too)."""
    return ga.Pipeline(
        [ga.RandomResizedCrop(8, scale=(0.3, 1.0)), ga.RandomHorizontalFlip(), ga.ColorJitter(0.4, 0.4, 0.4, 0.1)],
        seed=seed,
    )


_REFERENCES: dict[tuple[str, int, int, bool], torch.Tensor] = {}


def reference(pipe: ga.Pipeline, index: int, epoch: int, ragged: bool = False) -> torch.Tensor:
    """Sample ``index`` augmented on its own, keyed by its index (cached: pipelines of one repr,
    seed included, compute the same)."""
    key = (repr(pipe), index, epoch, ragged)
    if key not in _REFERENCES:
        _REFERENCES[key] = pipe(image(index, ragged)[None], sample_ids=[index], epoch=epoch)[0]
    return _REFERENCES[key]
