"""Encoded images from files, and batch decoding: JPEGs on the GPU with nvJPEG, the rest on the CPU.

Workers only read bytes (:class:`ImageFiles`); ``Collate(decode=False)`` packs a batch's files
into one :class:`EncodedBatch`, which crosses to the main process as one object; :func:`decode_batch`
decodes a collated batch on the CPU (in ``Collate``) or on the GPU (in ``DeviceLoader``), and packs
it into a stacked or ragged batch. A file that does not decode raises a ValueError naming it, or, with
``on_error="skip"``, is dropped from the batch (with its label and id) with a warning.

Example:
    >>> import torch, gpuaug as ga
    >>> from torchvision.io import encode_png
    >>> images = [torch.zeros(3, 4, 6, dtype=torch.uint8), torch.zeros(3, 5, 2, dtype=torch.uint8)]
    >>> batch = ga.data.decode_batch({"images": [encode_png(x) for x in images], "labels": torch.tensor([0, 1])})
    >>> batch["images"].sizes.tolist(), batch["labels"].tolist()
    ([[4, 6], [5, 2]], [0, 1])
"""

from __future__ import annotations

import itertools
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2.functional import to_dtype

from .ragged import image_fields

__all__ = ["ImageFiles", "EncodedBatch", "decode_images", "decode_batch", "is_encoded"]

OnError = Literal["raise", "skip"]
_JPEG_MAGIC = (0xFF, 0xD8, 0xFF)


class ImageFiles(Dataset):
    """A dataset of image files that yields their bytes, undecoded.

    Sample ``i`` is ``{"image": data, "label": labels[i], "path": str(files[i])}`` (no "label"
    when ``labels`` is None), ``data`` a 1-D uint8 tensor of the file's bytes.
    :meth:`from_folder` labels files by their class folder, as torchvision's ImageFolder does.

    Example:
        >>> import tempfile, torch, gpuaug as ga
        >>> from pathlib import Path
        >>> from torchvision.io import write_png
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     _ = write_png(torch.zeros(3, 4, 4, dtype=torch.uint8), str(root / name / "a.png"))
        >>> files = ga.data.ImageFiles.from_folder(root)
        >>> files.classes, len(files), files[1]["label"]
        (['cat', 'dog'], 2, 1)
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]], labels: Sequence[int] | None = None) -> None:
        self.files = [Path(f) for f in files]
        if labels is not None and len(labels) != len(self.files):
            raise ValueError(f"got {len(labels)} labels for {len(self.files)} files")
        self.labels = None if labels is None else [int(label) for label in labels]
        self.classes: list[str] = []

    @classmethod
    def from_folder(
        cls, root: str | os.PathLike[str], extensions: Sequence[str] = (".jpg", ".jpeg", ".png", ".webp")
    ) -> ImageFiles:
        """Every file under ``root/<class>/`` with one of ``extensions`` (with or without the dot; by
        default .jpg, .jpeg, .png and .webp: ImageFolder's that torchvision's decoders read, not its
        .bmp, .ppm, .pgm, .tif), labelled by its class's index in the sorted class names."""
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{root} is not a directory")
        suffixes = {"." + e.lower().lstrip(".") for e in extensions}
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        files, labels = [], []
        for label, name in enumerate(classes):
            found = sorted(Path(folder) / f for folder, _, names in os.walk(root / name, followlinks=True)
                           for f in names if Path(f).suffix.lower() in suffixes)  # (as ImageFolder: into links)
            files += found
            labels += [label] * len(found)
        if not files:
            raise ValueError(f"no {'/'.join(sorted(suffixes))} files in class folders under {root}")
        dataset = cls(files, labels)
        dataset.classes = classes
        return dataset

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.files[i]
        data = path.read_bytes()  # frombuffer refuses an empty file: that one fails to decode, named
        image = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        sample: dict[str, Any] = {"image": image}
        if self.labels is not None:
            sample["label"] = self.labels[i]
        sample["path"] = str(path)
        return sample


def is_encoded(image: object) -> bool:
    """Whether ``image`` is an encoded image (a 1-D uint8 tensor of file bytes)."""
    return isinstance(image, Tensor) and image.ndim == 1 and image.dtype == torch.uint8


