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

A MixUp, CutMix or MixChoice (or a RandomChoice of MixUp and CutMix) ending the pipeline mixes its
finished images and turns ``labels``, (B,) integer classes, into (B, num_classes) soft targets:

    >>> mixing = ga.Pipeline([
    ...     ga.RandomResizedCrop(32),
    ...     ga.ToDtype(torch.float32, scale=True),
    ...     ga.RandomChoice([ga.MixUp(alpha=0.2, num_classes=10, label_smoothing=0.1), ga.CutMix(1.0, 10, label_smoothing=0.1)]),
    ... ], seed=0)
    >>> batch = mixing(images, labels=torch.tensor([0, 1, 2, 3, 4, 5, 6, 7]))
    >>> batch.images.shape, batch.labels.shape, torch.allclose(batch.labels.sum(dim=1), torch.ones(8))
    (torch.Size([8, 3, 32, 32]), torch.Size([8, 10]), True)
    >>> torch.equal(mixing.replay(images, batch.params), batch.images)
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import _alloc, execute, fused
from . import targets
from ._ext import resolve_backend
from .mix import AnyMix, mix_images, mix_labels, split_mix
from .params import BatchParams, Params
from .plan import Stage, Step, Warp, expand, group, matrices, supersample_groups
from .ragged import RaggedBatch
from .random import Draws, Stream, position_keys, sample_keys
from .targets import Batch, TargetOptions
from .transforms._base import ImageSpec, Transform, check_epoch, check_seed, parse_epoch, parse_sample_ids
from .transforms._container import Compose, _check_children
from .transforms._dtype import SUPPORTED_DTYPES

__all__ = ["Pipeline"]


def _check_images(images: Tensor | RaggedBatch) -> Tensor:
    """(B, C, H, W) view of valid input (a RaggedBatch's padded images), or a clear error."""
    if isinstance(images, RaggedBatch):
        images = images.images
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor or a gpuaug.RaggedBatch, got {type(images).__name__}")
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (C, H, W) or (B, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"images must be uint8 or floating point ({', '.join(str(d) for d in SUPPORTED_DTYPES)}), got {images.dtype}"
        )
    if images.requires_grad and torch.is_grad_enabled():  # the passes write in place and into buffers
        raise ValueError("images require grad, but augmentation is not differentiable: give images.detach()")
    batch = images if images.ndim == 4 else images.unsqueeze(0)
    if min(batch.shape[1:]) == 0:
        raise ValueError(f"images must have channels, height and width > 0, got shape {tuple(images.shape)}")
    return batch


def _check_params(params: Any) -> None:
    if not isinstance(params, BatchParams):
        raise TypeError(f"params must be the BatchParams of a call (return_params=True), got {type(params).__name__}")


def _sizes(images: Tensor | RaggedBatch) -> Tensor | None:
    return images.sizes if isinstance(images, RaggedBatch) else None


def _spec(batch: Tensor, sizes: Tensor | None = None) -> ImageSpec:
    return ImageSpec(batch.shape[1], batch.shape[2], batch.shape[3], batch.dtype, sizes)


def _group_stage(stage: Stage, rows: Tensor, samples: list[int]) -> Stage:
    """The part of ``stage`` that concerns the samples ``rows`` (``samples`` on the host)."""
    part = execute.slice_stage(stage, rows)
    if isinstance(part, Warp) and part.sample_scales is not None:
        part = dataclasses.replace(part, sample_scales=[part.sample_scales[b] for b in samples])
    return part


def _arguments(node: Transform) -> str:
    """``node``'s public attributes as its repr lists them, but its children, its seed and epoch and
    ``inplace`` (none changes what its parameters replay to); numbers and sequences as plain Python's."""
    children = node.children()
    return ", ".join(
        f"{name}={_plain_repr(value)}" for name, value in vars(node).items()
        if not name.startswith("_") and name not in ("seed", "epoch", "inplace")
        and not (children and isinstance(value, (list, tuple)) and list(value) == children)
    )


def _plain_repr(value: Any) -> str:
    """repr of ``value`` with numpy and tensor numbers as Python's and sequences as tuples (equal values
    given either way compare equal); an object whose repr holds its address by its type's name."""
    if isinstance(value, (np.generic, np.ndarray, Tensor)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_plain_repr(v) for v in value) + ",)"
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text


