"""Typed per-sample parameters: what each transform drew for each sample, and a whole batch's record.

Every transform's parameters are a dataclass of (B, ...) tensors, in torchvision's functional
units. :class:`BatchParams` collects them for one pipeline call, with the keys that drew them
and the composed matrices; it saves to and loads from a dict of tensors plus JSON.

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([ga.RandomHorizontalFlip()], seed=0)
    >>> out, params = pipe(torch.rand(4, 3, 8, 8), return_params=True)
    >>> params.transforms[0].applied.shape
    torch.Size([4])
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch
from torch import Tensor

__all__ = ["Params", "BatchParams", "register_params"]

_TYPES: dict[str, type[Params]] = {}
P = TypeVar("P", bound="Params")


def register_params(cls: type[P]) -> type[P]:
    """Class decorator: make ``cls`` a dataclass and let saved parameters name it (by its class name,
    which must be new), so that :meth:`BatchParams.load` can build it again.

    Example:
        >>> import torch, gpuaug as ga
        >>> @ga.register_params
        ... class GainParams(ga.Params):
        ...     gain: torch.Tensor
    """
    cls = dataclass(cls)
    known = _TYPES.get(cls.__name__)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"a params type named {cls.__name__!r} is registered already ({known.__module__}."
                         f"{known.__qualname__}): give {cls.__qualname__} another name")
    _TYPES[cls.__name__] = cls
    return cls


@dataclass
class Params:
    """Base of every transform's parameters; ``applied`` (B,) bool is the sample's own coin.

    Example:
        >>> import torch
        >>> p = Params(applied=torch.tensor([True, False, True]))
        >>> p.select(torch.tensor([2, 1])).applied.tolist(), sorted(p.tensors())
        ([True, False], ['applied'])
    """

    applied: Tensor

    def select(self: P, index: Tensor | slice) -> P:
        """The parameters of the samples at ``index`` (indices or a slice)."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self: P, device: torch.device | str) -> P:
        """These parameters on ``device``."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def tensors(self) -> dict[str, Tensor]:
        """The fields by name, as ``BatchParams.state_dict`` saves them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_TYPES["Params"] = Params


@dataclass
class BatchParams:
    """Everything a pipeline call drew, enough to replay it exactly.

    ``transforms[i]`` holds the parameters of the i-th transform of the pipeline in depth-first
    order (containers included), named by ``names[i]``, with ``children[i]`` children;
    ``matrices[k]`` is the composed (B, 3, 3) output-to-source matrix of the k-th resampling pass;
    ``output_shape`` the augmented images' (C, H, W); ``arguments[i]`` the i-th transform's
    arguments (fill, kernel size, noise sigma, ...: what its parameters are replayed with).
    (``children``, ``output_shape`` and ``arguments`` are None in params saved before they were recorded.)

    Example:
        >>> import io, torch, gpuaug as ga
        >>> pipe = ga.Pipeline([ga.RandomResizedCrop(8), ga.ColorJitter(0.4)], seed=0)
        >>> x = torch.rand(4, 3, 16, 16)
        >>> out, params = pipe(x, return_params=True)
        >>> params.names, params.batch_size, params.transforms[0].height.shape
        (['RandomResizedCrop', 'ColorJitter'], 4, torch.Size([4]))
        >>> file = io.BytesIO()
        >>> params.save(file)
        >>> _ = file.seek(0)
        >>> torch.equal(pipe.replay(x, ga.BatchParams.load(file)), out)
        True
    """

    seed: int
    epoch: int | Tensor  # a 0-dim tensor when the call was given one
    call: int
    sample_ids: Tensor
    keys: Tensor
    input_shape: tuple[int, ...]
    input_dtype: torch.dtype
    names: list[str]
    transforms: list[Params]
    matrices: list[Tensor] = field(default_factory=list)
    input_sizes: Tensor | None = None  # (B, 2) int64 on the CPU: each image's size in a RaggedBatch input
    children: list[int] | None = None
    output_shape: tuple[int, ...] | None = None
    arguments: list[str] | None = None

    @property
    def batch_size(self) -> int:
        """The number of samples of the call."""
        return int(self.sample_ids.shape[0])

    def to(self, device: torch.device | str) -> BatchParams:
        """These parameters on ``device`` (a replay there reads them without copies)."""
        return dataclasses.replace(
            self,
            sample_ids=self.sample_ids.to(device),
            keys=self.keys.to(device),
            transforms=[p.to(device) for p in self.transforms],
            matrices=[m.to(device) for m in self.matrices],
        )

    def state_dict(self) -> dict[str, Any]:
        """A flat dict of tensors plus one JSON string under ``"meta"``."""
        meta = {
            "seed": self.seed,
            "epoch": int(self.epoch),
            "call": self.call,
            "input_shape": list(self.input_shape),
            "input_dtype": str(self.input_dtype).removeprefix("torch."),
            "names": self.names,
            "types": [type(p).__name__ for p in self.transforms],
            "matrices": len(self.matrices),
            "ragged": self.input_sizes is not None,
            "children": self.children,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "arguments": self.arguments,
        }
        state: dict[str, Any] = {"meta": json.dumps(meta), "sample_ids": self.sample_ids, "keys": self.keys}
        for i, p in enumerate(self.transforms):
            for name, value in p.tensors().items():
                state[f"transforms.{i}.{name}"] = value
        for k, m in enumerate(self.matrices):
            state[f"matrices.{k}"] = m
        if self.input_sizes is not None:
            state["input_sizes"] = self.input_sizes
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> BatchParams:
        """The params of a :meth:`state_dict`."""
        meta = json.loads(state["meta"])
        transforms = []
        for i, type_name in enumerate(meta["types"]):
            prefix = f"transforms.{i}."
            values = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if type_name not in _TYPES:
                raise ValueError(f"saved params of type {type_name!r}, which is not registered: decorate that class "
                                 "with gpuaug.register_params (and import it) before loading")
            transforms.append(_TYPES[type_name](**values))
        return cls(
            seed=meta["seed"],
            epoch=meta["epoch"],
            call=meta["call"],
            sample_ids=state["sample_ids"],
            keys=state["keys"],
            input_shape=tuple(meta["input_shape"]),
            input_dtype=getattr(torch, meta["input_dtype"]),
            names=meta["names"],
            transforms=transforms,
            matrices=[state[f"matrices.{k}"] for k in range(meta["matrices"])],
            input_sizes=state["input_sizes"] if meta.get("ragged") else None,
            children=meta.get("children"),
            output_shape=None if meta.get("output_shape") is None else tuple(meta["output_shape"]),
            arguments=meta.get("arguments"),
        )

    def save(self, path: str | Path | BinaryIO) -> None:
        """Write :meth:`state_dict` with ``torch.save`` (a path or a binary file)."""
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path | BinaryIO, map_location: str | torch.device | None = None) -> BatchParams:
        """What :meth:`save` wrote (tensors only: ``weights_only`` loading)."""
        return cls.from_state_dict(torch.load(path, map_location=map_location, weights_only=True))

    def to_json(self) -> str:
        """Human-readable JSON of every parameter (lists of numbers per sample)."""
        state = self.state_dict()
        meta = json.loads(state.pop("meta"))
        meta["values"] = {k: v.tolist() for k, v in state.items()}
        return json.dumps(meta)
