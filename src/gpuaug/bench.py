"""Side-by-side throughput harness: gpuaug against kornia, torchvision v2, torchaug and albumentations.

Every library runs the same cases on the same input batch, in one process, the libraries of a case
taking turns call by call (:func:`run_case`). A case is a list of
:class:`Step` written in torchvision.transforms.v2 terms (class name + arguments); each library has a
small builder that turns the steps into its own transforms, so all rows compute the same function
(up to each library's rounding and border conventions). A library that has no equivalent for a step
gets a skipped row with the reason.

Reported per row: images/s (median of timed repeats after warm-up, synchronised on CUDA), the ratio
to gpuaug's fastest backend for that case, peak memory (CUDA only: ``max_memory_allocated`` above the
baseline; CPU has no honest per-call figure, so it is None) and, on CUDA, the share of the
memory-bandwidth floor (a device-to-device copy timed in the same run; floor images/s =
bandwidth / (input bytes + output bytes per image)).
"""

from __future__ import annotations

import ctypes
import datetime
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import torch
import torchvision
from torchvision.transforms import InterpolationMode, v2

import gpuaug as ga
from gpuaug.assets import load_samples

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BILINEAR = InterpolationMode.BILINEAR

# Rows that loop over samples in Python run at most this many warm-up / timed calls.
SLOW_WARMUP = 1
SLOW_REPEATS = 3


class Unsupported(Exception):
    """A library has no equivalent for a step of a case; its row is skipped with this reason."""


class BenchError(Exception):
    """A configuration or environment problem that stops the benchmark (message is user-facing)."""


# --------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Step:
    """One transform in torchvision.transforms.v2 terms.

    ``p`` is the probability for transforms that take none in torchvision (wrapped in RandomApply
    there); transforms that do take one keep it in ``kwargs``.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    p: float | None = None

    @property
    def prob(self) -> float:
        """The probability that the step is applied to a sample."""
        return self.p if self.p is not None else self.kwargs.get("p", 1.0)


@dataclass(frozen=True)
class Case:
    """A named list of steps with the input and output dtype every library must use."""

    name: str
    kind: str  # "pipeline" or "transform"
    steps: tuple[Step, ...]
    input_dtype: torch.dtype
    output_dtype: torch.dtype


def _to_float(dtype: torch.dtype = torch.float32) -> Step:
    return Step("ToDtype", {"dtype": dtype, "scale": True})


def _normalize() -> Step:
    return Step("Normalize", {"mean": MEAN, "std": STD})


def _imagenet_train(crop: int, dtype: torch.dtype) -> tuple[Step, ...]:
    return (
        Step("RandomResizedCrop", {"size": crop, "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3)}),
        Step("RandomHorizontalFlip", {"p": 0.5}),
        Step("ColorJitter", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}, p=0.8),
        Step("RandomGrayscale", {"p": 0.2}),
        _to_float(dtype),
        _normalize(),
    )


def _affine_heavy() -> tuple[Step, ...]:
    return (
        Step("RandomAffine", {"degrees": 15, "translate": (0.1, 0.1), "scale": (0.9, 1.1), "shear": 5,
                              "interpolation": BILINEAR}),
        Step("RandomHorizontalFlip", {"p": 0.5}),
        Step("ColorJitter", {"brightness": 0.3, "contrast": 0.3}),
        Step("GaussianNoise", {"sigma": 0.05}),
        _to_float(),
        _normalize(),
    )


# name -> (steps for a given crop size, output dtype)
PIPELINES: dict[str, Callable[[int], tuple[tuple[Step, ...], torch.dtype]]] = {
    "imagenet-train": lambda crop: (_imagenet_train(crop, torch.float32), torch.float32),
    "imagenet-train-fp16": lambda crop: (_imagenet_train(crop, torch.float16), torch.float16),
    "affine-heavy": lambda crop: (_affine_heavy(), torch.float32),
}

def _transform_steps(crop: int) -> dict[str, Step]:
    """One per-transform case per common transform (run on float32 input in [0, 1], kornia's native input),
    applied to every sample: with torchvision's p, a library that draws one coin per batch (torchvision
    on the batch) skips whole calls, and the median then times its coin instead of the transform."""
    steps = [
        Step("RandomResizedCrop", {"size": crop, "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3)}),
        Step("RandomHorizontalFlip", {"p": 1.0}),
        Step("RandomRotation", {"degrees": 30, "interpolation": BILINEAR}),
        _affine_heavy()[0],
        Step("RandomPerspective", {"distortion_scale": 0.5, "p": 1.0}),
        Step("ColorJitter", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}),
        Step("RandomGrayscale", {"p": 1.0}),
        Step("GaussianBlur", {"kernel_size": 9, "sigma": (0.1, 2.0)}),
        Step("GaussianNoise", {"sigma": 0.05}),
        Step("RandomErasing", {"p": 1.0}),
        Step("RandomInvert", {"p": 1.0}),
        Step("RandomSolarize", {"threshold": 0.5, "p": 1.0}),
        Step("RandomPosterize", {"bits": 4, "p": 1.0}),
        Step("RandomAdjustSharpness", {"sharpness_factor": 2.0, "p": 1.0}),
        Step("RandomAutocontrast", {"p": 1.0}),
        Step("RandomEqualize", {"p": 1.0}),
        _normalize(),
    ]
    return {step.name: step for step in steps}


TRANSFORMS = tuple(_transform_steps(224))


def crop_size(size: int) -> int:
    """Output size of the cropping cases: 224 for the standard 256 input, scaled for other sizes."""
    return max(1, size * 224 // 256)


def build_cases(pipelines: list[str], transforms: list[str], size: int) -> list[Case]:
    """The cases to run: the named pipelines on uint8 input, then one case per named transform."""
    crop = crop_size(size)
    cases = []
    for name in pipelines:
        steps, out_dtype = PIPELINES[name](crop)
        cases.append(Case(name, "pipeline", steps, torch.uint8, out_dtype))
    steps = _transform_steps(crop)
    for name in transforms:
        cases.append(Case(name, "transform", (steps[name],), torch.float32, torch.float32))
    return cases


# ----------------------------------------------------------------------------------------- libraries
Fn = Callable[[torch.Tensor], torch.Tensor]


def _v2_style(module: Any, steps: tuple[Step, ...]) -> list[Any]:
    """Instantiate steps from a module with torchvision.transforms.v2's names (gpuaug or torchvision)."""
    out = []
    for step in steps:
        cls = getattr(module, step.name, None)
        if cls is None:
            raise Unsupported(f"{module.__name__} has no {step.name}")
        t = cls(**step.kwargs)
        out.append(module.RandomApply([t], p=step.p) if step.p is not None else t)
    return out


