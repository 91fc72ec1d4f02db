"""Backend selection. "torch" (plain PyTorch ops) runs everywhere; the fused C++/CUDA extension
("ext", built from csrc/) is not part of this release yet, so "auto" means "torch".

Example:
    >>> from gpuaug._ext import available_backends
    >>> available_backends()["torch"]
    'available'
"""

from __future__ import annotations

import os

__all__ = ["available_backends", "resolve_backend"]


def available_backends() -> dict[str, str]:
    """Each backend's name mapped to "available" or the reason it is not."""
    return {"torch": "available", "ext": "the fused C++/CUDA extension is not built in this version of gpuaug"}


def resolve_backend(name: str | None = None) -> str:
    """The backend a Pipeline runs on: ``name``, else $GPUAUG_BACKEND, else "auto" (the best available)."""
    name = name or os.environ.get("GPUAUG_BACKEND") or "auto"
    backends = available_backends()
    if name == "auto":
        return next(b for b in ("ext", "torch") if backends[b] == "available")
    if name not in backends:
        raise ValueError(f"unknown backend {name!r}: choose one of {['auto', *backends]}")
    if backends[name] != "available":
        raise ValueError(f"backend {name!r} is not available: {backends[name]}")
    return name
