"""Candidate retrieval over the keypoints of many references, then verification.

Every stored descriptor is one row of a Hamming index; a query's descriptors find
their near rows (at most `MAX_DISTANCE` of 256 bits apart), each row votes for the
reference it belongs to (one vote per query keypoint and reference), and the
references with at least `verify.MIN_INLIERS` votes, most votes first and at most
`CANDIDATES` of them, go to geometric verification (hashdb/keypoints/verify.py).
A reference with fewer votes could not pass verification anyway, so the vote
threshold costs no recall and bounds the work per query.

Two searches over the descriptors, behind one small interface (`DescriptorSearch`):

- `IvfSearch`: FAISS's binary inverted file (`IndexBinaryIVF`): descriptors are
  filed under the nearest of `nlist` binary centroids (trained by k-means on a sample
  of descriptors) and a query scans the lists of its `nprobe` nearest centroids for
  its `k` nearest rows. Approximate (a near row filed under a centroid the query
  does not probe is missed), but a true match has many keypoints, so missing a few
  rows costs little. Per row: the 32-byte code and FAISS's 8-byte id.
- `MihSearch`: the project's exact multi-index hashing (`hashdb.index.mih`), a
  radius search at `MAX_DISTANCE`. Exact, but the radius ORB needs is far above
  PDQ's 31, so each query meets many more candidates; and it keeps about 128 bytes
  per row.

benchmarks/local_features.py measures both (recall, time, bytes per reference).

Per stored row the index itself also keeps 4 bytes of geometry (position, level,
angle); rows of one reference are contiguous, so the row -> reference map is one
offset per reference. Removal marks the reference's rows dead at once (they stop
voting), and a removed reference may be added again (new rows); dead rows are
dropped when the index is next rebuilt from the store.

`search_for` picks the search for a corpus: exact MIH while it is small, IVF
trained on (a sample of) its descriptors once FAISS has enough to train `nlist`
lists. Adds and searches of one index are serialised by its lock (FAISS's indexes
are not safe to add to while searched); verification runs outside it.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hashdb.index.mih import MIHIndex
from hashdb.keypoints.codec import DESCRIPTOR_BYTES, KeypointSet
from hashdb.keypoints.verify import MIN_INLIERS, Verdict, verify

MAX_DISTANCE = 64  # of 256 bits: ORB's usual bound for a true correspondence
CANDIDATES = 8  # references verified per query keypoint set, most votes first
# FAISS's k-means wants at least 39 training points per list; the smallest IVF has
# MIN_LISTS lists, trained on at most TRAINING_SAMPLE descriptors.
MIN_LISTS = 64
IVF_MIN_ROWS = 39 * MIN_LISTS
TRAINING_SAMPLE = 150_000

_ARRAY_HEADER = sys.getsizeof(np.empty((0, 4), np.uint8))  # a small array's own bytes
Rows = npt.NDArray[np.int64]
Codes = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Near:
    """Pairs (query row, stored row) at most MAX_DISTANCE apart: parallel arrays."""

    query_rows: Rows
    stored_rows: Rows
    distances: npt.NDArray[np.int32]


class DescriptorSearch(Protocol):
    def add(self, rows: Rows, codes: Codes) -> None: ...

    def near(self, queries: Codes) -> Near: ...

    def nbytes(self) -> int: ...


def _faiss() -> ModuleType:
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "IvfSearch needs FAISS, an optional dependency: pip install 'hashdb[faiss]'"
        ) from None
    faiss.omp_set_num_threads(1)
    return faiss


class IvfSearch:
    """FAISS binary IVF: the `k` nearest stored rows from `nprobe` of `nlist` lists."""

    def __init__(self, training: Codes, *, nlist: int, nprobe: int = 16, k: int = 8) -> None:
        faiss = _faiss()
        self._quantizer = faiss.IndexBinaryFlat(DESCRIPTOR_BYTES * 8)
        self._index = faiss.IndexBinaryIVF(self._quantizer, DESCRIPTOR_BYTES * 8, nlist)
        self._index.cp.seed = 1234
        self._index.train(np.ascontiguousarray(training, dtype=np.uint8))
        self._index.nprobe = nprobe
        self._k = k

    def add(self, rows: Rows, codes: Codes) -> None:
        self._index.add_with_ids(np.ascontiguousarray(codes, dtype=np.uint8), rows)

    def near(self, queries: Codes) -> Near:
        if len(queries) == 0 or self._index.ntotal == 0:
            return _no_pairs()
        distances, rows = self._index.search(np.ascontiguousarray(queries, np.uint8), self._k)
        keep = (rows >= 0) & (distances <= MAX_DISTANCE)
        query_rows = np.broadcast_to(np.arange(len(queries))[:, None], rows.shape)[keep]
        return Near(query_rows.astype(np.int64), rows[keep].astype(np.int64), distances[keep])

    def nbytes(self) -> int:
        """Codes and ids in the inverted lists, plus the centroids."""
        lists = int(self._index.ntotal) * (DESCRIPTOR_BYTES + 8)
        return lists + int(self._index.nlist) * DESCRIPTOR_BYTES


class MihSearch:
    """hashdb's exact multi-index hashing at radius MAX_DISTANCE."""

    def __init__(self, threads: int = 1) -> None:
        self._index = MIHIndex(DESCRIPTOR_BYTES * 8, threads=threads, background=False)

    def add(self, rows: Rows, codes: Codes) -> None:
        self._index.add(rows, codes)
        self._index.compact()

    def near(self, queries: Codes) -> Near:
        if len(queries) == 0 or len(self._index) == 0:
            return _no_pairs()
        hits = self._index.search(np.ascontiguousarray(queries, np.uint8), MAX_DISTANCE)
        counts = np.array([len(h) for h in hits], dtype=np.int64)
        if counts.sum() == 0:
            return _no_pairs()
        return Near(
            np.repeat(np.arange(len(queries), dtype=np.int64), counts),
            np.concatenate([h.ids for h in hits]),
            np.concatenate([h.distances for h in hits]),
        )

    def nbytes(self) -> int:
        return int(self._index.nbytes())