def _build_gpuaug(case: Case, device: torch.device, backend: str) -> Fn:
    return ga.Pipeline(_v2_style(ga, case.steps), seed=0, backend=backend)


def _build_gpuaug_graph(case: Case, device: torch.device) -> Fn:
    """The ext pipeline captured in a CUDA graph by its first (warm-up) call; later calls copy the
    batch into the graph's input and replay it, as a training loop would use ``ga.capture``."""
    pipe = ga.Pipeline(_v2_style(ga, case.steps), seed=0, backend="ext")
    captured: list[tuple[ga.CapturedPipeline, torch.Tensor]] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        if not captured:
            captured.append((ga.capture(pipe, x), torch.arange(x.shape[0], device=x.device)))
        augment, ids = captured[0]
        return augment(x, ids)

    return run


def _build_gpuaug_compiled(case: Case, device: torch.device) -> Fn:
    """The ext pipeline under ``torch.compile`` (on CUDA in mode "reduce-overhead": inductor fuses
    the parameter sampling's small ops and CUDA graphs replay the call), compiled by the first
    (warm-up) call after one eager call, which tells the pipeline how many draws it takes."""
    pipe = ga.Pipeline(_v2_style(ga, case.steps), seed=0, backend="ext")
    mode = "reduce-overhead" if device.type == "cuda" else None
    compiled = torch.compile(lambda x, ids: pipe(x, sample_ids=ids), fullgraph=True, mode=mode)
    ids: list[torch.Tensor] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        if not ids:
            ids.append(torch.arange(x.shape[0], device=x.device))
            pipe(x, sample_ids=ids[0])
        return compiled(x, ids[0])

    return run


def _build_tv_batch(case: Case, device: torch.device) -> Fn:
    return v2.Compose(_v2_style(v2, case.steps))


def _build_tv_loop(case: Case, device: torch.device) -> Fn:
    compose = v2.Compose(_v2_style(v2, case.steps))
    return lambda x: torch.stack([compose(img) for img in x])


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _symmetric(v: float | tuple[float, float]) -> tuple[float, float]:
    return (-v, v) if isinstance(v, (int, float)) else tuple(v)


