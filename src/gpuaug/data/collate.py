"""Collate: a DataLoader collate_fn that builds gpuaug batches and can augment them at collate time.

A sample is an ``(image, label)`` or ``(image, label, index)`` tuple, or a dict with ``"image"``
and optionally ``"label"``, ``"index"`` and other keys (targets, paths). The image is an HWC (or
HW) numpy array, a PIL image (L, RGB and RGBA kept, with 1, 3 and 4 channels; other modes converted
to RGB, as torchvision's ImageFolder converts every image; 16- and 32-bit modes raise), a CHW (or HW) tensor, or encoded file bytes (a 1-D
uint8 tensor, as :class:`~gpuaug.data.ImageFiles` gives, a 1-D uint8 numpy array or ``bytes``). :class:`WithIndex` makes any dataset's samples carry
their index, which keys the augmentation of a sample whatever batch, worker or rank it lands in.

A batch is a dict: ``"images"`` (B, C, H, W), or a :class:`~gpuaug.data.RaggedBatch` plus
``"sizes"`` (B, 2) for differently sized images (or an :class:`~gpuaug.data.EncodedBatch` of file
bytes, left encoded); ``"labels"`` (collated by torch's default_collate; none where every label is
None), ``"sample_ids"`` (B,) int64 when the samples have indices; every other key as a list (a sample
key ``"images"`` or ``"sizes"``, or one that would overwrite ``"labels"`` or ``"sample_ids"``, raises).

Example:
    >>> import numpy as np, torch, gpuaug as ga
    >>> samples = [(np.zeros((4, 6, 3), np.uint8), 7, 0), (np.zeros((5, 2, 3), np.uint8), 9, 1)]
    >>> batch = ga.data.Collate()(samples)
    >>> batch["images"].images.shape, batch["sizes"].tolist(), batch["labels"].tolist(), batch["sample_ids"].tolist()
    (torch.Size([2, 3, 5, 6]), [[4, 6], [5, 2]], [7, 9], [0, 1])
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate, get_worker_info

from ..mix import AnyMix
from ..pipeline import Pipeline
from .decode import EncodedBatch, OnError, decode_batch, is_encoded
from .ragged import RaggedBatch, augment, image_fields

__all__ = ["Collate", "WithIndex", "augment_batch"]


class WithIndex(Dataset):
    """``dataset`` whose samples carry their index: ``(*sample, index)`` for a tuple (or list) sample
    of an image and its label, ``{**sample, "index": index}`` for a dict, and ``{"image": image,
    "index": index}`` for an image alone (also a 1-tuple, as TensorDataset gives).

    Example:
        >>> import gpuaug as ga
        >>> ga.data.WithIndex([("a", 0), ("b", 1)])[1]
        ('b', 1, 1)
    """

    def __init__(self, dataset: Dataset | Sequence[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...] | dict[str, Any]:
        sample = self.dataset[index]
        if isinstance(sample, (tuple, list)) and len(sample) != 1:  # as Collate reads (image, label) samples
            return (*sample, index)
        if isinstance(sample, (tuple, list)):
            sample = sample[0]
        if isinstance(sample, dict):
            return {**sample, "index": index}
        return {"image": sample, "index": index}


def _as_chw(image: Any, position: int) -> Tensor:
    """A (C, H, W) tensor (or encoded bytes) sharing memory with ``image`` where it can."""
    if isinstance(image, Image.Image):
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # converting would clip them silently
            raise ValueError(f"sample {position}: PIL mode {image.mode!r} holds values beyond uint8: "
                             "convert the image to 'L' or 'RGB' (with your own scaling) first")
        image = np.array(image if image.mode in ("L", "RGB", "RGBA") else image.convert("RGB"))
    if isinstance(image, (bytes, bytearray, memoryview)):  # a file's bytes (none: a file that fails to decode)
        return torch.frombuffer(bytearray(image), dtype=torch.uint8) if len(image) else torch.empty(0, dtype=torch.uint8)
    if isinstance(image, np.ndarray) and image.ndim == 1 and image.dtype == np.uint8:
        return torch.from_numpy(image.copy())
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ValueError(f"sample {position}: a numpy image must be HW or HWC, got shape {image.shape}")
        array = np.ascontiguousarray(image)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    if isinstance(image, Tensor):
        if is_encoded(image) or image.ndim == 3:
            return image
        if image.ndim == 2:
            return image[None]
        raise ValueError(f"sample {position}: a tensor image must be CHW or HW, got shape {tuple(image.shape)}")
    raise TypeError(f"sample {position}: the image must be a numpy array, PIL image or tensor, got {type(image).__name__}")


def _index(value: Any, position: int) -> int:
    try:
        return operator.index(value)
    except TypeError as error:
        raise TypeError(f"sample {position}: the index (a tuple's third item, or 'index') must be an integer dataset "
                        f"index, got {value!r}: wrap the dataset in ga.data.WithIndex") from error


def _fields(sample: Any, position: int) -> dict[str, Any]:
    """The sample as a dict with "image" and the optional "label", "index" and other keys."""
    if isinstance(sample, dict):
        if "image" not in sample:
            raise ValueError(f"sample {position}: a dict sample needs an 'image' key, got keys {sorted(sample)}")
        return dict(sample)
    if isinstance(sample, (tuple, list)) and len(sample) in (2, 3):
        return dict(zip(("image", "label", "index"), sample))
    raise TypeError(
        f"sample {position}: expected (image, label), (image, label, index) or a dict with 'image', got {sample!r:.80}"
    )


def augment_batch(
    batch: dict[str, Any], pipeline: Pipeline | None, mix: AnyMix | None, epoch: int | None = None
) -> dict[str, Any]:
    """A copy of ``batch`` with its images through ``pipeline`` and then ``mix`` (which also mixes
    ``labels``), keyed by ``batch["sample_ids"]`` when present. A pipeline ending in a mix mixes
    ``labels`` itself.

    Example:
        >>> import torch, gpuaug as ga
        >>> batch = {"images": torch.rand(2, 3, 8, 8), "labels": torch.tensor([0, 1]), "sample_ids": torch.tensor([4, 5])}
        >>> out = ga.data.augment_batch(batch, ga.Pipeline([ga.RandomHorizontalFlip()], seed=0), ga.MixUp(0.2, 2, seed=0))
        >>> out["images"].shape, out["labels"].shape
        (torch.Size([2, 3, 8, 8]), torch.Size([2, 2]))
    """
    out = dict(batch)
    ids = batch.get("sample_ids")
    if "labels" not in batch and (mix is not None or (pipeline is not None and pipeline.mix is not None)):
        raise ValueError("mixing needs labels in the batch")
    if pipeline is not None:
        out["images"], labels = augment(pipeline, batch["images"], ids, epoch, batch.get("labels"))
        if "labels" in batch:
            out["labels"] = labels
    if mix is not None:
        if isinstance(out["images"], RaggedBatch):
            raise ValueError("mixing needs images of one size: give a pipeline that crops or resizes to a fixed size")
        out["images"], out["labels"] = mix(out["images"], batch["labels"], sample_ids=ids, epoch=epoch)
    return out


def check_options(pipeline: Pipeline | None, mix: AnyMix | None, on_error: OnError) -> None:
    """The arguments that Collate and DeviceLoader share, or a clear error."""
    if pipeline is not None and not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline must be a gpuaug Pipeline or None, got {type(pipeline).__name__}")
    if mix is not None and not isinstance(mix, AnyMix):
        raise TypeError(f"mix must be a gpuaug MixUp, CutMix or MixChoice or None, got {type(mix).__name__}")
    if mix is not None and pipeline is not None and pipeline.mix is not None:
        raise ValueError(f"the pipeline already ends in {type(pipeline.mix).__name__}: give mix=None")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


class Collate:
    """A collate_fn: stack (or pack) images, collate labels and indices, optionally augment.

    Args:
        pipeline: augments each batch on the CPU at collate time (in the DataLoader's workers),
            keyed by the samples' indices, which it then needs (wrap the dataset in
            :class:`WithIndex`). Differently sized images go through it in one pass, each from its
            own size, when it starts with RandomResizedCrop, RandomCrop, CenterCrop or Resize((h, w));
            any other pipeline must give one output size (e.g. Resize(256) then CenterCrop(224)) and
            runs once per distinct input size.
        mix: a MixUp, CutMix or MixChoice applied after the pipeline; it turns labels into soft labels.
            A pipeline ending in a mix does that itself, keyed by its own seed (then leave ``mix`` None).
        decode: decode encoded images here (True), or pack them into one
            :class:`~gpuaug.data.EncodedBatch` for :class:`~gpuaug.data.DeviceLoader` to decode on
            the GPU (False): one object per batch to pass from worker to main process and to pin.
        on_error: what a file that does not decode does: "raise" a ValueError naming it, or "skip"
            it (and its label and index) with a warning.
        threads: torch's CPU threads in each worker process (None leaves them as they are).

    :meth:`set_epoch` (DeviceLoader forwards its own) keys the following batches' augmentation by
    epoch, also in persistent workers: the epoch lives in shared memory. Until it is called, the
    pipeline's and the mix's own epochs do (``pipe.set_epoch`` then works with ``num_workers=0`` and
    with workers that are not persistent, which copy the pipeline at each epoch).

    Example:
        >>> import torch, gpuaug as ga
        >>> collate = ga.data.Collate(ga.Pipeline([ga.RandomResizedCrop(8)], seed=0))
        >>> samples = [(torch.zeros(3, 10, 12, dtype=torch.uint8), 0, 5), (torch.zeros(3, 9, 9, dtype=torch.uint8), 1, 6)]
        >>> collate(samples)["images"].shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        pipeline: Pipeline | None = None,
        mix: AnyMix | None = None,
        *,
        decode: bool = True,
        on_error: OnError = "raise",
        threads: int | None = 1,
    ) -> None:
        check_options(pipeline, mix, on_error)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        self.pipeline = pipeline
        self.mix = mix
        self.decode = decode
        self.on_error = on_error
        self.threads = threads
        self._epoch = torch.full((), -1, dtype=torch.int64).share_memory_()  # -1: not set

    @property
    def epoch(self) -> int | None:
        """The epoch that keys the augmentation of the following batches (see :meth:`set_epoch`), or
        None before set_epoch: then the pipeline's and the mix's own."""
        epoch = int(self._epoch)
        return None if epoch < 0 else epoch

    def set_epoch(self, epoch: int) -> None:
        """Key the following batches by ``epoch``, in this process and in the DataLoader's workers."""
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    def __call__(self, samples: Sequence[Any]) -> dict[str, Any]:
        if self.threads is not None and get_worker_info() is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if not samples:
            raise ValueError("Collate got an empty list of samples")
        records = [_fields(sample, i) for i, sample in enumerate(samples)]
        keys = list(records[0])
        for i, record in enumerate(records):
            if set(record) != set(keys):
                raise ValueError(f"samples must have the same fields: sample 0 has {keys}, sample {i} has {list(record)}")
        images = [_as_chw(record["image"], i) for i, record in enumerate(records)]
        encoded = [is_encoded(image) for image in images]
        if any(encoded) and not all(encoded):
            raise ValueError("a batch mixes encoded images (1-D uint8 tensors of file bytes) and decoded ones")
        if not all(encoded):
            batch: dict[str, Any] = image_fields(images)
        else:  # decoded below (with the labels and ids at hand), or packed for DeviceLoader
            batch = {"images": images if self.decode else EncodedBatch.pack(images)}
        if "label" in keys and any(record["label"] is not None for record in records):  # (image, None) samples: none
            batch["labels"] = default_collate([record["label"] for record in records])
        if "index" in keys:
            batch["sample_ids"] = torch.as_tensor([_index(record["index"], i) for i, record in enumerate(records)],
                                                  dtype=torch.int64)
        for key in keys:
            if key in batch or key in ("images", "sizes"):  # "sizes" in every batch whose images differ in size
                raise ValueError(f"a sample's key {key!r} would overwrite the batch's own {key!r}: rename it")
            if key not in ("image", "label", "index"):
                batch[key] = [record[key] for record in records]
        if all(encoded) and self.decode:
            batch = decode_batch(batch, on_error=self.on_error)
        if self.pipeline is None and self.mix is None:
            return batch
        if "sample_ids" not in batch:
            raise ValueError("Collate augments keyed by the samples' indices: wrap the dataset in ga.data.WithIndex")
        if isinstance(batch["images"], EncodedBatch):
            raise TypeError("Collate(decode=False) cannot augment encoded images: augment in DeviceLoader instead")
        return augment_batch(batch, self.pipeline, self.mix, self.epoch)
