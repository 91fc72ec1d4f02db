"""The counter-based RNG (gpuaug.random): exact bits against a pure-Python uint32 reference,
distribution quality (fixed keys, so nothing can flake), independence, and no global RNG use."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuaug as ga
from gpuaug import _device
from gpuaug import random as R

M32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9


# ---------------------------------------------------------------- pure-Python uint32 reference


def fmix32(h: int) -> int:
    """murmur3's 32-bit finaliser on a Python int, uint32 arithmetic."""
    h &= M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def absorb(h: int, word: int) -> int:
    return fmix32(h ^ fmix32((word + GOLDEN) & M32))


def ref_sample_key(seed: int, epoch: int, call: int, sample_id: int) -> int:
    h = 0x2545F491
    for word in (seed & M32, seed >> 32, epoch, call, sample_id & M32, sample_id >> 32):
        h = absorb(h, word & M32)
    return h


def ref_stream_bits(key: int, transform: int, n: int, start: int = 0) -> list[int]:
    k = absorb(key, transform)
    return [fmix32(k ^ fmix32((c * 0x27D4EB2F + 1) & M32)) for c in range(start, start + n)]


def u32(t: torch.Tensor) -> list[int]:
    return [v & M32 for v in t.to(torch.int64).flatten().tolist()]


def chi2_critical(df: int, z: float = 6.0) -> float:
    """Upper chi-square quantile (Wilson-Hilferty); z=6 is a ~1e-9 tail: a fixed-key test cannot flake."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2(counts: torch.Tensor, expected: float) -> float:
    return float(((counts.to(torch.float64) - expected) ** 2 / expected).sum())


# ---------------------------------------------------------------- exact bits


def test_fmix32_reference_known_values():
    # published murmur3 fmix32 values; the reference must also be a bijection on a sample of inputs
    assert fmix32(0) == 0
    assert fmix32(1) == 0x514E28B7
    values = list(range(0, 1 << 32, 104729))
    assert len({fmix32(v) for v in values}) == len(values)


def test_mix32_matches_pure_python_uint32():
    g = torch.Generator().manual_seed(1234)
    edge = torch.tensor([0, 1, -1, 2**31 - 1, -(2**31), 0x7FFF, 0x10000, -65536, 12345678], dtype=torch.int32)
    rand = torch.randint(-(2**31), 2**31, (4000,), generator=g, dtype=torch.int64).to(torch.int32)
    x = torch.cat([edge, rand])
    got = R.mix32(x)
    assert got.dtype == torch.int32
    assert u32(got) == [fmix32(v) for v in u32(x)]


def test_mix32_does_not_modify_input():
    x = torch.arange(-50, 50, dtype=torch.int32) * 99991
    before = x.clone()
    R.mix32(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("seed", [0, 1, 2**31 + 7, 2**40 + 3, -5])
@pytest.mark.parametrize("epoch,call", [(0, 0), (3, -1), (7, 12)])
def test_sample_keys_match_pure_python(seed, epoch, call):
    ids = torch.tensor([0, 1, 2, 17, 2**31 - 1, 2**31, 2**32 + 5, 2**40 + 1], dtype=torch.int64)
    keys = R.sample_keys(seed, epoch, call, ids)
    assert keys.dtype == torch.int32 and keys.shape == ids.shape
    assert u32(keys) == [ref_sample_key(seed, epoch, call, i) for i in ids.tolist()]


@pytest.mark.parametrize("seed", [0, 2**31 + 7, 2**40 + 3, -5])
@pytest.mark.parametrize("epoch,call", [(0, 0), (3, 5), (torch.tensor(7), 12)])
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_position_keys_are_the_keys_of_positions(seed, epoch, call, batch, monkeypatch):
    """The words hashed on the host (the accelerator path, run here on the CPU) give the keys that
    hashing the ids 0..B-1 gives, and the pure-Python reference's."""
    expected = R.sample_keys(seed, epoch, call, torch.arange(batch))
    monkeypatch.setattr(_device, "on_host", lambda device: False)
    monkeypatch.setattr(R, "sample_keys", None)  # the constant's path hashes no ids
    keys = R.position_keys(seed, epoch, call, batch, "cpu")
    assert torch.equal(keys, expected)
    assert u32(keys) == [ref_sample_key(seed, int(epoch), call, i) for i in range(batch)]


