"""Where a GPU Pipeline call spends its time: run by scripts/gpu-check (step "profile").

Prints, and writes to ``$OUT/profile.json``:

- the CUDA kernels of one ext-backend call (torch.profiler) of imagenet-train and two shorter
  pipelines, by GPU time;
- a ladder of sub-pipelines (uint8 256x256 -> 224x224 float16, batch 256): eager and CUDA-graph
  ms per batch, so that each step's cost is the difference between two rows;
- the fused op alone on imagenet-train's arguments, through the tiled kernels of calls whose
  samples are all separable (csrc/tile.h) and through the per-pixel ones (the same arguments, side
  by side);
- the DataLoader stages of bench-loader's rows, one batch of 256 ragged images (300-600 px):
  pinning the padded batch, its host-to-device copy, the ext pipeline on it, CPU and nvJPEG decode.

Usage: ``PYTHONPATH=src python benchmarks/gpu_profile.py [OUT_DIR]`` (needs CUDA).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchvision.io import decode_image, decode_jpeg, encode_jpeg

import gpuaug as ga
from gpuaug.bench import MEAN, PIPELINES, STD, _v2_style, time_calls
from gpuaug.bench_loader import _photos

DEVICE = torch.device("cuda")


def timed(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median ms of ``fn()`` on the device (bench.time_calls: synchronised before and after each call)."""
    times, _ = time_calls(lambda _: fn(), None, warmup, repeats, DEVICE)
    return 1000 * statistics.median(times)


def ladder() -> dict[str, list]:
    """name -> transforms, each row adding steps to the one before; the last is bench's imagenet-train-fp16."""
    rrc = ga.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    tail = [ga.ToDtype(torch.float16, scale=True), ga.Normalize(MEAN, STD)]
    return {
        "cast only (no geometry)": [*tail],
        "RRC+flip": [rrc, ga.RandomHorizontalFlip(), *tail],
        "+brightness,saturation": [rrc, ga.RandomHorizontalFlip(), ga.ColorJitter(0.4, 0, 0.4), *tail],
        "+contrast": [rrc, ga.RandomHorizontalFlip(), ga.ColorJitter(0.4, 0.4, 0.4), *tail],
        "imagenet-train": _v2_style(ga, PIPELINES["imagenet-train-fp16"](224)[0]),
    }


def kernel_table(pipe: ga.Pipeline, x: torch.Tensor) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    ids = torch.arange(x.shape[0], device=DEVICE)
    for _ in range(3):
        pipe(x, sample_ids=ids)
    torch.cuda.synchronize()
    calls = 5
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            pipe(x, sample_ids=ids)
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        gpu_us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if gpu_us and not e.key.startswith("aten::"):  # aten ops' device time is their kernels'
            rows.append({"kernel": e.key[:110], "calls_per_pipe_call": e.count / calls, "gpu_us_per_pipe_call": gpu_us / calls})
    rows.sort(key=lambda r: -r["gpu_us_per_pipe_call"])
    return rows


def op_builds(pipe: ga.Pipeline, x: torch.Tensor) -> dict[str, float]:
    """ms of the fused op on the arguments ``pipe`` gives it, with all_separable as given and forced off."""
    op, calls = torch.ops.gpuaug.fused_augment, []

    def spy(*args):
        calls.append(args)
        return op(*args)

    torch.ops.gpuaug.fused_augment = spy
    try:
        pipe(x, sample_ids=torch.arange(x.shape[0], device=DEVICE))
    finally:
        torch.ops.gpuaug.fused_augment = op
    (args,) = calls
    return {
        "all_separable_flag": float(args[-1]),
        "op_as_called_ms": timed(lambda: op(*args)),
        "op_general_kernels_ms": timed(lambda: op(*args[:-1], False)),
    }