@dataclass(frozen=True, eq=False)
class EncodedBatch:
    """The encoded images (file bytes) of a batch in one tensor.

    ``data`` is the 1-D uint8 concatenation of the files' bytes and ``offsets`` the (B + 1,) int64
    CPU tensor of where each starts, then where the last ends: image ``i`` is
    ``data[offsets[i]:offsets[i + 1]]``, a view. Indexing and iteration give these views.
    A DataLoader worker hands it to the main process as two tensors (not one per file), and
    ``pin_memory=True`` pins ``data`` as one tensor.

    Example:
        >>> import torch, gpuaug as ga
        >>> batch = ga.data.EncodedBatch.pack([torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4], dtype=torch.uint8)])
        >>> len(batch), batch.offsets.tolist(), [x.tolist() for x in batch]
        (2, [0, 3, 4], [[1, 2, 3], [4]])
    """

    data: Tensor
    offsets: Tensor

    def __post_init__(self) -> None:
        if not is_encoded(self.data):
            raise TypeError(f"EncodedBatch.data must be a 1-D uint8 tensor, got {self.data!r:.80}")
        offsets = self.offsets
        if not isinstance(offsets, Tensor) or offsets.dtype != torch.int64 or offsets.device.type != "cpu":
            raise TypeError(f"EncodedBatch.offsets must be an int64 CPU tensor, got {offsets!r:.80}")
        if offsets.ndim != 1 or len(offsets) < 2:
            raise ValueError(f"EncodedBatch.offsets must have shape (B + 1,) with B >= 1, got {tuple(offsets.shape)}")
        if offsets[0] != 0 or offsets[-1] != len(self.data) or (offsets[1:] < offsets[:-1]).any():
            raise ValueError(
                f"EncodedBatch.offsets must rise from 0 to len(data) = {len(self.data)}, got {offsets.tolist()}"
            )

    @classmethod
    def pack(cls, images: Sequence[Tensor]) -> EncodedBatch:
        """Copy encoded images (1-D uint8 tensors of file bytes) into one batch."""
        if not images:
            raise ValueError("an EncodedBatch needs at least one image")
        for i, image in enumerate(images):
            if not is_encoded(image):
                raise TypeError(f"image {i}: encoded images must be 1-D uint8 tensors of file bytes, got {image!r:.80}")
        lengths = torch.tensor([0, *(len(image) for image in images)], dtype=torch.int64)
        return cls(torch.cat(list(images)), lengths.cumsum(0))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Tensor:
        """The bytes of image ``i`` (a view of ``data``)."""
        if not isinstance(i, int):
            raise TypeError(f"EncodedBatch indices must be ints, got {type(i).__name__}")
        i = range(len(self))[i]
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def __iter__(self) -> Iterator[Tensor]:
        bounds = self.offsets.tolist()
        return (self.data[start:end] for start, end in itertools.pairwise(bounds))

    def pin_memory(self) -> EncodedBatch:
        """The batch with ``data`` in pinned memory (what DataLoader's ``pin_memory=True`` calls)."""
        return EncodedBatch(self.data.pin_memory(), self.offsets)


def _reason(error: Exception) -> str:
    """torchvision's message without its C++ source location prefix."""
    return re.sub(r"^[^,\s]+, \S+:\d+, ", "", str(error)).strip()


def _decode_one(data: Tensor, mode: ImageReadMode, device: torch.device, on_gpu: bool) -> Tensor:
    if on_gpu:
        try:
            return decode_jpeg(data, mode=mode, device=device)
        except RuntimeError:
            pass  # not every JPEG suits nvJPEG: the CPU decoder decides
    image = decode_image(data, mode=mode)
    if image.ndim == 4:  # an animated GIF: its first frame, as PIL (and torchvision's ImageFolder) read it
        image = image[0]
    if image.dtype != torch.uint8:  # a 16-bit PNG: scaled as torchvision's to_dtype scales
        image = to_dtype(image, torch.uint8, scale=True)
    return image.to(device)