def test_stream_bits_match_pure_python_and_count_on():
    keys = R.sample_keys(5, 1, -1, torch.arange(6))
    s = R.Stream(keys, transform=3)
    first, second = s.bits(4), s.bits(3)
    for b, key in enumerate(u32(keys)):
        assert u32(first[b]) == ref_stream_bits(key, 3, 4)
        assert u32(second[b]) == ref_stream_bits(key, 3, 3, start=4)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.dictionaries(st.integers(0, 30), st.integers(0, 6), max_size=5),
    calls=st.lists(st.tuples(st.sampled_from(["bits", "uniform", "bernoulli", "key"]), st.integers(1, 4)),
                   min_size=1, max_size=6),
)
def test_draws_hashed_ahead_match_the_pure_python_stream(counts, calls):
    """Draws hashed together up front (any counts, fewer or more than the transform takes) are the
    bits a stream hashes on demand: the pure-Python reference, draw by draw."""
    keys = R.sample_keys(4, 2, -1, torch.tensor([0, 7, 2**33 + 1]))
    draws = R.Draws(keys, counts)
    for t in sorted(counts) + [99]:
        stream, taken = draws.stream(t), 0
        for kind, n in calls:
            if kind == "bits":
                got, width = stream.bits(n), n
            elif kind == "uniform":
                got, width = stream.uniform(n, -1.0, 3.0), n
            elif kind == "bernoulli":
                got, width = stream.bernoulli(0.3)[:, None], 1
            else:
                got, width = stream.key()[:, None], 1
            for b, key in enumerate(u32(keys)):
                ref = ref_stream_bits(key, t, width, start=taken)
                if kind in ("bits", "key"):
                    assert u32(got[b]) == ref
                elif kind == "uniform":
                    assert got[b].tolist() == [-1.0 + 4.0 * ((v >> 8) / float(1 << 24)) for v in ref]
                else:
                    assert bool(got[b, 0]) == ((ref[0] >> 8) / float(1 << 24) < 0.3)
            taken += width
    assert draws.used() == {t: taken for t in sorted(counts) + [99]}


def test_uniform_bits_is_top_24_bits_scaled():
    bits = torch.tensor([0, -1, 2**31 - 1, -(2**31), 0x12345678], dtype=torch.int32)
    expect = [(v >> 8) / float(1 << 24) for v in u32(bits)]
    got = R.uniform_bits(bits)
    assert got.dtype == torch.float64
    assert got.tolist() == expect
    assert float(got.max()) < 1.0 and float(got.min()) >= 0.0


def test_same_keys_give_identical_bits():
    ids = torch.arange(100)
    a = R.Stream(R.sample_keys(9, 2, -1, ids), 4)
    b = R.Stream(R.sample_keys(9, 2, -1, ids), 4)
    assert torch.equal(a.bits(7), b.bits(7))
    assert torch.equal(a.uniform(3), b.uniform(3))
    assert torch.equal(a.permutation(4), b.permutation(4))


def test_a_sample_bits_do_not_depend_on_the_batch():
    ids = torch.tensor([5, 900, 3, 2**33, 41])
    full = R.Stream(R.sample_keys(11, 0, -1, ids), 2).bits(5)
    for i in range(len(ids)):
        alone = R.Stream(R.sample_keys(11, 0, -1, ids[i : i + 1]), 2).bits(5)
        assert torch.equal(alone[0], full[i])
    perm = torch.tensor([4, 2, 0, 3, 1])
    permuted = R.Stream(R.sample_keys(11, 0, -1, ids[perm]), 2).bits(5)
    assert torch.equal(permuted, full[perm])


