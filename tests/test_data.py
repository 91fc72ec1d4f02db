"""ga.data: Collate (sample forms, stacking, ragged packing, collate-time augmentation keyed by index),
WithIndex, RaggedBatch, DeviceLoader on the CPU, and DataLoader integration: order and labels
preserved, no sample lost or duplicated across epochs and workers, persistent workers, pin_memory.
CUDA tests (side-stream prefetch) skip without a GPU."""

from __future__ import annotations

import collections
import warnings

import io

import numpy as np
import pytest
import torch
from _data_helpers import dataset, image, label, pipeline, reference
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

import gpuaug as ga

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")


NO_PIN_WARNING = pytest.mark.filterwarnings("ignore:.*pin_memory.*:UserWarning")  # no accelerator: pinning is a no-op


def _epoch_batches(loader: ga.data.DeviceLoader, epochs: int = 2) -> list[list[dict]]:
    out = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        out.append(list(loader))
    return out


# ---------------------------------------------------------------- sample forms


def test_image_forms_become_chw_uint8():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)
    forms = [rgb, Image.fromarray(rgb), expected.clone(), rgb[::-1][::-1]]
    batch = ga.data.Collate()([(x, 0) for x in forms])
    assert batch["images"].shape == (4, 3, 4, 5) and batch["images"].dtype == torch.uint8
    for x in batch["images"]:
        assert torch.equal(x, expected)


def test_grayscale_forms_get_one_channel():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    batch = ga.data.Collate()([(gray, 0), (Image.fromarray(gray), 1), (torch.from_numpy(gray), 2)])
    assert batch["images"].shape == (3, 1, 4, 5)
    assert all(torch.equal(x[0], torch.from_numpy(gray)) for x in batch["images"])


def test_tuple_and_dict_samples():
    x = torch.zeros(3, 4, 4, dtype=torch.uint8)
    pairs = ga.data.Collate()([(x, 3), (x, 4)])
    assert set(pairs) == {"images", "labels"} and pairs["labels"].tolist() == [3, 4]
    triples = ga.data.Collate()([(x, 3, 10), (x, 4, 11)])
    assert triples["sample_ids"].tolist() == [10, 11] and triples["sample_ids"].dtype == torch.int64
    dicts = ga.data.Collate()([{"image": x, "label": 1, "index": 5, "boxes": [1, 2]}, {"image": x, "label": 2, "index": 6, "boxes": []}])
    assert dicts["labels"].tolist() == [1, 2] and dicts["sample_ids"].tolist() == [5, 6]
    assert dicts["boxes"] == [[1, 2], []]  # other keys pass through as lists
    assert set(ga.data.Collate()([{"image": x}])) == {"images"}
    # dict samples built in another key order are the same fields
    swapped = ga.data.Collate()([{"image": x, "label": 1, "index": 5}, {"index": 6, "label": 2, "image": x}])
    assert swapped["labels"].tolist() == [1, 2] and swapped["sample_ids"].tolist() == [5, 6]


def test_with_index_forms():
    assert ga.data.WithIndex([("img", 1)])[0] == ("img", 1, 0)
    assert ga.data.WithIndex([["img", 1]])[0] == ("img", 1, 0)  # a list sample is read as Collate reads it
    assert ga.data.WithIndex([{"image": "img"}, {"image": "b"}])[1] == {"image": "b", "index": 1}
    assert ga.data.WithIndex(["img"])[0] == {"image": "img", "index": 0}
    assert len(ga.data.WithIndex(range(7))) == 7
    # an image alone in a tuple (TensorDataset(images)): the index is its id, not a label
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    samples = ga.data.WithIndex(torch.utils.data.TensorDataset(x))
    assert samples[1]["index"] == 1 and samples[1]["image"] is not None
    batch = ga.data.Collate(pipeline())([samples[0], samples[1]])
    assert set(batch) == {"images", "sample_ids"} and batch["sample_ids"].tolist() == [0, 1]