def _kornia_steps() -> dict[str, Callable[[Step], Any]]:
    import kornia.augmentation as K

    def affine(s: Step) -> Any:
        kw = s.kwargs
        return K.RandomAffine(kw["degrees"], translate=kw.get("translate"), scale=kw.get("scale"),
                              shear=kw.get("shear"), p=s.prob)

    return {
        "RandomResizedCrop": lambda s: K.RandomResizedCrop(_pair(s.kwargs["size"]), scale=s.kwargs["scale"],
                                                           ratio=s.kwargs["ratio"], p=s.prob),
        "RandomHorizontalFlip": lambda s: K.RandomHorizontalFlip(p=s.prob),
        "RandomRotation": lambda s: K.RandomRotation(s.kwargs["degrees"], p=s.prob),
        "RandomAffine": affine,
        "RandomPerspective": lambda s: K.RandomPerspective(s.kwargs["distortion_scale"], p=s.prob),
        "ColorJitter": lambda s: K.ColorJitter(**{k: s.kwargs.get(k, 0.0) for k in
                                                  ("brightness", "contrast", "saturation", "hue")}, p=s.prob),
        "RandomGrayscale": lambda s: K.RandomGrayscale(p=s.prob),
        "GaussianBlur": lambda s: K.RandomGaussianBlur(_pair(s.kwargs["kernel_size"]), s.kwargs["sigma"],
                                                       p=s.prob),
        "GaussianNoise": lambda s: K.RandomGaussianNoise(std=s.kwargs["sigma"], p=s.prob),
        "RandomErasing": lambda s: K.RandomErasing(p=s.prob),
        "RandomInvert": lambda s: K.RandomInvert(p=s.prob),
        "RandomSolarize": lambda s: K.RandomSolarize(thresholds=(s.kwargs["threshold"],) * 2,
                                                     additions=(0.0, 0.0), p=s.prob),
        "RandomPosterize": lambda s: K.RandomPosterize(bits=(s.kwargs["bits"],) * 2, p=s.prob),
        "RandomAdjustSharpness": lambda s: K.RandomSharpness(sharpness=(s.kwargs["sharpness_factor"],) * 2,
                                                             p=s.prob),
        "RandomAutocontrast": lambda s: K.RandomAutoContrast(p=s.prob),
        "RandomEqualize": lambda s: K.RandomEqualize(p=s.prob),
        "Normalize": lambda s: K.Normalize(torch.tensor(s.kwargs["mean"]), torch.tensor(s.kwargs["std"])),
    }


def _translate(table: dict[str, Callable[[Step], Any]], case: Case, library: str) -> list[Any]:
    """The library's transforms for the case's steps; ToDtype is left to the caller (float from the start)."""
    steps = [s for s in case.steps if s.name != "ToDtype"]
    missing = [s.name for s in steps if s.name not in table]
    if missing:
        raise Unsupported(f"{library} has no equivalent here of {', '.join(missing)}")
    return [table[s.name](s) for s in steps]


def _build_kornia(case: Case, device: torch.device) -> Fn:
    """kornia.augmentation.AugmentationSequential; the uint8 -> float conversion is part of the timing."""
    import kornia.augmentation as K

    aug = K.AugmentationSequential(*_translate(_kornia_steps(), case, "kornia"), same_on_batch=False).to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255) if x.dtype == torch.uint8 else x
        return aug(x).to(case.output_dtype)

    return run


def _torchaug_step(step: Step) -> Any:
    from torchaug import transforms as TA

    name = step.name if step.p is None else "Random" + step.name  # RandomColorJitter, RandomGaussianBlur
    cls = getattr(TA, name, None)
    if cls is None:
        raise Unsupported(f"torchaug has no {name}")
    params = inspect.signature(cls).parameters
    kwargs = dict(step.kwargs, **({"p": step.p} if step.p is not None else {}))
    kwargs.update({k: v for k, v in (("num_chunks", -1), ("batch_transform", True)) if k in params})
    return cls(**kwargs)


def _build_torchaug(case: Case, device: torch.device) -> Fn:
    """torchaug batch transforms with per-sample parameters (num_chunks=-1) on BatchImages."""
    from torchaug import ta_tensors
    from torchaug import transforms as TA

    compose = TA.Compose([_torchaug_step(s) for s in case.steps])
    # torchaug writes its result into its input where every sample is transformed: the row transforms a
    # copy (in its time, as the other rows allocate their output), so that the shared batch stays intact
    return lambda x: compose(ta_tensors.BatchImages(x.clone())).as_subclass(torch.Tensor)


def _albumentations_steps() -> dict[str, Callable[[Step], Any]]:
    import albumentations as A

    def affine(s: Step) -> Any:
        kw = s.kwargs
        tx, ty = kw["translate"]
        return A.Affine(rotate=_symmetric(kw["degrees"]), scale=kw["scale"], shear={"x": _symmetric(kw["shear"]),
                        "y": (0, 0)}, translate_percent={"x": (-tx, tx), "y": (-ty, ty)}, p=s.prob)

    def jitter(s: Step) -> Any:
        kw = s.kwargs
        factors = {k: (max(0.0, 1 - kw.get(k, 0.0)), 1 + kw.get(k, 0.0)) for k in ("brightness", "contrast",
                                                                                   "saturation")}
        return A.ColorJitter(**factors, hue=_symmetric(kw.get("hue", 0.0)), p=s.prob)

    return {
        "RandomResizedCrop": lambda s: A.RandomResizedCrop(_pair(s.kwargs["size"]), scale=s.kwargs["scale"],
                                                           ratio=s.kwargs["ratio"], area_for_downscale="image",
                                                           p=s.prob),
        "RandomHorizontalFlip": lambda s: A.HorizontalFlip(p=s.prob),
        "RandomAffine": affine,
        "ColorJitter": jitter,
        "RandomGrayscale": lambda s: A.ToGray(p=s.prob),
        "GaussianNoise": lambda s: A.GaussNoise(std_range=(s.kwargs["sigma"],) * 2, p=s.prob),
        "Normalize": lambda s: A.Normalize(mean=s.kwargs["mean"], std=s.kwargs["std"], max_pixel_value=255.0),
    }


