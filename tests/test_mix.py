"""MixUp, CutMix and MixChoice: the mixing arithmetic, soft labels with smoothing, timm's
'batch'/'pair'/'elem' modes, the Beta distribution, and counter-based keys (reproducible, keyed by
seed, epoch and sample ids, independent of batch order)."""

from __future__ import annotations

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


def test_pair_mode_needs_an_even_batch():
    with pytest.raises(ValueError, match="even"):
        ga.MixUp(0.2, 5, mode="pair")(*_batch(7))


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
    """Sides int(H * sqrt(1 - lam)) around a uniform centre, clipped; lam corrected to the area."""
    size, h, w = 3000, 20, 30
    p = ga.CutMix(1.0, 5, mode="elem", seed=0).sample(torch.zeros(size, 1, h, w), sample_ids=torch.arange(size))
    top, bottom, left, right = p.box.unbind(1)
    assert (top >= 0).all() and (bottom <= h).all() and (left >= 0).all() and (right <= w).all()
    assert (top <= bottom).all() and (left <= right).all()
    unclipped = (top > 0) & (bottom < h) & (left > 0) & (right < w)
    assert ((bottom - top)[unclipped] % 2 == 0).all(), "timm's box is centre -/+ cut // 2"
    assert 0.4 < float(p.lam.mean()) < 0.75  # Beta(1, 1) lam, raised by clipping
    assert p.weight.eq(1).all()


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
