"""On an accelerator a Pipeline call never waits for the device: no host synchronisation and no
pageable host-to-device copy, so that the host runs ahead of the GPU and the call can be captured
in a CUDA graph.

Without a GPU the "meta" device stands in for one: a call on meta tensors takes the accelerator
paths, where any read of device data (``.item()``, ``.tolist()``, ``nonzero``, ``bool(t)``) raises,
and a spy records every upload (``torch.tensor``/``as_tensor`` of host data onto the device, or a
host tensor fed to an op that makes a device tensor) and every read back. The CUDA tests (skipped
without a GPU) check the same with ``torch.cuda.set_sync_debug_mode("error")`` and capture the
ImageNet training pipeline in a CUDA graph.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.utils._pytree as pytree
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import gpuaug as ga
from gpuaug import _ext, bench

aten = torch.ops.aten
_READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.equal.default, aten.is_nonzero.default}
_COPIES = {aten._to_copy.default, aten.copy_.default}
_FROM_DATA = {torch.tensor, torch.as_tensor, torch.asarray}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the meta tests stand in)")


def _caller() -> str:
    """The innermost gpuaug source line on the stack."""
    frames = [f for f in traceback.extract_stack() if "/gpuaug/" in f.filename and "/tests/" not in f.filename]
    return f"{frames[-1].filename.rsplit('/gpuaug/', 1)[1]}:{frames[-1].lineno}" if frames else "?"


def _on_device(tensors: list[Tensor]) -> bool:
    return any(t.device.type != "cpu" for t in tensors)


class _FunctionSpy(TorchFunctionMode):
    """Records tensors built from host data straight onto a device (invisible to dispatch modes)."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _FROM_DATA and isinstance(out, Tensor) and out.device.type != "cpu":
            data = args[0] if args else next(iter(kwargs.values()), None)
            if not (isinstance(data, Tensor) and data.device == out.device):
                self.events.append(f"host->device: torch.{func.__name__} at {_caller()}")
        return out


class _DispatchSpy(TorchDispatchMode):
    """Records reads of device data and ops that take host tensors into device tensors or back."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, Tensor)]
        if func in _READS and _on_device(inputs):  # reading a host tensor waits for nothing
            self.events.append(f"host read: {func} at {_caller()}")
        try:
            out = func(*args, **kwargs)
        except Exception as error:
            self.events.append(f"raised: {func}: {type(error).__name__} at {_caller()}")
            raise
        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, Tensor)]
        # a 0-dim host tensor in an elementwise op is a kernel argument, not a copy
        uploaded = [t for t in inputs if t.device.type == "cpu" and t.numel() > 0 and (t.ndim > 0 or func in _COPIES)]
        if _on_device(outputs) and uploaded:
            self.events.append(f"host->device: {func} at {_caller()}")
        if _on_device(inputs) and any(t.device.type == "cpu" for t in outputs):
            self.events.append(f"device->host: {func} at {_caller()}")
        return out


def device_events(fn: Callable[[], Any]) -> list[str]:
    """What ``fn`` did that would make the host wait for an accelerator (or fail on meta)."""
    events: list[str] = []
    with _FunctionSpy(events), _DispatchSpy(events):
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - on meta, a host read of device data raises
            events.append(f"{type(error).__name__}: {str(error).splitlines()[0][:120]}")
    return events


def second_call_events(fn: Callable[[], Any]) -> list[str]:
    """:func:`device_events` of the second call of ``fn``: the first uploads the pipeline's constants."""
    fn()
    return device_events(fn)


def test_the_spy_sees_uploads_and_reads():
    x = torch.empty(4, 3, device="meta")
    assert device_events(lambda: torch.tensor([1.0, 2.0], device="meta"))
    assert device_events(lambda: x[torch.tensor([0, 1])])
    assert device_events(lambda: torch.arange(3).to("meta"))
    assert device_events(lambda: x.sum().item())
    assert device_events(lambda: bool((x > 0).any()))
    assert device_events(lambda: x.nonzero())
    assert not device_events(lambda: x * torch.tensor(2.0) + torch.arange(3, device="meta"))
    assert not device_events(lambda: int(torch.tensor([4, 5]).amin()))


# ---------------------------------------------------------------- the cases

BACKENDS = ["torch", "ext"]
_CROP = bench.crop_size(256)


def _bench_pipelines() -> dict[str, list[ga.Transform]]:
    return {name: bench._v2_style(ga, make(_CROP)[0]) for name, make in bench.PIPELINES.items()}