def _build_albumentations(case: Case, device: torch.device) -> Fn:
    """albumentations per image on HWC uint8 numpy; the NCHW <-> HWC conversions are part of the timing."""
    import albumentations as A

    if case.steps[-1].name != "Normalize":
        raise Unsupported("only pipelines that end in Normalize (float output) are mapped to albumentations")
    compose = A.Compose(_translate(_albumentations_steps(), case, "albumentations"), seed=0)

    def run(x: torch.Tensor) -> torch.Tensor:
        images = x.permute(0, 2, 3, 1).numpy()
        out = np.stack([compose(image=img)["image"] for img in images])
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(case.output_dtype)

    return run


@dataclass(frozen=True)
class Library:
    """A row source: how to build a case's callable and when the row applies."""

    name: str
    label: str
    build: Callable[[Case, torch.device], Fn]
    module: str | None = None  # must import for the row to run
    slow: bool = False  # Python loop over samples: fewer repeats
    cpu_only: bool = False
    cuda_only: bool = False
    pipelines_only: bool = False


LIBRARIES: dict[str, Library] = {lib.name: lib for lib in (
    Library("kornia", "kornia AugmentationSequential", _build_kornia, module="kornia"),
    Library("torchvision-batch", "torchvision v2 on the batch (ONE param set per batch)", _build_tv_batch),
    Library("torchvision-loop", "torchvision v2 per-sample loop", _build_tv_loop, slow=True),
    Library("torchaug", "torchaug batch (num_chunks=-1)", _build_torchaug, module="torchaug"),
    Library("albumentations", "albumentations per image (numpy)", _build_albumentations,
            module="albumentations", slow=True, cpu_only=True, pipelines_only=True),
)}
LIBRARY_NAMES = ("gpuaug", *LIBRARIES)


def _gpuaug_libraries(device: torch.device, with_compile: bool = False) -> tuple[list[Library], dict[str, str]]:
    """One Library per available gpuaug backend (on CUDA also the ext backend in a CUDA graph;
    ``with_compile``: also under torch.compile), and the reasons for the unavailable ones."""
    libs, skipped = [], {}
    backends = ga.available_backends()
    ext_available = backends.get("ext") == "available"
    for backend, state in backends.items():
        if state == "available":
            build = functools.partial(_build_gpuaug, backend=backend)
            libs.append(Library(f"gpuaug[{backend}]", f"gpuaug ({backend} backend)", build))
        else:
            skipped[f"gpuaug[{backend}]"] = state
    if device.type == "cuda" and ext_available:
        libs.append(Library("gpuaug[ext]+graph", "gpuaug (ext backend, CUDA graph)", _build_gpuaug_graph,
                            cuda_only=True, pipelines_only=True))
    if with_compile and ext_available:
        libs.append(Library("gpuaug[ext]+compile", "gpuaug (ext backend, torch.compile)", _build_gpuaug_compiled,
                            pipelines_only=True))
    elif with_compile:
        skipped["gpuaug[ext]+compile"] = backends.get("ext", "no ext backend")
    return libs, skipped


def _import_problem(module: str | None) -> str | None:
    """None if the module imports, else why not."""
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken install raises more than ImportError
        return f"{module} not importable: {type(exc).__name__}: {exc}"
    return None


# -------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Fn, x: torch.Tensor, warmup: int, repeats: int, device: torch.device) -> tuple[list[float], Any]:
    """Run ``fn(x)`` ``warmup`` times, then time ``repeats`` synchronised calls; returns (seconds, last output)."""
    out = None
    for _ in range(warmup):
        out = fn(x)
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(x)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times, out


def measure_bandwidth(device: torch.device, nbytes: int = 1 << 30, repeats: int = 10) -> float | None:
    """Device memory bandwidth in bytes/s from a large device-to-device copy (read + write); None on CPU."""
    if device.type != "cuda":
        return None
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / seconds


