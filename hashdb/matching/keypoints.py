"""The live keypoint index: the sets of matchable `keypoints` rows, kept current.

Built at load from the store's `keypoint_sets` (the index snapshot holds the Hamming
indexes only, so a restored process reads the sets again), its search chosen for the
corpus as it is then (hashdb/keypoints/index.py, `search_for`: exact MIH while small,
a trained IVF beyond); a corpus that outgrows it (`outgrown`) is built again in the
background (hashdb/matching/live.py), while the old index keeps serving. Replay is
state-based as for the Hamming indexes (hashdb/matching/live.py): a changed
`keypoints` row that no longer matches is removed, one that matches and is not held
is added (a set never changes, so one held stays as it is).

A query is one keypoint set, with the set of its mirror image as a probe when it
may be a mirrored copy (and those of its content regions); each set is verified on
its own, and a stored set is reported once, with the probe that verified it with
the most inliers. Every set searched is one more chance for two unrelated pictures
to agree by chance, so a probe's verdict must clear PROBE_MIN_INLIERS, above
verification's own minimum: on benchmarks/quality.py's unrelated pictures, one of
10,000 (two pictures of flat shapes) verified through its mirrored set with exactly
12 inliers, while of 1,036 true matches on its edits and benchmarks/screenshots.py's
layouts, 3 were found only through a probe with fewer than 14 (docs/measurements.md,
"Keypoints in the service").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hashdb.keypoints.codec import KeypointSet
from hashdb.keypoints.index import IVF_MIN_ROWS, KeypointIndex, search_for
from hashdb.keypoints.verify import MIN_INLIERS
from hashdb.signals.keypoints import KEYPOINTS
from hashdb.store import HashRecord, HashStore, Status


@dataclass(frozen=True)
class LocalHit:
    """A stored keypoint set that verification accepted for a query."""

    hash_id: int
    inliers: int
    share: float  # of the stored picture's area that the query shows
    probe: str | None  # the query's probe that verified it (None: the query as sent)


_NO_CODES = np.empty((0, 32), np.uint8)
PROBE_MIN_INLIERS = MIN_INLIERS + 2  # see the module docstring
# A corpus this many times the rows its search was chosen for is rebuilt (`outgrown`).
REBUILD_GROWTH = 4


def empty() -> KeypointIndex:
    """An empty index, until the first load."""
    return KeypointIndex(search_for(_NO_CODES))


def outgrown(index: KeypointIndex) -> bool:
    """Whether the index has outgrown the search chosen for it at its build: past
    IVF_MIN_ROWS while still exact MIH (whose searches at ORB's radius slow down
    steeply with the corpus), or REBUILD_GROWTH times the rows an IVF was trained
    on (its lists grow long, and removed references' rows pile up). A rebuild
    reads every set from the store again; growth by a factor bounds how often."""
    if index.trained_for < IVF_MIN_ROWS:  # built as MIH
        return index.rows >= IVF_MIN_ROWS
    return index.rows >= REBUILD_GROWTH * index.trained_for


def build(hashes: HashStore, statuses: frozenset[Status]) -> KeypointIndex:
    """An index of every matchable keypoint set in the store."""
    sets = [
        (hash_id, KeypointSet.from_bytes(data))
        for part in hashes.iter_keypoint_sets(statuses)
        for hash_id, data in part
    ]
    codes = np.concatenate([s.descriptors for _, s in sets if len(s)] or [_NO_CODES])
    index = KeypointIndex(search_for(codes), trained_for=len(codes))
    for hash_id, kps in sets:
        index.add(hash_id, kps)
    return index


def apply(
    index: KeypointIndex,
    hashes: HashStore,
    records: Iterable[HashRecord],
    gone: Iterable[int],
    statuses: frozenset[Status],
) -> None:
    """Bring `index` in line with the store for changed rows: `records` (as read now)
    and `gone` (ids no longer in the database). A row's set never changes, so a row
    that stays matchable (an approval, a relabelling) is left as it is indexed: only
    rows that stop matching leave, and only rows not held are read and added."""
    mine = [r for r in records if r.signal_type == KEYPOINTS.name]
    for hash_id in [*gone, *(r.id for r in mine if r.status not in statuses)]:
        index.remove(hash_id)
    wanted = [r.id for r in mine if r.status in statuses and r.id not in index]
    if wanted:
        for part in hashes.iter_keypoint_sets(statuses, hash_ids=wanted):
            for hash_id, data in part:
                index.add(hash_id, KeypointSet.from_bytes(data))


def search(index: KeypointIndex, sets: Iterable[tuple[str | None, KeypointSet]]) -> list[LocalHit]:
    """The stored sets that verify against any of the query's `sets` ((probe name,
    set) pairs), most inliers first, each once."""
    best: dict[int, LocalHit] = {}
    for probe, kps in sets:
        for found in index.match([kps]):
            v = found.verdict
            if not v.matched or (probe is not None and v.inliers < PROBE_MIN_INLIERS):
                continue
            held = best.get(found.reference)
            if held is None or v.inliers > held.inliers:
                best[found.reference] = LocalHit(found.reference, v.inliers, v.frame_share, probe)
    return sorted(best.values(), key=lambda h: (-h.inliers, h.hash_id))
