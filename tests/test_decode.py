"""Decoding: ImageFiles yields file bytes; Collate decodes them on the CPU (in workers), or packs
them into an EncodedBatch that DeviceLoader decodes on its device; PNG round trips exactly and JPEG
as torchvision decodes it (nvJPEG about as close to the original as libjpeg); a file that does not
decode raises an error naming it, or is skipped with a warning and its label and id."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image
from _data_helpers import image
from torch.utils.data import DataLoader
from torchvision.io import (
    ImageReadMode,
    decode_image,
    encode_jpeg,
    encode_png,
    read_file,
    write_jpeg,
    write_png,
)
from torchvision.transforms.v2.functional import to_dtype

import gpuaug as ga

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def _smooth() -> torch.Tensor:
    """A (3, 12, 12) gradient: JPEG keeps it close."""
    ramp = torch.linspace(0, 240, 12)
    return torch.stack([ramp[None, :].expand(12, 12), ramp[:, None].expand(12, 12), 240 - ramp[None, :].expand(12, 12)]).to(torch.uint8)


@pytest.fixture
def folder(tmp_path):
    """Two classes of PNGs of three sizes, plus a JPEG and a file that is not an image."""
    for i in range(6):
        cls = tmp_path / ("cat" if i % 2 else "dog")
        cls.mkdir(exist_ok=True)
        write_png(image(i, ragged=True), str(cls / f"{i}.png"))
    write_jpeg(_smooth(), str(tmp_path / "cat" / "6.jpg"), quality=95)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    return tmp_path


def _index(path: str) -> int:
    return int(path.rsplit("/", 1)[1].split(".")[0])


def test_image_files_from_folder_labels_by_class(folder):
    files = ga.data.ImageFiles.from_folder(folder)
    assert files.classes == ["cat", "dog"]
    assert [(_index(str(f)), label) for f, label in zip(files.files, files.labels)] == [
        (1, 0), (3, 0), (5, 0), (6, 0), (0, 1), (2, 1), (4, 1)]
    sample = files[0]
    assert set(sample) == {"image", "label", "path"} and sample["image"].dtype == torch.uint8 and sample["image"].ndim == 1
    assert bytes(sample["image"].numpy()) == (folder / "cat" / "1.png").read_bytes()
    # extensions with or without the dot, any case
    assert [_index(str(f)) for f in ga.data.ImageFiles.from_folder(folder, extensions=("JPG",)).files] == [6]
    assert len(ga.data.ImageFiles.from_folder(folder, extensions=("png", ".Png")).files) == 6


def test_image_files_from_folder_follows_linked_folders_as_image_folder_does(folder, tmp_path):
    from torchvision.datasets import ImageFolder

    root = tmp_path / "root"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "more").symlink_to(folder / "dog", target_is_directory=True)
    (root / "cat" / "1.png").write_bytes((folder / "cat" / "1.png").read_bytes())
    files = ga.data.ImageFiles.from_folder(root)
    assert sorted(map(str, files.files)) == sorted(path for path, _ in ImageFolder(str(root)).samples)
    assert len(files.files) == 4


@pytest.mark.parametrize("workers", [0, 2])
def test_png_round_trip_through_collate_in_workers(folder, workers):
    files = ga.data.WithIndex(ga.data.ImageFiles.from_folder(folder))
    loader = DataLoader(files, batch_size=3, num_workers=workers, collate_fn=ga.data.Collate())
    batches = list(loader)
    assert [int(i) for b in batches for i in b["sample_ids"]] == list(range(7))
    for batch in batches:
        images = batch["images"].unpack() if isinstance(batch["images"], ga.RaggedBatch) else list(batch["images"])
        assert len(batch["path"]) == len(images) == len(batch["labels"])
        for x, path in zip(images, batch["path"]):
            i = _index(path)
            if path.endswith(".png"):
                assert torch.equal(x, image(i, ragged=True)), path
            else:  # as torchvision decodes the file, and close to what was encoded
                assert torch.equal(x, decode_image(path))
                assert (x.float() - _smooth().float()).abs().mean() < 3


def test_decode_images_gray_mode_and_names():
    data = [encode_jpeg(image(0))]
    images, kept = ga.data.decode_images(data, mode=ImageReadMode.GRAY)
    assert images[0].shape == (1, 12, 12) and kept == [0]
    with pytest.raises(ValueError, match="2 names for 1 images"):
        ga.data.decode_images(data, names=["a", "b"])
    with pytest.raises(TypeError, match="1-D uint8"):
        ga.data.decode_images([image(0)])


def test_non_image_file_raises_an_error_naming_it(folder):
    files = ga.data.ImageFiles.from_folder(folder, extensions=(".png", ".txt"))
    bad = str(folder / "dog" / "notes.txt")
    with pytest.raises(ValueError, match=f"cannot decode {bad}: Unsupported image file"):
        ga.data.Collate()([files[i] for i in range(len(files))])


@pytest.mark.parametrize("encode", [encode_jpeg, encode_png])
def test_truncated_file_raises_an_error_naming_it(tmp_path, encode):
    path = tmp_path / f"broken.{encode.__name__[7:]}"
    path.write_bytes(encode(image(0)).numpy().tobytes()[:60])
    with pytest.raises(ValueError, match=f"cannot decode {path}: ") as error:
        ga.data.Collate()([ga.data.ImageFiles([path], [0])[0]])
    assert ".cpp:" not in str(error.value), "torchvision's C++ source location was left in the message"


def test_skip_drops_the_sample_its_label_and_id_with_a_warning(folder):
    files = ga.data.WithIndex(ga.data.ImageFiles.from_folder(folder, extensions=(".png", ".jpg", ".txt")))
    bad = [i for i in range(len(files)) if files[i]["path"].endswith(".txt")]
    with pytest.warns(UserWarning, match="notes.txt"):
        batch = ga.data.Collate(on_error="skip")([files[i] for i in range(len(files))])
    kept = [i for i in range(len(files)) if i not in bad]
    assert batch["sample_ids"].tolist() == kept
    assert batch["labels"].tolist() == [files[i]["label"] for i in kept]
    assert batch["path"] == [files[i]["path"] for i in kept]
    assert len(batch["images"]) == len(kept)


def test_skip_drops_every_field_of_structured_labels(folder):
    """Tuple labels collate into a list of per-field tensors, a dict into a dict of them: a skipped
    file's sample leaves each field (it once left a list of fields unfiltered, or cut it as samples)."""
    files = ga.data.ImageFiles.from_folder(folder, extensions=(".png", ".txt"))
    samples = [files[i] for i in range(len(files))]
    bad = [i for i, sample in enumerate(samples) if sample["path"].endswith(".txt")]
    kept = [i for i in range(len(samples)) if i not in bad]
    for form in (lambda i: (i, 10 + i), lambda i: {"c": i, "a": (10 + i, str(i))}):
        batch = [{**sample, "label": form(i)} for i, sample in enumerate(samples)]
        for size in (len(batch), 2):  # two fields in a batch of two: a list of fields as long as the batch
            part = batch[bad[0] - size + 1 : bad[0] + 1] if size == 2 else batch
            left = [i for i in kept if any(s["path"] == samples[i]["path"] for s in part)]
            with pytest.warns(UserWarning, match="notes.txt"):
                labels = ga.data.Collate(on_error="skip")(part)["labels"]
            expected = torch.utils.data.default_collate([form(i) for i in left])
            assert repr(labels) == repr(expected), (size, labels, expected)


