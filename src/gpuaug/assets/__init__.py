"""Sample photos shipped with the package (see README.md here for their source and licence)."""

from importlib import resources

import torch
from torchvision.io import ImageReadMode, decode_image

SAMPLE_NAMES = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg")


def load_samples() -> list[torch.Tensor]:
    """Decode the bundled sample photos as RGB uint8 (3, H, W) tensors; works from an installed wheel."""
    folder = resources.files(__name__)
    return [
        decode_image(torch.frombuffer(bytearray((folder / name).read_bytes()), dtype=torch.uint8),
                     mode=ImageReadMode.RGB)
        for name in SAMPLE_NAMES
    ]
