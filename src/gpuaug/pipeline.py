"""Pipeline: sample every transform's parameters for the whole batch, fold, execute.

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([
    ...     ga.RandomResizedCrop(224),
    ...     ga.RandomHorizontalFlip(),
    ...     ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
    ...     ga.ToDtype(torch.float32, scale=True),
    ...     ga.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    ... ], seed=0)
    >>> images = torch.randint(0, 256, (8, 3, 256, 256), dtype=torch.uint8)
    >>> out, params = pipe(images, return_params=True)
    >>> out.shape, out.dtype
    (torch.Size([8, 3, 224, 224]), torch.float32)
    >>> torch.equal(pipe.replay(images, params), out)
    True
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from . import execute, fused
from . import targets
from ._ext import resolve_backend
from .params import BatchParams, Params
from .plan import Stage, Step, expand, group, matrices
from .random import Stream, sample_keys
from .targets import Batch, TargetOptions
from .transforms._base import ImageSpec, Transform
from .transforms._container import _check_children
from .transforms._dtype import SUPPORTED_DTYPES

__all__ = ["Pipeline"]


def _check_images(images: Tensor) -> Tensor:
    """(B, C, H, W) view of valid input, or a clear error."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (C, H, W) or (B, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"images must be uint8 or floating point ({', '.join(str(d) for d in SUPPORTED_DTYPES)}), got {images.dtype}"
        )
    batch = images if images.ndim == 4 else images.unsqueeze(0)
    if min(batch.shape[1:]) == 0:
        raise ValueError(f"images must have channels, height and width > 0, got shape {tuple(images.shape)}")
    return batch


def _spec(batch: Tensor) -> ImageSpec:
    return ImageSpec(batch.shape[1], batch.shape[2], batch.shape[3], batch.dtype)