def test_collate_preserves_order_labels_and_inputs():
    samples = [dataset(6)[i] for i in range(6)]
    copies = [(x.clone(), y, i) for x, y, i in samples]
    batch = ga.data.Collate(pipeline())(samples)
    assert batch["sample_ids"].tolist() == list(range(6))
    assert batch["labels"].tolist() == [label(i) for i in range(6)]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(samples, copies)), "Collate modified its input"
    plain = ga.data.Collate()(samples)
    assert all(torch.equal(plain["images"][i], image(i)) for i in range(6))


# ---------------------------------------------------------------- ragged batches


def test_ragged_batch_packs_pads_and_unpacks():
    images = [image(i, ragged=True) for i in range(5)]
    batch = ga.data.Collate()([(x, 0) for x in images])
    ragged = batch["images"]
    assert isinstance(ragged, ga.RaggedBatch) and len(ragged) == 5
    assert ragged.images.shape == (5, 3, 14, 12)
    assert batch["sizes"].tolist() == [[12 + i % 3, 12] for i in range(5)]
    for i, x in enumerate(ragged.unpack()):
        assert torch.equal(x, images[i])
        assert not ragged.images[i, :, x.shape[1]:].any(), "padding is not zero"


def test_ragged_batch_checks_its_fields():
    with pytest.raises(ValueError, match="sizes"):
        ga.RaggedBatch(torch.zeros(2, 3, 4, 4), torch.tensor([[4, 4], [5, 4]]))
    with pytest.raises(ValueError, match="channels"):
        ga.RaggedBatch.pack([torch.zeros(3, 4, 4), torch.zeros(1, 3, 3)])
    with pytest.raises(ValueError, match="dtype"):
        ga.RaggedBatch.pack([torch.zeros(3, 4, 4), torch.zeros(3, 3, 3, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="at least one"):
        ga.RaggedBatch.pack([])


def test_encoded_batch_views_and_checks():
    files = [torch.tensor(list(b"abc"), dtype=torch.uint8), torch.tensor([], dtype=torch.uint8), torch.tensor([7], dtype=torch.uint8)]
    batch = ga.data.EncodedBatch.pack(files)
    assert len(batch) == 3 and batch.offsets.tolist() == [0, 3, 3, 4] and batch.data.tolist() == [97, 98, 99, 7]
    assert [x.tolist() for x in batch] == [x.tolist() for x in files]
    assert batch[-1].tolist() == [7] and batch[0].data_ptr() == batch.data.data_ptr(), "items are views of data"
    with pytest.raises(IndexError):
        batch[3]
    with pytest.raises(TypeError, match="indices must be ints"):
        batch[0:2]
    data = batch.data
    with pytest.raises(TypeError, match="data must be a 1-D uint8"):
        ga.data.EncodedBatch(data.float(), batch.offsets)
    with pytest.raises(TypeError, match="offsets must be an int64"):
        ga.data.EncodedBatch(data, batch.offsets.int())
    with pytest.raises(ValueError, match="shape"):
        ga.data.EncodedBatch(data, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"rise from 0 to len\(data\) = 4"):
        ga.data.EncodedBatch(data, torch.tensor([0, 3, 2, 4]))
    with pytest.raises(ValueError, match="rise from 0"):
        ga.data.EncodedBatch(data, torch.tensor([0, 3, 5]))
    with pytest.raises(ValueError, match="rise from 0"):
        ga.data.EncodedBatch(data, torch.tensor([1, 4]))
    with pytest.raises(TypeError, match="image 1: encoded images must be 1-D uint8"):
        ga.data.EncodedBatch.pack([files[0], image(0)])
    with pytest.raises(ValueError, match="at least one"):
        ga.data.EncodedBatch.pack([])


def test_ragged_collate_augments_each_sample_as_alone():
    """One pass over the padded batch, keyed by index: what each sample gets on its own."""
    pipe = pipeline()
    data = dataset(9, ragged=True)
    collate = ga.data.Collate(pipe)
    collate.set_epoch(3)
    batch = collate([data[i] for i in (4, 0, 8, 2, 1)])
    assert batch["images"].shape == (5, 3, 8, 8)
    assert batch["sizes"].tolist() == [[12 + i % 3, 12] for i in (4, 0, 8, 2, 1)]
    for x, i in zip(batch["images"], (4, 0, 8, 2, 1)):
        assert torch.equal(x, reference(pipe, i, epoch=3, ragged=True)), i


def test_ragged_collate_needs_a_fixed_output_size():
    collate = ga.data.Collate(ga.Pipeline([ga.RandomHorizontalFlip()], seed=0))
    with pytest.raises(ValueError, match="one output size"):
        collate([dataset(3, ragged=True)[i] for i in range(3)])


# ---------------------------------------------------------------- collate-time augmentation


def test_collate_augmentation_is_keyed_by_index_not_batch():
    pipe = pipeline()
    data = dataset(8)
    collate = ga.data.Collate(pipe)
    whole = collate([data[i] for i in range(8)])["images"]
    reordered = collate([data[i] for i in (5, 2, 7)])["images"]
    assert torch.equal(reordered, whole[[5, 2, 7]])
    for i in range(8):
        assert torch.equal(whole[i], reference(pipe, i, epoch=0))
    collate.set_epoch(1)
    assert collate.epoch == 1
    assert not torch.equal(collate([data[i] for i in range(8)])["images"], whole)


def test_collate_follows_the_pipelines_epoch_until_its_own_is_set():
    """pipe.set_epoch, as the Pipeline documents it, once left Collate(pipe) at epoch 0 for ever."""
    pipe, mix = pipeline(), ga.MixUp(1.0, 5, seed=0)
    data = dataset(6)
    collate = ga.data.Collate(pipe, mix)
    assert collate.epoch is None
    for epoch in (0, 3):
        pipe.set_epoch(epoch)
        mix.set_epoch(epoch)
        loader = DataLoader(data, batch_size=3, collate_fn=collate)  # num_workers=0: the pipeline itself
        for batch in loader:
            ids = batch["sample_ids"]
            expected, soft = mix(pipe(torch.stack([data[int(i)][0] for i in ids]), sample_ids=ids),
                                 torch.tensor([data[int(i)][1] for i in ids]), sample_ids=ids)
            assert torch.equal(batch["images"], expected) and torch.equal(batch["labels"], soft), epoch
    with pytest.raises(ValueError, match="non-negative int"):
        collate.set_epoch(-1)


def test_device_loader_set_epoch_warns_when_it_cannot_reach_the_collate_fn():
    collate = ga.data.Collate(pipeline())
    wrapped = DataLoader(dataset(4), batch_size=2, collate_fn=lambda samples: collate(samples))
    with pytest.warns(RuntimeWarning, match="cannot reach the loader's collate_fn"):
        ga.data.DeviceLoader(wrapped, device="cpu").set_epoch(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ga.data.DeviceLoader(DataLoader(dataset(4), batch_size=2), device="cpu").set_epoch(1)  # default_collate
        ga.data.DeviceLoader(DataLoader(dataset(4), batch_size=None), device="cpu").set_epoch(1)  # default_convert
        ga.data.DeviceLoader(DataLoader(dataset(4), batch_size=2, collate_fn=collate), device="cpu").set_epoch(1)


def test_collate_with_mix_gives_soft_labels():
    data = dataset(6)
    mix = ga.MixUp(alpha=0.4, num_classes=5, mode="elem", seed=0)
    batch = ga.data.Collate(pipeline(), mix)([data[i] for i in range(6)])
    assert batch["labels"].shape == (6, 5)
    assert torch.allclose(batch["labels"].sum(1), torch.ones(6))


@pytest.mark.parametrize("threads", [1, 2])
def test_collate_sets_worker_threads(threads):
    collate = ga.data.Collate(threads=threads)

    def collate_and_count(samples):
        return {**collate(samples), "threads": torch.get_num_threads()}

    loader = DataLoader(dataset(4), batch_size=2, num_workers=1, collate_fn=collate_and_count)
    assert [batch["threads"] for batch in loader] == [threads, threads]


def test_collate_errors():
    x = torch.zeros(3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="WithIndex"):
        ga.data.Collate(pipeline())([(x, 0), (x, 1)])
    with pytest.raises(TypeError, match="sample 1"):
        ga.data.Collate()([(x, 0), "image"])
    with pytest.raises(TypeError, match="numpy array, PIL image or tensor"):
        ga.data.Collate()([([[1, 2]], 0)])
    with pytest.raises(ValueError, match="same fields"):
        ga.data.Collate()([(x, 0), (x, 0, 1)])
    with pytest.raises(ValueError, match="channels"):
        ga.data.Collate()([(x, 0), (torch.zeros(1, 4, 4, dtype=torch.uint8), 0)])
    with pytest.raises(ValueError, match="'image'"):
        ga.data.Collate()([{"label": 0}])
    with pytest.raises(ValueError, match="empty"):
        ga.data.Collate()([])
    with pytest.raises(ValueError, match="threads"):
        ga.data.Collate(threads=0)
    with pytest.raises(TypeError, match="Pipeline"):
        ga.data.Collate(pipeline=[ga.RandomHorizontalFlip()])
    with pytest.raises(ValueError, match="on_error"):
        ga.data.Collate(on_error="ignore")
    with pytest.raises(TypeError, match="MixUp, CutMix or MixChoice"):
        ga.data.Collate(mix=ga.RandomHorizontalFlip())
    y = torch.zeros(3, 5, 4, dtype=torch.uint8)  # another size: a ragged batch, with "sizes"
    for extra, key, other in (({}, "images", x), ({"label": 0}, "labels", x), ({"index": 0}, "sample_ids", x), ({}, "sizes", y)):
        with pytest.raises(ValueError, match=f"key '{key}' would overwrite"):  # a sample key would replace the batch's
            ga.data.Collate()([{"image": x, key: 1, **extra}, {"image": other, key: 2, **extra}])
    detection = ga.data.Collate()([{"image": x, "labels": [1, 2]}, {"image": x, "labels": [3]}])  # no collision
    assert detection["labels"] == [[1, 2], [3]]
    # "sizes" is the batch's own even where the batch's images share one size: no crash mid-epoch
    with pytest.raises(ValueError, match="key 'sizes' would overwrite"):
        ga.data.Collate()([{"image": x, "sizes": 1}, {"image": x, "sizes": 2}])
    with pytest.raises(TypeError, match="sample 1: the index .* must be an integer dataset index, got 'b.png'"):
        ga.data.Collate()([(x, 0, 3), (x, 1, "b.png")])
    # labels all None: no "labels" (as dict samples without one); file bytes as bytes or a numpy array
    unlabelled = ga.data.Collate()([(x, None, 0), (x, None, 1)])
    assert "labels" not in unlabelled and unlabelled["sample_ids"].tolist() == [0, 1]
    png = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(png, format="PNG")
    decoded = ga.data.Collate()([(png.getvalue(), 0), (np.frombuffer(png.getvalue(), dtype=np.uint8), 1)])["images"]
    assert torch.equal(decoded[0], torch.arange(48, dtype=torch.uint8).view(4, 4, 3).permute(2, 0, 1))
    assert torch.equal(decoded[1], decoded[0])
    with pytest.warns(UserWarning, match="skipping 1 image"):  # an empty file's bytes
        kept = ga.data.Collate(on_error="skip")([(png.getvalue(), 0, 0), (b"", 1, 1)])
    assert kept["sample_ids"].tolist() == [0]
    for mode in ("I;16", "I", "F"):  # values beyond uint8, which a conversion to RGB would clip
        with pytest.raises(ValueError, match=f"sample 0: PIL mode '{mode}'"):
            ga.data.Collate()([(Image.new(mode, (4, 4)), 0)])


# ---------------------------------------------------------------- DataLoader integration


@NO_PIN_WARNING
@pytest.mark.parametrize(
    "workers,persistent,ragged", [(0, False, False), (0, False, True), (2, False, True), (2, True, False), (2, True, True)]
)
def test_dataloader_epochs_lose_and_repeat_nothing(workers, persistent, ragged):
    """Every sample once per epoch, in the sampler's order, with its label and the augmentation of
    its (index, epoch); persistent workers see set_epoch; pin_memory keeps RaggedBatch intact."""
    size, pipe = 14, pipeline()
    data = dataset(size, ragged=ragged)
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=5)
    loader = DataLoader(
        data, batch_size=4, sampler=sampler, num_workers=workers, persistent_workers=persistent,
        pin_memory=True, collate_fn=ga.data.Collate(pipe),
    )
    device_loader = ga.data.DeviceLoader(loader, device="cpu")
    assert len(device_loader) == 4
    orders = []
    for epoch, batches in enumerate(_epoch_batches(device_loader)):
        sampler.set_epoch(epoch)
        ids = [int(i) for batch in batches for i in batch["sample_ids"]]
        assert ids == list(sampler), "order differs from the sampler's"
        assert sorted(ids) == list(range(size)), "a sample was lost or duplicated"
        for batch in batches:
            assert batch["labels"].tolist() == [label(int(i)) for i in batch["sample_ids"]]
            for x, i in zip(batch["images"], batch["sample_ids"]):
                assert torch.equal(x, reference(pipe, int(i), epoch, ragged)), (epoch, int(i))
        orders.append(ids)
    assert orders[0] != orders[1], "set_epoch did not reach the sampler"


@NO_PIN_WARNING
@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_without_augmentation_returns_the_data(workers):
    data = dataset(10, ragged=True)
    loader = DataLoader(data, batch_size=3, num_workers=workers, pin_memory=True, collate_fn=ga.data.Collate())
    batches = list(loader)
    assert [int(i) for b in batches for i in b["sample_ids"]] == list(range(10))
    for b in batches:
        images = b["images"].unpack() if isinstance(b["images"], ga.RaggedBatch) else list(b["images"])
        assert all(torch.equal(x, image(int(i), ragged=True)) for x, i in zip(images, b["sample_ids"]))


# ---------------------------------------------------------------- DeviceLoader on the CPU


class _RecordingSampler(torch.utils.data.SequentialSampler):
    epochs: list[int]

    def set_epoch(self, epoch: int) -> None:
        self.epochs = [*getattr(self, "epochs", []), epoch]


def test_device_loader_augments_keyed_by_index_and_forwards_set_epoch():
    data = dataset(10)
    sampler = _RecordingSampler(data)
    collate = ga.data.Collate()
    pipe, mix = pipeline(), ga.CutMix(1.0, 5, seed=0)
    loader = ga.data.DeviceLoader(DataLoader(data, batch_size=4, sampler=sampler, collate_fn=collate), pipe, device="cpu", mix=mix)
    loader.set_epoch(2)
    assert (sampler.epochs, collate.epoch, pipe.epoch, mix.epoch) == ([2], 2, 2, 2)
    batches = list(loader)
    assert [b["images"].shape[0] for b in batches] == [4, 4, 2]
    for b in batches:
        plain = collate([data[int(i)] for i in b["sample_ids"]])
        expected, soft = mix(pipe(plain["images"], sample_ids=plain["sample_ids"]), plain["labels"], sample_ids=plain["sample_ids"])
        assert torch.equal(b["images"], expected) and torch.equal(b["labels"], soft)


def test_device_loader_keeps_namedtuple_fields():
    pair = collections.namedtuple("Pair", "cls attr")
    data = [{"image": image(i), "label": label(i), "index": i, "target": pair(i, i + 1)} for i in range(4)]
    loader = DataLoader(data, batch_size=2, collate_fn=ga.data.Collate())
    batches = list(ga.data.DeviceLoader(loader, device="cpu"))
    assert batches[1]["target"] == [pair(2, 3), pair(3, 4)]
    tupled = DataLoader([(image(i), pair(i, -i)) for i in range(2)], batch_size=2, collate_fn=ga.data.Collate())
    labels = next(iter(ga.data.DeviceLoader(tupled, device="cpu")))["labels"]
    assert type(labels) is pair and labels.cls.tolist() == [0, 1] and labels.attr.tolist() == [0, -1]


def test_device_loader_without_sample_ids_and_pipeline():
    data = [(image(i), label(i)) for i in range(5)]
    loader = DataLoader(data, batch_size=2, collate_fn=ga.data.Collate())
    assert [b["labels"].tolist() for b in ga.data.DeviceLoader(loader, device="cpu")] == [[0, 2], [4, 1], [3]]
    pipe = pipeline()
    assert next(iter(ga.data.DeviceLoader(loader, pipe, device="cpu")))["images"].shape == (2, 3, 8, 8)


def test_device_loader_errors():
    with pytest.raises(TypeError, match="batch dicts"):
        list(ga.data.DeviceLoader([torch.zeros(2, 3, 4, 4)], device="cpu"))
    with pytest.raises(ValueError, match="prefetch"):
        ga.data.DeviceLoader([], device="cpu", prefetch=-1)
    with pytest.raises(TypeError, match="Pipeline"):
        ga.data.DeviceLoader([], [ga.RandomHorizontalFlip()], device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            ga.data.DeviceLoader([], device="cuda")


# ---------------------------------------------------------------- CUDA: side-stream prefetch


def _close_uint8(out: torch.Tensor, expected: torch.Tensor) -> bool:
    """CUDA and CPU float arithmetic may round a few uint8 values differently (as in test_pipeline)."""
    return float(((out.cpu().float() - expected.float()).abs() > 1).float().mean()) < 0.01


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_cuda_device_loader_matches_cpu_and_orders_streams(prefetch):
    """Batches are consumed on the current stream without any synchronize: they must hold the
    side stream's finished results (wait_event), in order, equal to the CPU augmentation."""
    size = 40
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8, generator=gen), i % 5, i) for i in range(size)]
    pipe = ga.Pipeline([ga.RandomResizedCrop(128), ga.RandomHorizontalFlip(), ga.ToDtype(torch.float32, scale=True)], seed=0)
    loader = DataLoader(data, batch_size=8, pin_memory=True, collate_fn=ga.data.Collate())
    sums, ids = [], []
    for batch in ga.data.DeviceLoader(loader, pipe, device="cuda", prefetch=prefetch):
        assert batch["images"].is_cuda and batch["labels"].is_cuda
        sums.append(batch["images"].sum(dim=(1, 2, 3)))  # on the current stream, no sync
        ids.append(batch["sample_ids"])
    torch.cuda.synchronize()
    assert torch.cat(ids).cpu().tolist() == list(range(size))
    expected = [pipe(torch.stack([data[i][0] for i in range(s, s + 8)]), sample_ids=torch.arange(s, s + 8)).sum(dim=(1, 2, 3))
                for s in range(0, size, 8)]
    torch.testing.assert_close(torch.cat(sums).cpu(), torch.cat(expected), rtol=1e-3, atol=1.0)


