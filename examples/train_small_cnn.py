"""Train a small CNN to tell faces from non-faces, with and without gpuaug.

The data ships with scikit-image (in gpuaug's ``dev`` extra; nothing is downloaded): ``skimage.data.lfw_subset()``, 100 face
crops from Labeled Faces in the Wild and 100 background crops from the same photos, 25x25
grayscale. 150 train, 50 test, balanced. Each run trains the same model from the same
initialisation and reports test accuracy and training throughput (images/s, loading included).
The task is easy: all three runs reach about the same test accuracy, so the example shows the API
and the throughput of each way, not what augmentation gains.

- ``none``: plain PyTorch, no augmentation (centre crop and normalise on the device);
- ``torchvision``: torchvision.transforms.v2 per sample in the Dataset (the usual CPU way);
- ``gpuaug``: ga.data.Collate in the DataLoader, then ga.data.DeviceLoader augments each batch on
  the device (the GPU when there is one), with a different crop, flip and jitter per sample.

    python examples/train_small_cnn.py                       # all three, GPU if present
    python examples/train_small_cnn.py --runs gpuaug --epochs 40 --device cpu
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable

import torch
import torchvision.transforms.v2 as T
from skimage.data import lfw_subset
from torch import Tensor, nn
from torch.utils.data import DataLoader

import gpuaug as ga

SIZE, MEAN, STD = 24, (0.5,), (0.25,)


def load_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images, train labels, test images, test labels); images (N, 1, 25, 25) uint8, 1 = face."""
    images = torch.from_numpy(lfw_subset()).mul(255).round().to(torch.uint8)[:, None]
    labels = torch.arange(200) < 100
    test = torch.arange(200) % 4 == 0
    return images[~test], labels[~test].long(), images[test], labels[test].long()


def small_cnn() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 2))


def plain(images: Tensor) -> Tensor:
    """Centre crop and normalise with torch ops: the evaluation input of every run, and the training
    input of the ``none`` run."""
    top = (images.shape[-2] - SIZE) // 2
    left = (images.shape[-1] - SIZE) // 2
    x = images[..., top : top + SIZE, left : left + SIZE].float() / 255
    return (x - MEAN[0]) / STD[0]


class Samples(torch.utils.data.Dataset):
    """(image, label) pairs, each image through ``transform``."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image = self.images[i]
        return (image if self.transform is None else self.transform(image)), int(self.labels[i])


def epoch_loader(run: str, images: Tensor, labels: Tensor, args: argparse.Namespace, device: torch.device
                 ) -> Callable[[int], Iterable[tuple[Tensor, Tensor]]]:
    """For ``run``: a function from the epoch number to that epoch's (inputs, labels) on ``device``."""
    shuffle = torch.Generator().manual_seed(args.seed)
    options = {"batch_size": args.batch_size, "shuffle": True, "drop_last": True, "generator": shuffle,
               "num_workers": args.workers, "pin_memory": device.type == "cuda", "persistent_workers": args.workers > 0}
    if run == "gpuaug":
        pipeline = ga.Pipeline([
            ga.RandomResizedCrop(SIZE, scale=(0.6, 1.0), ratio=(0.85, 1.15)),
            ga.RandomHorizontalFlip(),
            ga.RandomRotation(10),
            ga.ColorJitter(brightness=0.3, contrast=0.3),
            ga.ToDtype(torch.float32, scale=True),
            ga.Normalize(MEAN, STD),
        ], seed=args.seed)
        data = ga.data.WithIndex(Samples(images, labels))
        loader = ga.data.DeviceLoader(DataLoader(data, collate_fn=ga.data.Collate(), **options), pipeline, device)

        def gpuaug_epoch(epoch: int) -> Iterable[tuple[Tensor, Tensor]]:
            loader.set_epoch(epoch)  # a new augmentation of every image each epoch
            return ((batch["images"], batch["labels"]) for batch in loader)

        return gpuaug_epoch
    transform = None if run == "none" else T.Compose([
        T.RandomResizedCrop(SIZE, scale=(0.6, 1.0), ratio=(0.85, 1.15), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomRotation(10),
        T.ColorJitter(brightness=0.3, contrast=0.3),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(MEAN, STD),
    ])
    plain_loader = DataLoader(Samples(images, labels, transform), **options)
    prepare = plain if run == "none" else (lambda x: x)

    def plain_epoch(epoch: int) -> Iterable[tuple[Tensor, Tensor]]:
        return ((prepare(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)) for x, y in plain_loader)

    return plain_epoch


def progress(done: int, total: int, text: str) -> None:
    bar = "#" * (30 * done // total)
    print(f"\r  [{bar:<30}] {done}/{total} {text}", end="" if done < total else "\n", file=sys.stderr, flush=True)


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, device: torch.device) -> float:
    model.eval()
    predictions = model(plain(images.to(device))).argmax(dim=1)
    return float((predictions == labels.to(device)).float().mean())


def train(run: str, data: tuple[Tensor, Tensor, Tensor, Tensor], args: argparse.Namespace, device: torch.device
          ) -> tuple[float, float]:
    """Test accuracy and training images/s of one run."""
    train_images, train_labels, test_images, test_labels = data
    torch.manual_seed(args.seed)
    model = small_cnn().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    batches = epoch_loader(run, train_images, train_labels, args, device)
    seen, start = 0, time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for x, y in batches(epoch):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
        progress(epoch + 1, args.epochs, f"{run}: loss {loss.item():.3f}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    throughput = seen / (time.perf_counter() - start)
    return accuracy(model, test_images, test_labels, device), throughput


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", choices=["none", "torchvision", "gpuaug"], default=["none", "torchvision", "gpuaug"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a model this small gains nothing from more)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    torch.set_num_threads(args.threads)
    data = load_data()
    print(f"LFW faces vs non-faces: {len(data[1])} train, {len(data[3])} test images; device {device}")
    results = {run: train(run, data, args, device) for run in args.runs}
    print(f"{'run':<12} {'test accuracy':>13} {'train images/s':>15}")
    for run, (acc, throughput) in results.items():
        print(f"{run:<12} {acc:>13.3f} {throughput:>15.0f}")


if __name__ == "__main__":
    main()
