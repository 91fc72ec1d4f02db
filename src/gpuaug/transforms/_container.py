"""Containers: apply children with a per-sample coin, choose one per sample, or shuffle their order.

Children that are applied to some samples and not others must keep the image size, since a batch
has one size.

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([ga.RandomChoice([ga.RandomInvert(p=1.0), ga.RandomEqualize(p=1.0)])], seed=0)
    >>> pipe(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)).shape
    torch.Size([4, 3, 8, 8])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from .._device import constant
from ..params import Params, register_params
from ..random import Stream
from ._base import ImageSpec, Transform, choice_weights

__all__ = ["Compose", "RandomApply", "RandomChoice", "RandomOrder"]


def _check_children(transforms: Sequence[Transform], owner: str) -> list[Transform]:
    if isinstance(transforms, Transform) or not isinstance(transforms, Sequence):
        raise TypeError(f"{owner} takes a list of gpuaug transforms, got {transforms!r}")
    for t in transforms:
        if not isinstance(t, Transform):
            raise TypeError(f"{owner} takes gpuaug transforms, got {type(t).__module__}.{type(t).__name__}")
    return list(transforms)


class _Container(Transform):
    kind = "container"

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0) -> None:
        super().__init__(p)
        self.transforms = _check_children(transforms, type(self).__name__)
        if not self.transforms:  # as torchvision's containers (a Pipeline may be empty)
            raise ValueError(f"{type(self).__name__} needs at least one transform")

    def children(self) -> list[Transform]:
        return self.transforms

    def draw(self, rng: Stream, spec: ImageSpec) -> Params:
        return Params(applied=self.coin(rng))


class Compose(_Container):
    """Apply ``transforms`` in order (a Pipeline is already one; this nests a sequence).

    Example:
        >>> import gpuaug as ga
        >>> ga.RandomApply([ga.Compose([ga.RandomInvert(1.0), ga.RandomHorizontalFlip(1.0)])], p=0.5).p
        0.5
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        super().__init__(transforms)


class RandomApply(_Container):
    """Apply all ``transforms`` to a sample with probability ``p``.

    Example:
        >>> import torch, gpuaug as ga
        >>> pipe = ga.Pipeline([ga.RandomApply([ga.ColorJitter(0.4, 0.4)], p=0.8)], seed=0)
        >>> pipe(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(self, transforms: Sequence[Transform], p: float = 0.5) -> None:
        super().__init__(transforms, p)


@register_params
class ChoiceParams(Params):
    """choice (B,) int64: the index of the child applied to each sample."""

    choice: Tensor


class RandomChoice(_Container):
    """Apply one of ``transforms`` per sample, chosen with probabilities ``p`` (uniform by default).

    Example:
        >>> import gpuaug as ga
        >>> ga.RandomChoice([ga.RandomInvert(1.0), ga.RandomSolarize(128, 1.0)], p=[0.3, 0.7]).weights
        [0.3, 0.7]
    """

    def __init__(self, transforms: Sequence[Transform], p: Sequence[float] | None = None) -> None:
        super().__init__(transforms)
        self.weights = choice_weights(p, len(self.transforms), "transform")

    def draw(self, rng: Stream, spec: ImageSpec) -> ChoiceParams:
        u = rng.uniform(1)
        edges = constant(list(itertools.accumulate(self.weights))[:-1], torch.float64, u.device)
        choice = (u >= edges).sum(dim=1)
        return ChoiceParams(applied=torch.ones_like(choice, dtype=torch.bool), choice=choice)


@register_params
class OrderParams(Params):
    """order (B, n) int64: the children's indices in the order applied to each sample."""

    order: Tensor


class RandomOrder(_Container):
    """Apply all ``transforms`` in a random order per sample.

    Example:
        >>> import torch, gpuaug as ga
        >>> pipe = ga.Pipeline([ga.RandomOrder([ga.RandomInvert(1.0), ga.RandomPosterize(2, 1.0)])], seed=0)
        >>> pipe(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)).shape
        torch.Size([4, 3, 8, 8])
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        super().__init__(transforms)

    def draw(self, rng: Stream, spec: ImageSpec) -> OrderParams:
        order = rng.permutation(len(self.transforms))
        return OrderParams(applied=torch.ones(order.shape[0], dtype=torch.bool, device=order.device), order=order)

