"""End-to-end DataLoader benchmark: from JPEG files on disk to augmented batches on the device.

A folder of JPEGs of mixed sizes is generated once from the real photos that ship with
scikit-image (random crops and rescales, deterministic by seed; one class folder per photo), and
every row reads it through a ``torch.utils.data.DataLoader`` with the same worker count, batch
size, sampler (seeded, so the same images in the same order) and number of batches:

- ``torchvision``: the standard recipe, per sample in the workers: ImageFolder (PIL decode), then
  RandomResizedCrop, flip, ColorJitter, RandomGrayscale on the PIL image, ToImage, ToDtype,
  Normalize; batches are collated, pinned and copied to the device in the main process;
- ``gpuaug-device``: the workers decode (``ga.data.ImageFiles`` + ``ga.data.Collate``) into ragged
  uint8 batches; ``ga.data.DeviceLoader`` copies them to the device and augments them there;
- ``gpuaug-nvjpeg``: the workers only read the files' bytes and pack each batch's into one
  ``ga.data.EncodedBatch`` (``Collate(decode=False)``), which reaches the main process and is
  pinned as one tensor; DeviceLoader decodes them on the GPU (nvJPEG) and augments them there
  (CUDA only);
- ``gpuaug-workers``: decode and augmentation in the workers on the CPU (``Collate(pipeline)``,
  the fused extension when it is built), then the finished batches are copied to the device.

The augmentation is bench.py's imagenet-train case (224x224 float32 out) in both libraries.

Timing: after ``warmup`` batches (workers started and persistent, pipelines and decoders warm),
``batches`` batches are timed; the consumer waits for each batch's device work to finish (a
blocking CUDA event on the consuming stream, so the wait does not spin a core) before taking the
next. images/s = images in the timed batches / seconds. With ``max_seconds``, the warm-up and the
timed window each also stop once they have lasted that long (after at least one batch), which
bounds a slow row's time; the timed batches are then fewer (each row reports its count). The files
sit in the OS page cache after generation, so disk reads are not what is measured.

CPU time per image: user + system CPU seconds, over the timed window, of this process (all its
threads) and its descendants (the DataLoader workers), divided by the images. Live workers are read
from ``/proc/<pid>/stat`` (``getrusage(RUSAGE_CHILDREN)`` only counts children that have exited
and been waited for, which persistent workers have not), plus ``RUSAGE_CHILDREN`` for any that
exited; None where there is no /proc. ``cores busy`` = CPU seconds / wall seconds.

Example:
    >>> import tempfile
    >>> from gpuaug import bench_loader
    >>> cfg = bench_loader.LoaderBenchConfig(device="cpu", workers=0, batch_size=2, batches=1, warmup=0,
    ...                                      images=4, data_dir=tempfile.mkdtemp(), rows=["gpuaug-device"])
    >>> report = bench_loader.run_loader_benchmark(cfg)
    >>> report["results"][0]["output"]
    {'shape': [2, 3, 224, 224], 'dtype': 'float32'}
"""

from __future__ import annotations

import functools
import io
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torchvision
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.transforms import v2

import gpuaug as ga
from gpuaug.bench import PIPELINES, BenchError, Step, _fmt, _render, _v2_style, machine_meta

# scikit-image's colour photos (skimage.data loaders that need no download); one class folder each
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")
MIN_SIZE, MAX_SIZE = 300, 600  # generated images' height and width, each drawn in [MIN_SIZE, MAX_SIZE]
JPEG_QUALITY = 90
CROP = 224
CPU_TIME_METHOD = ("user+system CPU s of this process and its live descendants (/proc/<pid>/stat) "
                   "+ getrusage(RUSAGE_CHILDREN), over the timed window")


# ---------------------------------------------------------------------------------------------- data
def default_data_dir() -> Path:
    """Where the generated JPEG sets are cached: ``$XDG_CACHE_HOME/gpuaug/bench-loader`` (``~/.cache`` by default).

    Example:
        >>> from gpuaug.bench_loader import default_data_dir
        >>> default_data_dir().parts[-2:]
        ('gpuaug', 'bench-loader')
    """
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpuaug" / "bench-loader"


def _photos() -> list[Image.Image]:
    """The source photos as PIL RGB images."""
    try:
        import skimage.data
    except ImportError as exc:
        raise BenchError("bench-loader makes its JPEGs from scikit-image's photos: pip install scikit-image "
                         "(it is in the gpuaug[dev] extra)") from exc
    return [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]


View = tuple[int, tuple[int, int], tuple[float, float, float, float]]


