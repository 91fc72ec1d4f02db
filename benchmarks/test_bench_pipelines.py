"""pytest-benchmark suite: the main pipelines for every library, via the same builders as ``gpuaug bench``.

Run with ``make bench`` (``pytest benchmarks --benchmark-only``); results are grouped per pipeline.
Batch 64 on CPU, 256 on CUDA, 256x256 uint8 photos in. Here the libraries run one after the other,
each with pytest-benchmark's rounds; ``gpuaug bench`` (whose figures benchmarks/RESULTS.md records)
has them take turns call by call, which a noisy machine skews less.
"""

import pytest
import torch

from gpuaug import bench

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BATCH = 256 if DEVICE.type == "cuda" else 64
SIZE = 256
PIPELINES = ["imagenet-train", "affine-heavy"] + (["imagenet-train-fp16"] if DEVICE.type == "cuda" else [])
LIBS, UNAVAILABLE = bench.select_libraries(list(bench.LIBRARY_NAMES), DEVICE)


@pytest.fixture(scope="module")
def images():
    return bench.sample_batch(BATCH, SIZE, torch.uint8, DEVICE)


def _synchronised(fn):
    def run(x):
        out = fn(x)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return out
    return run


@pytest.mark.parametrize("library", LIBS, ids=lambda lib: lib.name)
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_pipeline(benchmark, images, pipeline, library):
    reason = bench.skip_reason(library, DEVICE)
    if reason:
        pytest.skip(reason)
    case = bench.build_cases([pipeline], [], SIZE)[0]
    try:
        fn = _synchronised(library.build(case, DEVICE))
    except bench.Unsupported as exc:
        pytest.skip(str(exc))
    benchmark.group = f"{pipeline} (batch {BATCH}, {DEVICE.type})"
    benchmark.extra_info.update(label=library.label, batch_size=BATCH)
    rounds = bench.SLOW_REPEATS if library.slow else 5
    with torch.inference_mode():
        out = benchmark.pedantic(fn, args=(images,), rounds=rounds, warmup_rounds=1)
    assert out.shape[0] == BATCH and out.dtype == case.output_dtype


@pytest.mark.parametrize("backend", sorted(UNAVAILABLE))
def test_unavailable_backend(backend):
    pytest.skip(f"{backend}: {UNAVAILABLE[backend]}")