def ragged_stages() -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    photos = [torch.from_numpy(np.array(p)).permute(2, 0, 1).contiguous() for p in _photos()]
    images = []
    for i in range(256):
        h, w = torch.randint(300, 601, (2,), generator=g).tolist()
        p = photos[i % len(photos)]
        images.append(torch.nn.functional.interpolate(p[None].float(), size=(h, w), mode="bilinear")[0].round().clamp(0, 255).byte())
    jpegs = [encode_jpeg(x, quality=90) for x in images]
    out: dict[str, float] = {"mean_jpeg_kb": sum(j.numel() for j in jpegs) / len(jpegs) / 1024}
    out["cpu_decode_ms_per_image"] = timed(lambda: [decode_image(j) for j in jpegs[:32]], repeats=3, warmup=1) / 32
    out["pack_encoded_ms"] = timed(lambda: ga.data.EncodedBatch.pack(jpegs), repeats=5, warmup=1)
    out["nvjpeg_batch_decode_ms_256"] = timed(lambda: decode_jpeg(jpegs, device=DEVICE), repeats=5, warmup=2)
    batch = ga.data.decode_batch({"images": jpegs})
    ragged = batch["images"]
    out["padded_batch_mb"] = ragged.images.numel() / 2**20
    out["pin_ms"] = timed(lambda: ragged.pin_memory(), repeats=5, warmup=1)
    pinned = ragged.pin_memory()
    out["h2d_pinned_ms"] = timed(lambda: pinned.to(DEVICE, non_blocking=True), repeats=5)
    on_device = pinned.to(DEVICE)
    pipe = ga.Pipeline(ladder()["imagenet-train"], seed=0, backend="ext")
    ids = torch.arange(256, device=DEVICE)
    out["ext_pipeline_on_ragged_ms"] = timed(lambda: pipe(on_device, sample_ids=ids), repeats=10)
    return out


def main(out_dir: str) -> None:
    torch.backends.cudnn.benchmark = False
    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.randint(0, 256, (256, 3, 256, 256), dtype=torch.uint8, device=DEVICE, generator=g)
    ids = torch.arange(256, device=DEVICE)
    report: dict[str, object] = {"device": torch.cuda.get_device_name(), "batch": 256}
    rows = []
    for name, steps in ladder().items():
        pipe = ga.Pipeline(steps, seed=0, backend="ext")
        eager = timed(functools.partial(pipe, x, sample_ids=ids))
        graph = timed(functools.partial(ga.capture(pipe, x), x, ids))
        rows.append({"pipeline": name, "eager_ms": eager, "graph_ms": graph})
        print(f"{name:<26} eager {eager:7.3f} ms   graph {graph:7.3f} ms", flush=True)
    report["ladder"] = rows
    report["op_builds"] = op_builds(ga.Pipeline(ladder()["imagenet-train"], seed=0, backend="ext"), x)
    print("fused op, imagenet-train arguments:", json.dumps(report["op_builds"]), flush=True)
    report["kernels"] = {}
    for name, top in (("imagenet-train", 12), ("cast only (no geometry)", 5), ("RRC+flip", 5)):
        try:
            kernels = kernel_table(ga.Pipeline(ladder()[name], seed=0, backend="ext"), x)
        except Exception as error:  # noqa: BLE001 (the profiler may not reach the device's counters)
            print(f"{name}: profiler failed: {error!r}")
            continue
        report["kernels"][name] = kernels
        total = sum(r["gpu_us_per_pipe_call"] for r in kernels if r["kernel"] != "gpuaug::fused_augment")
        print(f"{name}: {len(kernels)} kinds of GPU activity, {total:.0f} us per call; the top ones (us per call):")
        for r in kernels[:top]:
            print(f"  {r['gpu_us_per_pipe_call']:9.1f}  x{r['calls_per_pipe_call']:<5g} {r['kernel'][:90]}")
    try:
        stages = ragged_stages()
    except Exception as error:  # noqa: BLE001 (a report, not a test: record what failed)
        stages = {"error": repr(error)}
    report["ragged"] = stages
    print("ragged batch of 256 (300-600 px):", json.dumps(stages, indent=1))
    Path(out_dir, "profile.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "."))