def _each_transform() -> dict[str, ga.Transform]:
    """Every transform, some in several configurations (each on float32 and uint8 input)."""
    cases = {name: bench._v2_style(ga, (step,))[0] for name, step in bench._transform_steps(_CROP).items()}
    cases.update({
        "RandomCrop": ga.RandomCrop(224, padding=4, fill=(1, 2, 3)),
        "RandomCrop-reflect": ga.RandomCrop(240, padding=8, padding_mode="reflect"),
        "CenterCrop": ga.CenterCrop(300),
        "Resize": ga.Resize(160),
        "Resize-nearest": ga.Resize((100, 120), interpolation="nearest"),
        "Pad": ga.Pad((1, 2, 3, 4), fill=(10, 20, 30)),
        "Pad-symmetric": ga.Pad(5, padding_mode="symmetric"),
        "RandomVerticalFlip": ga.RandomVerticalFlip(),
        "RandomRotation-fill": ga.RandomRotation(20, fill=(0.5, 0.2, 0.1)),
        "RandomRotation-bicubic": ga.RandomRotation(20, interpolation="bicubic"),
        "RandomPerspective-fill": ga.RandomPerspective(0.3, p=0.7, fill=1),
        "ColorJitter-partial": ga.ColorJitter(brightness=0.4, hue=0.1),
        "Grayscale": ga.Grayscale(),
        "Grayscale-3": ga.Grayscale(3),
        "RandomErasing-random": ga.RandomErasing(p=0.7, value="random"),
        "RandomErasing-value": ga.RandomErasing(p=0.7, value=(0.1, 0.2, 0.3)),
        "GaussianNoise-gated": ga.GaussianNoise(sigma=0.1, p=0.5),
        "ToDtype": ga.ToDtype(torch.float16, scale=True),
        "RandomApply": ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1), ga.RandomInvert(1.0)], p=0.8),
        "RandomChoice": ga.RandomChoice([ga.RandomInvert(1.0), ga.RandomSolarize(0.5, 1.0)], p=[0.3, 0.7]),
        "RandomOrder": ga.RandomOrder([ga.RandomInvert(1.0), ga.RandomPosterize(4, 1.0)]),
        "Compose": ga.Compose([ga.RandomHorizontalFlip(), ga.RandomRotation(10)]),
    })
    return cases


def _pipeline(transforms: list[ga.Transform], backend: str, **kwargs: Any) -> ga.Pipeline:
    if backend == "ext" and _ext.extension_error() is not None:
        pytest.skip(f"the extension is not available: {_ext.extension_error()}")
    return ga.Pipeline(transforms, seed=0, backend=backend, **kwargs)


def _meta_input(dtype: torch.dtype, batch: int = 8) -> Tensor:
    return torch.empty(batch, 3, 256, 256, dtype=dtype, device="meta")


def _uint8_ok(t: ga.Transform) -> bool:
    return not isinstance(t, ga.Normalize)  # Normalize takes float images only


# ---------------------------------------------------------------- meta: no sync, no upload


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(bench.PIPELINES))
def test_bench_pipelines_neither_sync_nor_upload(name: str, backend: str):
    pipe = _pipeline(_bench_pipelines()[name], backend)
    x = _meta_input(torch.uint8)
    assert second_call_events(lambda: pipe(x)) == []
    ids = torch.arange(1000, 1008, device="meta")
    assert second_call_events(lambda: pipe(x, sample_ids=ids, epoch=3)) == []


