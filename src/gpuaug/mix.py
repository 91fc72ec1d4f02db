"""MixUp and CutMix: mix each image of a batch with a partner from the same batch, and their labels.

``images, soft_labels = mix(images, labels)``. Integer class labels become one-hot targets
(smoothed by ``label_smoothing``) mixed with the partner's in proportion ``lam``, the weight of
the sample's own pixels. The modes are timm's: ``"batch"`` draws one ``lam`` (and one CutMix box)
for the whole batch, ``"pair"`` one per pair of samples that are mixed with each other, ``"elem"``
one per sample. ``p`` is the probability that a batch, pair or sample is mixed at all.

Everything comes from gpuaug's counter-based randomness keyed by (seed, epoch, sample id): the
samples are put in a random order (a hash of their ids) and each is mixed with the next one in
that order (``"pair"``: the 1st with the 2nd, the 3rd with the 4th, ...; in an odd batch the last
is paired with itself, which leaves it as it is: a skipped file must not stop training), so with ``sample_ids``
a sample's partner and weights depend only on which samples share its batch, not on their order.

A mix can also be the last transform of a :class:`~gpuaug.Pipeline`, which then mixes its finished
images and the class labels given as ``labels=`` (see :func:`split_mix`); the pipeline's seed,
epoch and sample ids key it, and its params record the mix's. uint8 images are mixed in float32
and rounded to the nearest integer (half to even), as timm's ``FastCollateMixup`` does.

Example:
    >>> import torch, gpuaug as ga
    >>> mix = ga.MixUp(alpha=0.2, num_classes=10, mode="elem", seed=0)
    >>> images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    >>> mixed, soft = mix(images, labels, sample_ids=torch.arange(4))
    >>> mixed.shape, soft.shape, torch.allclose(soft.sum(dim=1), torch.ones(4))
    (torch.Size([4, 3, 8, 8]), torch.Size([4, 10]), True)
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import fields
from typing import Literal, get_args

import torch
from torch import Tensor

from .params import Params, register_params
from .random import Stream, sample_keys
from .transforms._base import Transform, check_epoch, check_seed, choice_weights, first_valid, parse_sample_ids
from .transforms._container import RandomChoice

__all__ = ["MixUp", "CutMix", "MixChoice", "MixParams", "MixChoiceParams", "split_mix", "mix_images", "mix_labels"]

Mode = Literal["batch", "pair", "elem"]
_ORDER, _DRAWS, _CHOICE = 0, 1, 2  # stream numbers
# What a standalone mix folds into its samples' keys: a Pipeline numbers its transforms from 0 (a mix
# that ends one takes its own number), so a mix with the Pipeline's seed draws numbers of its own.
_STANDALONE = -1


@register_params
class MixParams(Params):
    """What a mix drew for each sample; ``applied`` (B,) bool: whether it is mixed at all.

    partner (B,) int64: the batch position of the sample mixed in.
    weight (B,) float64: the weight of the sample's own pixels (outside ``box``).
    box (B, 4) int64: (top, bottom, left, right), the half-open region showing the partner's pixels.
    lam (B,) float64: the weight of the sample's own label.

    Example:
        >>> import torch, gpuaug as ga
        >>> p = ga.MixUp(1.0, num_classes=3, mode="pair", seed=0).sample(torch.rand(4, 3, 8, 8))
        >>> p.partner[p.partner].tolist()  # pairs: each sample's partner has it as partner
        [0, 1, 2, 3]
    """

    partner: Tensor
    weight: Tensor
    box: Tensor
    lam: Tensor


@register_params
class MixChoiceParams(MixParams):
    """choice (B,) int64: the index of the mix each sample got."""

    choice: Tensor


def _log_gamma_variate(rng: Stream, shape: float, tries: int = 8) -> Tensor:
    """(B,) float64 logs of Gamma(shape, 1) variates: Marsaglia and Tsang's method with ``tries``
    vectorised attempts (each succeeds with probability > 0.95), boosted for shape < 1."""
    a = shape + 1.0 if shape < 1.0 else shape
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    u1, u2, u3 = rng.uniform(tries), rng.uniform(tries), rng.uniform(tries)
    z = torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)
    v = (1.0 + c * z) ** 3
    log_v = torch.log(v.clamp_min(1e-300))
    ok = (v > 0) & (torch.log1p(-u3) < 0.5 * z * z + d - d * v + d * log_v)
    found, (log_x,) = first_valid(ok, [math.log(d) + log_v])
    log_x = torch.where(found, log_x, math.log(d))
    if shape < 1.0:
        log_x = log_x + torch.log1p(-rng.uniform(1)[:, 0]) / shape
    return log_x


def _beta(rng: Stream, alpha: float) -> Tensor:
    """(B,) float64 Beta(alpha, alpha) variates, as X / (X + Y) of two Gamma(alpha) variates."""
    return torch.sigmoid(_log_gamma_variate(rng, alpha) - _log_gamma_variate(rng, alpha))


def _pairing(keys: Tensor, ids: Tensor, mode: Mode) -> tuple[Tensor, Tensor]:
    """(partner, leader), each (B,) int64 batch positions: whom each sample is mixed with, and
    whose draws it uses (the first sample of its batch, pair or itself, in the random order)."""
    size = keys.shape[0]
    bits = Stream(keys, _ORDER).bits(1)[:, 0].to(torch.int64)
    order = torch.argsort((bits << 32) | (ids & 0xFFFFFFFF), stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(size, device=order.device)
    if mode == "pair":  # (an odd batch's last sample partners itself)
        return order[(rank ^ 1).clamp_(max=size - 1)], order[rank - rank % 2]
    leader = torch.zeros_like(rank) if mode == "batch" else rank
    return order[(rank + 1) % size], order[leader]


class _Mix(Transform):
    """The call, keys and label mixing that MixUp, CutMix and MixChoice share.

    As a transform (``kind`` "mix") it can only end a Pipeline, which draws it with :meth:`draw_batch`.
    """

    kind = "mix"

    def __init__(self, num_classes: int, mode: Mode, p: float, label_smoothing: float, seed: int | None) -> None:
        super().__init__(p)
        if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if mode not in get_args(Mode):
            raise ValueError(f"mode must be one of {list(get_args(Mode))}, got {mode!r}")
        if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")

        self.num_classes = int(num_classes)
        self.mode = mode
        self.label_smoothing = float(label_smoothing)
        self.seed = check_seed(seed)
        self.epoch = 0
        self._calls = 0

    def set_epoch(self, epoch: int) -> None:
        """Key the following calls' randomness by ``epoch`` (as DistributedSampler.set_epoch)."""
        self.epoch = check_epoch(epoch)

    def __call__(
        self,
        images: Tensor,
        labels: Tensor | Sequence[int],
        *,
        sample_ids: Tensor | Sequence[int] | None = None,
        epoch: int | None = None,
        return_params: bool = False,
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, MixParams]:
        """Mixed (B, C, H, W) images (their dtype) and (B, num_classes) float32 soft labels.

        ``labels`` are (B,) integer classes, or (B, num_classes) soft labels used as they are.
        Class labels are range-checked on the CPU only: on a GPU the check would wait for it.
        """
        _check_images(images)
        soft = self.soft_labels(labels, images.shape[0], images.device)
        params = self.sample(images, sample_ids=sample_ids, epoch=epoch)
        out, mixed_labels = mix_images(images, params), mix_labels(soft, params)
        return (out, mixed_labels, params) if return_params else (out, mixed_labels)

    def sample(
        self, images: Tensor, *, sample_ids: Tensor | Sequence[int] | None = None, epoch: int | None = None
    ) -> MixParams:
        """Draw the mixing parameters for ``images`` without mixing them."""
        _check_images(images)
        size = images.shape[0]
        if sample_ids is None:
            call, ids = self._calls, torch.arange(size, device=images.device)
            self._calls += 1
        else:
            call, ids = -1, parse_sample_ids(sample_ids, size, images.device)
        keys = sample_keys(self.seed, self.epoch if epoch is None else int(epoch), call, ids)
        return self.draw_batch(Stream(keys, _STANDALONE).keys, ids, images.shape[2], images.shape[3])[0]

    def draw_batch(self, keys: Tensor, ids: Tensor, height: int, width: int) -> list[MixParams]:
        """The parameters of this mix and then of each of its mixes (MixChoice), depth first as a
        Pipeline records them, for a batch of ``height`` x ``width`` images with per-sample ``keys``
        and dataset ``ids``."""
        partner, leader = _pairing(keys, ids, self.mode)
        return self._draw(keys, partner, leader, height, width)

    def _draw(self, keys: Tensor, partner: Tensor, leader: Tensor, height: int, width: int) -> list[MixParams]:
        """:meth:`draw_batch` once the samples are paired; every sample uses its ``leader``'s draws."""
        raise NotImplementedError

    def _mixed(self, rng: Stream, leader: Tensor, partner: Tensor) -> Tensor:
        """(B,) bool: whether each sample is mixed, the coin of its leader (never with itself)."""
        alone = partner == torch.arange(partner.shape[0], device=partner.device)
        return rng.bernoulli(self.p)[leader] & ~alone

    def check_classes(self, labels: Tensor) -> None:
        """Integer class labels must lie in [0, num_classes) (on a GPU a label out of range would stop the
        device with an assert: check them while they are on the host)."""
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")

    def soft_labels(self, labels: Tensor | Sequence[int], size: int, device: torch.device) -> Tensor:
        """(size, num_classes) float32 targets on ``device``: smoothed one-hot ones for integer class
        labels (range-checked when on the CPU), or soft labels as they are."""
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"labels must be ({size},) integer classes or ({size}, {self.num_classes}) soft labels, "
                             f"got {type(labels).__name__}") from error
        if labels.ndim == 2 and labels.dtype.is_floating_point and labels.shape == (size, self.num_classes):
            return labels.to(device, torch.float32)
        if labels.ndim != 1 or labels.shape[0] != size or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(
                f"labels must be ({size},) integer classes or ({size}, {self.num_classes}) soft labels, "
                f"got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        if labels.device.type == "cpu":
            self.check_classes(labels)
        off = self.label_smoothing / self.num_classes
        soft = torch.full((size, self.num_classes), off, dtype=torch.float32, device=device)
        return soft.scatter_(1, labels.to(device, torch.int64)[:, None], 1.0 - self.label_smoothing + off)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (B, C, H, W) batch, got shape {tuple(images.shape)}")
    if not (images.dtype == torch.uint8 or images.dtype.is_floating_point):
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")


def _check_alpha(alpha: float) -> float:
    if not isinstance(alpha, numbers.Real) or not alpha > 0 or math.isinf(alpha):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    return float(alpha)


def mix_images(images: Tensor, params: MixParams) -> Tensor:
    """``weight * image + (1 - weight) * partner`` outside each box, the partner's pixels inside.

    Computed in float32 (float64 for float64 input); uint8 results are rounded. ``images`` is not
    modified.
    """
    work = torch.float64 if images.dtype == torch.float64 else torch.float32
    own = images.to(work)
    partner = own[params.partner]
    weight = params.weight.to(work).view(-1, 1, 1, 1)
    out = own * weight + partner * (1.0 - weight)
    top, bottom, left, right = (v.view(-1, 1, 1, 1) for v in params.box.unbind(1))
    rows = torch.arange(images.shape[2], device=images.device).view(1, 1, -1, 1)
    cols = torch.arange(images.shape[3], device=images.device).view(1, 1, 1, -1)
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    out = torch.where(inside, partner, out)
    if not images.dtype.is_floating_point:
        out = out.round_().clamp_(0, 255)
    return out.to(images.dtype)


def mix_labels(soft: Tensor, params: MixParams) -> Tensor:
    """``lam * label + (1 - lam) * partner's label`` for (B, num_classes) soft labels."""
    lam = params.lam.to(soft.dtype)[:, None]
    return soft * lam + soft[params.partner] * (1.0 - lam)


class MixUp(_Mix):
    """Blend each image with its partner: ``lam * image + (1 - lam) * partner``, lam ~ Beta(alpha, alpha)
    (``alpha`` 1.0 by default, as torchvision's MixUp and timm's mixup_alpha; timm's ImageNet recipes use 0.2-0.8).

    Example:
        >>> import torch, gpuaug as ga
        >>> mix = ga.MixUp(alpha=0.2, num_classes=3, label_smoothing=0.1, seed=0)
        >>> images, soft = mix(torch.rand(2, 3, 4, 4), torch.tensor([0, 2]))
        >>> soft.shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: int = 1000,
        *,
        mode: Mode = "batch",
        p: float = 1.0,
        label_smoothing: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_classes, mode, p, label_smoothing, seed)
        self.alpha = _check_alpha(alpha)

    def _draw(self, keys: Tensor, partner: Tensor, leader: Tensor, height: int, width: int) -> list[MixParams]:
        rng = Stream(keys, _DRAWS)
        applied = self._mixed(rng, leader, partner)
        lam = torch.where(applied, _beta(rng, self.alpha)[leader], 1.0)
        box = torch.zeros(keys.shape[0], 4, dtype=torch.int64, device=keys.device)
        return [MixParams(applied=applied, partner=partner, weight=lam, box=box, lam=lam.clone())]  # each field its own


class CutMix(_Mix):
    """Paste a box of the partner into each image, as timm does.

    lam ~ Beta(alpha, alpha); the box has sides ``cut_h = int(H * sqrt(1 - lam))`` by ``cut_w = int(W *
    sqrt(1 - lam))`` around a uniformly drawn centre (rows ``cy - cut_h // 2`` to ``cy + (cut_h + 1) //
    2``, as timm's ``rand_bbox``), clipped to the image; the label weight is the part of the image
    left uncovered (timm's ``correct_lam``).

    Example:
        >>> import torch, gpuaug as ga
        >>> mix = ga.CutMix(alpha=1.0, num_classes=3, mode="elem", seed=0)
        >>> images, soft, params = mix(torch.rand(2, 3, 8, 8), torch.tensor([0, 2]), return_params=True)
        >>> params.box.shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        alpha: float = 1.0,
        num_classes: int = 1000,
        *,
        mode: Mode = "batch",
        p: float = 1.0,
        label_smoothing: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_classes, mode, p, label_smoothing, seed)
        self.alpha = _check_alpha(alpha)

    def _draw(self, keys: Tensor, partner: Tensor, leader: Tensor, height: int, width: int) -> list[MixParams]:
        rng = Stream(keys, _DRAWS)
        applied = self._mixed(rng, leader, partner)
        cut = torch.sqrt(1.0 - _beta(rng, self.alpha)[leader])
        cut_h, cut_w = (height * cut).floor(), (width * cut).floor()
        cy, cx = rng.uniform(2)[leader].unbind(1)
        cy, cx = (cy * height).floor(), (cx * width).floor()
        box = torch.stack([(cy - cut_h // 2).clamp(0, height), (cy + (cut_h + 1) // 2).clamp(0, height),
                           (cx - cut_w // 2).clamp(0, width), (cx + (cut_w + 1) // 2).clamp(0, width)], dim=1)
        box = torch.where(applied[:, None], box, 0.0).to(torch.int64)
        area = (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])
        lam = 1.0 - area.to(torch.float64) / (height * width)
        return [MixParams(applied=applied, partner=partner, weight=torch.ones_like(lam), box=box, lam=lam)]


class MixChoice(_Mix):
    """One of ``mixes`` (of one mode, classes and smoothing) per batch, pair or sample, as the mode
    says, chosen with probabilities ``p`` (uniform by default): timm's ``switch_prob``.

    The choice's ``seed`` keys everything; the mixes' own seeds are not used. In a Pipeline,
    ``RandomChoice([MixUp(...), CutMix(...)], p)`` is this MixChoice.

    Example:
        >>> import torch, gpuaug as ga
        >>> mix = ga.MixChoice([ga.MixUp(0.8, 10), ga.CutMix(1.0, 10)], p=[0.5, 0.5], seed=0)
        >>> images, soft, params = mix(torch.rand(4, 3, 8, 8), torch.arange(4), return_params=True)
        >>> params.choice.unique().numel()  # 'batch' mode: one choice for the batch
        1
    """

    def __init__(self, mixes: Sequence[MixUp | CutMix], p: Sequence[float] | None = None, *, seed: int | None = None) -> None:
        if not mixes or not all(isinstance(m, (MixUp, CutMix)) for m in mixes):
            raise TypeError(f"MixChoice takes a non-empty list of MixUp and CutMix, got {mixes!r}")
        first = mixes[0]
        for m in mixes:
            if (m.mode, m.num_classes, m.label_smoothing) != (first.mode, first.num_classes, first.label_smoothing):
                raise ValueError(f"the mixes chosen from must share mode, num_classes and label_smoothing, got {mixes!r}")
        weights = choice_weights(p, len(mixes), "mix")  # checked before the base class takes the mixes' settings
        super().__init__(first.num_classes, first.mode, 1.0, first.label_smoothing, seed)
        self.mixes = list(mixes)
        self.weights = weights

    def children(self) -> list[Transform]:
        return list(self.mixes)

    def _draw(self, keys: Tensor, partner: Tensor, leader: Tensor, height: int, width: int) -> list[MixParams]:
        u = Stream(keys, _CHOICE).uniform(1)[leader, 0]
        choice = torch.zeros_like(partner)
        for edge in list(itertools.accumulate(self.weights))[:-1]:  # no upload of the weights
            choice += u >= edge
        drawn = [m._draw(keys, partner, leader, height, width)[0] for m in self.mixes]
        values = {
            f.name: torch.stack([getattr(d, f.name) for d in drawn])[choice, torch.arange(keys.shape[0], device=keys.device)]
            for f in fields(MixParams)
        }
        return [MixChoiceParams(**values, choice=choice), *drawn]


AnyMix = MixUp | CutMix | MixChoice


def split_mix(transforms: Sequence[Transform]) -> tuple[list[Transform], AnyMix | None]:
    """A pipeline's transforms before its mix, and the mix (None when it has none).

    A mix may only be the last transform, since it mixes the batch's finished images: a MixUp,
    CutMix or MixChoice, or a RandomChoice of MixUps and CutMixes. That RandomChoice chooses as
    ``MixChoice(its transforms, p)`` does, as timm's Mixup switches with ``switch_prob``: once per
    batch, pair or sample as the mixes' mode says, not per sample whatever the mode.
    """
    mix = _as_mix(transforms[-1]) if transforms else None
    body = list(transforms[:-1] if mix is not None else transforms)
    for node in (n for t in body for n in t.nodes()):
        if node.kind == "mix":
            raise ValueError(
                f"{type(node).__name__} must be the last transform of a Pipeline, directly (alone, in a MixChoice or in a "
                "RandomChoice of MixUp and CutMix): it mixes the batch's finished images"
            )
    return body, mix


def _as_mix(t: Transform) -> AnyMix | None:
    """``t`` as a mix: itself, a RandomChoice of mixes as a MixChoice, or None when it is no mix."""
    if isinstance(t, _Mix):
        return t
    if not isinstance(t, RandomChoice) or all(child.kind != "mix" for child in t.transforms):
        return None
    if not all(isinstance(child, (MixUp, CutMix)) for child in t.transforms):
        raise ValueError(f"a RandomChoice that holds a mix must hold only MixUp and CutMix, got {t.transforms!r}")
    return MixChoice(t.transforms, p=t.weights, seed=0)