def test_every_key_component_changes_the_key():
    ids = torch.arange(2000)
    base = R.sample_keys(0, 0, 0, ids)
    variants = [
        R.sample_keys(1, 0, 0, ids),
        R.sample_keys(2**32, 0, 0, ids),  # high word of the seed
        R.sample_keys(0, 1, 0, ids),
        R.sample_keys(0, 0, 1, ids),
        R.sample_keys(0, 0, -1, ids),
        R.sample_keys(0, 0, 0, ids + 2**32),  # high word of the sample id
    ]
    for v in variants:
        assert (v != base).float().mean() > 0.99


def test_sample_keys_have_few_collisions():
    keys = R.sample_keys(0, 0, -1, torch.arange(100_000))
    collisions = keys.numel() - keys.unique().numel()
    # birthday bound: about 1.2 expected among 1e5 random 32-bit values
    assert collisions <= 8


# ---------------------------------------------------------------- distributions


def _uniforms(n_samples: int, n_draws: int, seed: int = 123, transform: int = 0) -> torch.Tensor:
    return R.Stream(R.sample_keys(seed, 0, -1, torch.arange(n_samples)), transform).uniform(n_draws)


def test_uniform_chi_square():
    u = _uniforms(50_000, 4).flatten()
    bins = 128
    counts = torch.bincount((u * bins).floor().to(torch.int64), minlength=bins)
    assert chi2(counts, u.numel() / bins) < chi2_critical(bins - 1)


def test_uniform_kolmogorov_smirnov():
    u = _uniforms(20_000, 1, seed=77).flatten().sort().values
    n = u.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = torch.maximum(i / n - u, u - (i - 1) / n).max().item()
    # Kolmogorov distribution: P(sqrt(n) D > 1.95) ~ 1e-3; fixed keys, so this is a quality bound
    assert math.sqrt(n) * d < 1.95


def test_uniform_range_low_high():
    s = R.Stream(R.sample_keys(1, 0, 0, torch.arange(10_000)), 0)
    u = s.uniform(2, low=-3.0, high=5.0)
    assert u.dtype == torch.float64 and u.shape == (10_000, 2)
    assert float(u.min()) >= -3.0 and float(u.max()) < 5.0
    assert float(u.min()) < -2.99 and float(u.max()) > 4.99
    assert abs(float(u.mean()) - 1.0) < 0.1


def test_every_bit_is_balanced():
    bits = R.Stream(R.sample_keys(3, 0, -1, torch.arange(40_000)), 1).bits(1).flatten().to(torch.int64) & M32
    n = bits.numel()
    for k in range(32):
        ones = int(((bits >> k) & 1).sum())
        assert abs(ones - n / 2) < 6 * math.sqrt(n / 4), k


def test_pairs_of_draws_are_jointly_uniform():
    u = _uniforms(60_000, 2, seed=5)
    cells = (u[:, 0] * 10).floor().to(torch.int64) * 10 + (u[:, 1] * 10).floor().to(torch.int64)
    counts = torch.bincount(cells, minlength=100)
    assert chi2(counts, u.shape[0] / 100) < chi2_critical(99)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_independence_of_draws_transforms_samples_and_seeds():
    n = 40_000
    bound = 6 / math.sqrt(n)
    ids = torch.arange(n)
    keys = R.sample_keys(8, 0, -1, ids)
    t0 = R.Stream(keys, 0).uniform(2)
    t1 = R.Stream(keys, 1).uniform(1)[:, 0]
    assert abs(_corr(t0[:, 0], t0[:, 1])) < bound  # consecutive draws
    assert abs(_corr(t0[:, 0], t1)) < bound  # same draw index, neighbouring transforms
    assert abs(_corr(t0[:-1, 0], t0[1:, 0])) < bound  # neighbouring sample ids
    other_seed = R.Stream(R.sample_keys(9, 0, -1, ids), 0).uniform(1)[:, 0]
    assert abs(_corr(t0[:, 0], other_seed)) < bound
    other_epoch = R.Stream(R.sample_keys(8, 1, -1, ids), 0).uniform(1)[:, 0]
    assert abs(_corr(t0[:, 0], other_epoch)) < bound
    # the same draw of different transforms must not be equal either
    assert (t0[:, 0] == t1).float().mean() < 1e-3