class _KernelCount(TorchDispatchMode):
    """Counts the ops that would each launch a kernel on a GPU (every op but views)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


# the ext backend's kernels per call at the time of writing (210 for imagenet-train, 155 for
# affine-heavy), with some room: on a GPU each is a launch of a few microseconds and a node of a
# captured graph, which at a million images/s (256 us per batch of 256) is the budget that counts
_KERNEL_BUDGET = {"imagenet-train": 220, "imagenet-train-fp16": 220, "affine-heavy": 165}


@pytest.mark.parametrize("name", list(bench.PIPELINES))
def test_bench_pipelines_launch_few_kernels(name: str):
    """The whole call (parameter sampling, planning, the fused pass) of a batch of 256."""
    pipe = _pipeline(_bench_pipelines()[name], "ext")
    x = _meta_input(torch.uint8, batch=256)
    pipe(x)
    counter = _KernelCount()
    with counter:
        pipe(x)
    assert counter.count <= _KERNEL_BUDGET[name]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8], ids=str)
@pytest.mark.parametrize("name", list(_each_transform()))
def test_each_transform_neither_syncs_nor_uploads(name: str, dtype: torch.dtype, backend: str):
    transform = _each_transform()[name]
    if dtype == torch.uint8 and not _uint8_ok(transform):
        pytest.skip("float input only")
    pipe = _pipeline([transform], backend)
    x = _meta_input(dtype)
    assert second_call_events(lambda: pipe(x)) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_output_and_params_neither_sync_nor_upload(backend: str):
    pipe = _pipeline(_bench_pipelines()["imagenet-train"], backend, memory_format=torch.channels_last)
    x = _meta_input(torch.uint8)
    assert second_call_events(lambda: pipe(x, return_params=True)) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_epoch_as_a_device_tensor_neither_syncs_nor_uploads(backend: str):
    pipe = _pipeline(_bench_pipelines()["imagenet-train"], backend)
    x, ids = _meta_input(torch.uint8), torch.arange(8, device="meta")
    epoch = torch.zeros((), dtype=torch.int64, device="meta")
    assert second_call_events(lambda: pipe(x, sample_ids=ids, epoch=epoch)) == []


# ---------------------------------------------------------------- CPU: the same numbers


def test_epoch_tensor_gives_the_int_epochs_augmentation():
    pipe = ga.Pipeline(_bench_pipelines()["imagenet-train"], seed=5)
    x = torch.randint(0, 256, (4, 3, 64, 72), dtype=torch.uint8)
    ids = torch.tensor([3, 1, 2**33 + 7, 0])
    for epoch in (0, 7, -1):
        expected = pipe(x, sample_ids=ids, epoch=epoch)
        assert torch.equal(pipe(x, sample_ids=ids, epoch=torch.tensor(epoch)), expected)
    with pytest.raises(TypeError, match="epoch"):
        pipe(x, sample_ids=ids, epoch=torch.tensor(1.0))


def test_capture_needs_a_cuda_batch():
    pipe = ga.Pipeline([ga.RandomHorizontalFlip()], seed=0)
    with pytest.raises(ValueError, match="CUDA"):
        ga.capture(pipe, torch.zeros(2, 3, 8, 8))


# ---------------------------------------------------------------- CUDA: sync debug mode and graphs


def _cuda_imagenet(seed: int = 3) -> ga.Pipeline:
    if _ext.extension_error() is not None:
        pytest.skip(f"the extension is not available: {_ext.extension_error()}")
    return ga.Pipeline(bench._v2_style(ga, bench.PIPELINES["imagenet-train"](56)[0]), seed=seed, backend="ext")


def _cuda_batch(seed: int, batch: int = 32) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, 64, 64), dtype=torch.uint8, generator=g).cuda()


@cuda
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(bench.PIPELINES))
def test_cuda_bench_pipelines_run_with_sync_debug_mode_error(name: str, backend: str):
    pipe = _pipeline(_bench_pipelines()[name], backend)
    x, ids = _cuda_batch(0), torch.arange(32, device="cuda")
    pipe(x, sample_ids=ids)  # first call: builds the cached constants (one upload each)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        pipe(x, sample_ids=ids)
        pipe(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@cuda
def test_cuda_graph_replay_matches_the_eager_call():
    pipe = _cuda_imagenet()
    x, ids = _cuda_batch(1), torch.arange(100, 132, device="cuda")
    pipe(x, sample_ids=ids, epoch=2)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        expected = pipe(x, sample_ids=ids, epoch=2)
    finally:
        torch.cuda.set_sync_debug_mode("default")

    static_x, static_ids = x.clone(), ids.clone()
    static_epoch = torch.zeros((), dtype=torch.int64, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        pipe(static_x, sample_ids=static_ids, epoch=static_epoch)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = pipe(static_x, sample_ids=static_ids, epoch=static_epoch)
    static_epoch.fill_(2)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, expected)

    # another batch in another epoch: the same graph, new inputs in its buffers
    x2, ids2 = _cuda_batch(2), torch.arange(500, 532, device="cuda")
    static_x.copy_(x2)
    static_ids.copy_(ids2)
    static_epoch.fill_(5)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, pipe(x2, sample_ids=ids2, epoch=5))


@cuda
def test_cuda_capture_helper_replays_the_pipeline():
    pipe = _cuda_imagenet(seed=4)
    captured = ga.capture(pipe, _cuda_batch(0))
    for epoch in (0, 3):
        pipe.set_epoch(epoch)
        for seed in (1, 2):
            x, ids = _cuda_batch(seed), torch.arange(32 * seed, 32 * seed + 32, device="cuda")
            out = captured(x, ids)
            assert torch.equal(out, pipe(x, sample_ids=ids))
    with pytest.raises(ValueError, match="captured"):
        captured(_cuda_batch(0, batch=16), torch.arange(16, device="cuda"))
