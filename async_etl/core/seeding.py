"""``np.random.default_rng(key)`` for many keys at once, bit for bit, at a fraction of the cost.

Theory of operation
-------------------
Every column of every generated id range draws from its own generator,
``default_rng([seed, start, count, crc32(name)])`` (``generators.column_rng``), so the rows
depend only on that id range.  The range is a unit of work, generated whole: one batch, or a
group of small batches cut from it afterwards (``records.encode_batches``), so a unit seeds one
generator per column (``generators.column_states``, all of its columns at once).  Building one
with ``default_rng`` costs about 8-13 µs (``SeedSequence`` hashing, ``PCG64`` seeding, the
objects): at the default schema's 10 columns ~130 µs a unit, which was ~90 % of generating a
100-row batch when every batch was seeded on its own (issue 12, RESULTS.md "Network scenario
... the generators' seeding").

The seeding is integer arithmetic that does not depend on the data between keys, so it
vectorises: ``pcg64_states`` runs numpy's ``SeedSequence`` algorithm (``mix_entropy`` with the
``hashmix`` / ``mix`` functions and ``generate_state(4, uint64)``, numpy/random/bit_generator.pyx)
over a whole array of keys with uint32 arrays that wrap as the C code's ``uint32_t`` does, then
PCG64's ``pcg64_set_seed`` (numpy/random/src/pcg64/pcg64.c: ``state = ((seed + inc) * MULT +
inc) mod 2**128`` with ``inc = 2 * initseq + 1``) on Python ints.  ``Seeded`` then hands out one
``Generator`` whose bit generator's state is set per column (under 1 µs) instead of a new one.

The result is checked against ``np.random.default_rng`` itself (``tests/core/test_seeding.py``,
hypothesis over keys of every word length); pure: numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["PCG64State", "Seeded", "pcg64_states"]

_INIT_A: Final = 0x43B0D7E5
_MULT_A: Final = 0x931E8875
_INIT_B: Final = 0x8B51F9DD
_MULT_B: Final = 0x58F38DED
_MIX_MULT_L: Final = 0xCA01F9DD
_MIX_MULT_R: Final = 0x4973F715
_XSHIFT: Final = 16
_POOL: Final = 4  # SeedSequence's default pool size, in uint32 words
_M32: Final = 0xFFFFFFFF
_PCG_MULT: Final = 0x2360ED051FC65DA44385DF649FCCF645
_M128: Final = (1 << 128) - 1

U32 = npt.NDArray[np.uint32]
PCG64State = tuple[int, int]
"""A PCG64 bit generator's 128-bit ``(state, inc)``."""


def _key_words(key: Sequence[int]) -> tuple[int, ...]:
    """``key`` as SeedSequence's entropy: each int's uint32 words, least significant first.

    Raises ``ValueError`` for a negative int (as ``SeedSequence`` does).
    """
    words: list[int] = []
    for value in key:
        n = int(value)
        if n < 0:
            raise ValueError(f"seed keys must be non-negative, got {n}")
        words.append(n & _M32)
        n >>= 32
        while n:
            words.append(n & _M32)
            n >>= 32
    return tuple(words)


class _Hash:
    """The running hash constant of ``hashmix``: the same sequence for every key."""

    def __init__(self, start: int, mult: int) -> None:
        self.value = start
        self.mult = mult

    def mix(self, value: U32) -> U32:
        """``value ^= k; k *= mult; value *= k; value ^= value >> 16`` on uint32 arrays."""
        value = value ^ np.uint32(self.value)
        self.value = (self.value * self.mult) & _M32
        value = value * np.uint32(self.value)
        return value ^ (value >> np.uint32(_XSHIFT))


def _mix(x: U32, y: U32) -> U32:
    result: U32 = x * np.uint32(_MIX_MULT_L) - y * np.uint32(_MIX_MULT_R)
    mixed: U32 = result ^ (result >> np.uint32(_XSHIFT))
    return mixed


def _state_words(entropy: U32) -> U32:
    """``SeedSequence(key).generate_state(8, uint32)`` for each column of ``entropy`` (words, n)."""
    n = entropy.shape[1]
    k = _Hash(_INIT_A, _MULT_A)
    zero = np.zeros(n, dtype=np.uint32)
    mixer = [k.mix(entropy[i] if i < len(entropy) else zero) for i in range(_POOL)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                mixer[dst] = _mix(mixer[dst], k.mix(mixer[src]))
    for src in range(_POOL, len(entropy)):
        for dst in range(_POOL):
            mixer[dst] = _mix(mixer[dst], k.mix(entropy[src]))
    out = _Hash(_INIT_B, _MULT_B)
    return np.stack([out.mix(mixer[i % _POOL]) for i in range(8)])


def pcg64_states(keys: Sequence[Sequence[int]]) -> list[PCG64State]:
    """PCG64 ``(state, inc)`` of ``np.random.default_rng(key)`` for every key, in order.

    Keys are sequences of non-negative ints (any size); raises ``ValueError`` otherwise.
    """
    words = [_key_words(key) for key in keys]
    out: list[PCG64State] = [(0, 0)] * len(words)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(words):
        by_length.setdefault(len(w), []).append(i)
    for length, idx in by_length.items():
        entropy = np.array([words[i] for i in idx], dtype=np.uint32).reshape(len(idx), length)
        state = _state_words(entropy.T.copy()).astype(np.uint64)
        u64 = (state[0::2] | (state[1::2] << np.uint64(32))).T.tolist()  # (n, 4) uint64
        for i, (s_hi, s_lo, q_hi, q_lo) in zip(idx, u64, strict=True):
            inc = ((((q_hi << 64) | q_lo) << 1) | 1) & _M128
            out[i] = ((((s_hi << 64) | s_lo) + inc) * _PCG_MULT + inc) & _M128, inc
    return out


class Seeded:
    """One ``Generator`` re-seeded in place.

    ``at(state)`` is ``default_rng(key)`` for the key whose ``pcg64_states`` entry is ``state``.
    Not thread-safe: one per generating call.
    """

    _SEED: Final = np.random.SeedSequence(0)

    def __init__(self) -> None:
        self._bits = np.random.PCG64(self._SEED)
        self.rng = np.random.Generator(self._bits)

    def at(self, state: PCG64State) -> np.random.Generator:
        """The generator, now in ``state`` (the previous draws' state is gone)."""
        self._bits.state = {
            "bit_generator": "PCG64",
            "state": {"state": state[0], "inc": state[1]},
            "has_uint32": 0,
            "uinteger": 0,
        }
        return self.rng
