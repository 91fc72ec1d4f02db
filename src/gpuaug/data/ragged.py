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
    """(images, labels): ``pipeline(images, sample_ids=..., epoch=...)``, also for a RaggedBatch; a
    pipeline ending in a mix also mixes ``labels`` into soft labels, else they are returned as given.

    A RaggedBatch goes through in one pass when the pipeline starts with a crop or resize to a fixed
    size (:meth:`Pipeline.takes_ragged`); otherwise once per distinct size with its samples' ids,
    which gives each sample the same as a one-call pass keyed by its id (a mix then mixes the
    assembled batch, as one call would), as long as the output size does not depend on the input's.
    """
    if isinstance(images, RaggedBatch) and not pipeline.takes_ragged():
        return _augment_by_size(pipeline, images, sample_ids, epoch, labels)
    if pipeline.mix is None:
        return pipeline(images, sample_ids=sample_ids, epoch=epoch), labels
    mixed = pipeline(images, labels=labels, sample_ids=sample_ids, epoch=epoch)
    return mixed.images, mixed.labels


def _augment_by_size(
    pipeline: Pipeline, images: RaggedBatch, sample_ids: Tensor | None, epoch: int | None, labels: Any
) -> tuple[Tensor, Any]:
    if sample_ids is None:
        raise ValueError("augmenting a RaggedBatch size by size needs sample_ids (wrap the dataset in ga.data.WithIndex)")
    parts = []
    for (h, w), index in images.groups():
        index = index.to(images.device)
        same_size = images.images[index, :, :h, :w]
        parts.append((index, pipeline._unmixed(same_size, sample_ids[index.to(sample_ids.device)], epoch)))
    shapes = {tuple(out.shape[1:]) for _, out in parts}
    if len(shapes) > 1:
        raise ValueError(
            "a pipeline for differently sized images must give one output size whatever the input size "
            f"(e.g. start it with RandomResizedCrop(224), or Resize(256) then CenterCrop(224)); got {sorted(shapes)}"
        )
    out = parts[0][1]
    if len(parts) > 1:
        out = torch.empty((len(images), *out.shape[1:]), dtype=out.dtype, device=out.device,
                          memory_format=pipeline.memory_format)
        for index, part in parts:
            out[index] = part
    if pipeline.mix is None:
        return out, labels
    return pipeline._mix_assembled(out, labels, sample_ids, epoch)