def _draw_views(count: int, seed: int, sources: list[tuple[int, int]]) -> list[View]:
    """Per image: (photo index, output (width, height), crop box (left, top, right, bottom) in the photo).

    The crop has the output's aspect ratio, 50-100% of the largest such crop's side, at a random place.
    """
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(MIN_SIZE, MAX_SIZE + 1, (count, 2), generator=g).tolist()
    draws = torch.rand(count, 3, generator=g, dtype=torch.float64).tolist()
    views = []
    for i, ((w, h), (fraction, x, y)) in enumerate(zip(sizes, draws, strict=True)):
        photo = i % len(sources)
        src_w, src_h = sources[photo]
        side = (0.5 + 0.5 * fraction) * min(src_w / w, src_h / h)
        crop_w, crop_h = w * side, h * side
        left, top = x * (src_w - crop_w), y * (src_h - crop_h)
        views.append((photo, (w, h), (left, top, left + crop_w, top + crop_h)))
    return views


def make_jpegs(root: str | os.PathLike[str] | None = None, count: int = 3000, seed: int = 0) -> Path:
    """Generate ``count`` JPEGs of mixed sizes (``MIN_SIZE``-``MAX_SIZE`` px) from scikit-image's photos,
    in one class folder per photo under ``root/<count>-seed<seed>/``, and return that folder.

    A folder generated before is reused as it is (the set is a function of ``count`` and ``seed``);
    a new one is written under a temporary name and renamed when complete.

    Example:
        >>> import tempfile, gpuaug as ga
        >>> from gpuaug.bench_loader import make_jpegs
        >>> files = ga.data.ImageFiles.from_folder(make_jpegs(tempfile.mkdtemp(), count=8))
        >>> len(files), files.classes[:3]
        (8, ['astronaut', 'chelsea', 'coffee'])
    """
    if count < 1:
        raise BenchError(f"the image count must be at least 1, got {count}")
    folder = Path(root or default_data_dir()) / f"{count}-seed{seed}"
    if folder.is_dir():
        return folder
    photos = _photos()
    views = _draw_views(count, seed, [photo.size for photo in photos])
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    try:
        for name in PHOTOS:
            (partial / name).mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file in the way, no permission, ...
        raise BenchError(f"cannot write the images under {folder.parent}: {error}") from error

    def write(i: int) -> None:
        photo, size, box = views[i]
        image = photos[photo].resize(size, Image.Resampling.BILINEAR, box=box)  # antialiased when it shrinks
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        (partial / PHOTOS[photo] / f"{i:05d}.jpg").write_bytes(buffer.getvalue())

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # Pillow releases the GIL while it resizes and encodes
        list(pool.map(write, range(count)))
    try:
        partial.rename(folder)
    except OSError:  # another process finished the same set first
        if not folder.is_dir():
            raise
        shutil.rmtree(partial)
    return folder


# ---------------------------------------------------------------------------------------------- rows
def _imagenet_steps() -> tuple[Step, ...]:
    """bench.py's imagenet-train case at 224x224, float32 out."""
    steps, _ = PIPELINES["imagenet-train"](CROP)
    return steps


def gpuaug_pipeline(backend: str | None = None) -> ga.Pipeline:
    """The imagenet-train case as a gpuaug Pipeline.

    Example:
        >>> import torch
        >>> from gpuaug.bench_loader import gpuaug_pipeline
        >>> gpuaug_pipeline()(torch.zeros(2, 3, 300, 400, dtype=torch.uint8)).shape
        torch.Size([2, 3, 224, 224])
    """
    return ga.Pipeline(_v2_style(ga, _imagenet_steps()), seed=0, backend=backend)


def torchvision_transform() -> v2.Compose:
    """The imagenet-train case as torchvision's per-sample recipe on a PIL image (ToImage before ToDtype).

    Example:
        >>> from PIL import Image
        >>> from gpuaug.bench_loader import torchvision_transform
        >>> out = torchvision_transform()(Image.new("RGB", (400, 300)))
        >>> out.shape, out.dtype
        (torch.Size([3, 224, 224]), torch.float32)
    """
    steps = _imagenet_steps()
    k = [s.name for s in steps].index("ToDtype")
    return v2.Compose([*_v2_style(v2, steps[:k]), v2.ToImage(), *_v2_style(v2, steps[k:])])


