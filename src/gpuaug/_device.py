"""The batch's device: whether it is host memory (:func:`on_host`), and small constant tensors on it,
made once per (values, dtype, device) (:func:`constant`).

``torch.tensor(values, device="cuda")`` in every call is a copy from pageable host memory: the
host waits for it, and it cannot be captured in a CUDA graph. Constants that depend only on the
pipeline and the image size (normalize coefficients, fills, bounds) come from :func:`constant`
instead; the first call on a device uploads them, later calls reuse them (a few hundred bytes
each, kept for the life of the process, as a captured graph keeps reading them). CPU tensors are
made afresh: that costs no wait, and image-size-dependent values then cannot pile up in the cache
when a CPU process sees many sizes. Callers never write into them.

Example:
    >>> import torch
    >>> constant((0.5, 2.0), torch.float32, "meta") is constant((0.5, 2.0), torch.float32, "meta")
    True
    >>> constant((0.5, 2.0), torch.float32, "cpu").tolist()
    [0.5, 2.0]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["constant", "on_host"]


@functools.cache  # never evicted: a captured CUDA graph keeps reading the tensors it was captured with
def _cached(values: tuple, dtype: torch.dtype, device: torch.device, zeros: str | None) -> Tensor:
    with torch.inference_mode(False):  # a normal tensor even if first made under inference mode
        return torch.tensor(values, dtype=dtype, device=device)


def constant(values: Sequence, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """A read-only tensor of ``values`` (numbers, or tuples of numbers) on ``device``."""
    device = torch.device(device)
    if device.type == "cpu" or torch.compiler.is_compiling():  # traced: a constant of the graph
        return torch.tensor(values, dtype=dtype, device=device)
    values = tuple(values)
    zeros = repr(values) if 0 in values else None  # -0.0 == 0.0: the text tells them apart
    return _cached(values, dtype, device, zeros)


def on_host(device: torch.device) -> bool:
    """Whether tensors on ``device`` live in host memory, so that the backends may read values back
    and work a few samples at a time; elsewhere (accelerators) they take whole-batch paths that never
    wait for the device. The tests make it say False to run those paths on the CPU.

    Example:
        >>> on_host(torch.device("cpu")), on_host(torch.device("meta"))
        (True, False)
    """
    return device.type == "cpu"
