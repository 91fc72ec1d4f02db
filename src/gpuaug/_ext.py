"""The fused C++/CUDA extension (sources in csrc/): JIT build, loading, and backend selection.

The extension is compiled on first use with ``torch.utils.cpp_extension`` (cached by torch under
``$TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``; ``gpuaug build-ext`` builds it
ahead of time). Its CUDA part is compiled only where CUDA is available, for the architectures in
``$TORCH_CUDA_ARCH_LIST`` (default: the visible cards).

Backends: "torch" (plain PyTorch ops, runs everywhere) and "ext" (the fused op). "auto" means
"ext" when the extension builds and otherwise "torch", with one warning saying why.
``$GPUAUG_BACKEND`` picks the backend when a Pipeline is not given one.

Example:
    >>> from gpuaug._ext import available_backends
    >>> available_backends()["torch"]
    'available'
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import warnings
from pathlib import Path

import torch

__all__ = ["available_backends", "resolve_backend", "build", "source_dir", "extension_error"]

_NAME = "gpuaug_ext"
_CPU_SOURCES = ("ops.cpp", "fused_cpu.cpp", "fused_pixelwise.cpp")
_CUDA_SOURCE = "fused_cuda.cu"
CPU_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno", "-fvisibility=hidden"]
# built where it runs; no implicit FMAs (the plain-PyTorch backend has none there); no FP traps or errno, and
# internal functions (the per-pixel lambdas) inlinable rather than called through the PLT, so loops vectorise
CUDA_FLAGS = ["-O3", "--fmad=false"]


def _openmp_flags() -> list[str]:
    """-fopenmp where torch's CPU threads are GNU OpenMP's (libgomp: Linux wheels) and the compiler is GCC.

    at::parallel_for's OpenMP backend is inline, so without the flag the CPU pass runs on one thread.
    With it the extension uses the libgomp torch has loaded (same soname) and follows torch.set_num_threads.
    """
    if platform.system() != "Linux" or "clang" in os.environ.get("CXX", "c++"):
        return []
    with open("/proc/self/maps") as maps:
        return ["-fopenmp"] if any("libgomp" in line for line in maps) else []


def source_dir() -> Path:
    """The folder with the extension's sources: inside the installed package, else the checkout's csrc/."""
    packaged = Path(__file__).resolve().parent / "csrc"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "csrc"


def _cpu_tag() -> str:
    """A short hash of this CPU's instruction-set flags: the build uses -march=native, so a cached
    build must not be loaded on a machine whose CPU lacks some of its instructions."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor() or platform.machine()
    return hashlib.sha1(flags.encode()).hexdigest()[:8]


def _cuda_include_dirs() -> list[str]:
    """CUDA headers that pip's nvidia-* packages ship (torch's headers include some of them)."""
    import site

    roots = [Path(p) / "nvidia" for p in site.getsitepackages() if (Path(p) / "nvidia").is_dir()]
    return [str(d) for root in roots for d in sorted(root.glob("*/include"))]


def build(verbose: bool = False, with_cuda: bool | None = None) -> bool:
    """Compile (or load from the cache) the extension and register its op; raises on failure.

    Returns whether the build has the CUDA part (``with_cuda`` None: where torch sees a device and CUDA_HOME).
    """
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # not its CUDA_HOME guess on CPUs
    from torch.utils import cpp_extension

    if with_cuda is None:
        with_cuda = torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None
    src = source_dir()
    sources = [str(src / name) for name in _CPU_SOURCES]
    missing = [s for s in sources + [str(src / _CUDA_SOURCE)] if not Path(s).is_file()]
    if missing:
        raise RuntimeError(f"gpuaug's extension sources are missing: {missing}")
    openmp = _openmp_flags()
    cflags, cuda_flags, includes = CPU_FLAGS + openmp, list(CUDA_FLAGS), []
    if with_cuda:
        sources.append(str(src / _CUDA_SOURCE))
        cflags.append("-DGPUAUG_WITH_CUDA")
        cuda_flags.append("-DGPUAUG_WITH_CUDA")
        includes = _cuda_include_dirs()
    cpp_extension.load(
        name=f"{_NAME}_{'cuda' if with_cuda else 'cpu'}_{_cpu_tag()}",
        sources=sources,
        extra_cflags=cflags,
        extra_cuda_cflags=cuda_flags,
        extra_ldflags=list(openmp),  # a copy: load() appends to it
        extra_include_paths=includes,
        is_python_module=False,
        verbose=verbose,
    )
    _register_fake()
    return with_cuda


_TENSOR_ARGUMENTS = ("src_size", "geometry", "taps_x", "weights_x", "taps_y", "weights_y", "matrix", "fill", "program",
                     "keys", "out_scale", "out_shift")


@functools.cache
def _register_fake() -> None:
    def fake(images, src_size, geometry, taps_x, weights_x, taps_y, weights_y, matrix, fill, program, keys,
             out_scale, out_shift, contrast_passes, out_height, out_width, out_channels, interpolation,
             padding_mode, supersample, warp_rounding, has_fill, final_mode, final_mult, out_dtype, channels_last,
             all_separable):
        # the real kernels refuse tensors on two devices; one on the meta device would otherwise send
        # the call here and return an unwritten tensor
        for name, t in zip(_TENSOR_ARGUMENTS, (src_size, geometry, taps_x, weights_x, taps_y, weights_y, matrix, fill,
                                                program, keys, out_scale, out_shift)):
            torch._check(t.device == images.device,
                         lambda: f"fused_augment: {name} is on {t.device}, images on {images.device}")
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return torch.empty(
            (images.shape[0], out_channels, out_height, out_width),
            dtype=out_dtype, device=images.device, memory_format=memory_format,
        )

    for op in ("gpuaug::fused_augment", "gpuaug::fused_augment_pixelwise"):  # one schema
        torch.library.register_fake(op)(fake)


@functools.cache
def extension_error() -> str | None:
    """None when the extension is built and loaded (building it if needed), else why it is not."""
    if os.environ.get("GPUAUG_NO_EXT", "").strip().lower() not in ("", "0", "false", "no", "off"):
        return "disabled by $GPUAUG_NO_EXT"
    try:
        build()
    except Exception as error:  # noqa: BLE001 - any build failure means "not available", with its reason
        first = str(error).strip().splitlines()
        return f"the extension failed to build: {type(error).__name__}: {first[0] if first else ''}"
    return None


def available_backends() -> dict[str, str]:
    """Each backend's name mapped to "available" or the reason it is not (builds the extension if needed).

    Example:
        >>> import gpuaug as ga
        >>> ga.available_backends()["torch"]
        'available'
    """
    return {"torch": "available", "ext": extension_error() or "available"}


def resolve_backend(name: str | None = None) -> str:
    """The backend a Pipeline runs on: ``name``, else $GPUAUG_BACKEND, else "auto" (the best available)."""
    name = name or os.environ.get("GPUAUG_BACKEND") or "auto"
    if name not in ("auto", "torch", "ext"):
        raise ValueError(f"unknown backend {name!r}: choose one of ['auto', 'torch', 'ext']")
    if name == "torch":
        return name
    error = extension_error()
    if error is None:
        return "ext"
    if name == "ext":
        raise ValueError(f"backend 'ext' is not available: {error}")
    _warn_fallback(error)
    return "torch"


@functools.cache
def _warn_fallback(reason: str) -> None:
    warnings.warn(f"gpuaug: using the plain-PyTorch backend, the fused extension is not available ({reason})",
                  RuntimeWarning, stacklevel=4)  # the caller of Pipeline(...)
