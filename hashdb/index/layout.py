"""How codes are laid out inside the multi-index hashing index, and its probe plan.

Bit permutation: a stored code is the caller's code with its bits permuted by a
fixed pseudo-random permutation (seed `PERMUTATION_SEED`), packed into
`bits // 64` uint64 words. Hamming distance does not change under a permutation,
but the 16-bit substrings the tables are keyed on do: PDQ bit k is the sign of
one DCT coefficient, neighbouring bits are neighbouring frequencies, and the
lowest frequencies agree across many images, so with PDQ's own bit order some
buckets are far fuller than uniform random codes would fill them; the permutation
spreads them out, and what remains is the near-duplicate clusters themselves
(figures on the synthetic corpus, `benchmarks/corpus.py`: docs/measurements.md,
"Index and kernels"). Fewer candidates per probe follow directly.

Probe plan (pigeonhole, exact): split a code into m = bits / 16 substrings and give
substring j a probe radius t_j. If sum(t_j + 1) > threshold, any code within
`threshold` bits of the query is within t_j bits of it on some substring j (else the
distance would be at least sum(t_j + 1)). So radii summing to
max(0, threshold - m + 1), spread evenly, find every match: for PDQ at 31 that is
radius 1 on all 16 substrings (17 probes each, 272 in all); for pHash (m = 4) at 10
it is 2, 2, 2, 1 (428 probes).

Filters from the same principle one level up (`filter_radii`): pair substrings 2k and
2k + 1 into a 32-bit substring of radius R_k = t_2k + t_2k+1 + 1, and pair those into
64-bit words the same way. The R_k + 1 still sum to more than `threshold`, so a match
is within R_k on some 32-bit substring k, and then within t_j on one of its halves j
(else its distance there would be at least R_k + 1). So a candidate met through
16-bit table j can be dropped unless its 32-bit substring j // 2 is within R and its
word j // 4 within the word radius, and no match is lost. For PDQ at 31: 16-bit
radius 1, 32-bit radius 3, 64-bit radius 7. A random candidate that agrees on 16
bits passes the 32-bit test with probability about 137 / 65536, so the JOIN plan
(mih.py) rejects 98% of its candidate pairs (on the corpus) on a 16-bit sibling
substring it keeps inline with each entry, with the entry's own distance to the key
(a pair one bit off on its own substring may be at most 2 off on the sibling),
before touching either full code.

PROBE's tags apply the same filter with less: table j stores beside each row the
low 8 bits of its sibling substring j ^ 1 (`kernels.TAG_BITS`), and a candidate met
through a probe `own` bits from the query's key is kept only if those 8 bits are
within R - own of the query's. Distance on 8 of the sibling's bits is at most
distance on all 16, so every candidate the 32-bit filter keeps, the tag keeps, and
a match is still kept by some table; it is reported from the first table whose tag
filter keeps it (the same test on the full codes), so once. For PDQ at 31 a random
candidate passes with probability 37 / 256 (own 1) or 93 / 256 (own 0).
"""

from __future__ import annotations

import enum
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


@functools.cache
def probe_radii(chunks: int, threshold: int) -> npt.NDArray[np.int64]:
    """Per-substring probe radius with sum(t + 1) > threshold (see the docstring);
    read-only, made once per (chunks, threshold): every search asks."""
    spread = max(0, threshold - chunks + 1)
    radii = np.full(chunks, spread // chunks, dtype=np.int64)
    radii[: spread % chunks] += 1
    radii = np.minimum(radii, CHUNK_BITS)
    radii.setflags(write=False)
    return radii


def filter_radii(radii: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """Radii of the 32-bit substrings and the 64-bit words implied by `radii` (see
    the module docstring): R = r_a + r_b + 1 for each pair of halves a, b."""
    pairs = radii[0::2] + radii[1::2] + 1
    return pairs, pairs[0::2] + pairs[1::2] + 1


class Plan(enum.Enum):
    """How a batch searches the indexed rows (chosen by `plan`)."""

    PROBE = "probe"  # per query: probe the stored tables, verify each candidate's code
    JOIN = "join"  # per batch: stream the stored codes through tables of the queries
    SCAN = "scan"  # per query: compare with every stored code


# Cost model, nanoseconds of one thread: a probe of a stored table; a candidate met
# by PROBE, its tag checked (a sequential read beside its row); a candidate whose tag
# passes, verified against its code (a random read, many in flight at once); a stored
# row scanned by SCAN; a (row, table) step of JOIN and a (query, candidate) pair it
# meets (both in cache); a query key filed by JOIN. Only the ratios matter: they
# decide where one plan overtakes another. JOIN_ROW_NS is set above the cost of
# JOIN's first pass alone (it also carries the hits' passes), and VERIFY_NS so that
# the switch to JOIN falls where the benchmark crosses over. Candidates are estimated
# as uniform codes would give, times BUCKET_SKEW, set above the corpus's skew to
# leave room for collections more skewed than it; the share whose tag passes as
# uniform codes would give (`_tag_pass_share`). The measurements and how to redo
# them: docs/measurements.md, "Index cost model"; re-measure whenever a kernel
# changes.
PROBE_NS, TAG_NS, VERIFY_NS, SCAN_NS = 4.0, 4.0, 35.0, 1.5
JOIN_ROW_NS, JOIN_PAIR_NS, JOIN_KEY_NS = 13.0, 6.0, 2.0
BUCKET_SKEW = 1.5


@functools.cache
def _tag_pass_share(radii: tuple[int, ...]) -> float:
    """The share of PROBE's candidates whose tag passes its filter (kernels.search),
    for uniform random codes: a probe at distance `own` from the query's key keeps an
    entry if its TAG_BITS tag bits are within pair radius - own of the query's."""
    tag_bits = kernels.TAG_BITS
    kept = probes = 0.0
    for j, radius in enumerate(radii):
        pair = radius + radii[j ^ 1] + 1
        for own in range(radius + 1):
            keys = comb(CHUNK_BITS, own)
            within = sum(comb(tag_bits, d) for d in range(min(tag_bits, pair - own) + 1))
            kept += keys * within / (1 << tag_bits)
            probes += keys
    return kept / probes


@functools.cache
def _probes(radii: tuple[int, ...]) -> tuple[float, float]:
    """Probes per query at `radii`, and the share of candidates whose tag passes."""
    return float(FLIPS_UPTO[list(radii)].sum()), _tag_pass_share(radii)


def plan(rows: int, queries: int, radii: npt.NDArray[np.int64]) -> Plan:
    """The cheapest way for `queries` queries to search `rows` indexed rows."""
    probes, passing = _probes(tuple(radii.tolist()))
    candidates = probes / (1 << CHUNK_BITS) * rows * BUCKET_SKEW
    verified = candidates * passing
    costs = (
        (queries * (probes * PROBE_NS + candidates * TAG_NS + verified * VERIFY_NS), Plan.PROBE),
        (queries * rows * SCAN_NS, Plan.SCAN),
        (
            rows * len(radii) * JOIN_ROW_NS
            + queries * (candidates * JOIN_PAIR_NS + probes * JOIN_KEY_NS),
            Plan.JOIN,
        ),
    )
    return min(costs, key=lambda cost: cost[0])[1]
