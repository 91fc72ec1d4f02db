"""Capture a Pipeline call in a CUDA graph: one graph launch per batch instead of dozens of small kernels.

On CUDA a Pipeline call neither waits for the device nor copies from the host, so it can be
captured. :func:`capture` records one call on static buffers (the images, their sample ids and
the epoch, which the graph reads on the device) and returns a :class:`CapturedPipeline`; calling
it copies a batch into those buffers and replays the graph, which gives exactly what
``pipeline(images, sample_ids=ids, epoch=pipeline.epoch)`` gives. The seed, the transforms, the
backend and the batch's shape and dtype are fixed at capture; the epoch is read at every call.

Usage (on a CUDA device)::

    pipe = ga.Pipeline([...], seed=0)
    augment = ga.capture(pipe, torch.empty(256, 3, 256, 256, dtype=torch.uint8, device="cuda"))
    for epoch in range(epochs):
        pipe.set_epoch(epoch)
        for images, ids in batches:   # on the GPU: (256, 3, 256, 256) uint8 and (256,) dataset indices
            out = augment(images, ids)   # the graph's output buffer: the next call overwrites it
"""

from __future__ import annotations

import torch
from torch import Tensor

from .pipeline import Pipeline

__all__ = ["capture", "CapturedPipeline"]


class CapturedPipeline:
    """``pipeline`` captured in a CUDA graph for batches like ``images`` (see :func:`capture`)."""

    def __init__(self, pipeline: Pipeline, images: Tensor) -> None:
        if pipeline.mix is not None:
            raise ValueError(
                f"capture takes a pipeline without a final {type(pipeline.mix).__name__} (a captured call returns "
                "images only): capture the transforms before it and mix the output with the standalone mix"
            )
        if not isinstance(images, Tensor) or images.device.type != "cuda" or images.ndim != 4:
            got = f"shape {tuple(images.shape)} on {images.device}" if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"capture needs a (B, C, H, W) batch on a CUDA device, got {got}")
        self.pipeline = pipeline
        device = images.device
        self._images = images.clone()
        self._ids = torch.arange(images.shape[0], device=device)
        self._epoch = torch.zeros((), dtype=torch.int64, device=device)
        with torch.cuda.device(device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up: loads the extension, uploads the pipeline's constants
                self._call()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.output = self._call()

    def _call(self) -> Tensor:
        return self.pipeline(self._images, sample_ids=self._ids, epoch=self._epoch)

    def __call__(self, images: Tensor, sample_ids: Tensor, epoch: int | None = None) -> Tensor:
        """Augment ``images`` keyed by ``sample_ids`` (B,) in ``epoch`` (default: the pipeline's).

        Returns the graph's output buffer, which the next call overwrites (clone it to keep it).
        """
        if images.shape != self._images.shape or images.dtype != self._images.dtype:
            raise ValueError(f"the graph was captured for {self._images.dtype} images of shape "
                             f"{tuple(self._images.shape)}, got {images.dtype} images of shape {tuple(images.shape)}")
        if sample_ids.shape != self._ids.shape:
            raise ValueError(f"sample_ids must have shape {tuple(self._ids.shape)}, got {tuple(sample_ids.shape)}")
        self._images.copy_(images, non_blocking=True)
        self._ids.copy_(sample_ids, non_blocking=True)
        self._epoch.fill_(self.pipeline.epoch if epoch is None else epoch)
        self.graph.replay()
        return self.output


def capture(pipeline: Pipeline, images: Tensor) -> CapturedPipeline:
    """Capture ``pipeline`` in a CUDA graph for batches of the shape and dtype of ``images`` (on CUDA).

    One eager call warms up first (on a side stream): it loads the extension and uploads the
    pipeline's constants, the only host-to-device copies a pipeline makes.

    Example (on a CUDA device)::

        >>> pipe = ga.Pipeline([ga.RandomResizedCrop(224), ga.ToDtype(torch.float16, scale=True)], seed=0)  # doctest: +SKIP
        >>> augment = ga.capture(pipe, torch.empty(256, 3, 256, 256, dtype=torch.uint8, device="cuda"))  # doctest: +SKIP
        >>> out = augment(images, ids)  # doctest: +SKIP
    """
    return CapturedPipeline(pipeline, images)
