"""Run by tests/test_ddp.py under torchrun (gloo, CPU): every rank loads its DistributedSampler
shard through Collate(pipeline) in DataLoader workers for two epochs; rank 0 saves what every
rank saw, as a list of (epoch, sample id, augmented image), to the path given as argv[1].

Usage: torchrun --nproc_per_node=2 tests/ddp_check.py OUT WORKERS BATCH_SIZE
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from _data_helpers import dataset, pipeline
from torch.utils.data import DataLoader, DistributedSampler

import gpuaug as ga

SIZE, EPOCHS = 16, 2


def main(out: str, workers: int, batch_size: int) -> None:
    dist.init_process_group("gloo")
    data = dataset(SIZE, ragged=True)
    sampler = DistributedSampler(data, shuffle=True, seed=3)
    loader = DataLoader(
        data, batch_size=batch_size, sampler=sampler, num_workers=workers,
        persistent_workers=workers > 0, collate_fn=ga.data.Collate(pipeline()),
    )
    device_loader = ga.data.DeviceLoader(loader, device="cpu")
    seen = []
    for epoch in range(EPOCHS):
        device_loader.set_epoch(epoch)  # the sampler's shuffle and the workers' Collate
        for batch in device_loader:
            seen += [(epoch, int(i), x) for i, x in zip(batch["sample_ids"], batch["images"])]
    gathered: list[list | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, seen)
    if dist.get_rank() == 0:
        torch.save([item for part in gathered for item in part], out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