def _peak_memory(device: torch.device, fn: Fn, x: torch.Tensor) -> int | None:
    """Peak CUDA memory of one call above what was allocated before it (None on CPU)."""
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn(x)
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - base


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def pin_malloc_thresholds(nbytes: int = 1 << 30) -> None:
    """Fix glibc's mmap and trim thresholds for this process (it cannot be undone).

    By default glibc serves large blocks with fresh mmaps and adapts its thresholds to what was
    freed before, so on the CPU a row's speed depends on page faults and on the rows that ran
    before it. With the thresholds fixed, freed memory is reused: every row then runs in the
    steady state a caching allocator would give it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, nbytes) and libc.mallopt(_M_TRIM_THRESHOLD, 2 * nbytes)
    except (OSError, AttributeError) as exc:
        raise BenchError(f"--pin-malloc needs glibc (Linux): {exc}") from exc
    if not ok:
        raise BenchError("--pin-malloc: glibc's mallopt refused the thresholds")


# ------------------------------------------------------------------------------------------- running
@dataclass
class BenchConfig:
    """What to run; ``None`` batch size means 64 on CPU, 256 on CUDA."""

    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    batch_size: int | None = None
    size: int = 256
    repeats: int = 5
    warmup: int = 2
    warmup_seconds: float = 1.0  # and warm up for at least this long (see run_case)
    pipelines: list[str] | None = None  # None: the defaults for the device
    transforms: list[str] = field(default_factory=lambda: list(TRANSFORMS))
    libraries: list[str] = field(default_factory=lambda: list(LIBRARY_NAMES))
    pin_malloc: bool = False  # see pin_malloc_thresholds()
    compile: bool = False  # also the ext pipelines under torch.compile (compiling takes a minute or more each)

    def resolved_batch_size(self) -> int:
        return self.batch_size or (256 if self.device == "cuda" else 64)

    def resolved_pipelines(self) -> list[str]:
        if self.pipelines is not None:
            return self.pipelines
        names = ["imagenet-train", "affine-heavy"]
        return names + ["imagenet-train-fp16"] if self.device == "cuda" else names


def sample_batch(batch_size: int, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A (B, 3, size, size) batch of the bundled photos (resized + centre-cropped), uint8 or float in [0, 1]."""
    photos = [v2.functional.center_crop(v2.functional.resize(img, size, antialias=True), size)
              for img in load_samples()]
    batch = torch.stack([photos[i % len(photos)] for i in range(batch_size)]).to(device)
    return batch if dtype == torch.uint8 else v2.functional.to_dtype(batch, dtype, scale=True)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_meta(device: torch.device) -> dict[str, Any]:
    """When and where a benchmark ran: date, versions, CPU and device, for its JSON."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpuaug": ga.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "libraries": _library_versions(),
    }


def _library_versions() -> dict[str, str | None]:
    """The compared libraries' installed versions (None: not installed), read without importing them,
    and OpenCV's threads where albumentations loaded it."""
    versions: dict[str, str | None] = {}
    for name, packages in (("kornia", ["kornia"]), ("torchaug", ["torchaug"]), ("albumentations", ["albumentations"]),
                           ("cv2", ["opencv-python-headless", "opencv-python", "opencv-contrib-python"])):
        versions[name] = None
        for package in packages:
            try:
                versions[name] = importlib.metadata.version(package)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    if "cv2" in sys.modules:
        versions["cv2_threads"] = str(sys.modules["cv2"].getNumThreads())
    return versions


def _meta(cfg: BenchConfig, device: torch.device, bandwidth: float | None,
          unavailable: dict[str, str]) -> dict[str, Any]:
    return {
        **machine_meta(device),
        "batch_size": cfg.resolved_batch_size(),
        "size": cfg.size,
        "repeats": cfg.repeats,
        "warmup": cfg.warmup,
        "warmup_seconds": cfg.warmup_seconds,
        "bandwidth_bytes_per_s": bandwidth,
        "malloc": "pinned thresholds" if cfg.pin_malloc else "default",
        "unavailable_backends": unavailable,  # gpuaug backends that got no rows, with the reason
    }


def _row(case: Case, name: str, label: str, status: str, reason: str | None = None) -> dict[str, Any]:
    return {"case": case.name, "kind": case.kind, "library": name, "label": label, "status": status,
            "reason": reason, "images_per_s": None, "ms_per_batch": None, "times_s": [], "repeats": 0,
            "ratio_to_gpuaug": None, "peak_memory_bytes": None, "floor_share": None, "output": None}


def skip_reason(lib: Library, device: torch.device) -> str | None:
    """Why ``lib`` cannot run on ``device`` (None if it can)."""
    if lib.cpu_only and device.type != "cpu":
        return "CPU only"
    if lib.cuda_only and device.type != "cuda":
        return "CUDA only"
    return _import_problem(lib.module)


