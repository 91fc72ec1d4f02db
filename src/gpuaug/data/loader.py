"""DeviceLoader: moves a DataLoader's batches to the device and augments them there, ahead of use.

On CUDA, batch ``i + prefetch`` is copied (from pinned memory), decoded and augmented on a side
stream while the model works on batch ``i``; the stream that consumes a batch waits for its work
and every tensor of it is recorded on that stream, so the caching allocator never hands its memory
to other work too early. Encoded images (an :class:`~gpuaug.data.EncodedBatch` from
``Collate(decode=False)``, or a list of 1-D uint8 tensors) are decoded from host memory: JPEGs with
nvJPEG on a CUDA device, the rest on the CPU.

Example:
    >>> import torch, gpuaug as ga
    >>> from torch.utils.data import DataLoader
    >>> data = [(torch.zeros(3, 12, 12, dtype=torch.uint8), i % 2, i) for i in range(6)]
    >>> loader = DataLoader(data, batch_size=4, collate_fn=ga.data.Collate())
    >>> pipe = ga.Pipeline([ga.RandomResizedCrop(8), ga.ToDtype(torch.float32, scale=True)], seed=0)
    >>> device_loader = ga.data.DeviceLoader(loader, pipe, device="cpu")
    >>> len(device_loader), [tuple(b["images"].shape) for b in device_loader]
    (2, [(4, 3, 8, 8), (2, 3, 8, 8)])
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate, default_convert

from ..mix import AnyMix
from ..pipeline import Pipeline
from .collate import augment_batch, check_options
from .decode import EncodedBatch, OnError, decode_batch
from .ragged import RaggedBatch

__all__ = ["DeviceLoader"]

_END = object()


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, (Tensor, RaggedBatch)):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_to_device(v, device) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # (a namedtuple)
    return value


def _tensors(value: Any) -> Iterator[Tensor]:
    """Every tensor in ``value`` (a batch dict: tensors, RaggedBatches, dicts, lists and tuples of them)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, RaggedBatch):
        yield value.images
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _record_stream(value: Any, stream: torch.cuda.Stream) -> None:
    """Tell the caching allocator that ``stream`` uses every CUDA tensor in ``value``."""
    for t in _tensors(value):
        if t.is_cuda:
            t.record_stream(stream)


class DeviceLoader:
    """Wraps a DataLoader of gpuaug batch dicts (from :class:`~gpuaug.data.Collate`) and yields them
    on ``device`` with ``images`` decoded (when encoded), augmented by ``pipeline`` and mixed by
    ``mix``, keyed by ``sample_ids`` when the batches have them.

    Args:
        loader: any iterable of batch dicts; ``pin_memory=True`` makes the CUDA copies asynchronous.
        pipeline: the augmentation, run on ``device`` (None: only move and decode).
        device: "cuda", "cuda:1", "cpu", ...
        prefetch: how many batches are prepared ahead of the one being consumed (CUDA only: on
            the CPU the work is done as each batch is asked for).
        mix: a MixUp, CutMix or MixChoice applied after the pipeline (or end the pipeline with it).
        on_error: for encoded images that do not decode: "raise" or "skip" (see Collate).

    ``len()`` is the loader's; :meth:`set_epoch` forwards to the loader's sampler and collate_fn,
    the pipeline and the mix.

    Example:
        >>> import torch, gpuaug as ga
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = ga.data.WithIndex(TensorDataset(torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)))
        >>> loader = DataLoader(data, batch_size=4, collate_fn=ga.data.Collate())
        >>> batches = ga.data.DeviceLoader(loader, ga.Pipeline([ga.RandomResizedCrop(8)], seed=0), device="cpu")
        >>> [tuple(b["images"].shape) for b in batches], len(batches)
        ([(4, 3, 8, 8), (2, 3, 8, 8)], 2)
    """

    def __init__(
        self,
        loader: Iterable[dict[str, Any]],
        pipeline: Pipeline | None = None,
        device: torch.device | str = "cuda",
        prefetch: int = 2,
        *,
        mix: AnyMix | None = None,
        on_error: OnError = "raise",
    ) -> None:
        check_options(pipeline, mix, on_error)
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be a non-negative int, got {prefetch!r}")
        self.loader = loader
        self.pipeline = pipeline
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(self.device)!r} is not available: torch.cuda.is_available() is False")
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.prefetch = prefetch
        self.mix = mix
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the loader's sampler and collate_fn, of the pipeline and of the mix."""
        owners = [
            getattr(self.loader, "sampler", None),
            getattr(getattr(self.loader, "batch_sampler", None), "sampler", None),
            getattr(self.loader, "collate_fn", None),
            self.pipeline,
            self.mix,
        ]
        for i, owner in enumerate(owners):
            if hasattr(owner, "set_epoch") and all(owner is not other for other in owners[:i]):
                owner.set_epoch(epoch)
        collate_fn = getattr(self.loader, "collate_fn", None)
        if not hasattr(collate_fn, "set_epoch") and collate_fn not in (None, default_collate, default_convert):
            warnings.warn(f"DeviceLoader.set_epoch cannot reach the loader's collate_fn ({collate_fn!r:.60}): if it "
                          "augments (a wrapped ga.data.Collate), give the Collate itself or call its set_epoch",
                          RuntimeWarning, stacklevel=2)

    def _prepare(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(batch, dict) or "images" not in batch:
            raise TypeError(f"DeviceLoader takes batch dicts with 'images' (use ga.data.Collate), got {type(batch).__name__}")
        if isinstance(batch["images"], (EncodedBatch, list)):
            batch = decode_batch(batch, device=self.device, on_error=self.on_error)
        mix = self.mix if self.pipeline is None or self.mix is not None else self.pipeline.mix
        labels = batch.get("labels")
        if mix is not None and isinstance(labels, Tensor) and labels.device.type == "cpu" and labels.ndim == 1:
            mix.check_classes(labels)
        return augment_batch(_to_device(batch, self.device), self.pipeline, self.mix)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.device.type != "cuda":
            yield from (self._prepare(batch) for batch in self.loader)
            return
        side = torch.cuda.Stream(self.device)
        pending: deque[tuple[dict[str, Any], torch.cuda.Event]] = deque()
        batches = iter(self.loader)
        exhausted = False
        while True:
            while not exhausted and len(pending) <= self.prefetch:
                batch = next(batches, _END)
                if batch is _END:
                    exhausted = True
                    break
                if any(t.is_cuda for t in _tensors(batch)):  # made on the consuming stream (a dataset in GPU memory): wait for it
                    side.wait_stream(torch.cuda.current_stream(self.device))
                    _record_stream(batch, side)
                with torch.cuda.stream(side):
                    ready = self._prepare(batch)
                    done = torch.cuda.Event()
                    done.record(side)
                pending.append((ready, done))
            if not pending:
                return
            ready, done = pending.popleft()
            current = torch.cuda.current_stream(self.device)
            current.wait_event(done)
            _record_stream(ready, current)
            yield ready
