"""The end-to-end DataLoader benchmark on a tiny configuration (no timing assertions)."""

import json
import time

import pytest
import torch
from PIL import Image

import gpuaug as ga
from gpuaug import bench_loader
from gpuaug.bench import BenchError
from gpuaug.cli import main

TINY = {"device": "cpu", "batch_size": 8, "batches": 2, "warmup": 1, "images": 24}
ROW_KEYS = {"row", "label", "status", "reason", "batches", "images", "seconds", "images_per_s", "ms_per_batch",
            "cpu_seconds", "cpu_ms_per_image", "cores_busy", "ratio_to_torchvision", "output"}
META_KEYS = {"date", "gpuaug", "torch", "torchvision", "python", "platform", "cpu", "cpu_count", "device",
             "device_name", "backend", "workers", "batch_size", "batches", "warmup", "max_seconds", "images",
             "image_sizes", "data_dir", "cpu_time_method"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The CPU rows augment in this process: one torch thread keeps them quick on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-loader")


@pytest.fixture(scope="module", params=[0, 2], ids=["0 workers", "2 workers"])
def report(request, data_dir, tmp_path_factory):
    """workers=0 through the API, workers=2 through the command line (its JSON file)."""
    if request.param == 0:
        cfg = bench_loader.LoaderBenchConfig(**TINY, workers=0, data_dir=str(data_dir))
        return bench_loader.run_loader_benchmark(cfg)
    path = tmp_path_factory.mktemp("json") / "loader.json"
    argv = ["bench-loader", "--workers", "2", "--data", str(data_dir), "--json", str(path)]
    argv += [f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()]
    assert main(argv) == 0
    return json.loads(path.read_text())


def test_report_structure(report):
    assert META_KEYS <= set(report["meta"])
    assert report["meta"]["images"] == 24 and report["meta"]["batch_size"] == 8 and report["meta"]["warmup"] == 1
    assert [r["row"] for r in report["results"]] == list(bench_loader.ROWS)
    for row in report["results"]:
        assert set(row) == ROW_KEYS
    json.dumps(report)


def test_every_row_yields_augmented_batches(report):
    rows = {r["row"]: r for r in report["results"]}
    assert rows["gpuaug-nvjpeg"]["status"] == "skipped" and "CUDA" in rows["gpuaug-nvjpeg"]["reason"]
    for name in ("torchvision", "gpuaug-device", "gpuaug-workers"):
        row = rows[name]
        assert row["status"] == "ok", row["reason"]
        assert row["output"] == {"shape": [8, 3, 224, 224], "dtype": "float32"}, name
        assert row["batches"] == 2 and row["images"] == 16
        assert row["images_per_s"] > 0 and row["ratio_to_torchvision"] > 0
        assert row["cpu_ms_per_image"] is None or row["cpu_ms_per_image"] >= 0
    assert rows["torchvision"]["ratio_to_torchvision"] == pytest.approx(1.0)


def test_table_lists_every_row(report):
    table = bench_loader.format_table(report)
    for row in bench_loader.ROWS.values():
        assert row.label in table
    assert "skipped: needs a CUDA device" in table and "vs torchvision" in table


def test_jpeg_set_is_deterministic_mixed_and_reused(data_dir, tmp_path):
    root = bench_loader.make_jpegs(data_dir, count=24)
    files = ga.data.ImageFiles.from_folder(root)
    assert len(files) == 24 and files.classes == sorted(bench_loader.PHOTOS)
    sizes = set()
    for path in files.files:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert all(bench_loader.MIN_SIZE <= side <= bench_loader.MAX_SIZE for side in image.size)
            sizes.add(image.size)
    assert len(sizes) > 12  # mixed sizes
    again = bench_loader.make_jpegs(tmp_path, count=24)
    copies = ga.data.ImageFiles.from_folder(again).files
    assert [p.read_bytes() for p in files.files] == [p.read_bytes() for p in copies]
    assert bench_loader.make_jpegs(data_dir, count=24) == root  # reused, not regenerated


def test_recipes_match():
    steps = [type(t).__name__ for t in bench_loader.gpuaug_pipeline().transforms]
    assert steps == ["RandomResizedCrop", "RandomHorizontalFlip", "RandomApply", "RandomGrayscale", "ToDtype",
                     "Normalize"]
    names = [type(t).__name__ for t in bench_loader.torchvision_transform().transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "RandomApply", "RandomGrayscale", "ToImage",
                     "ToDtype", "Normalize"]


def test_max_seconds_ends_a_slow_row_early():
    def slow():
        while True:
            time.sleep(0.02)
            yield torch.zeros(1)

    calls = []
    assert bench_loader._take(slow(), 3, lambda: calls.append(1), None, 1)[0] == 3
    assert bench_loader._take(slow(), 50, lambda: None, 0.05, 1)[0] < 10
    assert bench_loader._take(slow(), 50, lambda: None, 1e-9, 1)[0] == 1  # at least one batch
    assert bench_loader._take(slow(), 50, lambda: None, 1e-9, 4)[0] == 4  # the whole wave of 4 workers' batches
    assert bench_loader._take(slow(), 3, lambda: None, 1e-9, 4)[0] == 3  # but no more than asked for
    assert bench_loader._take(slow(), 0, lambda: None, None, 1) == (0, None)
    assert len(calls) == 3  # the consumer waits after every batch


def test_cpu_time_counts_live_workers():
    before = bench_loader.process_tree_cpu_seconds()
    with torch.multiprocessing.get_context("fork").Pool(1) as pool:
        pool.apply(sum, (range(3_000_000),))  # CPU time in a live child
        during = bench_loader.process_tree_cpu_seconds()
    assert during - before > 0.01


@pytest.mark.parametrize("change, message", [
    ({"device": "tpu"}, "unknown device"),
    ({"rows": ["nope"]}, "unknown row"),
    ({"workers": -1}, "workers must be at least 0"),
    ({"max_seconds": 0.0}, "max seconds must be positive"),
])
def test_bad_configurations(change, message):
    with pytest.raises(BenchError, match=message):
        bench_loader.validate(bench_loader.LoaderBenchConfig(**{**TINY, **change}))