def test_empty_file_is_skipped_or_named(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    write_png(image(0), str(tmp_path / "fine.png"))
    files = ga.data.ImageFiles([tmp_path / "empty.png", tmp_path / "fine.png"], [0, 1])
    assert files[0]["image"].shape == (0,)
    with pytest.raises(ValueError, match="empty.png"):
        ga.data.Collate()([files[0], files[1]])
    with pytest.warns(UserWarning, match="empty.png"):
        assert ga.data.Collate(on_error="skip")([files[0], files[1]])["labels"].tolist() == [1]


def test_sixteen_bit_png_decodes_to_uint8_as_torchvision_scales_it(tmp_path):
    wide = (torch.arange(48, dtype=torch.int32).view(6, 8) * 1300).numpy().astype("uint16")
    Image.fromarray(wide).save(tmp_path / "wide.png")  # 16-bit grayscale
    data = read_file(str(tmp_path / "wide.png"))
    images, _ = ga.data.decode_images([data, encode_png(image(0)[:, :6, :8])])
    reference = decode_image(data, mode=ImageReadMode.RGB)
    assert reference.dtype == torch.uint16, "the file must be a 16-bit PNG"
    assert images[0].dtype == torch.uint8 and torch.equal(images[0], to_dtype(reference, torch.uint8, scale=True))
    assert ga.data.decode_batch({"images": [data, data]})["images"].dtype == torch.uint8


def test_skip_with_nothing_left_raises():
    files = [{"image": torch.tensor(list(b"text"), dtype=torch.uint8), "path": "a.txt"}]
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no image of the batch"):
        ga.data.Collate(on_error="skip")(files)


def test_collate_packs_the_files_bytes_into_one_encoded_batch(folder):
    """Collate(decode=False) in workers: one EncodedBatch per batch, each sample's bytes those of its
    file; DeviceLoader decodes it as torchvision decodes the files."""
    files = ga.data.WithIndex(ga.data.ImageFiles.from_folder(folder))
    loader = DataLoader(files, batch_size=3, num_workers=2, collate_fn=ga.data.Collate(decode=False))
    batches = list(loader)
    assert [int(i) for b in batches for i in b["sample_ids"]] == list(range(len(files)))
    for batch in batches:
        assert isinstance(batch["images"], ga.data.EncodedBatch) and len(batch["images"]) == len(batch["path"])
        assert [bytes(x.numpy()) for x in batch["images"]] == [Path(path).read_bytes() for path in batch["path"]]
    for batch in ga.data.DeviceLoader(loader, device="cpu"):
        images = batch["images"].unpack() if isinstance(batch["images"], ga.RaggedBatch) else list(batch["images"])
        assert len(images) == len(batch["path"])
        assert all(torch.equal(x, decode_image(path)) for x, path in zip(images, batch["path"]))


def test_decode_images_takes_an_encoded_batch_or_a_list(folder):
    files = ga.data.ImageFiles.from_folder(folder)
    data = [files[i]["image"] for i in range(len(files))]
    from_list, kept = ga.data.decode_images(data)
    from_batch, kept_from_batch = ga.data.decode_images(ga.data.EncodedBatch.pack(data))
    assert kept == kept_from_batch == list(range(len(files)))
    assert all(torch.equal(x, y) for x, y in zip(from_list, from_batch))


def test_device_loader_skips_files_of_an_encoded_batch(folder):
    files = ga.data.WithIndex(ga.data.ImageFiles.from_folder(folder, extensions=(".png", ".jpg", ".txt")))
    bad = [i for i in range(len(files)) if files[i]["path"].endswith(".txt")]
    loader = DataLoader(files, batch_size=len(files), collate_fn=ga.data.Collate(decode=False))
    with pytest.warns(UserWarning, match="notes.txt"):
        (batch,) = list(ga.data.DeviceLoader(loader, device="cpu", on_error="skip"))
    kept = [i for i in range(len(files)) if i not in bad]
    assert batch["sample_ids"].tolist() == kept
    assert batch["labels"].tolist() == [files[i]["label"] for i in kept]
    assert batch["path"] == [files[i]["path"] for i in kept]
    assert len(batch["images"]) == len(kept)


def test_device_loader_decodes_what_collate_left_encoded(folder):
    files = ga.data.WithIndex(ga.data.ImageFiles.from_folder(folder))
    collate = ga.data.Collate(decode=False)
    loader = DataLoader(files, batch_size=4, collate_fn=collate)
    pipe = ga.Pipeline([ga.RandomResizedCrop(8)], seed=0)
    for batch in ga.data.DeviceLoader(loader, pipe, device="cpu"):
        plain = ga.data.Collate(pipe)([files[int(i)] for i in batch["sample_ids"]])
        assert torch.equal(batch["images"], plain["images"])
    with pytest.raises(TypeError, match="DeviceLoader"):
        ga.data.Collate(pipe, decode=False)([files[0]])


def test_image_files_errors(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        ga.data.ImageFiles.from_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .* files"):
        ga.data.ImageFiles.from_folder(tmp_path)
    with pytest.raises(ValueError, match="2 labels for 1 files"):
        ga.data.ImageFiles(["a.png"], [0, 1])
    with pytest.raises(ValueError, match="on_error"):
        ga.data.decode_images([], on_error="ignore")


def _photo_jpegs() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(originals, JPEGs at quality 95): crops of a photo, odd sizes among them."""
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)
    originals = [photo[:, 180:180 + h, 200:200 + w].contiguous() for h, w in ((64, 48), (97, 131), (203, 155))]
    return originals, [encode_jpeg(x, quality=95) for x in originals]


def _mean_error(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x.cpu().float() - y.cpu().float()).abs().mean())


def _worst_line_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """The largest mean |luma difference| over one row or one column of two RGB images. Decoders differ
    in chroma upsampling, which luma hardly sees; a wrong edge block, a shift or a blur shows (on these
    crops: 3.2 to 52 against libjpeg's decode, where libjpeg's own error to the original is 1.6-1.8)."""
    weights = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
    luma = ((x.cpu().float() - y.cpu().float()) * weights).sum(0).abs()
    return float(max(luma.mean(0).max(), luma.mean(1).max()))


@pytest.mark.cuda
@CUDA
def test_cuda_decode_matches_cpu():
    """nvJPEG decodes the JPEGs together, the CPU the PNG; a truncated JPEG among them is found and
    named. nvJPEG and libjpeg may differ a little (chroma upsampling, IDCT): each is compared with
    the original, and with the other on average and row by row and column by column in luma."""
    originals, jpegs = _photo_jpegs()
    data = [*jpegs, torch.cat([jpegs[0][:150], jpegs[0][-2:]]), encode_png(image(4))]
    names = ["0.jpg", "1.jpg", "2.jpg", "broken.jpg", "4.png"]
    with pytest.warns(UserWarning, match="broken.jpg"):
        on_gpu, kept = ga.data.decode_images(data, device="cuda", names=names, on_error="skip")
    assert kept == [0, 1, 2, 4]
    for x, i in zip(on_gpu, kept):
        expected = decode_image(data[i])
        assert x.is_cuda and x.shape == expected.shape, names[i]
        if i == 4:
            assert torch.equal(x.cpu(), expected)
            continue
        gpu_error, cpu_error = _mean_error(x, originals[i]), _mean_error(expected, originals[i])
        assert gpu_error <= cpu_error + 1.0, (names[i], gpu_error, cpu_error)
        assert _mean_error(x, expected) <= 2.0, names[i]
        assert _worst_line_error(x, expected) <= 2.0, names[i]
    with pytest.raises(ValueError, match="broken.jpg"):
        ga.data.decode_images(data, device="cuda", names=names)
    clean, _ = ga.data.decode_images(jpegs, device="cuda")
    assert all(torch.equal(x, y) for x, y in zip(clean, on_gpu[:3]))


@pytest.mark.cuda
@CUDA
def test_cuda_decodes_a_pinned_encoded_batch_as_its_list():
    """DataLoader's pin_memory pins an EncodedBatch's bytes; DeviceLoader decodes it on the GPU as
    decode_images decodes the same files as a list."""
    _, jpegs = _photo_jpegs()
    data = [{"image": x, "index": i} for i, x in enumerate([*jpegs, encode_png(image(4))])]
    loader = DataLoader(data, batch_size=4, pin_memory=True, collate_fn=ga.data.Collate(decode=False))
    assert all(b["images"].data.is_pinned() for b in loader), "pin_memory did not pin the EncodedBatch"
    for batch in ga.data.DeviceLoader(loader, device="cuda"):
        ids = batch["sample_ids"].tolist()
        expected, _ = ga.data.decode_images([data[i]["image"] for i in ids], device="cuda")
        images = batch["images"].unpack() if isinstance(batch["images"], ga.RaggedBatch) else list(batch["images"])
        assert all(x.is_cuda and torch.equal(x, y) for x, y in zip(images, expected, strict=True)), ids
