"""examples/train_small_cnn.py runs end to end on the data that ships with scikit-image."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).parents[1] / "examples" / "train_small_cnn.py"


def test_train_small_cnn_runs_and_reports(capsys):
    pytest.importorskip("skimage")
    spec = importlib.util.spec_from_file_location("train_small_cnn", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        module.main(["--epochs", "2", "--device", "cpu", "--runs", "none", "torchvision", "gpuaug"])
    finally:
        torch.set_num_threads(threads)  # the example sets it for its process
    out = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1:] for line in out.out.splitlines()[-3:]}
    assert set(rows) == {"none", "torchvision", "gpuaug"}
    for accuracy, throughput in rows.values():
        assert 0.0 <= float(accuracy) <= 1.0 and float(throughput) > 0
    assert "2/2 gpuaug" in out.err  # the progress bar
