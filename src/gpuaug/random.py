"""Counter-based, stateless random numbers keyed by (seed, epoch, sample, transform, draw).

Every random number gpuaug uses is a hash of integers, computed with int32 tensor ops that give
the same bits on every device. Nothing reads or changes torch's global RNG state, and a sample's
numbers depend only on its key, never on the batch it is in.

Example:
    >>> import torch
    >>> keys = sample_keys(seed=0, epoch=0, call=0, ids=torch.arange(4))
    >>> u = Stream(keys, transform=0).uniform(2)
    >>> u.shape, bool(((u >= 0) & (u < 1)).all())
    (torch.Size([4, 2]), True)
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from . import _device
from ._device import constant

__all__ = ["mix32", "sample_keys", "position_keys", "Stream", "Draws", "uniform_bits", "normal_field"]

_GOLDEN = 0x9E3779B9


def _i32(value: int) -> int:
    """The signed int32 with the same low 32 bits as ``value``."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def mix32(x: Tensor) -> Tensor:
    """murmur3's 32-bit finaliser on an int32 tensor (uint32 bits, logical shifts); ``x`` is not changed.

    After the first pass every step works in place: fresh memory for each of 11 passes costs CPUs
    several times the arithmetic."""
    x = x ^ (x >> 16).bitwise_and_(0xFFFF)
    x.mul_(_i32(0x85EBCA6B))
    x.bitwise_xor_((x >> 13).bitwise_and_(0x7FFFF))
    x.mul_(_i32(0xC2B2AE35))
    return x.bitwise_xor_((x >> 16).bitwise_and_(0xFFFF))


def _mix32_int(value: int) -> int:
    """:func:`mix32` of one word, computed in Python: the same uint32 bits."""
    x = value & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _hashed_word(word: int) -> int:
    """The int32 that :func:`_absorb` folds in for a word known on the host."""
    return _i32(_mix32_int(word + _GOLDEN))


def _absorb_int(h: int, word: int) -> int:
    """:func:`_absorb` for a hash and word known on the host (uint32 bits)."""
    return _mix32_int(h ^ _hashed_word(word))


def _absorb(h: Tensor, word: Tensor | int) -> Tensor:
    """Fold one 32-bit word into the running hash ``h``; an int word is hashed on the host (no upload)."""
    hashed = _hashed_word(word) if isinstance(word, int) else mix32(word + _i32(_GOLDEN))
    return mix32(h ^ hashed)


def sample_keys(seed: int, epoch: int | Tensor, call: int, ids: Tensor) -> Tensor:
    """One int32 key per sample from (seed, epoch, call, dataset index).

    ``call`` is -1 when the caller passed dataset indices, so a sample's key does not depend on
    how many batches came before it. ``epoch`` may be a 0-dim integer tensor on the ids' device
    (the same keys as the int), so that a captured CUDA graph can be replayed for another epoch.
    """
    ids = ids.to(torch.int64)
    # the id's two 32-bit words, hashed together; then absorbed one after the other
    words = mix32(torch.stack([ids & 0xFFFFFFFF, ids >> 32], dim=-1).to(torch.int32) + _i32(_GOLDEN))
    return _keys_of_words(seed, epoch, call, words[..., 0], words[..., 1])


_MOST_POSITIONS = 4096  # beyond, looking the constant up costs more than hashing on the device


def position_keys(seed: int, epoch: int | Tensor, call: int, batch: int, device: torch.device | str) -> Tensor:
    """:func:`sample_keys` of the ids 0, 1, ..., ``batch`` - 1.

    On an accelerator their hashed words are a constant, hashed once on the host: 16 tensor ops
    (kernel launches) fewer per call. On the host, and while torch.compile traces, the ids are
    hashed as :func:`sample_keys` does (there that is the cheaper way).

    Example:
        >>> torch.equal(position_keys(3, 1, 7, 5, "cpu"), sample_keys(3, 1, 7, torch.arange(5)))
        True
    """
    device = torch.device(device)
    if _device.on_host(device) or torch.compiler.is_compiling() or batch > _MOST_POSITIONS:
        return sample_keys(seed, epoch, call, torch.arange(batch, device=device))
    low = constant(_position_words(batch), torch.int32, device)
    return _keys_of_words(seed, epoch, call, low, _hashed_word(0))  # every position's high word is 0