def search_for(codes: Codes, *, seed: int = 1234) -> DescriptorSearch:
    """The search for a corpus of these descriptors: MIH (exact, no training) below
    IVF_MIN_ROWS, else an IVF of about sqrt(rows) lists (a power of two) trained on a
    sample of them (benchmarks/local_features.py measures the two)."""
    if len(codes) < IVF_MIN_ROWS:
        return MihSearch()
    rng = np.random.default_rng(seed)
    sample = codes[np.sort(rng.choice(len(codes), min(len(codes), TRAINING_SAMPLE), replace=False))]
    nlist = int(2 ** round(np.log2(max(MIN_LISTS, np.sqrt(len(codes))))))
    nlist = min(nlist, len(sample) // 39)
    return IvfSearch(sample, nlist=nlist)


def _no_pairs() -> Near:
    return Near(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int32))


@dataclass(frozen=True)
class Found:
    """A verified reference: its id, the votes it had and the verdict."""

    reference: int
    votes: int
    verdict: Verdict


class KeypointIndex:
    """Keypoint sets of references (ids: int64), matched by votes then verification."""

    def __init__(self, search: DescriptorSearch, trained_for: int = 0) -> None:
        self._search = search
        self._trained_for = trained_for
        self._lock = threading.Lock()
        self._starts: list[int] = []  # first row of each reference, in row order
        self._starts_array: Rows = np.empty(0, np.int64)  # the same, as last read
        self._refs: list[int] = []
        self._sizes: list[tuple[int, int]] = []  # width and height, per place
        self._where: dict[int, int] = {}  # reference id -> its place in _starts
        # (x, y, level, angle) of each reference's rows, per place: a match reads
        # only its candidates' rows, and an add never copies the others'
        self._geometry: list[npt.NDArray[np.uint8]] = []
        self._rows = 0
        self._dead: set[int] = set()  # places of removed references

    def __len__(self) -> int:
        return len(self._refs) - len(self._dead)

    @property
    def rows(self) -> int:
        """Descriptor rows held, those of removed references included."""
        return self._rows

    @property
    def trained_for(self) -> int:
        """The rows its search was chosen for (see `search_for`)."""
        return self._trained_for

    def __contains__(self, reference: int) -> bool:
        place = self._where.get(reference)
        return place is not None and place not in self._dead

    def add(self, reference: int, keypoints: KeypointSet) -> None:
        """Add one reference's keypoints (ValueError if the id is indexed and not
        removed)."""
        with self._lock:
            if reference in self:
                raise ValueError(f"reference {reference} is already indexed")
            n = len(keypoints)
            rows = np.arange(self._rows, self._rows + n, dtype=np.int64)
            self._where[reference] = len(self._starts)
            self._starts.append(self._rows)
            self._refs.append(reference)
            self._sizes.append((keypoints.width, keypoints.height))
            self._geometry.append(
                np.stack([keypoints.x, keypoints.y, keypoints.level, keypoints.angle], axis=1)
            )
            self._rows += n
            if n:
                self._search.add(rows, keypoints.descriptors)

    def remove(self, reference: int) -> None:
        with self._lock:
            if reference in self._where:
                self._dead.add(self._where[reference])

    def nbytes(self) -> int:
        """Memory the index holds: the descriptor search, geometry, row offsets."""
        return (
            self._search.nbytes()
            + self._rows * 4
            # start, id, width and height, and the header of its geometry array
            + len(self._starts) * (8 + 8 + 4 + 4 + _ARRAY_HEADER)
        )

    def match(self, queries: tuple[KeypointSet, ...] | list[KeypointSet]) -> list[Found]:
        """Verified references for a query given as one or more keypoint sets (for
        example a picture and its mirror image); each reference once, with the best
        verdict (most inliers), matched references first."""
        best: dict[int, Found] = {}
        for query in queries:
            for found in self._match_one(query):
                held = best.get(found.reference)
                if held is None or found.verdict.inliers > held.verdict.inliers:
                    best[found.reference] = found
        return sorted(
            best.values(), key=lambda f: (not f.verdict.matched, -f.verdict.inliers, f.reference)
        )

    def _match_one(self, query: KeypointSet) -> list[Found]:
        if len(query) < MIN_INLIERS:
            return []
        with self._lock:  # a consistent view: rows, offsets and geometry of one moment
            near = self._search.near(query.descriptors)
            geometry = self._geometry  # only grows, as _refs and _sizes
            if len(self._starts_array) != len(self._starts):
                self._starts_array = np.asarray(self._starts, dtype=np.int64)
            starts = self._starts_array
            # _refs and _sizes only grow: the places `starts` knows stay valid
            refs, sizes, dead = self._refs, self._sizes, set(self._dead)
        place = np.searchsorted(starts, near.stored_rows, side="right") - 1
        # one vote per (query keypoint, reference)
        pairs = np.unique(place * (len(query) + 1) + near.query_rows)
        voters = pairs // (len(query) + 1)
        places, votes = np.unique(voters, return_counts=True)
        order = np.lexsort((places, -votes))
        found: list[Found] = []
        for k in order.tolist():
            if votes[k] < MIN_INLIERS or len(found) == CANDIDATES:
                break
            if int(places[k]) in dead:
                continue
            reference = refs[int(places[k])]
            mine = place == places[k]
            first = int(starts[places[k]])
            stored = near.stored_rows[mine]
            width, height = sizes[int(places[k])]
            rows = geometry[int(places[k])]
            placed = KeypointSet(
                width=width,
                height=height,
                x=rows[:, 0].copy(),
                y=rows[:, 1].copy(),
                level=rows[:, 2].copy(),
                angle=rows[:, 3].copy(),
                descriptors=np.zeros((len(rows), DESCRIPTOR_BYTES), np.uint8),
            )
            verdict = verify(
                query, placed, near.query_rows[mine], stored - first, near.distances[mine]
            )
            found.append(Found(reference, int(votes[k]), verdict))
        return found