@dataclass
class _Runner:
    """One library's calls on one case, interleaved with the other libraries' calls."""

    lib: Library
    fn: Fn
    warmup: int
    repeats: int
    calls: int = 0
    times: list[float] = field(default_factory=list)
    output: tuple[torch.Size, torch.dtype, int] | None = None  # the last output's shape, dtype and bytes
    peak: int | None = None
    problem: tuple[str, str] | None = None  # ("skipped" or "error", reason)

    def call(self, x: torch.Tensor, device: torch.device, timed: bool) -> None:
        """One synchronised call (its output is dropped); a failure ends this library's part of the case.

        torch's global RNG is seeded with the call's number first (untimed): the libraries that draw
        from it (kornia, torchvision) draw the same numbers in every run, whatever the others drew.
        """
        torch.manual_seed(self.calls)
        try:
            _sync(device)
            start = time.perf_counter()
            out = self._output(x)
            _sync(device)
            seconds = time.perf_counter() - start
            self.output = (out.shape, out.dtype, out.nbytes)
        except Exception as exc:  # a failing library must not hide the other rows
            self._fail(exc)
            return
        if timed:
            self.times.append(seconds)
        self.calls += 1

    def measure_peak(self, x: torch.Tensor, device: torch.device) -> None:
        """The peak memory of one more call (CUDA); a failure makes the row an error row."""
        try:
            self.peak = _peak_memory(device, self._output, x)  # as the timed call
        except Exception as exc:
            self._fail(exc)

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        """The library's output as a contiguous NCHW tensor: a lazy view (an expanded grayscale) or a
        channels-last array pays the copy that the other rows' outputs have made."""
        return self.fn(x).contiguous()

    def _fail(self, exc: Exception) -> None:
        self.problem = _problem(exc)


def _problem(exc: Exception) -> tuple[str, str]:
    """A library's failure as a row's status and reason: skipped where it has no equivalent, else an error."""
    return ("skipped", str(exc)) if isinstance(exc, Unsupported) else ("error", f"{type(exc).__name__}: {exc}")


def _runner(case: Case, lib: Library, cfg: BenchConfig, device: torch.device) -> _Runner | dict[str, Any]:
    """The library's runner for ``case``, or its skipped or error row."""
    reason = skip_reason(lib, device)
    if reason:
        return _row(case, lib.name, lib.label, "skipped", reason)
    warmup, repeats = cfg.warmup, cfg.repeats
    if lib.slow:
        warmup, repeats = min(warmup, SLOW_WARMUP), min(repeats, SLOW_REPEATS)
    try:
        return _Runner(lib, lib.build(case, device), warmup, max(1, repeats))
    except Exception as exc:  # a failing library must not hide the other rows
        return _row(case, lib.name, lib.label, *_problem(exc))


def run_case(case: Case, libs: list[Library], x: torch.Tensor, cfg: BenchConfig, device: torch.device,
             bandwidth: float | None) -> list[dict[str, Any]]:
    """Measure ``case`` for each library: one row each, problems as skipped or error rows.

    The libraries' calls are interleaved, one call of each per round, so that they share alike in
    the machine's drift and in the process's allocator state (glibc adapts its thresholds to what
    was freed before). Warm-up rounds run until each library made ``cfg.warmup`` calls and, but for
    the slow per-sample rows, ``cfg.warmup_seconds`` have passed since the first round (whose calls
    may compile, capture or page in memory); then ``cfg.repeats`` timed rounds.
    """
    made = [_runner(case, lib, cfg, device) for lib in libs]
    runners = [r for r in made if isinstance(r, _Runner)]
    with torch.inference_mode():
        for r in runners:
            if r.warmup > 0:
                r.call(x, device, timed=False)
        start = time.perf_counter()
        while True:
            warming = time.perf_counter() - start < cfg.warmup_seconds
            due = [r for r in runners if r.problem is None and (r.calls < r.warmup or (warming and not r.lib.slow))]
            if not due:
                break
            for r in due:
                r.call(x, device, timed=False)
        for round_ in range(max((r.repeats for r in runners), default=0)):
            live = [r for r in runners if r.problem is None]
            shift = round_ % max(len(live), 1)  # each round starts with the next library: none always follows one
            for r in live[shift:] + live[:shift]:
                if r.problem is None and len(r.times) < r.repeats:
                    r.call(x, device, timed=True)
        for r in runners:
            if r.problem is None:
                r.measure_peak(x, device)
    return [r if isinstance(r, dict) else _result_row(case, r, x, bandwidth) for r in made]


def _result_row(case: Case, r: _Runner, x: torch.Tensor, bandwidth: float | None) -> dict[str, Any]:
    """The row of a library's measured calls."""
    if r.problem is not None:
        return _row(case, r.lib.name, r.lib.label, *r.problem)
    row = _row(case, r.lib.name, r.lib.label, "ok")
    median = statistics.median(r.times)
    batch = x.shape[0]
    shape, dtype, nbytes = r.output
    row.update(images_per_s=batch / median, ms_per_batch=1000 * median, times_s=r.times, repeats=len(r.times),
               peak_memory_bytes=r.peak, output={"shape": list(shape), "dtype": str(dtype).split(".")[-1]})
    if bandwidth:
        bytes_per_image = (x.nbytes + nbytes) / batch
        row["floor_share"] = row["images_per_s"] / (bandwidth / bytes_per_image)
    return row


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """ratio_to_gpuaug = images/s over the best gpuaug backend's images/s on the same case."""
    best: dict[str, float] = {}
    for r in rows:
        if r["library"].startswith("gpuaug") and r["status"] == "ok":
            best[r["case"]] = max(best.get(r["case"], 0.0), r["images_per_s"])
    for r in rows:
        if r["status"] == "ok" and r["case"] in best:
            r["ratio_to_gpuaug"] = r["images_per_s"] / best[r["case"]]


