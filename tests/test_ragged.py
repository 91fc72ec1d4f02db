"""A RaggedBatch goes through a pipeline in one pass: each sample gets exactly what it gets alone.

The reference is independent of the ragged path: every image run by itself, as a one-sample
batch of its own size keyed by the same sample id, on the same backend.
"""

import pytest
import torch

import gpuaug as ga
from gpuaug._ext import extension_error

BACKENDS = ["torch", pytest.param("ext", marks=pytest.mark.skipif(extension_error() is not None, reason="no extension"))]
SIZES = [(37, 52), (64, 41), (23, 23), (50, 64), (64, 64)]


def images(dtype: torch.dtype = torch.uint8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    out = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in SIZES]
    return out if dtype == torch.uint8 else [x.to(dtype) / 255 for x in out]


def alone(pipe: ga.Pipeline, xs: list[torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    return torch.cat([pipe(x[None], sample_ids=ids[i : i + 1], epoch=2) for i, x in enumerate(xs)])


PIPELINES = {
    "random-resized-crop": lambda: [ga.RandomResizedCrop(32, scale=(0.08, 1.0)), ga.RandomHorizontalFlip()],
    "rrc-nearest-jitter": lambda: [
        ga.RandomResizedCrop((24, 30), interpolation="nearest"), ga.ColorJitter(0.4, 0.4, 0.4, 0.1)
    ],
    "resize": lambda: [ga.Resize((30, 26)), ga.RandomGrayscale(0.5)],
    "center-crop": lambda: [ga.CenterCrop(40), ga.RandomVerticalFlip()],  # pads the smaller images
    "random-crop-fill": lambda: [ga.RandomCrop(48, padding=3, pad_if_needed=True, fill=(9, 99, 199))],
    # upscaling only: a rotation folded after a shrinking crop is supersampled by the batch's bound
    "rrc-then-rotation": lambda: [ga.RandomResizedCrop(64), ga.RandomRotation(20, fill=50)],
    "normalized-fp16": lambda: [
        ga.RandomResizedCrop(28), ga.ToDtype(torch.float16, scale=True), ga.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    ],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(PIPELINES))
def test_one_pass_equals_each_sample_alone(name, backend):
    xs = images()
    pipe = ga.Pipeline(PIPELINES[name](), seed=3, backend=backend)
    ids = torch.tensor([11, 4, 90, 7, 23])
    out = pipe(ga.RaggedBatch.pack(xs), sample_ids=ids, epoch=2)
    expected = alone(pipe, xs, ids)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    # grid sampling normalises coordinates by the padded size: float32 rounding may move a rare
    # pixel by one level; the separable (crop and resize) paths are exact
    torch.testing.assert_close(out, expected, rtol=0, atol=1 if "rotation" in name else 0)
    assert (out != expected).float().mean() < 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_images_and_channels_last(backend):
    xs = images(torch.float32)
    pipe = ga.Pipeline(PIPELINES["random-resized-crop"](), seed=1, backend=backend, memory_format=torch.channels_last)
    ids = torch.arange(5)
    out = pipe(ga.RaggedBatch.pack(xs), sample_ids=ids, epoch=2)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, alone(pipe, xs, ids), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=str)
def test_the_padding_is_never_read(dtype):
    """Whatever a RaggedBatch holds outside each image, the result is the same (NaN too: grid sampling
    once zeroed the padding by multiplying it by 0, which leaves NaN)."""
    packed = ga.RaggedBatch.pack(images(dtype))
    dirty = packed.images.clone()
    for i, (h, w) in enumerate(packed.sizes.tolist()):
        dirty[i, :, h:, :] = 255 if dtype == torch.uint8 else float("nan")
        dirty[i, :, :, w:] = 255 if dtype == torch.uint8 else float("nan")
    for name in ("center-crop", "random-crop-fill", "rrc-then-rotation"):
        pipe = ga.Pipeline(PIPELINES[name](), seed=5)
        clean = pipe(packed, sample_ids=torch.arange(5))
        assert torch.equal(pipe(ga.RaggedBatch(dirty, packed.sizes), sample_ids=torch.arange(5)), clean), name


def test_replay_and_saved_params():
    packed = ga.RaggedBatch.pack(images())
    pipe = ga.Pipeline(PIPELINES["random-resized-crop"](), seed=0)
    out, params = pipe(packed, return_params=True)
    assert torch.equal(pipe.replay(packed, params), out)
    restored = ga.BatchParams.from_state_dict(params.state_dict())
    assert torch.equal(restored.input_sizes, packed.sizes)
    assert torch.equal(pipe.replay(packed, restored), out)
    other = ga.RaggedBatch(packed.images, packed.sizes.flip(0))
    with pytest.raises(ValueError, match="other sizes"):
        pipe.replay(other, params)
    with pytest.raises(ValueError, match="other sizes"):
        pipe.replay(packed.images, params)


def test_a_final_mix_works_on_a_ragged_batch():
    pipe = ga.Pipeline([ga.RandomResizedCrop(16), ga.ToDtype(torch.float32, scale=True), ga.MixUp(1.0, num_classes=4)], seed=0)
    packed = ga.RaggedBatch.pack(images()[:4])
    labels = torch.tensor([0, 1, 2, 3])
    batch = pipe(packed, labels=labels, sample_ids=torch.arange(4))
    plain = ga.Pipeline(pipe.transforms[:2], seed=0)
    unmixed = plain(packed, sample_ids=torch.arange(4))
    mixed = batch.params.transforms[-1]
    partner = unmixed[mixed.partner]
    w = mixed.weight.view(-1, 1, 1, 1).to(torch.float64)
    expected = torch.where(mixed.applied.view(-1, 1, 1, 1), w * unmixed.double() + (1 - w) * partner.double(), unmixed.double())
    torch.testing.assert_close(batch.images.double(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "transforms, match",
    [
        ([ga.RandomHorizontalFlip(), ga.RandomResizedCrop(8)], "RandomHorizontalFlip cannot take differently sized"),
        ([ga.ColorJitter(0.2)], "ColorJitter cannot take differently sized"),
        ([ga.Resize(8)], r"Resize\(\(height, width\)\)"),
        ([ga.RandomCrop(8, padding=2, padding_mode="reflect")], "constant fill only"),
        ([ga.RandomCrop(40)], "larger than the"),
        ([], "gives every sample one size"),
    ],
)
def test_pipelines_that_cannot_take_a_ragged_batch(transforms, match):
    with pytest.raises(ValueError, match=match):
        ga.Pipeline(transforms, seed=0)(ga.RaggedBatch.pack(images()))


def test_targets_and_inverses_are_refused_clearly():
    packed = ga.RaggedBatch.pack(images())
    pipe = ga.Pipeline([ga.RandomResizedCrop(16)], seed=0)
    with pytest.raises(ValueError, match="RaggedBatch are not supported"):
        pipe(packed, boxes=[torch.zeros(0, 4)] * 5)
    _, params = pipe(packed, return_params=True)
    with pytest.raises(ValueError, match="RaggedBatch call is not supported"):
        pipe.inverse_boxes([torch.zeros(0, 4)] * 5, params)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_one_pass_matches_the_cpu(backend):
    xs = images()
    pipe = ga.Pipeline(PIPELINES["random-resized-crop"]() + [ga.ToDtype(torch.float32, scale=True)], seed=0, backend=backend)
    packed = ga.RaggedBatch.pack(xs)
    ids = torch.arange(5)
    cpu = pipe(packed, sample_ids=ids)
    cuda = pipe(packed.to("cuda"), sample_ids=ids.cuda())
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=1.5 / 255)


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_a_shrinking_rotation_is_supersampled_as_each_image_alone(backend):
    """A folded rotation's supersampling factor comes from each sample's own size: next to a 200 x 180
    image, a 23 x 23 one was supersampled by the large one's factor, 77% of its pixels up to 15 levels
    off. (Grid sampling normalises by the padded size: a rounding may still tip a level.)"""
    small = images()[2]  # 23 x 23
    large = torch.randint(0, 256, (3, 200, 180), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([5, 6])
    for transforms in ([ga.RandomResizedCrop(16, scale=(0.9, 1.0)), ga.RandomRotation(20)],
                       [ga.Resize((20, 20)), ga.RandomPerspective(p=0.5), ga.ColorJitter(0.3, 0.3)]):
        pipe = ga.Pipeline(transforms, seed=0, backend=backend)
        together = pipe(ga.RaggedBatch.pack([small, large]), sample_ids=ids)
        for b, image in enumerate((small, large)):
            diff = (together[b].int() - pipe(image[None], sample_ids=ids[b : b + 1])[0].int()).abs()
            assert int(diff.max()) <= 1 and float((diff > 0).double().mean()) < 0.01, (transforms, b)


def test_empty_ragged_batches():
    empty = ga.RaggedBatch(torch.zeros(0, 3, 8, 8, dtype=torch.uint8), torch.zeros(0, 2, dtype=torch.int64))
    for transform in (ga.CenterCrop(4), ga.RandomCrop(4), ga.RandomResizedCrop(4), ga.Resize((4, 4))):
        assert ga.Pipeline([transform], seed=0)(empty).shape == (0, 3, 4, 4)


def test_takes_ragged_names_the_one_pass_pipelines():
    assert ga.Pipeline([ga.Compose([ga.RandomResizedCrop(8), ga.RandomHorizontalFlip()])]).takes_ragged()
    assert ga.Pipeline([ga.Resize((8, 8))]).takes_ragged()
    assert not ga.Pipeline([ga.Resize(8), ga.CenterCrop(8)]).takes_ragged()
    assert not ga.Pipeline([ga.RandomHorizontalFlip(), ga.RandomCrop(8)]).takes_ragged()


def test_capture_refuses_a_final_mix():
    pipe = ga.Pipeline([ga.RandomResizedCrop(8), ga.ToDtype(torch.float32, scale=True), ga.MixUp(1.0, num_classes=3)])
    with pytest.raises(ValueError, match="without a final MixUp"):
        ga.capture(pipe, torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