def test_bernoulli_rate():
    n = 40_000
    s = R.Stream(R.sample_keys(2, 0, -1, torch.arange(n)), 0)
    for p in (0.0, 0.1, 0.5, 0.9, 1.0):
        hits = s.bernoulli(p)
        assert hits.dtype == torch.bool and hits.shape == (n,)
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(int(hits.sum()) - n * p) <= 5 * sigma


def test_randint_range_and_uniformity():
    n = 30_000
    s = R.Stream(R.sample_keys(4, 0, -1, torch.arange(n)), 0)
    r = s.randint(7, 2)
    assert r.dtype == torch.int64 and r.shape == (n, 2)
    assert int(r.min()) == 0 and int(r.max()) == 6
    counts = torch.bincount(r.flatten(), minlength=7)
    assert chi2(counts, r.numel() / 7) < chi2_critical(6)
    # per-column bounds broadcast
    r2 = s.randint(torch.tensor([1, 3]), 2)
    assert int(r2[:, 0].max()) == 0 and int(r2[:, 1].max()) == 2


def test_permutation_is_uniform_over_all_orders():
    n = 48_000
    perm = R.Stream(R.sample_keys(6, 0, -1, torch.arange(n)), 0).permutation(4)
    assert perm.shape == (n, 4)
    assert torch.equal(perm.sort(dim=1).values, torch.arange(4).expand(n, 4))
    code = perm[:, 0] * 64 + perm[:, 1] * 16 + perm[:, 2] * 4 + perm[:, 3]
    _, counts = code.unique(return_counts=True)
    assert counts.numel() == 24
    assert chi2(counts, n / 24) < chi2_critical(23)


def test_key_draws_fresh_keys():
    s = R.Stream(R.sample_keys(0, 0, 0, torch.arange(1000)), 0)
    k1, k2 = s.key(), s.key()
    assert k1.dtype == torch.int32 and k1.shape == (1000,)
    assert (k1 != k2).float().mean() > 0.99
    assert k1.unique().numel() > 990


# ---------------------------------------------------------------- normal field


def test_normal_field_mean_std_and_shape():
    keys = R.sample_keys(0, 0, -1, torch.arange(8))
    z = R.normal_field(keys, (3, 200, 250))
    assert z.shape == (8, 3, 200, 250) and z.dtype == torch.float32
    assert bool(z.isfinite().all())
    flat = z.flatten().to(torch.float64)
    n = flat.numel()
    assert abs(float(flat.mean())) < 6 / math.sqrt(n)
    assert abs(float(flat.std()) - 1.0) < 6 / math.sqrt(2 * n)
    # tails of a standard normal: P(|z| > 2) = 0.0455
    tail = float((flat.abs() > 2).double().mean())
    assert abs(tail - 0.0455) < 0.003
    # per sample, not just overall
    per = z.flatten(1).to(torch.float64)
    assert float(per.mean(1).abs().max()) < 6 / math.sqrt(per.shape[1])
    assert float((per.std(1) - 1).abs().max()) < 0.02


def test_normal_field_gaussianity_by_quantiles():
    z = R.normal_field(R.sample_keys(1, 0, -1, torch.arange(4)), (100_000,)).flatten().to(torch.float64)
    # P(Z < q) for standard normal quantiles
    for q, p in ((-1.6449, 0.05), (-0.6745, 0.25), (0.0, 0.5), (0.6745, 0.75), (1.6449, 0.95)):
        frac = float((z < q).double().mean())
        assert abs(frac - p) < 6 * math.sqrt(p * (1 - p) / z.numel())


