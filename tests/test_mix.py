"""MixUp, CutMix and MixChoice: the mixing arithmetic, soft labels with smoothing, timm's
'batch'/'pair'/'elem' modes, the Beta distribution, and counter-based keys (reproducible, keyed by
seed, epoch and sample ids, independent of batch order). Then a mix ending a Pipeline: the mix of
the unmixed output against a float64 reference, replay, RandomChoice of mixes, Collate (same-sized
and ragged batches), bad inputs, CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

import gpuaug as ga

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")


def _batch(size: int = 8, dtype: torch.dtype = torch.float32, hw: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (size, 3, hw, hw), dtype=torch.uint8, generator=gen)
    images = images if dtype == torch.uint8 else images.to(dtype) / 255
    return images, torch.arange(size) % 5


MIXES = {
    "mixup": lambda mode, **kw: ga.MixUp(0.4, 5, mode=mode, seed=1, **kw),
    "cutmix": lambda mode, **kw: ga.CutMix(1.0, 5, mode=mode, seed=1, **kw),
    "choice": lambda mode, **kw: ga.MixChoice([ga.MixUp(0.4, 5, mode=mode, **kw), ga.CutMix(1.0, 5, mode=mode, **kw)], seed=1),
}


def _one_hot(labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    off = smoothing / 5
    return torch.nn.functional.one_hot(labels, 5).float() * (1 - smoothing) + off


@pytest.mark.parametrize("kind", MIXES)
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_images_and_labels_mix_with_the_partner(kind, mode, dtype):
    images, labels = _batch(dtype=dtype)
    keep = images.clone()
    out, soft, p = MIXES[kind](mode, label_smoothing=0.1)(images, labels, sample_ids=torch.arange(8) + 100, return_params=True)
    assert torch.equal(images, keep), "input modified"
    assert out.dtype == dtype and out.shape == images.shape and soft.shape == (8, 5) and soft.dtype == torch.float32
    # labels: lam of the own smoothed one-hot, 1 - lam of the partner's
    lam = p.lam.float()[:, None]
    expected = _one_hot(labels, 0.1) * lam + _one_hot(labels[p.partner], 0.1) * (1 - lam)
    torch.testing.assert_close(soft, expected)
    torch.testing.assert_close(soft.sum(1), torch.ones(8))
    # pixels: the partner's inside the box, the weighted blend outside
    x, y = images.double(), images[p.partner].double()
    blend = x * p.weight.view(-1, 1, 1, 1) + y * (1 - p.weight.view(-1, 1, 1, 1))
    for b in range(8):
        top, bottom, left, right = p.box[b].tolist()
        blend[b, :, top:bottom, left:right] = y[b, :, top:bottom, left:right]
    if dtype == torch.uint8:
        blend = blend.round()
    torch.testing.assert_close(out.double(), blend, atol=1e-6, rtol=0)
    # the label weight is the share of own pixels
    area = (p.box[:, 1] - p.box[:, 0]) * (p.box[:, 3] - p.box[:, 2]) / 256
    torch.testing.assert_close(p.lam, p.weight * (1 - area))


@pytest.mark.parametrize("kind", MIXES)
def test_modes_share_draws_as_timm(kind):
    size = 12
    images, _ = _batch(size)
    for mode in ("batch", "pair", "elem"):
        p = MIXES[kind](mode).sample(images, sample_ids=torch.arange(size))
        assert sorted(p.partner.tolist()) == list(range(size)), "partners are not a permutation"
        assert (p.partner != torch.arange(size)).all(), "a sample is its own partner"
        if mode == "batch":
            assert p.lam.unique().numel() == 1 and p.box.unique(dim=0).shape[0] == 1
        elif mode == "pair":
            assert torch.equal(p.partner[p.partner], torch.arange(size)), "pairs are not mutual"
            assert torch.equal(p.lam, p.lam[p.partner]) and torch.equal(p.box, p.box[p.partner])
        else:
            assert p.lam.unique().numel() > size // 2


@pytest.mark.parametrize("kind", MIXES)
def test_pair_mode_leaves_the_last_sample_of_an_odd_batch_unmixed(kind):
    """(A batch made odd by a file that did not decode must not stop training; timm's pair mode raises.)"""
    images, labels = _batch(7)
    mix = MIXES[kind]("pair")
    p = mix.sample(images, sample_ids=torch.arange(7))
    alone = (p.partner == torch.arange(7)).nonzero().flatten().tolist()
    assert len(alone) == 1 and torch.equal(p.partner[p.partner], torch.arange(7)), "six mutual pairs and one alone"
    assert not bool(p.applied[alone[0]]) and float(p.lam[alone[0]]) == 1.0
    out, soft = mix(images, labels, sample_ids=torch.arange(7))
    (b,) = alone
    assert torch.equal(out[b], images[b])
    torch.testing.assert_close(soft[b], torch.nn.functional.one_hot(labels[b], 5).float())


@pytest.mark.parametrize("kind", MIXES)
def test_keyed_by_sample_ids_not_batch_order(kind):
    images, labels = _batch(10)
    ids = torch.arange(10) * 3 + 1
    mix = MIXES[kind]("elem")
    out, soft = mix(images, labels, sample_ids=ids)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    out_p, soft_p = mix(images[perm], labels[perm], sample_ids=ids[perm])
    assert torch.equal(out_p, out[perm]) and torch.equal(soft_p, soft[perm])
    again = MIXES[kind]("elem")(images, labels, sample_ids=ids)
    assert torch.equal(again[0], out), "not reproducible"
    other_epoch, _ = mix(images, labels, sample_ids=ids, epoch=1)
    assert not torch.equal(other_epoch, out)
    mix.set_epoch(1)
    assert torch.equal(mix(images, labels, sample_ids=ids)[0], other_epoch)


def test_calls_without_ids_differ_and_replay_by_seed():
    images, labels = _batch()
    a, b = ga.MixUp(0.4, 5, mode="elem", seed=3), ga.MixUp(0.4, 5, mode="elem", seed=3)
    first = a(images, labels)[0]
    assert not torch.equal(a(images, labels)[0], first)
    assert torch.equal(b(images, labels)[0], first)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_a_standalone_mix_with_the_pipelines_seed_draws_numbers_of_its_own(kind):
    """Partners and weights independent of what the Pipeline drew: a mix once hashed the Pipeline's
    transform streams 0 to 2, so flipped samples were paired with flipped ones 99.8% of the time."""
    size = 2000
    ids, images = torch.arange(size), torch.zeros(size, 1, 4, 4)
    _, params = ga.Pipeline([ga.RandomHorizontalFlip(), ga.RandomVerticalFlip()], seed=0)(
        images, sample_ids=ids, return_params=True)
    mix = (ga.MixUp(1.0, 2, mode="elem", seed=0) if kind == "mixup" else ga.CutMix(1.0, 2, mode="elem", seed=0))
    mix = mix.sample(images, sample_ids=ids)
    hflip, vflip = params.transforms[0].applied, params.transforms[1].applied
    assert abs(float((hflip == hflip[mix.partner]).double().mean()) - 0.5) < 0.05  # 4.5 sigma
    heavy = mix.lam > 0.5
    assert abs(float((vflip == heavy).double().mean()) - 0.5) < 0.05


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.5])
def test_mixup_lam_is_beta_distributed(alpha):
    """Kolmogorov-Smirnov against scipy's Beta(alpha, alpha), over five seeds."""
    size, beta = 1500, scipy.stats.beta(alpha, alpha)
    pvalues = []
    for seed in range(5):
        p = ga.MixUp(alpha, 5, mode="elem", seed=seed).sample(torch.zeros(size, 1, 1, 1), sample_ids=torch.arange(size))
        pvalues.append(scipy.stats.kstest(p.lam.numpy(), beta.cdf).pvalue)
    assert min(pvalues) > 1e-4 and sorted(pvalues)[2] > 0.05, pvalues