@dataclass
class LoaderBenchConfig:
    """What to run. ``warmup=None`` is one batch per worker (at least 2): every worker has then
    delivered a batch before the timing starts. Time several batches per worker (``batches``), since
    the workers' batches arrive in waves. ``max_seconds`` (None: no limit) ends the warm-up and the
    timed window early. ``data_dir=None`` is :func:`default_data_dir`.

    Example:
        >>> from gpuaug.bench_loader import LoaderBenchConfig
        >>> LoaderBenchConfig(workers=16).resolved_warmup(), LoaderBenchConfig(workers=0).resolved_warmup()
        (16, 2)
    """

    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    workers: int = os.cpu_count() or 1
    batch_size: int = 256
    batches: int = 32
    warmup: int | None = None
    max_seconds: float | None = None
    images: int = 3000
    data_dir: str | None = None
    seed: int = 0
    backend: str | None = None  # the gpuaug pipelines' backend (None: $GPUAUG_BACKEND, else auto)
    rows: list[str] = field(default_factory=lambda: list(ROWS))

    def resolved_warmup(self) -> int:
        """The warm-up batches per row."""
        return max(2, self.workers) if self.warmup is None else self.warmup


Batches = Callable[[Path, LoaderBenchConfig, torch.device], Iterator[Tensor]]


def _loader(dataset: Dataset, collate_fn: Callable[[list[Any]], Any] | None, cfg: LoaderBenchConfig,
            device: torch.device) -> DataLoader:
    """The DataLoader every row uses: same sampler, workers, batch size, pinning."""
    total = (cfg.resolved_warmup() + cfg.batches) * cfg.batch_size
    sampler = RandomSampler(dataset, num_samples=total, generator=torch.Generator().manual_seed(cfg.seed))
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      collate_fn=collate_fn, pin_memory=device.type == "cuda", drop_last=True,
                      persistent_workers=cfg.workers > 0)


def _torchvision_batches(root: Path, cfg: LoaderBenchConfig, device: torch.device) -> Iterator[Tensor]:
    data = torchvision.datasets.ImageFolder(str(root), transform=torchvision_transform())
    for images, _ in _loader(data, None, cfg, device):
        yield images.to(device, non_blocking=True)


def _gpuaug_batches(root: Path, cfg: LoaderBenchConfig, device: torch.device, *, decode: bool,
                    in_workers: bool) -> Iterator[Tensor]:
    """Files -> ImageFiles -> Collate (decoding when ``decode``, augmenting when ``in_workers``) ->
    DeviceLoader (decoding what is left encoded, augmenting unless ``in_workers``)."""
    data = ga.data.WithIndex(ga.data.ImageFiles.from_folder(root))
    pipeline = gpuaug_pipeline(cfg.backend)
    collate = ga.data.Collate(pipeline if in_workers else None, decode=decode)
    loader = ga.data.DeviceLoader(_loader(data, collate, cfg, device), None if in_workers else pipeline, device)
    for batch in loader:
        yield batch["images"]


@dataclass(frozen=True)
class Row:
    """A way of loading the files: ``load(root, cfg, device)`` yields the augmented image batches on the device.

    Example:
        >>> from gpuaug.bench_loader import ROWS
        >>> [name for name, row in ROWS.items() if row.needs_cuda]
        ['gpuaug-nvjpeg']
    """

    name: str
    label: str
    load: Batches
    needs_cuda: bool = False


ROWS: dict[str, Row] = {row.name: row for row in (
    Row("torchvision", "torchvision v2 per sample in workers (PIL decode)", _torchvision_batches),
    Row("gpuaug-device", "gpuaug: CPU decode in workers, augmentation on the device",
        functools.partial(_gpuaug_batches, decode=True, in_workers=False)),
    Row("gpuaug-nvjpeg", "gpuaug: GPU decode (nvJPEG), augmentation on the device",
        functools.partial(_gpuaug_batches, decode=False, in_workers=False), needs_cuda=True),
    Row("gpuaug-workers", "gpuaug: decode + augmentation in workers (CPU, collate time)",
        functools.partial(_gpuaug_batches, decode=True, in_workers=True)),
)}