class Pipeline:
    """A list of transforms applied to a whole batch, with different random parameters per sample.

    Args:
        transforms: gpuaug transforms, applied in order.
        seed: the seed of the counter-based randomness (a random one when None).
        backend: "auto" (the fused extension when it builds, else "torch"), "torch" (plain PyTorch
            ops) or "ext"; None: $GPUAUG_BACKEND, else "auto".
        memory_format: of the output, ``torch.contiguous_format`` or ``torch.channels_last``.
        targets: how masks, boxes and keypoints are read, filtered and written (defaults: xyxy
            pixel boxes, ``min_area=1``, mask fill 0).

    Calling it on (B, C, H, W) or (C, H, W) uint8 or float images returns the augmented batch.
    Each call draws new parameters; with ``sample_ids`` (dataset indices) the parameters depend only
    on (seed, epoch, sample id), whatever the batch. Given masks, boxes, keypoints or labels too,
    it returns a :class:`~gpuaug.Batch` (see :mod:`gpuaug.targets`).

    Example:
        >>> import torch, gpuaug as ga
        >>> pipe = ga.Pipeline([ga.RandomHorizontalFlip()], seed=0)
        >>> x = torch.rand(4, 3, 8, 8)
        >>> torch.equal(pipe(x, sample_ids=torch.arange(4)), pipe(x, sample_ids=torch.arange(4)))
        True
    """

    def __init__(
        self,
        transforms: Sequence[Transform],
        *,
        seed: int | None = None,
        backend: str | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
        targets: TargetOptions | None = None,
    ) -> None:
        self.transforms = _check_children(transforms, "Pipeline")
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = secrets.randbits(63) if seed is None else seed
        self.backend = resolve_backend(backend)
        if memory_format not in (torch.contiguous_format, torch.channels_last):
            raise ValueError(f"memory_format must be torch.contiguous_format or torch.channels_last, got {memory_format}")
        self.memory_format = memory_format
        if targets is not None and not isinstance(targets, TargetOptions):
            raise TypeError(f"targets must be a gpuaug.TargetOptions, got {type(targets).__name__}")
        self.targets = targets or TargetOptions()
        self.epoch = 0
        self._calls = 0

    def __setstate__(self, state: dict) -> None:
        """Unpickling (e.g. in a spawned DataLoader worker) loads the extension there too."""
        self.__dict__.update(state)
        if self.backend == "ext":
            resolve_backend("ext")

    def set_epoch(self, epoch: int) -> None:
        """Key the following calls' randomness by ``epoch`` (as DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def __call__(
        self,
        images: Tensor,
        *,
        masks: Tensor | None = None,
        boxes: Tensor | Sequence[Tensor] | None = None,
        labels: Any = None,
        keypoints: Tensor | Sequence[Tensor] | None = None,
        boxes_valid: Tensor | None = None,
        keypoints_visible: Tensor | Sequence[Tensor] | None = None,
        sample_ids: Tensor | Sequence[int] | None = None,
        epoch: int | None = None,
        return_params: bool = False,
    ) -> Tensor | tuple[Tensor, BatchParams] | Batch:
        """Augment ``images``; with any target, a :class:`~gpuaug.Batch` (which holds the params).

        For (B, C, H, W) images: ``masks`` (B, H, W) or (B, K, H, W); ``boxes`` a list of (N_i, 4)
        per sample (``labels`` a list of (N_i, ...), filtered with them) or a padded (B, N, 4) tensor
        with ``boxes_valid`` (B, N); ``keypoints`` (B, ..., 2) or a list of (..., 2) per sample, with
        ``keypoints_visible`` of their shape without the last dim. For (C, H, W) images, one
        sample's targets. torchvision tv_tensors (Image, Mask, BoundingBoxes, KeyPoints) keep their type.
        """
        batch = _check_images(images)
        params, steps, stages = self._draw(batch, images, sample_ids, epoch)
        out = self._execute(batch, steps, stages, images.ndim)
        given = (masks, boxes, labels, keypoints, boxes_valid, keypoints_visible)
        if all(t is None for t in given):
            return (out, params) if return_params else out
        return targets.augment_targets(
            out, params, stages, self.targets, images, masks=masks, boxes=boxes, labels=labels,
            keypoints=keypoints, boxes_valid=boxes_valid, keypoints_visible=keypoints_visible,
        )

    def sample(
        self, images: Tensor, *, sample_ids: Tensor | Sequence[int] | None = None, epoch: int | None = None
    ) -> BatchParams:
        """Draw the parameters of every transform for ``images`` without augmenting them."""
        return self._draw(_check_images(images), images, sample_ids, epoch)[0]

    def replay(self, images: Tensor, params: BatchParams) -> Tensor:
        """Augment ``images`` with recorded ``params`` (from this pipeline): the same output again."""
        batch = _check_images(images)
        if tuple(images.shape) != tuple(params.input_shape) or images.dtype != params.input_dtype:
            raise ValueError(
                f"params were drawn for {params.input_dtype} images of shape {params.input_shape}, "
                f"got {images.dtype} images of shape {tuple(images.shape)}"
            )
        steps = self._recorded_steps(params, batch.device)
        return self._execute(batch, steps, group(steps), images.ndim)

    def inverse_boxes(self, boxes: Tensor | Sequence[Tensor], params: BatchParams) -> Tensor | list[Tensor]:
        """Map boxes on the augmented images of ``params`` (a call of this pipeline) back to the input frame.

        The same forms and options as the call's boxes; each is the box enclosing its mapped corners,
        clipped to the input image; none is dropped.

        Example:
            >>> import torch, gpuaug as ga
            >>> pipe = ga.Pipeline([ga.Resize(16), ga.RandomHorizontalFlip(p=1.0)], seed=0)
            >>> out, params = pipe(torch.rand(1, 3, 32, 32), return_params=True)
            >>> pipe.inverse_boxes([torch.tensor([[0.0, 2.0, 4.0, 8.0]])], params)
            [tensor([[24.,  4., 32., 16.]])]
        """
        return targets.inverse_boxes(boxes, params, self._output_hw(params), self.targets)

    def inverse_keypoints(self, keypoints: Tensor | Sequence[Tensor], params: BatchParams) -> Tensor | list[Tensor]:
        """Map keypoints on the augmented images of ``params`` back to the input frame (undoing ``flip_map``).

        Example:
            >>> import torch, gpuaug as ga
            >>> pipe = ga.Pipeline([ga.RandomRotation((90, 90))], seed=0)
            >>> out, params = pipe(torch.rand(1, 3, 8, 8), return_params=True)
            >>> pipe.inverse_keypoints(torch.tensor([[[2.0, 7.0]]]), params)
            tensor([[[1., 2.]]])
        """
        return targets.inverse_keypoints(keypoints, params, self._output_hw(params), self.targets)

    def inverse_images(
        self, images: Tensor, params: BatchParams, *, interpolation: str = "bilinear", fill: float = 0.0
    ) -> Tensor:
        """Resample maps predicted on the augmented images of ``params`` (e.g. segmentation logits)
        into the input frame; ``fill`` where the augmented image did not reach (invert a tensor of
        ones to get the coverage). Integer and bool maps are rounded back to their dtype.

        Example:
            >>> import torch, gpuaug as ga
            >>> pipe = ga.Pipeline([ga.RandomHorizontalFlip(p=1.0)], seed=0)
            >>> x = torch.rand(2, 3, 8, 8)
            >>> out, params = pipe(x, return_params=True)
            >>> torch.equal(pipe.inverse_images(out, params), x)
            True
        """
        return targets.inverse_images(images, params, self._output_hw(params), interpolation, fill)

    def _draw(
        self, batch: Tensor, images: Tensor, sample_ids: Tensor | Sequence[int] | None, epoch: int | None
    ) -> tuple[BatchParams, list[Step], list[Stage]]:
        size, device = batch.shape[0], batch.device
        if sample_ids is None:
            call, ids = self._calls, torch.arange(size, device=device)
            self._calls += 1
        else:
            call, ids = -1, self._check_ids(sample_ids, size, device)
        epoch = self.epoch if epoch is None else int(epoch)
        keys = sample_keys(self.seed, epoch, call, ids)

        def draw(index: int, t: Transform, spec: ImageSpec) -> Params:
            return t.draw(Stream(keys, index), spec)

        steps, drawn = expand(self.transforms, _spec(batch), draw)
        stages = group(steps)
        params = BatchParams(
            seed=self.seed,
            epoch=epoch,
            call=call,
            sample_ids=ids,
            keys=keys,
            input_shape=tuple(images.shape),
            input_dtype=images.dtype,
            names=self._names(),
            transforms=drawn,
            matrices=matrices(stages),
        )
        return params, steps, stages

    def _recorded_steps(self, params: BatchParams, device: torch.device) -> list[Step]:
        """The steps of the call that drew ``params`` (which must come from this pipeline)."""
        if params.names != self._names():
            raise ValueError(f"params come from a different pipeline: {params.names} vs {self._names()}")
        recorded = params.to(device).transforms
        spec = ImageSpec(*params.input_shape[-3:], params.input_dtype)
        steps, _ = expand(self.transforms, spec, lambda index, t, spec: recorded[index])
        return steps

    def _output_hw(self, params: BatchParams) -> tuple[int, int]:
        """The augmented images' (height, width) of the call that drew ``params``."""
        steps = self._recorded_steps(params, params.keys.device)
        spec = steps[-1].spec_out if steps else ImageSpec(*params.input_shape[-3:], params.input_dtype)
        return spec.height, spec.width

    def _execute(self, batch: Tensor, steps: list[Step], stages: list[Stage], ndim: int) -> Tensor:
        spec_out = steps[-1].spec_out if steps else _spec(batch)
        out = (fused.run if self.backend == "ext" else execute.run)(batch, stages, spec_out, self.memory_format)
        return out if ndim == 4 else out[0]

    def _names(self) -> list[str]:
        names: list[str] = []

        def visit(t: Transform) -> None:
            names.append(type(t).__name__)
            for child in t.children():
                visit(child)

        for t in self.transforms:
            visit(t)
        return names

    @staticmethod
    def _check_ids(sample_ids: Tensor | Sequence[int], size: int, device: torch.device) -> Tensor:
        try:
            ids = torch.as_tensor(sample_ids)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"sample_ids must be a tensor or sequence of ints, got {sample_ids!r}") from error
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dtype.is_complex:
            raise TypeError(f"sample_ids must be integers, got {ids.dtype}")
        if ids.shape != (size,):
            raise ValueError(f"sample_ids must have shape ({size},), got {tuple(ids.shape)}")
        return ids.to(device=device, dtype=torch.int64)

    def __repr__(self) -> str:
        body = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Pipeline([{body}\n], seed={self.seed}, backend={self.backend!r})"