def select_libraries(names: list[str], device: torch.device,
                     with_compile: bool = False) -> tuple[list[Library], dict[str, str]]:
    """The Library rows for ``names`` (one per available gpuaug backend) and the unavailable backends."""
    gpuaug_libs, gpuaug_skipped = _gpuaug_libraries(device, with_compile) if "gpuaug" in names else ([], {})
    return gpuaug_libs + [LIBRARIES[n] for n in names if n != "gpuaug"], gpuaug_skipped


def validate(cfg: BenchConfig) -> None:
    """Raise BenchError for a configuration that cannot run."""
    if cfg.device not in ("cpu", "cuda"):
        raise BenchError(f"unknown device {cfg.device!r}: use cpu or cuda")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda, but torch sees no CUDA device")
    for value, what in ((cfg.resolved_batch_size(), "batch size"), (cfg.size, "size"), (cfg.repeats, "repeats")):
        if value < 1:
            raise BenchError(f"{what} must be at least 1, got {value}")
    if cfg.warmup < 0 or not 0 <= cfg.warmup_seconds < math.inf:
        raise BenchError(f"warmup must be at least 0 and finite, got {cfg.warmup} calls and {cfg.warmup_seconds} s")
    if cfg.compile and "gpuaug" not in cfg.libraries:
        raise BenchError("--compile times gpuaug's ext pipelines under torch.compile: include gpuaug in --libraries")
    for names, known, what in ((cfg.resolved_pipelines(), PIPELINES, "pipeline"),
                               (cfg.transforms, TRANSFORMS, "transform"),
                               (cfg.libraries, LIBRARY_NAMES, "library")):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise BenchError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")


def run_benchmark(cfg: BenchConfig, progress: TextIO | None = None) -> dict[str, Any]:
    """Run every (case, library) row of ``cfg``, printing one progress line per row to ``progress`` if given.

    Returns ``{"meta": {...}, "results": [row, ...]}``.
    """
    validate(cfg)
    if cfg.pin_malloc:
        pin_malloc_thresholds()
    device = torch.device(cfg.device)
    bandwidth = measure_bandwidth(device)
    libs, gpuaug_skipped = select_libraries(cfg.libraries, device, cfg.compile)
    for name, reason in gpuaug_skipped.items():
        if progress is not None:
            print(f"{name} not run: {reason}", file=progress, flush=True)
    cases = build_cases(cfg.resolved_pipelines(), cfg.transforms, cfg.size)
    inputs = {dtype: sample_batch(cfg.resolved_batch_size(), cfg.size, dtype, device)
              for dtype in {c.input_dtype for c in cases}}
    groups = [(c, [lib for lib in libs if c.kind == "pipeline" or not lib.pipelines_only]) for c in cases]
    total = sum(len(group) for _, group in groups)
    rows: list[dict[str, Any]] = []
    for case, group in groups:
        for row in run_case(case, group, inputs[case.input_dtype], cfg, device, bandwidth):
            rows.append(row)
            if progress is not None:
                print(f"[{len(rows)}/{total}] {case.name:<22} {row['library']:<18} {_status_text(row)}",
                      file=progress, flush=True)
    _add_ratios(rows)
    return {"meta": _meta(cfg, device, bandwidth, gpuaug_skipped), "results": rows}


