"""The benchmark harness on a tiny configuration (no timing assertions)."""

import json
import math
import platform
import types

import pytest
import torch

import gpuaug as ga
from gpuaug import bench
from gpuaug.cli import main

TINY = dict(device="cpu", batch_size=2, size=32, repeats=1, warmup=0, warmup_seconds=0.0)
ROW_KEYS = {"case", "kind", "library", "label", "status", "reason", "images_per_s", "ms_per_batch", "times_s",
            "repeats", "ratio_to_gpuaug", "peak_memory_bytes", "floor_share", "output"}
META_KEYS = {"date", "gpuaug", "torch", "torchvision", "python", "cpu", "cpu_threads", "device", "device_name",
             "batch_size", "size", "repeats", "warmup", "warmup_seconds", "bandwidth_bytes_per_s", "malloc",
             "unavailable_backends"}


@pytest.fixture(scope="module")
def report():
    cfg = bench.BenchConfig(**TINY, pipelines=["imagenet-train", "affine-heavy"],
                            transforms=["RandomHorizontalFlip", "ColorJitter"],
                            libraries=["gpuaug", "kornia", "torchvision-batch", "torchvision-loop"])
    return bench.run_benchmark(cfg, progress=None)


def test_report_structure(report):
    assert META_KEYS <= set(report["meta"])
    assert report["meta"]["batch_size"] == 2 and report["meta"]["bandwidth_bytes_per_s"] is None
    for row in report["results"]:
        assert set(row) == ROW_KEYS
        assert row["status"] in ("ok", "skipped", "error")
    json.dumps(report)  # serialisable as is


def test_every_gpuaug_backend_and_library_runs(report):
    rows = {(r["case"], r["library"]): r for r in report["results"]}
    for case in ("imagenet-train", "affine-heavy", "RandomHorizontalFlip", "ColorJitter"):
        for lib in ("gpuaug[torch]", "kornia", "torchvision-batch", "torchvision-loop"):
            assert rows[case, lib]["status"] == "ok", rows[case, lib]["reason"]


def test_numbers_are_sane(report):
    for row in (r for r in report["results"] if r["status"] == "ok"):
        assert row["repeats"] == 1 and len(row["times_s"]) == 1
        assert math.isfinite(row["images_per_s"]) and row["images_per_s"] > 0
        assert row["ms_per_batch"] == pytest.approx(1000 * 2 / row["images_per_s"])
        assert row["ratio_to_gpuaug"] > 0
        assert row["peak_memory_bytes"] is None and row["floor_share"] is None  # CPU


def test_best_gpuaug_backend_has_ratio_one(report):
    for case in {r["case"] for r in report["results"]}:
        gpuaug = [r for r in report["results"] if r["case"] == case and r["library"].startswith("gpuaug")
                  and r["status"] == "ok"]
        assert max(r["ratio_to_gpuaug"] for r in gpuaug) == pytest.approx(1.0)


def test_libraries_compute_the_same_shape_and_dtype(report):
    expected = {"imagenet-train": [2, 3, 28, 28], "affine-heavy": [2, 3, 32, 32],
                "RandomHorizontalFlip": [2, 3, 32, 32]}
    for row in (r for r in report["results"] if r["status"] == "ok"):
        if row["case"] in expected:
            assert row["output"] == {"shape": expected[row["case"]], "dtype": "float32"}, row["library"]


def test_table_lists_every_row(report):
    table = bench.format_table(report)
    assert "ONE param set per batch" in table and "per-sample loop" in table
    assert table.count("imagenet-train ") >= 4
    for name in report["meta"]["unavailable_backends"]:
        assert f"{name} not run" in table


def test_cases_match_the_issue():
    steps = {c.name: c for c in bench.build_cases(["imagenet-train", "affine-heavy"], [], 256)}
    imagenet = steps["imagenet-train"]
    assert [s.name for s in imagenet.steps] == ["RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter",
                                                "RandomGrayscale", "ToDtype", "Normalize"]
    assert imagenet.steps[0].kwargs["size"] == 224 and imagenet.steps[2].p == 0.8 and imagenet.steps[3].prob == 0.2
    assert imagenet.input_dtype == torch.uint8 and imagenet.output_dtype == torch.float32
    assert steps["affine-heavy"].steps[0].kwargs["shear"] == 5


