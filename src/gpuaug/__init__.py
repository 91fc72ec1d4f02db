"""gpuaug: batched, per-sample, fused image augmentation for PyTorch, on GPU and CPU.

Example:
    >>> import torch, gpuaug as ga
    >>> pipe = ga.Pipeline([ga.RandomResizedCrop(32), ga.RandomHorizontalFlip()], seed=0)
    >>> pipe(torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8)).shape
    torch.Size([4, 3, 32, 32])
"""

from ._ext import available_backends
from .params import BatchParams, Params, register_params
from .pipeline import Pipeline
from .graph import CapturedPipeline, capture
from .targets import Batch, TargetOptions
from .transforms import *  # noqa: F403
from .transforms import __all__ as _transforms
from .mix import CutMix, MixChoice, MixParams, MixUp
from . import data
from .data import RaggedBatch

__version__ = "0.1.0"

__all__ = ["Pipeline", "Batch", "TargetOptions", "BatchParams", "Params", "register_params", "available_backends", "__version__", *_transforms]
__all__ += ["data", "RaggedBatch", "MixUp", "CutMix", "MixChoice", "MixParams", "capture", "CapturedPipeline"]
