"""Under torchrun (2 ranks, gloo, CPU) with DistributedSampler and DataLoader workers, every sample
gets the augmentation it gets in one process without workers: keyed by dataset index and epoch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from _data_helpers import dataset, pipeline, reference
from torch.utils.data import DataLoader

import gpuaug as ga

HERE = Path(__file__).parent
SIZE, EPOCHS = 16, 2  # as in ddp_check.py


def _single_process() -> dict[tuple[int, int], torch.Tensor]:
    """World size 1, no workers, another batch size."""
    pipe = pipeline()
    loader = ga.data.DeviceLoader(DataLoader(dataset(SIZE, ragged=True), batch_size=5, collate_fn=ga.data.Collate(pipe)), device="cpu")
    seen = {}
    for epoch in range(EPOCHS):
        loader.set_epoch(epoch)
        seen.update({(epoch, int(i)): x for batch in loader for i, x in zip(batch["sample_ids"], batch["images"])})
    return seen


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch.distributed has no gloo backend here")
def test_torchrun_two_ranks_augment_each_sample_as_one_process(tmp_path):
    out = tmp_path / "seen.pt"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(HERE / "ddp_check.py"), str(out), "1", "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seen = torch.load(out, weights_only=False)

    keys = [(epoch, i) for epoch, i, _ in seen]
    assert sorted(keys) == [(e, i) for e in range(EPOCHS) for i in range(SIZE)], "a sample was lost or duplicated"
    single = _single_process()
    pipe = pipeline()
    for epoch, i, x in seen:
        assert torch.equal(x, single[(epoch, i)]), (epoch, i)
        assert torch.equal(x, reference(pipe, i, epoch, ragged=True)), (epoch, i)
    first = {i: x for e, i, x in seen if e == 0}
    assert any(not torch.equal(x, single[(1, i)]) for i, x in first.items()), "epoch 1 repeated epoch 0"