@functools.lru_cache(maxsize=16)
def _position_words(batch: int) -> tuple[int, ...]:
    """The hashed low words of the ids 0..batch-1, as :func:`sample_keys` hashes them."""
    return tuple(_hashed_word(i) for i in range(batch))


def _keys_of_words(seed: int, epoch: int | Tensor, call: int, low: Tensor, high: Tensor | int) -> Tensor:
    """The keys of :func:`sample_keys` from the ids' hashed low and high words."""
    h = _absorb_int(_absorb_int(0x2545F491, seed & 0xFFFFFFFF), seed >> 32)
    if isinstance(epoch, Tensor):
        keys = _absorb(_absorb(torch.full(low.shape, _i32(h), dtype=torch.int32, device=low.device),
                               epoch.to(torch.int32)), call)
        keys = mix32(keys ^ low)
    else:
        keys = mix32(low ^ _i32(_absorb_int(_absorb_int(h, epoch), call)))
    return mix32(keys ^ high)


def uniform_bits(bits: Tensor) -> Tensor:
    """Map int32 hash bits to float64 uniforms in [0, 1) (24 random bits, exact in float32)."""
    return ((bits >> 8) & 0xFFFFFF).to(torch.float64) * (1.0 / (1 << 24))


def _counter_word(c: int) -> int:
    """The hashed counter of draw ``c`` (it depends on nothing random: computed on the host)."""
    return _i32(_mix32_int(c * 0x27D4EB2F + 1))