def test_normal_field_depends_only_on_key_and_index():
    keys = R.sample_keys(2, 0, -1, torch.arange(5))
    big = R.normal_field(keys, (40,))
    small = R.normal_field(keys[2:4], (10,))
    assert torch.equal(small, big[2:4, :10])
    shaped = R.normal_field(keys, (2, 4, 5))
    assert torch.equal(shaped.flatten(1), big)
    # different samples and neighbouring elements are uncorrelated
    many = R.normal_field(R.sample_keys(2, 0, -1, torch.arange(20_000)), (2,))
    assert abs(_corr(many[:, 0], many[:, 1])) < 6 / math.sqrt(20_000)
    assert abs(_corr(many[:-1, 0], many[1:, 0])) < 6 / math.sqrt(20_000)


# ---------------------------------------------------------------- global RNG state


def _random_pipeline(seed=0):
    return ga.Pipeline(
        [
            ga.RandomResizedCrop(12),
            ga.RandomHorizontalFlip(),
            ga.RandomRotation(20, interpolation="bilinear"),
            ga.RandomPerspective(0.3, p=0.5),
            ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            ga.RandomGrayscale(0.3),
            ga.GaussianBlur(3, sigma=(0.1, 2.0), p=0.5),
            ga.GaussianNoise(sigma=0.05),
            ga.RandomErasing(p=0.5, value="random"),
            ga.RandomChoice([ga.RandomInvert(1.0), ga.RandomSolarize(0.5, 1.0)]),
            ga.RandomOrder([ga.RandomPosterize(4, 1.0), ga.RandomAutocontrast(1.0)]),
        ],
        seed=seed,
    )


def test_pipeline_leaves_global_rng_state_untouched():
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pipe = _random_pipeline()
    before = torch.get_rng_state()
    pipe(x)
    pipe(x, sample_ids=torch.arange(6), return_params=True)
    assert torch.equal(torch.get_rng_state(), before)


def test_other_global_generators_untouched():
    import random

    import numpy as np

    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    pipe = ga.Pipeline(_random_pipeline().transforms, seed=None)  # a random seed must not come from torch either
    pipe(x)
    assert random.getstate() == py_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_global_seed_does_not_change_output():
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    a = _random_pipeline()(x)
    torch.manual_seed(987654)
    torch.rand(100)
    b = _random_pipeline()(x)
    assert torch.equal(a, b)


def test_seed_none_draws_a_random_seed():
    assert ga.Pipeline([], seed=None).seed != ga.Pipeline([], seed=None).seed


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rng_bits_identical_on_cuda():
    ids = torch.tensor([0, 1, 5, 2**31, 2**33 + 9])
    cpu_keys = R.sample_keys(2**35 + 1, 3, -1, ids)
    cuda_keys = R.sample_keys(2**35 + 1, 3, -1, ids.cuda())
    assert torch.equal(cuda_keys.cpu(), cpu_keys)
    assert torch.equal(R.Stream(cuda_keys, 4).bits(9).cpu(), R.Stream(cpu_keys, 4).bits(9))
    assert torch.equal(R.Stream(cuda_keys, 4).uniform(9).cpu(), R.Stream(cpu_keys, 4).uniform(9))
    torch.testing.assert_close(R.normal_field(cuda_keys, (3, 7, 7)).cpu(), R.normal_field(cpu_keys, (3, 7, 7)))


def test_a_pipeline_draws_the_same_with_its_draws_hashed_ahead():
    """A pipeline's first call hashes each draw on demand and its later calls hash them together
    up front (counted from the call before): the same parameters and images."""
    pipe = ga.Pipeline([
        ga.RandomResizedCrop(12), ga.RandomHorizontalFlip(),
        ga.RandomApply([ga.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), ga.RandomGrayscale(p=0.2),
        ga.RandomErasing(p=0.5, value="random"),
    ], seed=6)
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    ids = torch.tensor([3, 1, 4, 1, 5])
    first, params = pipe(x, sample_ids=ids, return_params=True)
    assert pipe._draw_counts  # the next call hashes ahead
    second, again = pipe(x, sample_ids=ids, return_params=True)
    assert torch.equal(first, second)
    for a, b in zip(params.transforms, again.transforms, strict=True):
        for name, value in a.tensors().items():
            assert torch.equal(value, b.tensors()[name]), name