def test_cutmix_box_follows_timm():
    """timm's rand_bbox: sides int(H * r) and int(W * r) for one r = sqrt(1 - lam), rows cy - cut_h // 2
    to cy + (cut_h + 1) // 2 around a uniform centre, clipped; lam corrected to the area."""
    size, h, w = 3000, 15, 17
    p = ga.CutMix(1.0, 5, mode="elem", seed=0).sample(torch.zeros(size, 1, h, w), sample_ids=torch.arange(size))
    top, bottom, left, right = p.box.unbind(1)
    assert (top >= 0).all() and (bottom <= h).all() and (left >= 0).all() and (right <= w).all()
    assert (top <= bottom).all() and (left <= right).all()
    unclipped = (top > 0) & (bottom < h) & (left > 0) & (right < w)
    cut_h, cut_w = (bottom - top)[unclipped].double(), (right - left)[unclipped].double()
    assert bool(((cut_h % 2) == 1).any()), "odd sides occur: the box is not centre -/+ cut // 2"
    # some r in [cut_h / h, (cut_h + 1) / h) and [cut_w / w, (cut_w + 1) / w): both sides from one ratio
    assert bool((torch.maximum(cut_h / h, cut_w / w) < torch.minimum((cut_h + 1) / h, (cut_w + 1) / w)).all())
    # the centre: a uniform integer in [0, h); a box clipped on neither side lies cut_h // 2 above it
    centre = top[unclipped] + (bottom - top)[unclipped] // 2
    assert bool(((centre >= 0) & (centre < h)).all())
    assert 0.4 < float(p.lam.mean()) < 0.75  # Beta(1, 1) lam, raised by clipping
    assert p.weight.eq(1).all()
    # the corrected lam's mean against timm's rand_bbox + correct_lam written in numpy (0.705 on 15 x 17;
    # the box of cut // 2 either side gave 0.721)
    n, rng = 20000, np.random.default_rng(0)
    cut = np.sqrt(1.0 - rng.beta(1.0, 1.0, n))
    ch, cw = (h * cut).astype(int), (w * cut).astype(int)
    cy, cx = rng.integers(0, h, n), rng.integers(0, w, n)
    area = (np.clip(cy + (ch + 1) // 2, 0, h) - np.clip(cy - ch // 2, 0, h)) * \
           (np.clip(cx + (cw + 1) // 2, 0, w) - np.clip(cx - cw // 2, 0, w))
    ours = ga.CutMix(1.0, 5, mode="elem", seed=1).sample(torch.zeros(n, 1, h, w), sample_ids=torch.arange(n)).lam
    assert abs(float(ours.mean()) - float((1.0 - area / (h * w)).mean())) < 0.008  # about 3 sigma


def test_p_zero_leaves_images_and_one_hot_labels():
    images, labels = _batch()
    for mix in (ga.MixUp(0.4, 5, p=0.0, label_smoothing=0.2), ga.CutMix(1.0, 5, p=0.0, mode="elem")):
        out, soft = mix(images, labels)
        assert torch.equal(out, images)
        torch.testing.assert_close(soft, _one_hot(labels, mix.label_smoothing))


def test_p_is_per_batch_pair_or_sample():
    images, _ = _batch(400, hw=1)
    for mode in ("batch", "pair", "elem"):
        applied = ga.MixUp(0.4, 5, p=0.5, mode=mode, seed=0).sample(images, sample_ids=torch.arange(400)).applied
        assert applied.unique().numel() == (1 if mode == "batch" else 2)
        if mode != "batch":
            assert 0.4 < float(applied.float().mean()) < 0.6


def test_soft_labels_in_pass_through():
    images, labels = _batch()
    mix = ga.MixUp(0.4, 5, mode="elem", seed=0)
    _, first = mix(images, labels, sample_ids=torch.arange(8))
    _, twice, p = mix(images, first, sample_ids=torch.arange(8), epoch=1, return_params=True)
    torch.testing.assert_close(twice, first * p.lam.float()[:, None] + first[p.partner] * (1 - p.lam.float()[:, None]))


def test_mix_choice_chooses_per_batch_or_sample():
    images, _ = _batch(64, hw=4)
    ids = torch.arange(64)
    batch_choice = ga.MixChoice([ga.MixUp(0.4, 5), ga.CutMix(1.0, 5)], p=[0.3, 0.7], seed=0)
    chosen = [int(batch_choice.sample(images[:4], sample_ids=ids[:4], epoch=e).choice.unique()) for e in range(20)]
    assert 0 < sum(chosen) < 20
    elem = ga.MixChoice([ga.MixUp(0.4, 5, mode="elem"), ga.CutMix(1.0, 5, mode="elem")], seed=0)
    p = elem.sample(images, sample_ids=ids)
    assert 10 < int(p.choice.sum()) < 54
    assert (p.box[p.choice == 0] == 0).all() and (p.weight[p.choice == 1] == 1).all()


def test_errors():
    images, labels = _batch()
    with pytest.raises(ValueError, match="labels must lie"):
        ga.MixUp(0.2, 5)(images, labels + 1)
    with pytest.raises(ValueError, match=r"\(8,\) integer classes"):
        ga.MixUp(0.2, 5)(images, labels[:4])
    with pytest.raises(ValueError, match=r"\(8,\) integer classes"):
        ga.MixUp(0.2, 5)(images, labels.float())
    with pytest.raises(ValueError, match="B, C, H, W"):
        ga.MixUp(0.2, 5)(images[0], labels)
    with pytest.raises(TypeError, match="uint8 or floating"):
        ga.MixUp(0.2, 5)(images.to(torch.int32), labels)
    with pytest.raises(ValueError, match="alpha"):
        ga.CutMix(0.0, 5)
    with pytest.raises(ValueError, match="mode"):
        ga.MixUp(0.2, 5, mode="row")
    with pytest.raises(ValueError, match="num_classes"):
        ga.MixUp(0.2, 0)
    with pytest.raises(ValueError, match="label_smoothing"):
        ga.MixUp(0.2, 5, label_smoothing=1.5)
    with pytest.raises(ValueError, match="share mode"):
        ga.MixChoice([ga.MixUp(0.2, 5), ga.CutMix(1.0, 5, mode="elem")])
    with pytest.raises(TypeError, match="MixUp and CutMix"):
        ga.MixChoice([ga.RandomHorizontalFlip()])
    for p in ([float("nan"), 1.0], [1.0, float("nan")], [float("inf"), 1.0], [-1.0, 2.0], [0.0, 0.0], [1.0]):
        with pytest.raises(ValueError, match="finite non-negative weight"):
            ga.MixChoice([ga.MixUp(0.2, 5), ga.CutMix(1.0, 5)], p=p)
    with pytest.raises(ValueError, match="sample_ids"):
        ga.MixUp(0.2, 5)(images, labels, sample_ids=[1, 2])


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("kind", MIXES)
def test_cuda_matches_cpu(kind):
    images, labels = _batch(16)
    ids = torch.arange(16)
    out, soft, p = MIXES[kind]("elem")(images, labels, sample_ids=ids, return_params=True)
    out_g, soft_g, p_g = MIXES[kind]("elem")(images.cuda(), labels.cuda(), sample_ids=ids.cuda(), return_params=True)
    assert out_g.is_cuda and torch.equal(p_g.partner.cpu(), p.partner) and torch.equal(p_g.box.cpu(), p.box)
    torch.testing.assert_close(out_g.cpu(), out)
    torch.testing.assert_close(soft_g.cpu(), soft)


# ---------------------------------------------------------------- a mix ending a Pipeline


def _reference_mix(images: torch.Tensor, p: ga.MixParams) -> torch.Tensor:
    """float64, sample by sample: the partner's pixels inside the box, the weighted blend outside."""
    x = images.double()
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        own, other, w = x[b], x[int(p.partner[b])], float(p.weight[b])
        out[b] = own * w + other * (1 - w)
        top, bottom, left, right = p.box[b].tolist()
        out[b, :, top:bottom, left:right] = other[:, top:bottom, left:right]
    return out


def _assert_mixed(got: torch.Tensor, reference: torch.Tensor) -> None:
    """float outputs: the float64 reference up to float32 rounding; uint8 ones: the reference rounded
    to the nearest integer (timm's np.rint), where it is not within float32 noise of a half."""
    if got.is_floating_point():
        torch.testing.assert_close(got.double(), reference, rtol=0, atol=1e-5)
        return
    off = got.double() - reference.round()
    near_half = (reference - reference.floor() - 0.5).abs() < 1e-3
    assert (off.abs() <= 1).all() and not (off != 0)[~near_half].any()


def _reference_labels(labels: torch.Tensor, p: ga.MixParams, classes: int, smoothing: float) -> torch.Tensor:
    one_hot = torch.nn.functional.one_hot(labels, classes).double() * (1 - smoothing) + smoothing / classes
    lam = p.lam.double()[:, None]
    return one_hot * lam + one_hot[p.partner] * (1 - lam)


BODY = {
    "uint8": lambda: [ga.RandomResizedCrop(12), ga.RandomHorizontalFlip()],
    "normalized": lambda: [ga.RandomResizedCrop(12), ga.RandomHorizontalFlip(), ga.ToDtype(torch.float32, scale=True),
                           ga.Normalize(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))],
}
PIPELINE_MIXES = {
    "mixup": lambda: ga.MixUp(0.4, 5, mode="elem", label_smoothing=0.1),
    "cutmix": lambda: ga.CutMix(1.0, 5, mode="pair", label_smoothing=0.1),
    "mixchoice": lambda: ga.MixChoice([ga.MixUp(0.4, 5, label_smoothing=0.1), ga.CutMix(1.0, 5, label_smoothing=0.1)]),
    "randomchoice": lambda: ga.RandomChoice([ga.MixUp(0.4, 5, mode="elem", label_smoothing=0.1),
                                             ga.CutMix(1.0, 5, mode="elem", label_smoothing=0.1)], p=[0.4, 0.6]),
}


@pytest.mark.parametrize("body", BODY)
@pytest.mark.parametrize("kind", PIPELINE_MIXES)
def test_pipeline_mix_is_the_mix_of_the_unmixed_output(body, kind):
    images, labels = _batch(8, dtype=torch.uint8, hw=20)
    ids = torch.arange(8) * 7 + 3
    pipe = ga.Pipeline([*BODY[body](), PIPELINE_MIXES[kind]()], seed=3)
    batch = pipe(images, labels=labels, sample_ids=ids, epoch=2)
    plain, plain_params = ga.Pipeline(BODY[body](), seed=3)(images, sample_ids=ids, epoch=2, return_params=True)
    params = batch.params
    body_nodes = len(plain_params.transforms)
    assert params.names[:body_nodes] == plain_params.names
    for got, expected in zip(params.transforms, plain_params.transforms):
        assert all(torch.equal(a, b) for a, b in zip(got.tensors().values(), expected.tensors().values()))
    mixed = params.transforms[body_nodes]
    assert isinstance(mixed, ga.MixParams) and len(params.transforms) == len(params.names)
    assert batch.images.dtype == plain.dtype and batch.images.shape == plain.shape
    _assert_mixed(batch.images, _reference_mix(plain, mixed))
    assert batch.labels.dtype == torch.float32 and batch.labels.shape == (8, 5)
    torch.testing.assert_close(batch.labels.double(), _reference_labels(labels, mixed, 5, 0.1), rtol=0, atol=1e-6)
    torch.testing.assert_close(batch.labels.sum(dim=1), torch.ones(8))
    assert (mixed.partner != torch.arange(8)).all() and bool(mixed.applied.all())


@pytest.mark.parametrize("kind", PIPELINE_MIXES)
def test_pipeline_mix_replays_and_saves(kind, tmp_path):
    images, labels = _batch(6, dtype=torch.uint8, hw=20)
    pipe = ga.Pipeline([*BODY["normalized"](), PIPELINE_MIXES[kind]()], seed=5)
    first = pipe(images, labels=labels)
    second = pipe(images, labels=labels)
    assert not torch.equal(first.images, second.images), "calls without ids must draw anew"
    assert torch.equal(pipe.replay(images, first.params), first.images)
    first.params.save(tmp_path / "params.pt")
    assert torch.equal(pipe.replay(images, ga.BatchParams.load(tmp_path / "params.pt")), first.images)
    # keyed by the pipeline's seed, epoch and ids: a new pipeline draws the same, sample() too
    ids = torch.arange(6) + 40
    again = ga.Pipeline([*BODY["normalized"](), PIPELINE_MIXES[kind]()], seed=5)
    keyed = pipe(images, labels=labels, sample_ids=ids)
    assert torch.equal(again(images, labels=labels, sample_ids=ids).images, keyed.images)
    sampled = again.sample(images, sample_ids=ids).transforms[-1]
    assert all(torch.equal(a, b) for a, b in zip(sampled.tensors().values(), keyed.params.transforms[-1].tensors().values()))
    pipe.set_epoch(1)
    assert not torch.equal(pipe(images, labels=labels, sample_ids=ids).images, keyed.images)


def test_random_choice_of_mixes_is_mix_choice():
    """A RandomChoice of mixes chooses as MixChoice does: per sample in 'elem' mode (both kinds over a
    batch), once per batch in 'batch' mode (timm's switch_prob), with the same draws as a MixChoice."""
    images, labels = _batch(32, hw=8)
    ids = torch.arange(32)

    def mixes(mode):
        return [ga.MixUp(0.4, 5, mode=mode), ga.CutMix(1.0, 5, mode=mode)]

    elem = ga.Pipeline([ga.RandomChoice(mixes("elem"))], seed=0)(images, labels=labels, sample_ids=ids)
    assert elem.params.names == ["RandomChoice", "MixUp", "CutMix"]
    choice = elem.params.transforms[0]
    assert isinstance(choice, ga.mix.MixChoiceParams) and 4 < int(choice.choice.sum()) < 28
    assert (choice.box[choice.choice == 0] == 0).all() and (choice.weight[choice.choice == 1] == 1).all()
    for i in (0, 1):  # each mix's own draw is recorded; the chosen values come from it
        own = elem.params.transforms[1 + i]
        assert torch.equal(choice.lam[choice.choice == i], own.lam[choice.choice == i])
    same = ga.Pipeline([ga.MixChoice(mixes("elem"))], seed=0)(images, labels=labels, sample_ids=ids)
    assert same.params.names == ["MixChoice", "MixUp", "CutMix"]
    assert torch.equal(same.images, elem.images) and torch.equal(same.labels, elem.labels)
    per_batch = ga.Pipeline([ga.RandomChoice(mixes("batch"), p=[0.5, 0.5])], seed=0)
    chosen = [per_batch(images[:4], labels=labels[:4], sample_ids=ids[:4], epoch=e).params.transforms[0].choice
              for e in range(16)]
    assert all(c.unique().numel() == 1 for c in chosen)
    assert {int(c[0]) for c in chosen} == {0, 1}


def test_pipeline_mix_keeps_memory_format_and_float_labels():
    images, _ = _batch(4, dtype=torch.uint8)
    pipe = ga.Pipeline([ga.ToDtype(torch.float16, scale=True), ga.CutMix(1.0, 5)], seed=0, memory_format=torch.channels_last)
    soft = torch.softmax(torch.randn(4, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    batch = pipe(images, labels=soft)
    assert batch.images.dtype == torch.float16 and batch.images.is_contiguous(memory_format=torch.channels_last)
    mixed = batch.params.transforms[-1]
    lam = mixed.lam.float()[:, None]
    torch.testing.assert_close(batch.labels, soft * lam + soft[mixed.partner] * (1 - lam))


def test_collate_passes_labels_to_a_mix_pipeline():
    """Same-sized and ragged batches: each sample's crop as its own one-sample call keyed by its index,
    then the mix the whole pipeline draws for those ids."""
    gen = torch.Generator().manual_seed(0)
    sizes = [(20, 20)] * 6 + [(18, 24), (24, 16), (18, 24), (20, 20)]
    data = ga.data.WithIndex([(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen), i % 5)
                              for i, (h, w) in enumerate(sizes)])
    body = [ga.RandomResizedCrop(12), ga.ToDtype(torch.float32, scale=True)]
    pipe = ga.Pipeline([*body, ga.MixUp(0.4, 5, mode="elem", label_smoothing=0.1)], seed=1)
    plain = ga.Pipeline(body, seed=1)
    collate = ga.data.Collate(pipe)
    collate.set_epoch(3)
    for chosen in ([0, 1, 2, 3, 4, 5], [6, 0, 7, 8, 1, 9]):
        batch = collate([data[i] for i in chosen])
        ids, labels = torch.tensor(chosen), torch.tensor([data[i][1] for i in chosen])
        assert torch.equal(batch["sample_ids"], ids)
        unmixed = torch.cat([plain(data[i][0][None], sample_ids=[i], epoch=3) for i in chosen])
        mixed = pipe.sample(torch.zeros(len(chosen), 3, 20, 20, dtype=torch.uint8), sample_ids=ids, epoch=3).transforms[-1]
        _assert_mixed(batch["images"], _reference_mix(unmixed, mixed))
        torch.testing.assert_close(batch["labels"].double(), _reference_labels(labels, mixed, 5, 0.1), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="already ends in MixUp"):
        ga.data.Collate(pipe, ga.CutMix(1.0, 5))
    with pytest.raises(ValueError, match="needs labels"):
        collate([{"image": data[i][0], "index": i} for i in range(2)])


def test_pipeline_mix_errors():
    images, labels = _batch(4)
    mixup = ga.MixUp(0.2, 5)
    with pytest.raises(ValueError, match="MixUp must be the last transform"):
        ga.Pipeline([mixup, ga.RandomHorizontalFlip()])
    with pytest.raises(ValueError, match="CutMix must be the last transform"):
        ga.Pipeline([ga.RandomApply([ga.CutMix(1.0, 5)], p=0.5)])
    with pytest.raises(ValueError, match="must be the last transform"):
        ga.Pipeline([mixup, ga.CutMix(1.0, 5)])
    with pytest.raises(ValueError, match="only MixUp and CutMix"):
        ga.Pipeline([ga.RandomChoice([mixup, ga.RandomHorizontalFlip()])])
    with pytest.raises(ValueError, match="share mode"):
        ga.Pipeline([ga.RandomChoice([mixup, ga.CutMix(1.0, 5, mode="elem")])])
    pipe = ga.Pipeline([ga.RandomHorizontalFlip(), mixup], seed=0)
    with pytest.raises(ValueError, match="pass labels="):
        pipe(images)
    with pytest.raises(ValueError, match="labels must lie"):
        pipe(images, labels=labels + 5)
    with pytest.raises(ValueError, match=r"\(4,\) integer classes"):
        pipe(images, labels=[torch.tensor([1, 2]), torch.tensor([3])])  # per-box labels
    with pytest.raises(ValueError, match="image-level class labels only, got boxes"):
        pipe(images, labels=labels, boxes=[torch.tensor([[0.0, 0.0, 2.0, 2.0]])] * 4)
    with pytest.raises(ValueError, match="got masks"):
        pipe(images, labels=labels, masks=torch.zeros(4, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) batch"):
        pipe(images[0], labels=labels[:1])
    # without a mix, labels keep their meaning: passed through, or per-box labels filtered with boxes
    plain = ga.Pipeline([ga.RandomHorizontalFlip()], seed=0)
    assert plain(images, labels=labels).labels is labels


@pytest.mark.cuda
@CUDA
def test_pipeline_mix_on_cuda_matches_cpu_without_syncing():
    images, labels = _batch(8, dtype=torch.uint8, hw=20)
    ids = torch.arange(8)
    transforms = [*BODY["normalized"](), PIPELINE_MIXES["randomchoice"]()]
    cpu = ga.Pipeline(transforms, seed=2)(images, labels=labels, sample_ids=ids)
    pipe = ga.Pipeline(transforms, seed=2)
    images_g, labels_g, ids_g = images.cuda(), labels.cuda(), ids.cuda()
    pipe(images_g, labels=labels_g, sample_ids=ids_g)  # warm up (lazy CUDA initialisation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu = pipe(images_g, labels=labels_g, sample_ids=ids_g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert gpu.images.is_cuda and gpu.labels.is_cuda
    assert torch.equal(gpu.params.transforms[-3].partner.cpu(), cpu.params.transforms[-3].partner)
    torch.testing.assert_close(gpu.images.cpu(), cpu.images, rtol=0, atol=0.03)  # a uint8 level after Normalize
    torch.testing.assert_close(gpu.labels.cpu(), cpu.labels)
    assert torch.equal(pipe.replay(images_g, gpu.params), gpu.images)


def test_defaults_are_torchvisions():
    """alpha 1.0 for MixUp and CutMix, as torchvision's (MixUp's was 0.2 once)."""
    from torchvision.transforms import v2

    assert ga.MixUp(num_classes=10).alpha == v2.MixUp(num_classes=10).alpha == 1.0
    assert ga.CutMix(num_classes=10).alpha == v2.CutMix(num_classes=10).alpha == 1.0