@pytest.mark.parametrize("change, message", [
    (dict(pipelines=["nope"]), "unknown pipeline"),
    (dict(libraries=["nope"]), "unknown library"),
    (dict(transforms=["nope"]), "unknown transform"),
    (dict(repeats=0), "repeats"),
    (dict(device="tpu"), "unknown device"),
])
def test_bad_config_is_a_clear_error(change, message):
    with pytest.raises(bench.BenchError, match=message):
        bench.run_benchmark(bench.BenchConfig(**{**TINY, **change}), progress=None)


def test_cli_bench_writes_json_and_chart(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    rc = main(["bench", "--device", "cpu", "--batch-size", "2", "--size", "32", "--repeats", "1", "--warmup", "0",
               "--warmup-seconds", "0",
               "--pipelines", "imagenet-train", "--libraries", "gpuaug", "torchvision-batch",
               "--transforms", "RandomHorizontalFlip", "--json", str(out_json), "--chart", str(out_png)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "imagenet-train" in captured.out and "[1/" in captured.err
    report = json.loads(out_json.read_text())
    assert {r["case"] for r in report["results"]} == {"imagenet-train", "RandomHorizontalFlip"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_no_per_transform(tmp_path):
    out_json = tmp_path / "b.json"
    assert main(["bench", "--device", "cpu", "--batch-size", "2", "--size", "32", "--repeats", "1",
                 "--warmup-seconds", "0", "--pipelines", "affine-heavy", "--libraries", "torchvision-batch",
                 "--no-per-transform",
                 "--json", str(out_json)]) == 0
    assert {r["case"] for r in json.loads(out_json.read_text())["results"]} == {"affine-heavy"}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="--pin-malloc needs glibc")
def test_cli_bench_pin_malloc(tmp_path):
    out_json = tmp_path / "b.json"
    assert main(["bench", "--device", "cpu", "--batch-size", "2", "--size", "32", "--repeats", "1",
                 "--warmup-seconds", "0", "--pin-malloc",
                 "--pipelines", "imagenet-train", "--libraries", "gpuaug", "--no-per-transform",
                 "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert report["meta"]["malloc"] == "pinned thresholds"
    assert report["results"][0]["status"] == "ok"


def test_the_torch_compile_row_is_listed_only_when_asked_for():
    names = lambda with_compile: [lib.name for lib in bench.select_libraries(["gpuaug"], torch.device("cpu"), with_compile)[0]]  # noqa: E731
    assert "gpuaug[ext]+compile" not in names(False)
    if ga.available_backends().get("ext") == "available":
        assert "gpuaug[ext]+compile" in names(True)


def test_the_cuda_graph_row_is_listed_for_cuda_only():
    names = lambda device: [lib.name for lib in bench.select_libraries(["gpuaug"], torch.device(device))[0]]  # noqa: E731
    assert "gpuaug[ext]+graph" not in names("cpu")
    if ga.available_backends().get("ext") == "available":
        assert "gpuaug[ext]+graph" in names("cuda")


def test_compile_without_gpuaug_is_an_error():
    with pytest.raises(bench.BenchError, match="include gpuaug"):
        bench.validate(bench.BenchConfig(device="cpu", libraries=["kornia"], compile=True))


def test_the_gpu_columns(monkeypatch):
    """What a CUDA run adds (peak memory, share of the bandwidth floor), on the CPU: a measured copy
    bandwidth and per-call peaks stand in, so that the table the GPU machine prints cannot break."""
    monkeypatch.setattr(bench, "measure_bandwidth", lambda device: 2e12)
    monkeypatch.setattr(bench, "_peak_memory", lambda device, fn, x: 3 << 20)
    cfg = bench.BenchConfig(**TINY, pipelines=["imagenet-train"], transforms=[], libraries=["gpuaug", "kornia"])
    report = bench.run_benchmark(cfg, progress=None)
    ok = [r for r in report["results"] if r["status"] == "ok"]
    assert ok
    for r in ok:
        bytes_per_image = (3 * 32 * 32) + 3 * 28 * 28 * 4  # uint8 in, float32 out
        assert math.isclose(r["floor_share"], r["images_per_s"] * bytes_per_image / 2e12, rel_tol=1e-9)
    table = bench.format_table(report)
    assert "copy bandwidth 2,000 GB/s" in table and "% of floor" in table and "3 MiB" in table


def test_libraries_take_turns_and_warm_up_for_the_time_asked(monkeypatch):
    """One call of each library per round; after the first round, warm-up rounds for the seconds asked
    (but for the slow per-sample rows), then the timed rounds. A library that fails to build, fails
    during the warm-up or the timed rounds, or turns out unsupported gets its row without stopping
    the others. A fake clock that each call advances makes the rounds exact."""
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    calls: list[str] = []

    def library(name: str, seconds: float = 0.01, slow: bool = False, fail_at: int | None = None,
                error: type[Exception] = RuntimeError) -> bench.Library:
        def build(case, device):
            if fail_at == 0:
                raise error("cannot build")

            def run(x):
                calls.append(name)
                clock.now += seconds
                if calls.count(name) == fail_at:
                    raise error("broke")
                return x.float()
            return run
        return bench.Library(name, name, build, slow=slow)

    libs = [library("a"), library("b"), library("loop", seconds=0.05, slow=True), library("bad", fail_at=2),
            library("late", fail_at=6), library("unsupported", fail_at=1, error=bench.Unsupported),
            library("unbuilt", fail_at=0)]
    case = bench.build_cases(["imagenet-train"], [], 32)[0]
    cfg = bench.BenchConfig(device="cpu", batch_size=2, size=32, repeats=3, warmup=1, warmup_seconds=0.05)
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    rows = {r["library"]: r for r in bench.run_case(case, libs, x, cfg, torch.device("cpu"), None)}
    first = ["a", "b", "loop", "bad", "late", "unsupported"]
    warm = ["a", "b", "bad", "late", "a", "b", "late"]  # 0.04 s after the first round < 0.05 s: one more
    timed = ["a", "b", "loop", "late"] + ["b", "loop", "late", "a"] + ["loop", "late", "a", "b"]  # each round starts one on
    assert calls == first + warm + timed
    status = {name: (row["status"], row["reason"]) for name, row in rows.items()}
    assert status == {"a": ("ok", None), "b": ("ok", None), "loop": ("ok", None),
                      "bad": ("error", "RuntimeError: broke"), "late": ("error", "RuntimeError: broke"),
                      "unsupported": ("skipped", "broke"), "unbuilt": ("error", "RuntimeError: cannot build")}
    assert rows["a"]["times_s"] == pytest.approx([0.01] * 3) and rows["loop"]["times_s"] == pytest.approx([0.05] * 3)
    assert rows["a"]["images_per_s"] == pytest.approx(200.0)


@pytest.mark.parametrize("transform", ["RandomPerspective", "RandomErasing", "ColorJitter"])
def test_every_library_leaves_the_shared_batch_intact(transform):
    """torchaug wrote its result into the batch that every later row then ran on (mostly black images)."""
    cfg = bench.BenchConfig(device="cpu", batch_size=4, size=32, repeats=1, warmup=1, warmup_seconds=0.0)
    case = bench.build_cases([], [transform], 32)[0]
    libs, _ = bench.select_libraries(list(bench.LIBRARY_NAMES), torch.device("cpu"))
    x = bench.sample_batch(4, 32, torch.float32, torch.device("cpu"))
    keep = x.clone()
    rows = bench.run_case(case, libs, x, cfg, torch.device("cpu"), None)
    assert torch.equal(x, keep) and all(r["status"] != "error" for r in rows), rows


def test_the_warm_up_must_be_finite():
    with pytest.raises(bench.BenchError, match="finite"):
        bench.validate(bench.BenchConfig(**{**TINY, "warmup_seconds": float("inf")}))
    with pytest.raises(SystemExit):
        main(["bench", "--warmup-seconds", "inf"])
