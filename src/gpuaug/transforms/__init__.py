"""User-facing transforms with torchvision.transforms.v2's names, arguments and defaults."""

from ._base import GeometricTransform, ImageSpec, PixelTransform, Transform
from ._color import (
    ColorJitter,
    Grayscale,
    RandomAutocontrast,
    RandomEqualize,
    RandomGrayscale,
    RandomInvert,
    RandomPosterize,
    RandomSolarize,
)
from ._container import Compose, RandomApply, RandomChoice, RandomOrder
from ._dtype import Normalize, ToDtype
from ._geometry import (
    CenterCrop,
    Pad,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    RandomPerspective,
    RandomResizedCrop,
    RandomRotation,
    RandomVerticalFlip,
    Resize,
)
from ._misc import GaussianBlur, GaussianNoise, RandomAdjustSharpness, RandomErasing

__all__ = [
    "Transform", "GeometricTransform", "PixelTransform", "ImageSpec",
    "RandomResizedCrop", "RandomCrop", "CenterCrop", "Resize", "Pad",
    "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation", "RandomAffine", "RandomPerspective",
    "ColorJitter", "RandomGrayscale", "Grayscale", "RandomInvert", "RandomSolarize", "RandomPosterize",
    "RandomAdjustSharpness", "RandomAutocontrast", "RandomEqualize",
    "GaussianBlur", "GaussianNoise", "RandomErasing",
    "Normalize", "ToDtype",
    "Compose", "RandomApply", "RandomChoice", "RandomOrder",
]
