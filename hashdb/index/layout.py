"""How codes are laid out inside the multi-index hashing index, and its probe plan.

Bit permutation: a stored code is the caller's code with its bits permuted by a
fixed pseudo-random permutation (seed `PERMUTATION_SEED`), packed into
`bits // 64` uint64 words. Hamming distance does not change under a permutation,
but the 16-bit substrings the tables are keyed on do: PDQ bit k is the sign of
one DCT coefficient, neighbouring bits are neighbouring frequencies, and the
lowest frequencies agree across many images. On 100k hashes of the synthetic
corpus (`benchmarks/corpus.py`), the expected size of the bucket a stored hash sits
in was 6.3x that of uniform random codes with PDQ's own bit order (26.9x for the
substring of the lowest frequencies) and 2.2x after the permutation; what remains is
the near-duplicate clusters themselves. Fewer candidates per probe follow directly.

Probe plan (pigeonhole, exact): split a code into m = bits / 16 substrings and give
substring j a probe radius t_j. If sum(t_j + 1) > threshold, any code within
`threshold` bits of the query is within t_j bits of it on some substring j (else the
distance would be at least sum(t_j + 1)). So radii summing to
max(0, threshold - m + 1), spread evenly, find every match: for PDQ at 31 that is
radius 1 on all 16 substrings (17 probes each, 272 in all); for pHash (m = 4) at 10
it is 2, 2, 2, 1 (428 probes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import comb

import numpy as np
import numpy.typing as npt

from hashdb.index import kernels
from hashdb.index.base import Codes

PERMUTATION_SEED = 20240601
CHUNK_BITS = kernels.CHUNK_BITS
Words = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Layout:
    bits: int
    words: int
    chunks: int
    permutation: npt.NDArray[np.int64]  # internal bit p holds external bit permutation[p]
    _forward: npt.NDArray[np.uint64]  # (nbytes, 256, words): OR-masks per input byte value

    def encode(self, codes: Codes) -> Words:
        """Caller's (n, bits // 8) bytes -> internal (n, words) uint64."""
        return kernels.permute(codes, self._forward, self.words)  # type: ignore[no-any-return]


@functools.cache
def layout_for(bits: int, seed: int = PERMUTATION_SEED) -> Layout:
    if bits <= 0 or bits % 64:
        raise ValueError("the multi-index hashing layout needs a positive multiple of 64 bits")
    words, nbytes = bits // 64, bits // 8
    permutation = np.random.default_rng(seed).permutation(bits).astype(np.int64)
    internal = np.empty(bits, dtype=np.int64)
    internal[permutation] = np.arange(bits)
    forward = np.zeros((nbytes, 256, words), dtype=np.uint64)
    values = np.arange(256)
    for external in range(bits):  # packbits order: external bit e is byte e // 8, MSB first
        byte, bit = divmod(external, 8)
        p = int(internal[external])
        has = (values >> (7 - bit)) & 1 == 1
        forward[byte, has, p // 64] |= np.uint64(1 << (p % 64))
    forward.setflags(write=False)
    permutation.setflags(write=False)
    return Layout(bits, words, bits // CHUNK_BITS, permutation, forward)


def _flip_masks() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    values = np.arange(1 << CHUNK_BITS, dtype=np.uint64)
    weight = np.bitwise_count(values)
    flips = values[np.argsort(weight, kind="stable")]
    upto = np.cumsum([comb(CHUNK_BITS, r) for r in range(CHUNK_BITS + 1)]).astype(np.int64)
    flips.setflags(write=False)
    upto.setflags(write=False)
    return flips, upto


FLIPS, FLIPS_UPTO = _flip_masks()  # all 16-bit masks by weight; count with weight <= r


def probe_radii(chunks: int, threshold: int) -> npt.NDArray[np.int64]:
    """Per-substring probe radius with sum(t + 1) > threshold (see the docstring)."""
    spread = max(0, threshold - chunks + 1)
    radii = np.full(chunks, spread // chunks, dtype=np.int64)
    radii[: spread % chunks] += 1
    return np.minimum(radii, CHUNK_BITS)


# Cost model (nanoseconds on the 2-core development machine, see mih.py): a probe of
# an in-cache offsets table, a verified candidate (random access to its code), and
# a sequentially scanned row. The bucket factor is the measured 2.2x skew, rounded up.
PROBE_NS, CANDIDATE_NS, SCAN_NS, BUCKET_SKEW = 4.0, 8.0, 1.5, 3.0


def tables_pay_off(rows: int, radii: npt.NDArray[np.int64]) -> bool:
    """Whether probing the tables beats scanning `rows` codes for these radii."""
    probes = float(FLIPS_UPTO[radii].sum())
    candidates = probes / (1 << CHUNK_BITS) * rows * BUCKET_SKEW
    return probes * PROBE_NS + candidates * CANDIDATE_NS < rows * SCAN_NS