# -------------------------------------------------------------------------------------------- timing
def process_tree_cpu_seconds() -> float | None:
    """User + system CPU seconds used so far by this process, its live descendants (from /proc) and its
    exited, waited-for children (``getrusage``); None without /proc.

    Example:
        >>> from gpuaug.bench_loader import process_tree_cpu_seconds
        >>> process_tree_cpu_seconds() > 0
        True
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    parent, seconds = {}, {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text[text.rindex(")") + 2:].split()  # from field 3 (state) on; the name may hold spaces
        pid = int(stat.parent.name)
        parent[pid], seconds[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = set(), [os.getpid()]
    while frontier:
        tree.update(frontier)
        frontier = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in tree]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(seconds.get(pid, 0.0) for pid in tree) + children.ru_utime + children.ru_stime


def _wait_for(device: torch.device) -> Callable[[], None]:
    """A function that returns once the work queued on the consuming stream (which waits for the batch)
    is done; blocking, not spinning, on CUDA."""
    if device.type != "cuda":
        return lambda: None

    def wait() -> None:
        done = torch.cuda.Event(blocking=True)
        done.record(torch.cuda.current_stream(device))
        done.synchronize()

    return wait


def _take(batches: Iterator[Tensor], count: int, wait: Callable[[], None], max_seconds: float | None, wave: int
          ) -> tuple[int, Tensor | None]:
    """Consume up to ``count`` batches, stopping early after ``max_seconds`` but only at the end of a wave
    of ``wave`` batches (the workers deliver theirs at about the same time: a window cut after a wave's
    first batch counts one batch for a whole wave's time); (batches taken, the last one)."""
    start, taken, images = time.perf_counter(), 0, None
    while taken < count and (taken == 0 or taken % wave != 0 or max_seconds is None
                             or time.perf_counter() - start < max_seconds):
        images = next(batches)
        wait()
        taken += 1
    return taken, images


def _row(row: Row, status: str, reason: str | None = None) -> dict[str, Any]:
    return {"row": row.name, "label": row.label, "status": status, "reason": reason, "batches": 0, "images": 0,
            "seconds": None, "images_per_s": None, "ms_per_batch": None, "cpu_seconds": None,
            "cpu_ms_per_image": None, "cores_busy": None, "ratio_to_torchvision": None, "output": None}


def _run_row(row: Row, root: Path, cfg: LoaderBenchConfig, device: torch.device) -> dict[str, Any]:
    """Time one row; problems become a skipped or error row, never an exception."""
    if row.needs_cuda and device.type != "cuda":
        return _row(row, "skipped", "needs a CUDA device (decodes with nvJPEG)")
    wait = _wait_for(device)
    batches = row.load(root, cfg, device)
    try:
        with torch.inference_mode():
            wave = max(cfg.workers, 1)
            _take(batches, cfg.resolved_warmup(), wait, cfg.max_seconds, wave)
            cpu_start, start = process_tree_cpu_seconds(), time.perf_counter()
            taken, images = _take(batches, cfg.batches, wait, cfg.max_seconds, wave)
            seconds = time.perf_counter() - start
            cpu_end = process_tree_cpu_seconds()
    except Exception as exc:  # a failing row must not hide the others
        return _row(row, "error", f"{type(exc).__name__}: {exc}")
    finally:
        batches.close()  # shuts the row's workers down before the next row starts
    count = taken * cfg.batch_size
    cpu = None if cpu_start is None or cpu_end is None else cpu_end - cpu_start
    out = _row(row, "ok")
    out.update(batches=taken, images=count, seconds=seconds, images_per_s=count / seconds,
               ms_per_batch=1000 * seconds / taken,
               cpu_seconds=cpu, cpu_ms_per_image=None if cpu is None else 1000 * cpu / count,
               cores_busy=None if cpu is None else cpu / seconds,
               output={"shape": list(images.shape), "dtype": str(images.dtype).split(".")[-1]})
    return out


# ------------------------------------------------------------------------------------------- running
def validate(cfg: LoaderBenchConfig) -> None:
    """Raise BenchError for a configuration that cannot run.

    Example:
        >>> from gpuaug.bench_loader import LoaderBenchConfig, validate
        >>> validate(LoaderBenchConfig(device="cpu", batches=0))
        Traceback (most recent call last):
        gpuaug.bench.BenchError: batches must be at least 1, got 0
    """
    if cfg.device not in ("cpu", "cuda"):
        raise BenchError(f"unknown device {cfg.device!r}: use cpu or cuda")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda, but torch sees no CUDA device")
    for value, what, least in ((cfg.workers, "workers", 0), (cfg.batch_size, "batch size", 1),
                               (cfg.batches, "batches", 1), (cfg.resolved_warmup(), "warmup", 0),
                               (cfg.images, "images", 1)):
        if value < least:
            raise BenchError(f"{what} must be at least {least}, got {value}")
    if cfg.max_seconds is not None and cfg.max_seconds <= 0:
        raise BenchError(f"max seconds must be positive, got {cfg.max_seconds}")
    unknown = [name for name in cfg.rows if name not in ROWS]
    if unknown:
        raise BenchError(f"unknown row {', '.join(unknown)}; choose from {', '.join(ROWS)}")


def _meta(cfg: LoaderBenchConfig, device: torch.device, root: Path) -> dict[str, Any]:
    return {
        **machine_meta(device),
        "backend": gpuaug_pipeline(cfg.backend).backend,
        "workers": cfg.workers,
        "batch_size": cfg.batch_size,
        "batches": cfg.batches,
        "warmup": cfg.resolved_warmup(),
        "max_seconds": cfg.max_seconds,
        "images": cfg.images,
        "image_sizes": [MIN_SIZE, MAX_SIZE],
        "data_dir": str(root),
        "cpu_time_method": CPU_TIME_METHOD,
    }


def run_loader_benchmark(cfg: LoaderBenchConfig, progress: TextIO | None = None) -> dict[str, Any]:
    """Generate (or reuse) the JPEG set, then time every row of ``cfg``, printing a line per step to
    ``progress`` if given. Returns ``{"meta": {...}, "results": [row, ...]}``."""
    validate(cfg)
    device = torch.device(cfg.device)
    start = time.perf_counter()
    root = make_jpegs(cfg.data_dir, cfg.images, cfg.seed)
    if progress is not None:
        print(f"{cfg.images} JPEGs in {root} ({time.perf_counter() - start:.1f} s)", file=progress, flush=True)
    results = []
    for i, name in enumerate(cfg.rows, start=1):
        results.append(_run_row(ROWS[name], root, cfg, device))
        if progress is not None:
            r = results[-1]
            text = f"{r['images_per_s']:,.0f} img/s" if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
            print(f"[{i}/{len(cfg.rows)}] {name:<16} {text}", file=progress, flush=True)
    base = next((r["images_per_s"] for r in results if r["row"] == "torchvision" and r["status"] == "ok"), None)
    for r in results:
        if base and r["status"] == "ok":
            r["ratio_to_torchvision"] = r["images_per_s"] / base
    return {"meta": _meta(cfg, device, root), "results": results}


# ------------------------------------------------------------------------------------------ reporting
def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the results, one line per row.

    Example:
        >>> import tempfile
        >>> from gpuaug import bench_loader
        >>> cfg = bench_loader.LoaderBenchConfig(device="cpu", workers=0, batch_size=2, batches=1, warmup=0,
        ...                                      images=4, data_dir=tempfile.mkdtemp(), rows=["gpuaug-nvjpeg"])
        >>> print(bench_loader.format_table(bench_loader.run_loader_benchmark(cfg)).splitlines()[-1])
        gpuaug: GPU decode (nvJPEG), augmentation on the device  skipped: needs a CUDA device (decodes with nvJPEG)
    """
    meta = report["meta"]
    head = (f"gpuaug {meta['gpuaug']} ({meta['backend']} backend) | torch {meta['torch']} | torchvision "
            f"{meta['torchvision']} | {meta['device_name']} ({meta['device']}) | CPU {meta['cpu']}, "
            f"{meta['cpu_count']} cores\n{meta['images']} JPEGs of {meta['image_sizes'][0]}-{meta['image_sizes'][1]} "
            f"px -> {CROP}x{CROP} float32 | {meta['workers']} workers, batch {meta['batch_size']}, "
            f"{meta['batches']} timed batches after {meta['warmup']} warm-up"
            + ("" if meta["max_seconds"] is None else f", each at most {meta['max_seconds']:g} s")
            + f"\nCPU time: {meta['cpu_time_method']}")
    cols = ["row", "batches", "images/s", "ms/batch", "CPU ms/image", "cores busy", "vs torchvision"]
    cells = []
    for r in report["results"]:
        if r["status"] != "ok":
            cells.append([r["label"], f"{r['status']}: {r['reason']}"])
            continue
        cells.append([r["label"], str(r["batches"]), _fmt(r["images_per_s"], ",.0f"), _fmt(r["ms_per_batch"], ",.1f"),
                      _fmt(r["cpu_ms_per_image"], ".2f"), _fmt(r["cores_busy"], ".1f"),
                      _fmt(r["ratio_to_torchvision"], ".2f", "x")])
    widths = [max([len(c)] + [len(cs[i]) for cs in cells if len(cs) == len(cols)]) for i, c in enumerate(cols)]
    lines = [cols, ["-" * w for w in widths], *cells]
    return "\n".join([head, "", *(_render(cs, widths, names=1) for cs in lines)])