def decode_images(
    data: Sequence[Tensor] | EncodedBatch,
    *,
    device: torch.device | str = "cpu",
    names: Sequence[str] | None = None,
    on_error: OnError = "raise",
    mode: ImageReadMode = ImageReadMode.RGB,
) -> tuple[list[Tensor], list[int]]:
    """Decode encoded images (a list of 1-D uint8 tensors, or an :class:`EncodedBatch`) to (C, H, W)
    uint8 tensors on ``device`` (16-bit PNGs scaled to 8 bits, an animated GIF's first frame).

    On a CUDA device JPEGs are decoded together with ``torchvision.io.decode_jpeg(device=...)``;
    everything else (everything on the CPU, and a JPEG that nvJPEG refuses) with
    ``torchvision.io.decode_image``. Returns the images and the indices in ``data`` they came
    from: every index unless ``on_error="skip"`` dropped some. ``names`` (file paths) name the
    failures in errors and warnings.

    Example:
        >>> import torch
        >>> from torchvision.io import encode_jpeg
        >>> bad = torch.tensor(list(b"not an image"), dtype=torch.uint8)
        >>> images, kept = decode_images([encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8)), bad], on_error="skip")
        >>> [tuple(x.shape) for x in images], kept
        ([(3, 8, 8)], [0])
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    device = torch.device(device)
    data = list(data)
    names = [f"image {i}" for i in range(len(data))] if names is None else list(names)
    if len(names) != len(data):
        raise ValueError(f"got {len(names)} names for {len(data)} images")
    for i, item in enumerate(data):
        if not is_encoded(item):
            raise TypeError(f"{names[i]}: encoded images must be 1-D uint8 tensors of file bytes, got {item!r:.80}")
    jpegs = [i for i, item in enumerate(data) if tuple(item[:3].tolist()) == _JPEG_MAGIC] if device.type == "cuda" else []
    decoded: dict[int, Tensor] = {}
    if len(jpegs) > 1:
        try:
            decoded.update(zip(jpegs, decode_jpeg([data[i].cpu() for i in jpegs], mode=mode, device=device)))
        except RuntimeError:
            pass  # some file does not suit nvJPEG: decoded one by one below
    failures: dict[int, str] = {}
    for i in range(len(data)):
        if i not in decoded:
            try:
                decoded[i] = _decode_one(data[i].cpu(), mode, device, on_gpu=i in jpegs)
            except RuntimeError as error:
                failures[i] = _reason(error)
    if failures:
        message = "; ".join(f"cannot decode {names[i]}: {reason}" for i, reason in sorted(failures.items()))
        if on_error == "raise":
            raise ValueError(message)
        warnings.warn(f"skipping {len(failures)} image(s): {message}", stacklevel=2)
    kept = sorted(decoded)
    return [decoded[i] for i in kept], kept


def _select(value: Any, kept: list[int], size: int) -> Any:
    """The samples ``kept`` of one batch field (tensors and lists along their first dimension)."""
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == size:
        return value[torch.tensor(kept, device=value.device, dtype=torch.int64)]
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields") and len(value) == size:  # (not a namedtuple)
        return type(value)(value[i] for i in kept)
    if isinstance(value, dict):
        return {k: _select(v, kept, size) for k, v in value.items()}
    return value


def _is_field(value: Any, size: int) -> bool:
    """Whether ``value`` is what torch's default_collate makes of one field of ``size`` samples: a
    (size, ...) tensor, a list of ``size`` strings, or a dict or sequence of such fields."""
    if isinstance(value, Tensor):
        return value.ndim > 0 and value.shape[0] == size
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, bytes)) for v in value):
        return len(value) == size
    return isinstance(value, dict) or _is_fields(value, size)


def _is_fields(value: Any, size: int) -> bool:
    """Whether ``value`` is default_collate's list of a sample sequence's fields (not a list of samples)."""
    return isinstance(value, (list, tuple)) and bool(value) and all(_is_field(v, size) for v in value) \
        and not all(isinstance(v, (str, bytes)) for v in value)


def _select_collated(value: Any, kept: list[int], size: int) -> Any:
    """The samples ``kept`` of the samples' labels as torch's default_collate collates them (a sample's
    tuple of fields becomes a list of collated fields, a dict a dict of them); any other list or
    tensor along its first dimension."""
    if isinstance(value, dict):
        return {k: _select_collated(v, kept, size) for k, v in value.items()}
    if _is_fields(value, size):
        fields = (_select_collated(v, kept, size) for v in value)
        return type(value)(*fields) if hasattr(value, "_fields") else type(value)(fields)  # namedtuples too
    return _select(value, kept, size)


def decode_batch(
    batch: dict[str, Any],
    *,
    device: torch.device | str = "cpu",
    on_error: OnError = "raise",
    mode: ImageReadMode = ImageReadMode.RGB,
) -> dict[str, Any]:
    """A copy of ``batch`` whose ``images`` (an :class:`EncodedBatch` or a list of encoded images) are
    decoded on ``device``.

    Images of one size are stacked into (B, C, H, W); differently sized ones are packed into a
    :class:`~gpuaug.data.RaggedBatch` and their sizes put under ``"sizes"``. ``batch["path"]``,
    when present, names the failures. With ``on_error="skip"`` the samples that fail are dropped
    from every field (``"labels"`` as torch's default_collate collates them, every other list or
    tensor along its first dimension); a batch with none left raises a ValueError.

    Example:
        >>> import torch, gpuaug as ga
        >>> from torchvision.io import encode_png
        >>> files = [encode_png(torch.zeros(3, 4, 6, dtype=torch.uint8)), encode_png(torch.ones(3, 4, 6, dtype=torch.uint8))]
        >>> decoded = ga.data.decode_batch({"images": files, "labels": torch.tensor([0, 1])})
        >>> decoded["images"].shape, decoded["labels"].tolist()
        (torch.Size([2, 3, 4, 6]), [0, 1])
    """
    data, names = list(batch["images"]), batch.get("path")
    images, kept = decode_images(data, device=device, names=names, on_error=on_error, mode=mode)
    if not images:
        raise ValueError(f"no image of the batch could be decoded: {names or len(data)}")
    out = dict(batch)
    if len(kept) < len(data):
        out = {k: (_select_collated if k == "labels" else _select)(v, kept, len(data)) for k, v in batch.items()}
    out.update(image_fields(images))
    return out