@pytest.mark.cuda
@CUDA
def test_cuda_device_loader_ragged_pinned_batches():
    data = dataset(12, ragged=True)
    pipe = pipeline()
    loader = DataLoader(data, batch_size=5, pin_memory=True, collate_fn=ga.data.Collate())
    assert all(b["images"].images.is_pinned() for b in loader), "pin_memory did not pin the RaggedBatch"
    for batch in ga.data.DeviceLoader(loader, pipe, device="cuda"):
        assert batch["images"].is_cuda and batch["images"].shape[1:] == (3, 8, 8)
        for x, i in zip(batch["images"], batch["sample_ids"].tolist()):
            assert _close_uint8(x, reference(pipe, i, epoch=0, ragged=True)), i


@pytest.mark.parametrize("transforms", [
    lambda: [ga.Resize(20), ga.CenterCrop(16)],  # the usual eval recipe: not one pass, size by size
    lambda: [ga.RandomHorizontalFlip(), ga.RandomResizedCrop(16)],
])
def test_ragged_collate_takes_any_fixed_size_pipeline(transforms):
    pipe = ga.Pipeline(transforms(), seed=0)
    data = dataset(6, ragged=True)
    batch = ga.data.Collate(pipe)([data[i] for i in range(6)])
    for x, i in zip(batch["images"], range(6)):
        assert torch.equal(x, pipe(data[i][0][None], sample_ids=[i], epoch=0)[0]), i