class Pipeline:
    """A list of transforms applied to a whole batch, with different random parameters per sample.

    Args:
        transforms: gpuaug transforms, applied in order.
        seed: the seed of the counter-based randomness (a random one when None).
        backend: "auto" (the fused extension when it builds, else "torch"), "torch" (plain PyTorch
            ops) or "ext"; None: $GPUAUG_BACKEND, else "auto".
        memory_format: of the output, ``torch.contiguous_format`` or ``torch.channels_last``.
        targets: how masks, boxes and keypoints are read, filtered and written (defaults: xyxy
            pixel boxes, ``min_area=1``, ``min_size=1``, mask fill 0).

    Calling it on (B, C, H, W) or (C, H, W) uint8 or float images returns the augmented batch.
    Each call draws new parameters; with ``sample_ids`` (dataset indices) the parameters depend only
    on (seed, epoch, sample id), whatever the batch. Given masks, boxes, keypoints or labels too,
    it returns a :class:`~gpuaug.Batch` (see :mod:`gpuaug.targets`).

    A pipeline whose last transform is a mix (:attr:`mix`: a MixUp, CutMix or MixChoice; a
    RandomChoice of MixUp and CutMix is the MixChoice of them, see :func:`gpuaug.mix.split_mix`)
    takes a (B, C, H, W) batch with image-level ``labels`` (B,) integer classes (or (B, num_classes)
    soft labels) and no other targets, and returns a Batch whose ``images`` are mixed and whose
    ``labels`` are the (B, num_classes) float32 mixed targets (label smoothing applied). The mix
    runs on the finished output, after the fused final write (the tail ToDtype/Normalize is affine
    and a mix's weights sum to 1, so mixing after it is mixing before it up to float rounding);
    a uint8 output is rounded to the nearest integer, as timm's FastCollateMixup does. The
    pipeline's seed, epoch and sample ids key the mix (its own seed is not used), its parameters
    are in the returned params and :meth:`replay` mixes again. Without a mix, ``labels`` keep their
    meaning: per-box labels with ``boxes``, else passed through unchanged.

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
        body, mix = split_mix(self.transforms)
        self._body: list[Transform] = body
        self.mix: AnyMix | None = mix
        self._mix_index = sum(1 for t in self._body for _ in t.nodes())  # the mix's place in the params
        # each node's arguments (but its children, and a mix's seed and epoch, which its params hold): what
        # its recorded parameters are replayed with; once here, where no torch.compile traces the reprs
        self._arguments = [_arguments(node) for t in self.transforms for node in t.nodes()]
        self.seed = check_seed(seed)
        self.backend = resolve_backend(backend)
        if memory_format not in (torch.contiguous_format, torch.channels_last):
            raise ValueError(f"memory_format must be torch.contiguous_format or torch.channels_last, got {memory_format}")
        self.memory_format = memory_format
        if targets is not None and not isinstance(targets, TargetOptions):
            raise TypeError(f"targets must be a gpuaug.TargetOptions, got {type(targets).__name__}")
        self.targets = targets or TargetOptions()
        self.epoch = 0
        self._calls = 0
        self._draw_counts: dict[int, int] = {}  # draws per transform index in the last call: hashed ahead in the next

    def __setstate__(self, state: dict) -> None:
        """Unpickling (e.g. in a spawned DataLoader worker) loads the extension there too."""
        self.__dict__.update(state)
        self.__dict__.setdefault("_draw_counts", {})  # pickled by a version that had none
        if self.backend == "ext":
            resolve_backend("ext")

    def set_epoch(self, epoch: int) -> None:
        """Key the following calls' randomness by ``epoch`` (as DistributedSampler.set_epoch)."""
        self.epoch = check_epoch(epoch)

    def __call__(
        self,
        images: Tensor | RaggedBatch,
        *,
        masks: Tensor | None = None,
        boxes: Tensor | Sequence[Tensor] | None = None,
        labels: Any = None,
        keypoints: Tensor | Sequence[Tensor] | None = None,
        boxes_valid: Tensor | None = None,
        keypoints_visible: Tensor | Sequence[Tensor] | None = None,
        sample_ids: Tensor | Sequence[int] | None = None,
        epoch: int | Tensor | None = None,
        return_params: bool = False,
    ) -> Tensor | tuple[Tensor, BatchParams] | Batch:
        """Augment ``images``; with any target, a :class:`~gpuaug.Batch` (which holds the params).

        For (B, C, H, W) images: ``masks`` (B, H, W) or (B, K, H, W); ``boxes`` a list of (N_i, 4)
        per sample (``labels`` a list of (N_i, ...), filtered with them) or a padded (B, N, 4) tensor
        with ``boxes_valid`` (B, N); ``keypoints`` (B, ..., 2) or a list of (..., 2) per sample, with
        ``keypoints_visible`` of their shape without the last dim. For (C, H, W) images, one
        sample's targets. torchvision tv_tensors (Image, Mask, BoundingBoxes, KeyPoints) keep their type.
        ``epoch`` may be a 0-dim integer tensor on the images' device, which only the device reads
        (see :func:`gpuaug.capture`).

        A :class:`~gpuaug.RaggedBatch` of differently sized images goes through in one pass when the
        pipeline starts with RandomResizedCrop, RandomCrop, CenterCrop or Resize((h, w))
        (:meth:`takes_ragged`): each sample is cropped and resized from its own size, as it would be
        alone (no targets; a final mix and labels are fine).
        """
        batch = _check_images(images)
        given = {"masks": masks, "boxes": boxes, "keypoints": keypoints, "boxes_valid": boxes_valid,
                 "keypoints_visible": keypoints_visible}
        if isinstance(images, RaggedBatch) and any(v is not None for v in given.values()):
            raise ValueError("masks, boxes and keypoints of a RaggedBatch are not supported: augment them per size")
        soft = None if self.mix is None else self._soft_labels(batch, labels, given)
        params, steps, stages = self._draw(batch, images, sample_ids, epoch)
        out = self._execute(batch, steps, stages, images.ndim)
        if soft is not None:
            mixed = params.transforms[self._mix_index]
            out, labels = mix_images(out, mixed), mix_labels(soft, mixed)
        if labels is None and all(t is None for t in given.values()):
            return (out, params) if return_params else out
        return targets.augment_targets(out, params, stages, self.targets, images, labels=labels, **given)

    def sample(
        self, images: Tensor | RaggedBatch, *, sample_ids: Tensor | Sequence[int] | None = None, epoch: int | Tensor | None = None
    ) -> BatchParams:
        """Draw the parameters of every transform for ``images`` without augmenting them."""
        return self._draw(_check_images(images), images, sample_ids, epoch)[0]

    def replay(self, images: Tensor | RaggedBatch, params: BatchParams) -> Tensor:
        """Augment ``images`` with recorded ``params`` (from this pipeline): the same output again."""
        batch = _check_images(images)
        _check_params(params)
        if tuple(images.shape) != tuple(params.input_shape) or images.dtype != params.input_dtype:
            raise ValueError(
                f"params were drawn for {params.input_dtype} images of shape {params.input_shape}, "
                f"got {images.dtype} images of shape {tuple(images.shape)}"
            )
        sizes = _sizes(images)
        if (sizes is None) != (params.input_sizes is None) or (sizes is not None and not torch.equal(sizes, params.input_sizes)):
            raise ValueError("params were drawn for images of other sizes: replay them on the same RaggedBatch (or plain batch)")
        steps = self._recorded_steps(params, batch.device)
        out = self._execute(batch, steps, group(steps), images.ndim)
        return out if self.mix is None else mix_images(out, params.transforms[self._mix_index].to(batch.device))

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
        return targets.inverse_boxes(boxes, params, self._recorded_output(params)[1], self.targets)

    def inverse_keypoints(self, keypoints: Tensor | Sequence[Tensor], params: BatchParams) -> Tensor | list[Tensor]:
        """Map keypoints on the augmented images of ``params`` back to the input frame (undoing ``flip_map``).

        Example:
            >>> import torch, gpuaug as ga
            >>> pipe = ga.Pipeline([ga.RandomRotation((90, 90))], seed=0)
            >>> out, params = pipe(torch.rand(1, 3, 8, 8), return_params=True)
            >>> pipe.inverse_keypoints(torch.tensor([[[2.0, 7.0]]]), params)
            tensor([[[1., 2.]]])
        """
        steps, out_hw = self._recorded_output(params)
        return targets.inverse_keypoints(keypoints, params, group(steps), out_hw, self.targets)

    def inverse_images(
        self, images: Tensor, params: BatchParams, *, interpolation: str = "bilinear", fill: float = 0.0
    ) -> Tensor:
        """Resample maps predicted on the augmented images of ``params`` (e.g. segmentation logits)
        into the input frame; ``fill`` where the augmented image did not reach (invert a tensor of
        ones to get the coverage). Integer and bool maps are rounded back to their dtype; the
        arithmetic is float32's, but nearest keeps every value exactly.

        Example:
            >>> import torch, gpuaug as ga
            >>> pipe = ga.Pipeline([ga.RandomHorizontalFlip(p=1.0)], seed=0)
            >>> x = torch.rand(2, 3, 8, 8)
            >>> out, params = pipe(x, return_params=True)
            >>> torch.equal(pipe.inverse_images(out, params), x)
            True
        """
        steps, out_hw = self._recorded_output(params, images.device if isinstance(images, Tensor) else None)
        return targets.inverse_images(images, params, group(steps), out_hw, interpolation, fill)

    def _soft_labels(self, batch: Tensor, labels: Any, given: dict[str, Any]) -> Tensor:
        """The targets the pipeline's mix mixes: (B, num_classes) from ``labels``, or a clear error."""
        assert self.mix is not None
        name = type(self.mix).__name__
        others = [key for key, value in given.items() if value is not None]
        if others:
            raise ValueError(
                f"a Pipeline ending in {name} takes image-level class labels only, got {', '.join(others)} too: "
                "mixed images have no boxes, masks or keypoints"
            )
        if labels is None:
            raise ValueError(
                f"a Pipeline ending in {name} mixes labels too: pass labels=, (B,) integer classes in "
                f"[0, {self.mix.num_classes}) or (B, {self.mix.num_classes}) soft labels"
            )
        return self.mix.soft_labels(labels, batch.shape[0], batch.device)

    def _keys(
        self, batch: Tensor, sample_ids: Tensor | Sequence[int] | None, epoch: int | Tensor | None
    ) -> tuple[int, Tensor, int | Tensor, Tensor]:
        """(call, ids, epoch, keys) of a call on ``batch``: the sample ids (positions when not
        given) and the per-sample keys of the counter-based randomness."""
        size, device = batch.shape[0], batch.device
        epoch = self.epoch if epoch is None else parse_epoch(epoch, device)
        if sample_ids is not None:
            ids = parse_sample_ids(sample_ids, size, device)
            return -1, ids, epoch, sample_keys(self.seed, epoch, -1, ids)
        call = self._calls
        self._calls += 1
        return call, torch.arange(size, device=device), epoch, position_keys(self.seed, epoch, call, size, device)

    def _draw_body(self, batch: Tensor, sizes: Tensor | None, keys: Tensor) -> tuple[list[Step], list[Params]]:
        """The steps of the transforms before the mix, and every node's parameters, drawn from ``keys``."""

        draws = Draws(keys, self._draw_counts)

        def draw(index: int, t: Transform, spec: ImageSpec) -> Params:
            return t.draw(draws.stream(index), spec)

        steps, drawn = expand(self._body, _spec(batch, sizes), draw)
        used = draws.used()
        if used != self._draw_counts:  # (compare first: a compiled call then keeps no side effect)
            self._draw_counts = used
        if sizes is not None and (not steps or steps[-1].spec_out.sizes is not None):
            raise ValueError(
                "a RaggedBatch needs a pipeline that gives every sample one size: start it with "
                "RandomResizedCrop, RandomCrop, CenterCrop or Resize((height, width))"
            )
        return steps, drawn

    def _draw_mix(self, keys: Tensor, ids: Tensor, height: int, width: int) -> list[Params]:
        """The mix's parameters (and its mixes'), keyed by the pipeline's ``keys`` and the mix's place."""
        assert self.mix is not None
        return self.mix.draw_batch(Stream(keys, self._mix_index).keys, ids, height, width)

    def _draw(
        self, batch: Tensor, images: Tensor, sample_ids: Tensor | Sequence[int] | None, epoch: int | Tensor | None
    ) -> tuple[BatchParams, list[Step], list[Stage]]:
        if self.mix is not None and images.ndim != 4:
            raise ValueError(f"a Pipeline ending in {type(self.mix).__name__} mixes a (B, C, H, W) batch, "
                             f"got shape {tuple(images.shape)}")
        call, ids, epoch, keys = self._keys(batch, sample_ids, epoch)
        sizes = _sizes(images)
        steps, drawn = self._draw_body(batch, sizes, keys)
        if self.mix is not None:
            spec = self._spec_out(steps, batch)
            drawn += self._draw_mix(keys, ids, spec.height, spec.width)
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
            input_sizes=None if sizes is None else sizes.clone(),  # never the caller's own
            children=self._children(),
            output_shape=self._output_shape(steps, _spec(batch)),
            arguments=self._arguments,
        )
        return params, steps, stages

    def _recorded_steps(self, params: BatchParams, device: torch.device) -> list[Step]:
        """The steps of the call that drew ``params`` (which must come from this pipeline: the same
        transforms, nested alike, giving the same output size)."""
        names, children = self._names(), self._children()
        if params.names != names or params.children not in (None, children):  # None: saved before it was recorded
            raise ValueError(f"params come from a different pipeline: {params.names} with {params.children} children "
                             f"vs {names} with {children}")
        if params.arguments is not None and params.arguments != self._arguments:
            differ = [f"{name}({a}) vs ({b})" for name, a, b in zip(names, params.arguments, self._arguments) if a != b]
            raise ValueError(f"params come from a pipeline with other arguments: {'; '.join(differ)}")
        recorded = params.to(device).transforms
        spec = ImageSpec(*params.input_shape[-3:], params.input_dtype, params.input_sizes)
        steps, _ = expand(self._body, spec, lambda index, t, spec: recorded[index])
        shape = self._output_shape(steps, spec)
        if params.output_shape is not None and shape != params.output_shape:
            raise ValueError(f"params come from a different pipeline: its output was {params.output_shape}, "
                             f"this pipeline's is {shape}")
        return steps

    def _recorded_output(self, params: BatchParams, device: torch.device | None = None) -> tuple[list[Step], tuple[int, int]]:
        """The steps of the call that drew ``params`` (on ``device``, by default the params') and its
        augmented images' (height, width)."""
        _check_params(params)
        device = params.keys.device if device is None else device
        if params.input_sizes is not None:
            raise ValueError("mapping back to the input frame of a RaggedBatch call is not supported")
        steps = self._recorded_steps(params, device)
        _, height, width = self._output_shape(steps, ImageSpec(*params.input_shape[-3:], params.input_dtype))
        return steps, (height, width)

    @staticmethod
    def _spec_out(steps: list[Step], batch: Tensor) -> ImageSpec:
        return steps[-1].spec_out if steps else _spec(batch)

    def _execute(self, batch: Tensor, steps: list[Step], stages: list[Stage], ndim: int) -> Tensor:
        spec_out = self._spec_out(steps, batch)
        run = fused.run if self.backend == "ext" else execute.run
        groups = supersample_groups(stages)
        if groups is None:
            out = run(batch, stages, spec_out, self.memory_format)
        else:  # a ragged batch whose samples shrink by different factors: each group supersampled as its own
            out = _alloc.empty((batch.shape[0], spec_out.channels, spec_out.height, spec_out.width), spec_out.dtype,
                               batch.device, self.memory_format)
            for samples in groups:
                rows = torch.tensor(samples).to(batch.device, non_blocking=True)
                part = [_group_stage(s, rows, samples) for s in stages]
                out[rows] = run(batch[rows], part, spec_out, self.memory_format)
        return out if ndim == 4 else out[0]

    def takes_ragged(self) -> bool:
        """Whether a RaggedBatch goes through in one pass: the first transform gives every sample one
        size from its own (RandomResizedCrop, RandomCrop, CenterCrop, Resize((h, w)))."""
        first = self._body[0] if self._body else None
        while isinstance(first, Compose):
            first = first.transforms[0] if first.transforms else None
        return first is not None and first.sizes_samples

    def _unmixed(self, images: Tensor, sample_ids: Tensor, epoch: int | None) -> Tensor:
        """The (B, C, H, W) output of the transforms before the mix, keyed by ``sample_ids``: the samples
        of a RaggedBatch that the pipeline cannot take in one pass go through this size by size."""
        batch = _check_images(images)
        steps, _ = self._draw_body(batch, None, self._keys(batch, sample_ids, epoch)[3])
        return self._execute(batch, steps, group(steps), 4)

    def _mix_assembled(self, images: Tensor, labels: Any, sample_ids: Tensor, epoch: int | None) -> tuple[Tensor, Tensor]:
        """(images, soft labels): a batch assembled from :meth:`_unmixed` outputs mixed as a call of the
        whole pipeline on it, keyed by the same ``sample_ids``, would mix it."""
        soft = self._soft_labels(images, labels, {})
        _, ids, _, keys = self._keys(images, sample_ids, epoch)
        mixed = self._draw_mix(keys, ids, images.shape[2], images.shape[3])[0]
        return mix_images(images, mixed), mix_labels(soft, mixed)

    def _names(self) -> list[str]:
        return [type(node).__name__ for t in self.transforms for node in t.nodes()]

    def _children(self) -> list[int]:
        """How many children each node of ``_names`` has: the nesting, which the names alone do not say."""
        return [len(node.children()) for t in self.transforms for node in t.nodes()]

    @staticmethod
    def _output_shape(steps: list[Step], spec_in: ImageSpec) -> tuple[int, int, int]:
        """The augmented images' (C, H, W): the last step's, else the input's."""
        out = steps[-1].spec_out if steps else spec_in
        return out.channels, out.height, out.width

    def __repr__(self) -> str:
        body = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Pipeline([{body}\n], seed={self.seed}, backend={self.backend!r})"
