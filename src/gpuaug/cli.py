"""The ``gpuaug`` command: ``gpuaug info``, ``gpuaug build-ext``, ``gpuaug preview``, ``gpuaug bench``,
``gpuaug bench-loader``."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.io import read_file, write_png
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F
from torchvision.utils import make_grid

import gpuaug as ga
from gpuaug import _ext, bench, bench_loader
from gpuaug.assets import load_samples

GRID_PADDING = 2


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""


# ---------------------------------------------------------------------------------------------- info
def _cuda_lines() -> list[str]:
    if not torch.cuda.is_available():
        return ["none"]
    lines = []
    for i in range(torch.cuda.device_count()):
        prop = torch.cuda.get_device_properties(i)
        lines.append(f"cuda:{i} {prop.name}, capability {prop.major}.{prop.minor}, "
                     f"{prop.total_memory / 2**30:.1f} GiB")
    return lines


def info_text() -> str:
    """Versions, devices and gpuaug backends, one ``name  value`` line each."""
    cuda_build = torch.version.cuda or "none (CPU-only build)"
    items: list[tuple[str, list[str]]] = [
        ("gpuaug", [ga.__version__]),
        ("python", [f"{platform.python_version()} ({platform.python_implementation()}, {platform.machine()})"]),
        ("torch", [f"{torch.__version__} (CUDA build: {cuda_build})"]),
        ("torchvision", [torchvision.__version__]),
        ("numpy", [np.__version__]),
        ("cpu", [f"{bench.cpu_model()}, {torch.get_num_threads()} torch threads"]),
        ("cuda devices", _cuda_lines()),
        ("backends", [f"{name}: {state}" for name, state in ga.available_backends().items()]),
        ("default backend", [_default_backend()]),
    ]
    width = max(len(name) for name, _ in items) + 2
    return "\n".join(f"{(name if i == 0 else '').ljust(width)}{value}"
                     for name, values in items for i, value in enumerate(values))


def _default_backend() -> str:
    """Which backend a Pipeline gets without a ``backend`` argument here, and why."""
    asked = os.environ.get("GPUAUG_BACKEND")
    source = f" ($GPUAUG_BACKEND={asked})" if asked else ""
    try:
        with warnings.catch_warnings():  # the fallback's warning: said here instead
            warnings.simplefilter("ignore")
            name = _ext.resolve_backend()
    except ValueError as error:
        return f"none: every Pipeline raises: {error}{source}"
    if name == "ext":
        return f"ext (the fused extension is built){source}"
    return f"torch{source}" if asked == "torch" else f"torch (ext is not available: {_ext.extension_error()}){source}"


def cmd_info(args: argparse.Namespace) -> None:
    print(info_text())


def cmd_build_ext(args: argparse.Namespace) -> None:
    """Compile the fused extension now (torch caches it), so the first Pipeline call does not wait."""
    try:
        with_cuda = _ext.build(verbose=args.verbose, with_cuda=args.cuda)
    except Exception as error:  # noqa: BLE001 - report any build failure as a CLI error
        raise CLIError(f"building the extension failed: {error}") from error
    print(f"gpuaug extension built from {_ext.source_dir()} ({'with' if with_cuda else 'without'} CUDA)")


# ------------------------------------------------------------------------------------------- preview
def preview_pipelines(size: int, seed: int) -> list[ga.Pipeline]:
    """Two uint8 -> uint8 pipelines for the preview rows: imagenet-train without Normalize, and
    a stronger geometric one with random erasing."""
    imagenet = [
        ga.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
        ga.RandomHorizontalFlip(p=0.5),
        ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        ga.RandomGrayscale(p=0.2),
    ]
    geometric = [
        ga.RandomResizedCrop(size, scale=(0.5, 1.0)),
        ga.RandomAffine(degrees=25, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=10,
                        interpolation=InterpolationMode.BILINEAR),
        ga.RandomHorizontalFlip(p=0.5),
        ga.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3),
        ga.RandomErasing(p=0.5),
    ]
    return [ga.Pipeline(imagenet, seed=seed), ga.Pipeline(geometric, seed=seed)]


def load_image(path: str) -> torch.Tensor:
    """Decode an image file as RGB uint8 (3, H, W) (16-bit PNGs scaled, a GIF's first frame), as
    gpuaug.data decodes them; CLIError if it is missing or not an image."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"image not found: {path}")
    try:
        return ga.data.decode_images([read_file(str(p))], names=[path])[0][0]
    except (RuntimeError, ValueError, OSError) as exc:
        raise CLIError(str(exc)) from exc


def letterbox(image: torch.Tensor, size: int) -> torch.Tensor:
    """Fit the whole image into a size x size square (aspect kept, padded with white)."""
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    image = F.resize(image, [nh, nw], antialias=True)
    left, top = (size - nw) // 2, (size - nh) // 2
    return F.pad(image, [left, top, size - nw - left, size - nh - top], fill=255)


def preview_grid(images: list[torch.Tensor], n: int, size: int, seed: int) -> torch.Tensor:
    """A uint8 grid: per image and pipeline, one row of the original then ``n`` augmented versions."""
    tiles = []
    for i, image in enumerate(images):
        batch = image.unsqueeze(0).expand(n, -1, -1, -1).contiguous()
        ids = torch.arange(i * n, (i + 1) * n)  # distinct per image, reproducible per seed
        for pipe in preview_pipelines(size, seed):
            tiles.append(letterbox(image, size))
            tiles.extend(pipe(batch, sample_ids=ids).unbind(0))
    return make_grid(torch.stack(tiles), nrow=n + 1, padding=GRID_PADDING, pad_value=255)


def grid_shape(num_images: int, n: int, size: int) -> tuple[int, int]:
    """(height, width) of the preview grid for ``num_images`` inputs."""
    step = size + GRID_PADDING
    return 2 * num_images * step + GRID_PADDING, (n + 1) * step + GRID_PADDING


def cmd_preview(args: argparse.Namespace) -> None:
    try:
        _ext.resolve_backend()  # a bad $GPUAUG_BACKEND: said before any work
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    images = [load_image(p) for p in args.images] if args.images else load_samples()
    grid = preview_grid(images, args.n, args.size, args.seed)
    try:
        write_png(grid, args.output)
    except (RuntimeError, OSError) as exc:
        raise CLIError(f"cannot write {args.output} ({exc})") from exc
    print(f"wrote {args.output} ({grid.shape[-1]}x{grid.shape[-2]}): {len(images)} image(s) x 2 pipelines, "
          f"original + {args.n} augmented each", file=sys.stderr)


# --------------------------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> None:
    cfg = bench.BenchConfig(
        device=args.device, batch_size=args.batch_size, size=args.size, repeats=args.repeats,
        warmup=args.warmup, warmup_seconds=args.warmup_seconds, pipelines=args.pipelines, libraries=args.libraries,
        transforms=(args.transforms or list(bench.TRANSFORMS)) if args.per_transform else [],
        pin_malloc=args.pin_malloc, compile=args.compile,
    )
    try:
        if args.chart:
            bench.require_matplotlib()  # fail before a long run, not after it
        report = bench.run_benchmark(cfg, progress=sys.stderr)
        print(bench.format_table(report))
        if args.json:
            _write(args.json, lambda path: Path(path).write_text(json.dumps(report, indent=2) + "\n"))
        if args.chart:
            _write(args.chart, lambda path: bench.write_chart(report, path))
    except bench.BenchError as exc:
        raise CLIError(str(exc)) from exc


def cmd_bench_loader(args: argparse.Namespace) -> None:
    cfg = bench_loader.LoaderBenchConfig(
        device=args.device, workers=args.workers, batch_size=args.batch_size, batches=args.batches,
        warmup=args.warmup, max_seconds=args.max_seconds, images=args.images, data_dir=args.data, rows=args.rows,
    )
    try:
        report = bench_loader.run_loader_benchmark(cfg, progress=sys.stderr)
    except bench.BenchError as exc:
        raise CLIError(str(exc)) from exc
    print(bench_loader.format_table(report))
    if args.json:
        _write(args.json, lambda path: Path(path).write_text(json.dumps(report, indent=2) + "\n"))


def _write(path: str, writer: Callable[[str], object]) -> None:
    try:
        writer(path)
    except OSError as exc:
        raise CLIError(f"cannot write {path} ({exc})") from exc
    print(f"wrote {path}", file=sys.stderr)


# -------------------------------------------------------------------------------------------- parser
def _integer(text: str, least: int) -> int:
    kind = "positive" if least > 0 else "non-negative"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _non_negative(text: str) -> int:
    return _integer(text, 0)


def _seconds(text: str, positive: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (0 < value if positive else 0 <= value) or not value < math.inf:  # also NaN
        kind = "positive" if positive else "non-negative"
        raise argparse.ArgumentTypeError(f"expected a finite {kind} number of seconds, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    return _seconds(text, positive=True)


def _command(sub: argparse._SubParsersAction, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts with its ``summary`` (and ``details``)."""
    return sub.add_parser(name, help=summary, description=f"{summary}: {details}" if details else summary)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gpuaug`` command.

    Example:
        >>> build_parser().parse_args(["preview", "-o", "grid.png"]).output
        'grid.png'
    """
    parser = argparse.ArgumentParser(prog="gpuaug", description="Batched per-sample image augmentation for PyTorch.")
    parser.add_argument("--version", action="version", version=f"gpuaug {ga.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{info,build-ext,preview,bench,bench-loader}")

    info = _command(sub, "info", "versions, devices and available backends")
    info.set_defaults(func=cmd_info)

    build = _command(sub, "build-ext", "compile the fused C++/CUDA extension now (cached by torch)")
    build.add_argument("--verbose", action="store_true", help="show the compiler's output")
    build.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=None,
                       help="build the CUDA part (default: when torch sees a CUDA device and finds CUDA_HOME)")
    build.set_defaults(func=cmd_build_ext)

    preview = _command(sub, "preview", "write a grid PNG of augmented photos",
                       "per image, a row of the ImageNet training recipe (without Normalize) and a row of a "
                       "stronger geometric recipe with random erasing")
    preview.add_argument("images", nargs="*", metavar="IMAGE",
                         help="image files (JPEG, PNG, ...); default: the photos bundled with gpuaug")
    preview.add_argument("-o", "--output", required=True, help="output PNG path")
    preview.add_argument("--n", type=_positive, default=8, help="augmented versions per image (default 8)")
    preview.add_argument("--seed", type=int, default=0, help="pipeline seed (default 0)")
    preview.add_argument("--size", type=_positive, default=224, help="tile size in pixels (default 224)")
    preview.set_defaults(func=cmd_preview)

    b = _command(sub, "bench", "side-by-side throughput against kornia, torchvision, torchaug, albumentations")
    b.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                   help="default: cuda when available")
    b.add_argument("--batch-size", type=_positive, default=None, help="default: 64 on CPU, 256 on CUDA")
    b.add_argument("--size", type=_positive, default=256, help="input height and width (default 256)")
    b.add_argument("--repeats", type=_positive, default=5, help="timed calls per row; median reported (default 5)")
    b.add_argument("--warmup", type=_non_negative, default=2,
                   help="at least this many untimed calls per row first (default 2)")
    b.add_argument("--warmup-seconds", type=_seconds, default=1.0,
                   help="and untimed rounds for at least this long per case (default 1.0)")
    b.add_argument("--pipelines", nargs="*", choices=list(bench.PIPELINES), default=None, metavar="NAME",
                   help=f"any of {', '.join(bench.PIPELINES)} (default: imagenet-train affine-heavy, "
                        "plus imagenet-train-fp16 on CUDA)")
    b.add_argument("--libraries", nargs="+", choices=bench.LIBRARY_NAMES, default=list(bench.LIBRARY_NAMES),
                   metavar="NAME", help=f"any of {', '.join(bench.LIBRARY_NAMES)} (default: all)")
    b.add_argument("--per-transform", action=argparse.BooleanOptionalAction, default=True,
                   help="also time one row per common transform (default: on)")
    b.add_argument("--transforms", nargs="+", choices=list(bench.TRANSFORMS), default=None, metavar="NAME",
                   help="which per-transform rows (default: all)")
    b.add_argument("--pin-malloc", action="store_true",
                   help="CPU: fix glibc's malloc thresholds so page faults and earlier rows do not skew a row")
    b.add_argument("--compile", action="store_true",
                   help="also time the ext pipelines under torch.compile (mode reduce-overhead on CUDA); "
                        "compiling takes a minute or more per pipeline")
    b.add_argument("--json", metavar="PATH", help="write the results as JSON")
    b.add_argument("--chart", metavar="PATH", help="write a PNG bar chart (needs matplotlib)")
    b.set_defaults(func=cmd_bench)

    defaults = bench_loader.LoaderBenchConfig()
    bl = _command(sub, "bench-loader", "end to end: JPEG files -> DataLoader -> augmented batches on the "
                                       "device, gpuaug against torchvision's per-sample recipe")
    bl.add_argument("--device", choices=("cpu", "cuda"), default=defaults.device, help="default: cuda when available")
    bl.add_argument("--workers", type=_non_negative, default=defaults.workers,
                    help=f"DataLoader workers, the same for every row (default: the CPU count, {defaults.workers})")
    bl.add_argument("--batch-size", type=_positive, default=defaults.batch_size,
                    help=f"default {defaults.batch_size}")
    bl.add_argument("--batches", type=_positive, default=defaults.batches,
                    help=f"timed batches per row; several per worker (default {defaults.batches})")
    bl.add_argument("--warmup", type=_non_negative, default=None,
                    help="untimed batches per row first (default: one per worker, at least 2)")
    bl.add_argument("--max-seconds", type=_positive_seconds, default=None, metavar="S",
                    help="end a row's warm-up, and its timed window, after S seconds each (default: no limit)")
    bl.add_argument("--images", type=_positive, default=defaults.images,
                    help=f"JPEGs in the generated set (default {defaults.images})")
    bl.add_argument("--data", metavar="DIR", default=None,
                    help=f"where the JPEG sets are generated and reused (default {bench_loader.default_data_dir()})")
    bl.add_argument("--rows", nargs="+", choices=list(bench_loader.ROWS), default=list(bench_loader.ROWS),
                    metavar="NAME", help=f"any of {', '.join(bench_loader.ROWS)} (default: all)")
    bl.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bl.set_defaults(func=cmd_bench_loader)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gpuaug`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("bench", "bench-loader") and args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    try:
        args.func(args)
    except CLIError as exc:
        print(f"gpuaug {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