# ------------------------------------------------------------------------------------------ reporting
def _status_text(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        return f"{row['images_per_s']:,.0f} img/s"
    return f"{row['status']}: {row['reason']}"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _cells(row: dict[str, Any], cuda: bool) -> list[str]:
    if row["status"] != "ok":
        return [row["case"], row["label"], f"{row['status']}: {row['reason']}"]
    cells = [row["case"], row["label"], _fmt(row["images_per_s"], ",.0f"), _fmt(row["ms_per_batch"], ".1f"),
             _fmt(row["ratio_to_gpuaug"], ".2f", "x")]
    if cuda:
        cells += [_fmt(row["peak_memory_bytes"] / 2**20, ",.0f", " MiB"), _fmt(100 * row["floor_share"], ".1f", "%")]
    return cells


def _render(cells: list[str], widths: list[int], names: int = 2) -> str:
    """The first ``names`` columns left-aligned, numbers right-aligned; a short (skipped) row runs on
    after the names."""
    if len(cells) < len(widths):
        return "  ".join([*(c.ljust(w) for c, w in zip(cells[:names], widths, strict=False)), *cells[names:]])
    return "  ".join(c.ljust(w) if i < names else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the results, one block per case."""
    meta = report["meta"]
    cuda = meta["bandwidth_bytes_per_s"] is not None
    head = (f"gpuaug {meta['gpuaug']} | torch {meta['torch']} | torchvision {meta['torchvision']} | "
            f"{meta['device_name']} ({meta['device']}, {meta['cpu_threads']} CPU threads) | batch "
            f"{meta['batch_size']}, {meta['size']}x{meta['size']} input, median of {meta['repeats']} "
            f"after {meta['warmup']} warm-up calls and {meta['warmup_seconds']:g} s of rounds (per-sample rows: "
            f"median of {min(meta['repeats'], SLOW_REPEATS)} after {min(meta['warmup'], SLOW_WARMUP)})")
    if cuda:
        head += f" | copy bandwidth {meta['bandwidth_bytes_per_s'] / 1e9:,.0f} GB/s"
    else:
        head += f" | malloc: {meta['malloc']} | peak memory: n/a on CPU (no per-call allocator statistics)"
    head += "".join(f"\n{name} not run: {reason}" for name, reason in meta["unavailable_backends"].items())
    cols = ["case", "library", "images/s", "ms/batch", "vs gpuaug"] + (["peak mem", "% of floor"] if cuda else [])
    rows = report["results"]
    cells = [_cells(r, cuda) for r in rows]
    widths = [max([len(c)] + [len(cs[i]) for cs in cells if len(cs) == len(cols)]) for i, c in enumerate(cols)]
    out = [head, "", _render(cols, widths), _render(["-" * w for w in widths], widths)]
    for i, (row, cs) in enumerate(zip(rows, cells, strict=True)):
        if i and row["case"] != rows[i - 1]["case"]:
            out.append("")
        out.append(_render(cs, widths))
    return "\n".join(out)


def require_matplotlib() -> None:
    """Raise BenchError unless matplotlib (only in the dev extra) can be imported."""
    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError("--chart needs matplotlib: pip install matplotlib (it is in the gpuaug[dev] extra)")


def write_chart(report: dict[str, Any], path: str) -> None:
    """Bar chart of images/s: one panel per pipeline, one grouped (log-scale) panel for the per-transform rows."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in report["results"] if r["status"] == "ok"]
    pipelines = list(dict.fromkeys(r["case"] for r in ok if r["kind"] == "pipeline"))
    transforms = list(dict.fromkeys(r["case"] for r in ok if r["kind"] == "transform"))
    heights = [max(1.5, 0.35 * sum(r["case"] == p for r in ok)) for p in pipelines]
    if transforms:
        heights.append(0.5 * len(transforms) + 1)
    if not heights:
        raise BenchError("nothing to chart: no row ran successfully")
    fig, axes = plt.subplots(len(heights), 1, figsize=(10, sum(heights) + 1.2),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, name in zip(axes[:, 0], pipelines, strict=False):  # a last panel may hold the transforms
        rows = [r for r in ok if r["case"] == name]
        ax.barh([r["label"] for r in rows], [r["images_per_s"] for r in rows], color=[_colour(r) for r in rows])
        ax.invert_yaxis()
        for i, r in enumerate(rows):
            ax.text(r["images_per_s"], i, f" {r['images_per_s']:,.0f}", va="center", fontsize=8)
        ax.set_xlim(0, 1.15 * max(r["images_per_s"] for r in rows))
        _style(ax, name, log=False)
    if transforms:
        _transform_panel(axes[-1, 0], [r for r in ok if r["kind"] == "transform"], transforms)
    meta = report["meta"]
    fig.suptitle(f"gpuaug bench: {meta['device_name']} ({meta['device']}), batch {meta['batch_size']}, "
                 f"{meta['size']}px, {meta['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _colour(row: dict[str, Any]) -> str:
    order = ["gpuaug[torch]", "gpuaug[ext]", "gpuaug[ext]+graph", "gpuaug[ext]+compile", *LIBRARIES]
    return f"C{order.index(row['library']) % 10 if row['library'] in order else 9}"


def _style(ax: Any, title: str, log: bool) -> None:
    if log:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_xlabel("images/s (log scale)" if log else "images/s", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)


def _transform_panel(ax: Any, rows: list[dict[str, Any]], transforms: list[str]) -> None:
    libs = list(dict.fromkeys(r["library"] for r in rows))
    height = 0.8 / len(libs)
    for j, lib in enumerate(libs):
        mine = {r["case"]: r for r in rows if r["library"] == lib}
        ys = [i + j * height for i, t in enumerate(transforms) if t in mine]
        vals = [mine[t]["images_per_s"] for t in transforms if t in mine]
        ax.barh(ys, vals, height=height, label=next(iter(mine.values()))["label"],
                color=_colour(next(iter(mine.values()))))
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(transforms))], transforms)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2)
    _style(ax, "per transform (float32 input)", log=True)