class Stream:
    """The random numbers of one transform: draws are numbered, so they replay exactly.

    ``ahead`` holds the first draws already hashed, as :class:`Draws` makes them: the transform key
    (B,), its bits (B, n) and their uniforms (B, n); draws past them are hashed on demand, to the
    same bits.

    Example:
        >>> s = Stream(sample_keys(1, 0, 0, torch.arange(3)), transform=5)
        >>> s.uniform(1, low=-2.0, high=2.0).shape
        torch.Size([3, 1])
    """

    def __init__(self, keys: Tensor, transform: int, ahead: tuple[Tensor, Tensor, Tensor] | None = None) -> None:
        self._samples, self._transform = keys, transform
        self._keys: Tensor | None = None if ahead is None else ahead[0]
        self._ahead_bits, self._ahead_uniforms = (None, None) if ahead is None else ahead[1:]
        self._next = 0

    @property
    def used(self) -> int:
        """How many draws the transform has taken."""
        return self._next

    @property
    def keys(self) -> Tensor:
        """(B,) int32: the samples' keys with the transform folded in (hashed when first needed)."""
        if self._keys is None:
            self._keys = _absorb(self._samples, self._transform)
        return self._keys

    def _take(self, n: int) -> tuple[int, slice | None]:
        """Count off the next ``n`` draws: their first index, and their slice of the draws hashed
        ahead (None when they are not all there: then hash them with :meth:`_hash`)."""
        start = self._next
        self._next += n
        if self._ahead_bits is None or start + n > self._ahead_bits.shape[1]:
            return start, None
        return start, slice(start, start + n)

    def _hash(self, start: int, n: int) -> Tensor:
        """(B, n) int32 hash words of draws ``start`` to ``start + n - 1``."""
        counters = [_counter_word(c) for c in range(start, start + n)]
        return mix32(self.keys[:, None] ^ constant(counters, torch.int32, self.keys.device))

    def bits(self, n: int) -> Tensor:
        """(B, n) int32 hash words, the next ``n`` draws of this stream."""
        start, ahead = self._take(n)
        return self._hash(start, n) if ahead is None else self._ahead_bits[:, ahead]

    def key(self) -> Tensor:
        """(B,) int32: a fresh per-sample key, for per-pixel randomness inside a kernel."""
        return self.bits(1)[:, 0]

    def uniform(self, n: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        """(B, n) float64 uniform in [low, high)."""
        start, ahead = self._take(n)
        u = uniform_bits(self._hash(start, n)) if ahead is None else self._ahead_uniforms[:, ahead]
        return u if (low, high) == (0.0, 1.0) else low + (high - low) * u

    def bernoulli(self, p: float) -> Tensor:
        """(B,) bool, True with probability ``p``."""
        if p >= 1.0 or p <= 0.0:  # certain (a uniform is < 1 and >= 0): counted, not hashed
            self._next += 1
            return torch.full(self._samples.shape, p >= 1.0, dtype=torch.bool, device=self._samples.device)
        return self.uniform(1)[:, 0] < p

    def randint(self, high: Tensor | int, n: int = 1) -> Tensor:
        """(B, n) int64 uniform in [0, high); ``high`` broadcasts against (B, n)."""
        return (self.uniform(n) * high).floor().to(torch.int64)

    def permutation(self, n: int) -> Tensor:
        """(B, n) int64: a uniformly random permutation of range(n) per sample."""
        return self.uniform(n).argsort(dim=1)


class Draws:
    """The streams of one call, their first draws hashed together: a handful of tensor ops for
    the whole pipeline instead of a dozen per draw (on a GPU, each op is a kernel launch).

    ``counts`` maps transform indices to how many draws to hash ahead (what the same pipeline
    used last time: :attr:`used` after the call). The numbers do not depend on it: a stream hashes
    any draw past its count on demand, to the same bits.

    Example:
        >>> keys = sample_keys(0, 0, 0, torch.arange(4))
        >>> draws = Draws(keys, {2: 3})
        >>> torch.equal(draws.stream(2).uniform(4), Stream(keys, 2).uniform(4))
        True
        >>> draws.used()
        {2: 4}
    """

    def __init__(self, keys: Tensor, counts: dict[int, int]) -> None:
        self._samples, self._counts = keys, counts
        self._streams: dict[int, Stream] = {}
        self._ahead: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        indices, words, owner, counters = _layout(counts, keys.device)
        if not indices:
            return
        transform_keys = mix32(keys[:, None] ^ words)  # (B, T): _absorb of every transform index
        bits = mix32(transform_keys[:, owner] ^ counters)
        uniforms = uniform_bits(bits)
        start = 0
        for i, t in enumerate(indices):
            ahead = slice(start, start + counts[t])
            self._ahead[t] = (transform_keys[:, i], bits[:, ahead], uniforms[:, ahead])
            start = ahead.stop

    def stream(self, transform: int) -> Stream:
        """The stream of transform index ``transform``."""
        stream = Stream(self._samples, transform, self._ahead.get(transform))
        self._streams[transform] = stream
        return stream

    def used(self) -> dict[int, int]:
        """How many draws each stream took: the ``counts`` for the next call. New counts' constants
        are made now, so that the next call uploads nothing (a CUDA graph may be capturing it)."""
        counts = {t: s.used for t, s in self._streams.items()}
        if counts != self._counts and self._samples.device.type != "cpu":
            _layout(counts, self._samples.device)
        return counts


def _layout(counts: dict[int, int], device: torch.device) -> tuple[list[int], Tensor, Tensor, Tensor]:
    """The constants of :class:`Draws`: the transform indices with draws, in order (T), their
    hashed words (:func:`_absorb` of each, (T,)), each draw's place among them (N,) and its hashed
    counter (N,)."""
    indices = sorted(t for t, n in counts.items() if n > 0)
    words = constant([_hashed_word(t) for t in indices], torch.int32, device)
    owner = constant([i for i, t in enumerate(indices) for _ in range(counts[t])], torch.int64, device)
    counters = constant([_counter_word(c) for t in indices for c in range(counts[t])], torch.int32, device)
    return indices, words, owner, counters


def normal_field(keys: Tensor, shape: tuple[int, ...]) -> Tensor:
    """(B, *shape) float32 standard normals, one per element, keyed by (key, element index).

    Box-Muller: elements 2i and 2i + 1 of sample ``b`` are the cosine and sine normals of the
    uniforms hashed from (``keys[b]``, 2i) and (``keys[b]``, 2i + 1); a fused kernel can compute the
    same numbers pixel by pixel.
    """
    count = math.prod(shape)
    pairs = (count + 1) // 2
    index = torch.arange(pairs, dtype=torch.int32, device=keys.device) * 2
    k = keys[:, None]

    def top24(counter: Tensor) -> Tensor:  # a fresh float32 tensor: every later pass works in place
        return mix32(k ^ mix32(counter)).bitwise_right_shift_(8).bitwise_and_(0xFFFFFF).to(torch.float32)

    radius = top24(index).add_(0.5).mul_(1.0 / (1 << 24)).log_().mul_(-2.0).sqrt_()
    angle = top24(index + 1).mul_(2.0 * math.pi / (1 << 24))
    z = torch.stack([torch.cos(angle).mul_(radius), angle.sin_().mul_(radius)], dim=2).view(keys.shape[0], 2 * pairs)
    return z[:, :count].reshape(keys.shape[0], *shape)
