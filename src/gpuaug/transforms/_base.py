"""Base classes of the transforms and the small argument parsers they share.

A transform is thin: it checks its arguments, draws per-sample parameters (a :class:`Params`
dataclass of tensors) from a :class:`~gpuaug.random.Stream`, and hands them to a functional
kernel. Geometric transforms return a matrix instead of touching pixels; the pipeline composes
them into one resampling pass.
"""

from __future__ import annotations

import math
import numbers
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode

from .. import _device
from .._device import constant
from ..functional.color import Domain
from ..functional.resample import PADDING_MODES, Padding
from ..params import Params
from ..random import Stream

__all__ = ["ImageSpec", "Transform", "GeometricTransform", "PixelTransform", "apply_selected"]

P = TypeVar("P", bound=Params)


def batch_full(value: float, like: Tensor) -> Tensor:
    """(B,) float64 holding ``value``, for the batch of ``like`` (B, ...) on its device."""
    return torch.full(like.shape[:1], float(value), dtype=torch.float64, device=like.device)


@dataclass(frozen=True)
class ImageSpec:
    """The static shape of the batch at a point of the pipeline (the same for every sample).

    A :class:`~gpuaug.RaggedBatch` input has per-sample ``sizes`` (B, 2) int64 (height, width) on
    the CPU, within ``height`` x ``width``, the padded size; only the transforms that can start a
    pipeline of ragged batches take it (RandomResizedCrop, RandomCrop, CenterCrop, Resize((h, w))),
    and they give every sample the same size.
    """

    channels: int
    height: int
    width: int
    dtype: torch.dtype
    sizes: Tensor | None = field(default=None, compare=False, repr=False)

    def resized(self, height: int, width: int) -> ImageSpec:
        return replace(self, height=height, width=width, sizes=None)

    def sample_sizes(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Each sample's (height, width), (B,) float64 on ``like``'s device."""
        if self.sizes is not None:
            sizes = self.sizes.to(like.device, torch.float64, non_blocking=True)  # async when pinned
            return sizes[:, 0], sizes[:, 1]
        return batch_full(self.height, like), batch_full(self.width, like)


class Transform:
    """Base of all transforms. ``p`` is the per-sample probability of applying it."""

    kind: ClassVar[str] = "pixel"  # "geometry" | "pixel" | "output" | "container"
    sizes_samples: ClassVar[bool] = False  # takes a ragged batch and gives its samples one size
    # the parameters drawn for a sample it skips already say what that sample gets instead (a crop
    # cannot leave a sample as it is), so the plan does not gate it
    skips_in_params: ClassVar[bool] = False
    # some samples may skip it even at p == 1 (RandomErasing, where no try fits): the plan gates it
    skips_without_coin: ClassVar[bool] = False

    def __init__(self, p: float = 1.0) -> None:
        if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def draw(self, rng: Stream, spec: ImageSpec) -> Params:
        """Per-sample parameters for a batch whose samples have ``spec``."""
        return Params(applied=self.coin(rng))

    def coin(self, rng: Stream) -> Tensor:
        """(B,) bool: whether the transform applies to each sample, True with probability ``p`` (one draw)."""
        return rng.bernoulli(self.p)

    def output_spec(self, spec: ImageSpec) -> ImageSpec:
        """The spec after this transform (checks that the transform can take ``spec``)."""
        return spec

    def children(self) -> list[Transform]:
        return []

    def nodes(self) -> Iterator[Transform]:
        """This transform, then its children's nodes: depth first, the order of a pipeline's params."""
        yield self
        for child in self.children():
            yield from child.nodes()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class GeometricTransform(Transform):
    """A transform that only moves pixels: it is a per-sample output-to-source matrix."""

    kind = "geometry"
    axis_aligned: ClassVar[bool] = False  # scale/translate/flip only: exact separable resampling
    interpolation: str | None = None  # None: maps whole pixels to whole pixels
    antialias: bool = False
    padding: Padding | None = None  # what it shows outside its input, if it can look there

    def matrix(self, params: Params, spec: ImageSpec) -> Tensor:
        """(B, 3, 3) float64 output-to-source matrices (applied or not: the pipeline gates them)."""
        raise NotImplementedError

    def source_box(self, params: Params, spec: ImageSpec) -> Tensor:
        """(B, 4) inclusive input pixel bounds (x_lo, x_hi, y_lo, y_hi), whole numbers, its filter may read:
        torchvision resamples a crop without looking past the crop's edge."""
        if spec.sizes is not None:
            height, width = spec.sample_sizes(params.applied)
            zero = torch.zeros_like(height)
            return torch.stack([zero, width - 1, zero, height - 1], dim=1)
        box = constant((0, spec.width - 1, 0, spec.height - 1), torch.float64, params.applied.device)
        return box.expand(params.applied.shape[0], 4)

    def padding_for(self, spec: ImageSpec) -> Padding | None:
        """What this transform shows outside its input for ``spec``, or None if it never looks there."""
        return self.padding


class PixelTransform(Transform):
    """A transform that changes pixel values, through one functional kernel: the base of a transform
    of one's own (it runs on the plain-PyTorch backend, between the fused passes of ``ext``).

    Example:
        >>> import torch, gpuaug as ga
        >>> class Half(ga.PixelTransform):
        ...     def draw(self, rng, spec):  # per-sample parameters, from the counter-based stream
        ...         return ga.Params(applied=self.coin(rng))
        ...     def apply(self, x, params, domain):  # float32 working values in the image's range
        ...         return x * 0.5
        >>> ga.Pipeline([Half()], seed=0)(torch.full((2, 1, 1, 1), 200, dtype=torch.uint8)).flatten().tolist()
        [100, 100]
    """

    kind = "pixel"

    def apply(self, x: Tensor, params: Params, domain: Domain) -> Tensor:
        """Run the kernel on float32 working values ``x`` (owned: may be overwritten).

        ``x`` holds only samples whose ``applied`` is True, perhaps a few at a time, with ``params``
        selected to match; its values are in the image's range (0-255 for a uint8 image, whose
        ``domain.integer`` is True: truncate where a uint8 kernel would)."""
        raise NotImplementedError


def random_boxes(
    rng: Stream,
    height: int | Tensor,
    width: int | Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    tall: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision's 10 tries at a box of random area fraction and log-uniform aspect ratio, in an
    image of ``height`` x ``width`` (numbers, or (B, 1) float64 per sample).

    Returns (top, left, height, width), each (B, 10) float64, rounded as torchvision rounds them;
    ``tall`` puts sqrt(area * ratio) on the height (RandomErasing) instead of the width
    (RandomResizedCrop). Positions are drawn for each try's own size.
    """
    tries = 10
    area = height * width * rng.uniform(tries, *scale)
    aspect = torch.exp(rng.uniform(tries, math.log(ratio[0]), math.log(ratio[1])))
    long, short = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    h, w = (long, short) if tall else (short, long)
    top = (rng.uniform(tries) * (height - h + 1)).floor()
    left = (rng.uniform(tries) * (width - w + 1)).floor()
    return top, left, h, w


def first_valid(ok: Tensor, candidates: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Whether any try in (B, tries) ``ok`` succeeded, and each candidate's first successful value."""
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
    return ok.any(dim=1), [c.gather(1, first)[:, 0] for c in candidates]


def require_channels(name: str, spec: ImageSpec, allowed: Sequence[int] = (1, 3)) -> None:
    if spec.channels not in allowed:
        raise ValueError(f"{name} takes images with {' or '.join(map(str, allowed))} channels, got {spec.channels}")


_PIL_INTERPOLATIONS = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's codes, which torchvision takes too


def parse_interpolation(value: InterpolationMode | str | int, allowed: Sequence[str]) -> str:
    """'nearest' | 'bilinear' | 'bicubic' from an InterpolationMode, its name or PIL's code."""
    name = value.value if isinstance(value, InterpolationMode) else value
    if isinstance(name, int) and not isinstance(name, bool):
        name = _PIL_INTERPOLATIONS.get(name, name)
    if not isinstance(name, str) or name.lower() not in allowed:
        raise ValueError(f"interpolation must be one of {list(allowed)}, got {value!r}")
    return name.lower()


def parse_fill(fill: float | Sequence[float] | None) -> tuple[float, ...]:
    if fill is None:
        return (0.0,)
    if isinstance(fill, numbers.Real):
        return (float(fill),)
    if isinstance(fill, Sequence) and fill and all(isinstance(v, numbers.Real) for v in fill):
        return tuple(float(v) for v in fill)
    raise TypeError(f"fill must be a number or a sequence of numbers, got {fill!r}")


def check_fill(fill: tuple[float, ...], spec: ImageSpec) -> None:
    if len(fill) not in (1, spec.channels):
        raise ValueError(f"fill has {len(fill)} values for an image with {spec.channels} channels")


def parse_padding(fill: float | Sequence[float] | None, padding_mode: str) -> Padding:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {list(PADDING_MODES)}, got {padding_mode!r}")
    fill_t = parse_fill(fill)
    if padding_mode != "constant" and len(fill_t) > 1:
        raise ValueError(f"padding_mode {padding_mode!r} does not take a per-channel fill")
    return Padding(padding_mode, fill_t)


def parse_size(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    """(height, width) from an int or a one- or two-element sequence, as torchvision takes it."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (int(size), int(size))
    elif isinstance(size, Sequence) and len(size) in (1, 2) and all(isinstance(s, numbers.Integral) for s in size):
        size = (int(size[0]), int(size[-1]))
    else:
        raise TypeError(f"{name} must be an int or a sequence of one or two ints, got {size!r}")
    if min(size) <= 0:
        raise ValueError(f"{name} must be positive, got {size}")
    return size


def parse_range(
    value: float | Sequence[float], name: str, center: float | None = None, bound: tuple[float, float] | None = None
) -> tuple[float, float]:
    """A (low, high) range; a single number v means (center - v, center + v) (or (-v, v))."""
    if isinstance(value, numbers.Real):
        if value < 0:
            raise ValueError(f"If {name} is a single number, it must be non-negative, got {value}")
        c = 0.0 if center is None else center
        low, high = c - float(value), c + float(value)
        if bound is not None:
            low = max(low, bound[0])
    elif isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, numbers.Real) for v in value):
        low, high = float(value[0]), float(value[1])
    else:
        raise TypeError(f"{name} must be a number or a sequence of two numbers, got {value!r}")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} values must be finite, got {(low, high)}")
    if low > high:
        raise ValueError(f"{name} range must be (min, max) with min <= max, got {(low, high)}")
    if bound is not None and not (bound[0] <= low and high <= bound[1]):
        raise ValueError(f"{name} values must lie in {list(bound)}, got {(low, high)}")
    return low, high


def parse_pair(value: Sequence[float], name: str) -> tuple[float, float]:
    """A (min, max) range given as a sequence of two numbers, as torchvision's ``scale`` and ``ratio``."""
    if not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of two numbers, got {value!r}")
    return parse_range(value, name)


def choice_weights(p: Sequence[float] | None, count: int, what: str) -> list[float]:
    """``p``'s weights of ``count`` choices (uniform when None), normalised to sum to 1, or a ValueError."""
    weights = [1.0] * count if p is None else list(p)
    if len(weights) != count or not all(isinstance(w, numbers.Real) and 0 <= w < math.inf for w in weights) \
            or sum(weights) <= 0:
        raise ValueError(f"p must hold one finite non-negative weight per {what}, not all 0, got {p!r}")
    return [float(w) / sum(weights) for w in weights]


def parse_sample_ids(sample_ids: Tensor | Sequence[int], size: int, device: torch.device) -> Tensor:
    """(size,) int64 dataset indices on ``device``, from a tensor or a sequence of ints."""
    try:
        ids = torch.as_tensor(sample_ids)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"sample_ids must be a tensor or sequence of ints, got {sample_ids!r}") from error
    if ids.numel() == 0 and not isinstance(sample_ids, Tensor):  # [] is a float tensor to torch
        ids = ids.to(torch.int64)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dtype.is_complex:
        raise TypeError(f"sample_ids must be integers, got {ids.dtype}")
    if ids.shape != (size,):
        raise ValueError(f"sample_ids must have shape ({size},), got {tuple(ids.shape)}")
    return ids.to(device=device, dtype=torch.int64, copy=True)  # params record them: never the caller's own


def parse_epoch(epoch: int | Tensor, device: torch.device) -> int | Tensor:
    """An int, or a 0-dim integer tensor moved to ``device``: only the device reads it, so a
    captured CUDA graph replays for whatever epoch the tensor holds."""
    if not isinstance(epoch, Tensor):
        return check_epoch(epoch)
    if epoch.ndim != 0 or epoch.dtype.is_floating_point or epoch.dtype == torch.bool or epoch.dtype.is_complex:
        raise TypeError(f"epoch must be an int or a 0-dim integer tensor, got {epoch.dtype} {tuple(epoch.shape)}")
    return epoch.to(device, copy=True)  # params record it: never the caller's own


def check_seed(seed: Any) -> int:
    """``seed`` as an int (numpy's integers too; not True), or a TypeError; None: a random one."""
    if seed is None:
        return secrets.randbits(63)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return int(seed)


def check_epoch(epoch: Any) -> int:
    """``epoch`` as an int, or a TypeError: 1.7, "3" and True are no epochs."""
    if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool):
        raise TypeError(f"epoch must be an int, got {epoch!r}")
    return int(epoch)


_MAX_RUNS = 4  # apply_selected: runs of selected samples taken as views, at most


def apply_selected(
    x: Tensor, selected: Tensor, fn: Callable[[Tensor, P], Tensor], params: P
) -> Tensor:
    """``fn(x, params)`` on the samples where ``selected`` (B,) is True; the others pass unchanged.

    On the CPU unselected samples cost nothing: ``fn`` runs on each run of consecutive selected
    samples, a view of ``x``, where there are few runs (no copies), and on the selected samples
    gathered where there are many (fewer, larger calls). On an accelerator everything is computed and
    blended with ``where``: no host synchronisation.
    ``x`` is owned by the caller's pipeline and may be overwritten.
    """
    if not _device.on_host(x.device):
        return torch.where(selected.view(-1, 1, 1, 1), fn(x.clone(), params), x)
    flags = selected.tolist()
    if all(flags):
        return fn(x, params)
    starts = [i for i, flag in enumerate(flags) if flag and (i == 0 or not flags[i - 1])]
    if len(starts) > _MAX_RUNS:
        index = selected.nonzero().squeeze(1)
        x[index] = fn(x.index_select(0, index), params.select(index))
        return x
    for start in starts:
        end = next((i for i in range(start, len(flags)) if not flags[i]), len(flags))
        rows = slice(start, end)
        part = x[rows]
        result = fn(part, params.select(rows))
        if result is not part:
            x[rows] = result
    return x
