"""RaggedBatch: differently sized images packed into one zero-padded batch with per-sample sizes.

A Pipeline takes one directly when its first transform gives every sample the same size
(RandomResizedCrop, RandomCrop, CenterCrop, Resize to a fixed size): each sample goes from its own
size to the output size in the same pass.

Example:
    >>> import torch, gpuaug as ga
    >>> batch = ga.RaggedBatch.pack([torch.ones(3, 4, 6, dtype=torch.uint8), torch.ones(3, 5, 2, dtype=torch.uint8)])
    >>> batch.images.shape, batch.sizes.tolist()
    (torch.Size([2, 3, 5, 6]), [[4, 6], [5, 2]])
    >>> [tuple(image.shape) for image in batch.unpack()]
    [(3, 4, 6), (3, 5, 2)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["RaggedBatch", "check_compatible"]


@dataclass
class RaggedBatch:
    """Images of different sizes in one padded tensor.

    ``images`` is (B, C, H_max, W_max); sample ``i`` is ``images[i, :, :h, :w]`` with
    ``(h, w) = sizes[i]`` and zeros to its right and below. ``sizes`` is (B, 2) int64 and stays on
    the CPU when the images move: size checks and grouping by size read it without waiting for the
    device. DataLoader's ``pin_memory=True`` pins both.

    Example:
        >>> import torch, gpuaug as ga
        >>> batch = ga.RaggedBatch.pack([torch.ones(3, 4, 6), torch.ones(3, 5, 2)])
        >>> batch.images.shape, batch.sizes.tolist()
        (torch.Size([2, 3, 5, 6]), [[4, 6], [5, 2]])
        >>> ga.Pipeline([ga.RandomResizedCrop(3)], seed=0)(batch, sample_ids=torch.arange(2)).shape
        torch.Size([2, 3, 3, 3])
    """

    images: Tensor
    sizes: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.ndim != 4:
            raise ValueError(f"RaggedBatch.images must be a (B, C, H, W) tensor, got {self.images!r:.80}")
        if not isinstance(self.sizes, Tensor) or self.sizes.shape != (self.images.shape[0], 2):
            raise ValueError(f"RaggedBatch.sizes must be a ({self.images.shape[0]}, 2) tensor, got {self.sizes!r:.80}")
        self.sizes = self.sizes.to("cpu", torch.int64)
        heights, widths = self.sizes.unbind(1)
        if len(self) and (heights.min() < 1 or widths.min() < 1 or heights.max() > self.images.shape[2]
                          or widths.max() > self.images.shape[3]):
            raise ValueError(f"RaggedBatch.sizes must lie in [1, {tuple(self.images.shape[2:])}], got {self.sizes.tolist()}")

    @classmethod
    def pack(cls, images: Sequence[Tensor]) -> RaggedBatch:
        """Copy (C, H, W) tensors of one dtype, device and channel count into a padded batch."""
        check_compatible(images)
        sizes = torch.tensor([tuple(image.shape[1:]) for image in images], dtype=torch.int64)
        height, width = (int(v) for v in sizes.max(dim=0).values)
        first = images[0]
        out = torch.zeros(len(images), first.shape[0], height, width, dtype=first.dtype, device=first.device)
        for i, image in enumerate(images):
            out[i, :, : image.shape[1], : image.shape[2]] = image
        return cls(out, sizes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> torch.Size:
        """The padded batch's shape (B, C, H_max, W_max)."""
        return self.images.shape

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self) -> torch.dtype:
        return self.images.dtype

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __getitem__(self, i: int) -> Tensor:
        """The (C, h, w) view of sample ``i``."""
        h, w = (int(v) for v in self.sizes[i])
        return self.images[i, :, :h, :w]

    def unpack(self) -> list[Tensor]:
        """Every sample as a (C, h, w) view."""
        return [self[i] for i in range(len(self))]

    def groups(self) -> list[tuple[tuple[int, int], Tensor]]:
        """((h, w), indices) for each distinct size, in order of first appearance."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (h, w) in enumerate(self.sizes.tolist()):
            groups.setdefault((h, w), []).append(i)
        return [(size, torch.tensor(index)) for size, index in groups.items()]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> RaggedBatch:
        """The batch with ``images`` on ``device`` (``sizes`` stay on the CPU)."""
        return RaggedBatch(self.images.to(device, non_blocking=non_blocking), self.sizes)

    def pin_memory(self) -> RaggedBatch:
        """The batch in pinned memory (what DataLoader's ``pin_memory=True`` calls); ``sizes`` too, so
        that a pipeline's copy of them to the device does not stall the host."""
        return RaggedBatch(self.images.pin_memory(), self.sizes.pin_memory())


def check_compatible(images: Sequence[Tensor]) -> None:
    """A clear error unless ``images`` are (C, H, W) tensors of one dtype, device and channel count."""
    if not images:
        raise ValueError("a batch needs at least one image")
    first = images[0]
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or image.ndim != 3:
            raise ValueError(f"image {i} must be a (C, H, W) tensor, got {image!r:.80}")
        if (image.dtype, image.device, image.shape[0]) != (first.dtype, first.device, first.shape[0]):
            raise ValueError(
                f"images must share dtype, device and channels: image 0 is {first.dtype} on {first.device} with "
                f"{first.shape[0]} channels, image {i} is {image.dtype} on {image.device} with {image.shape[0]}"
                + (" (grayscale or RGBA images among RGB ones: convert PIL images with .convert('RGB'))"
                   if image.shape[0] != first.shape[0] else "")
            )
