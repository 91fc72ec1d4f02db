"""Batches of images that may differ in size: stacked, or packed into a :class:`~gpuaug.RaggedBatch`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..pipeline import Pipeline
from ..ragged import RaggedBatch, check_compatible

__all__ = ["RaggedBatch", "augment", "image_fields"]


def image_fields(images: Sequence[Tensor]) -> dict[str, Tensor | RaggedBatch]:
    """A batch's image fields from (C, H, W) tensors: ``{"images": (B, C, H, W)}`` when they have one
    size, else ``{"images": RaggedBatch, "sizes": (B, 2)}``.

    Example:
        >>> import torch
        >>> sorted(image_fields([torch.zeros(1, 2, 2), torch.zeros(1, 3, 2)]))
        ['images', 'sizes']
    """
    check_compatible(images)
    if len({tuple(image.shape) for image in images}) == 1:
        return {"images": torch.stack(list(images))}
    ragged = RaggedBatch.pack(images)
    return {"images": ragged, "sizes": ragged.sizes}


def augment(
    pipeline: Pipeline, images: Tensor | RaggedBatch, sample_ids: Tensor | None, epoch: int | None, labels: Any = None
) -> tuple[Tensor, Any]:
    """(images, labels): ``pipeline(images, sample_ids=..., epoch=...)`` on a batch or a RaggedBatch
    (one pass: the pipeline starts with a crop or resize to a fixed size, e.g. RandomResizedCrop(224));
    a pipeline ending in a mix also mixes ``labels`` into soft labels, else they are returned as given.
    """
    if pipeline.mix is None:
        return pipeline(images, sample_ids=sample_ids, epoch=epoch), labels
    mixed = pipeline(images, labels=labels, sample_ids=sample_ids, epoch=epoch)
    return mixed.images, mixed.labels
