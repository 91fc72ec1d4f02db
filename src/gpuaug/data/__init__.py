"""DataLoader integration: collate (and augment) in workers, prefetch and augment on the device,
ragged batches, and decoding from files.

Example:
    >>> import torch, gpuaug as ga
    >>> from torch.utils.data import DataLoader
    >>> data = ga.data.WithIndex([(torch.zeros(3, 16, 16, dtype=torch.uint8), 0)] * 4)
    >>> loader = DataLoader(data, batch_size=2, collate_fn=ga.data.Collate())
    >>> pipe = ga.Pipeline([ga.RandomResizedCrop(8)], seed=0)
    >>> [batch["sample_ids"].tolist() for batch in ga.data.DeviceLoader(loader, pipe, device="cpu")]
    [[0, 1], [2, 3]]
"""

from .collate import Collate, WithIndex, augment_batch
from .decode import EncodedBatch, ImageFiles, decode_batch, decode_images
from .loader import DeviceLoader
from .ragged import RaggedBatch

__all__ = [
    "Collate", "WithIndex", "DeviceLoader", "RaggedBatch",
    "ImageFiles", "EncodedBatch", "decode_images", "decode_batch", "augment_batch",
]
