"""The live indexes: one Hamming index per perceptual signal type, kept current.

Built at start from the store (or restored from a snapshot in `snapshot_dir` when
a sound one exists: hashdb/index/snapshot.py), then kept current by replaying the
change log. Every entry is typed (hashdb/index/entries.py): a `hashes` row, a
stored variant filed under its image, a frame of a stored video. Replay is
state-based and idempotent: for each changed hash id it removes the hash, every
variant slot it could hold and (a video) its frames, then adds back what the
database holds now if the hash's status is matchable. So a status change of an
image moves its variants without any change-log entry of theirs, and a variant
dropped from the database never lingers.

Snapshots are shared, not copied: a restored index maps the snapshot's arrays
(hashdb/index/snapshot.py), so every process on a machine holds one copy of them in
the page cache, plus its own small delta (live flags, additions since). To keep that
delta small, `adopt_snapshot` swaps to a snapshot saved at a newer cursor than the
one the indexes came from (by the worker role, or any process calling
`save_snapshot`): it maps the new one, replays the change log from its cursor and
swaps under the lock, so replay never sees a half-swapped set; a search already
running keeps reading the indexes it started with (their files stay mapped after the
directory is replaced). `snapshot_changed` is the cheap check (one `stat` per
signal type) that a caller polls before trying.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from hashdb.index import HammingIndex, MIHIndex, entries, make_index
from hashdb.index.snapshot import load_snapshots, save_snapshots, snapshot_cursor, snapshot_stamp
from hashdb.keypoints.index import KeypointIndex
from hashdb.matching import keyframes, keypoints
from hashdb.signals import KEYPOINTS, PDQ, SIGNAL_TYPES, Matching, SignalType
from hashdb.signals.vpdq import VPDQ
from hashdb.store import ChangeLog, HashRecord, HashStore, Status, VideoStore

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int], ...] | None


def hamming_signals() -> list[SignalType]:
    return [s for s in SIGNAL_TYPES.values() if s.matching is Matching.HAMMING]


def _warm_up(indexes: dict[str, HammingIndex]) -> None:
    """Search each index once, so that loading its compiled kernels is paid at start
    (before `ready`), not by the first request."""
    for name, index in indexes.items():
        signal = SIGNAL_TYPES[name]
        index.search(np.zeros((1, signal.nbytes), np.uint8), signal.default_threshold or 0)


class LiveIndexes:
    """The indexes and the change-log position they reflect; thread-safe."""

    def __init__(
        self,
        hashes: HashStore,
        changes: ChangeLog,
        videos: VideoStore | None,
        statuses: frozenset[Status],
        snapshot_dir: Path | None,
    ) -> None:
        self._hashes = hashes
        self._changes = changes
        self._videos = videos
        self._statuses = statuses
        self._snapshot_dir = snapshot_dir
        self._indexes: dict[str, HammingIndex] = {}
        self._keypoints = keypoints.empty()
        self._keyframes = keyframes.empty()
        self._cursor = 0
        self._origin: int | None = None  # cursor of the snapshot the indexes came from
        self._stamp: Stamp = None  # the snapshot files as last seen (`snapshot_changed`)
        self._lock = threading.Lock()
        self._adopting = threading.Lock()
        # held by a keypoint index's rebuild: of `keypoints` rows, of video keyframes
        self._rebuilding = {KEYPOINTS.name: threading.Lock(), VPDQ.name: threading.Lock()}
        self._generation = 0  # bumped by every load: a rebuild of an older one is dropped

    @property
    def cursor(self) -> int:
        """The change-log position the indexes reflect."""
        return self._cursor

    @property
    def snapshot_cursor(self) -> int | None:
        """The cursor of the snapshot the indexes were loaded from (None: built from the
        database, or saved by this process after a build)."""
        return self._origin

    def sizes(self) -> dict[str, int]:
        """Entries per Hamming index (hashes, stored variants and video frames
        together); the keypoint indexes count theirs themselves (`keypoints`,
        `keyframes`)."""
        return {name: len(index) for name, index in self._indexes.items()}

    def nbytes(self) -> dict[str, int]:
        """Bytes of arrays per index, mapped snapshot arrays included, the keypoint
        indexes too (`vpdq`: the videos' keyframes; their frames are counted in
        `pdq`'s), for metrics; an index type that cannot tell is left out."""
        found: dict[str, int] = {}
        for name, index in self._indexes.items():
            measure = getattr(index, "nbytes", None)
            if callable(measure):
                found[name] = int(measure())
        found[KEYPOINTS.name] = self._keypoints.nbytes()
        found[VPDQ.name] = self._keyframes.index.nbytes()  # its frames are in pdq's
        return found

    def __getitem__(self, signal_type: str) -> HammingIndex:
        return self._indexes[signal_type]

    @property
    def rebuilding(self) -> bool:
        """Whether a keypoint index is being rebuilt in the background."""
        return any(lock.locked() for lock in self._rebuilding.values())

    def _rebuild_local(self, which: str) -> None:
        """Build a keypoint index again in a background thread (it has outgrown its
        search: hashdb/matching/keypoints.py, `outgrown`), while the one it replaces
        keeps serving and taking changes: `which` is KEYPOINTS (the sets of
        `keypoints` rows) or VPDQ (video keyframes). Training and filling an IVF takes
        tens of seconds at tens of thousands of references (docs/measurements.md),
        which no request should wait for."""
        lock = self._rebuilding[which]
        if not lock.acquire(blocking=False):
            return  # one at a time; the running one will see the newest state
        generation = self._generation
        thread = threading.Thread(
            target=self._rebuild,
            args=(which, generation),
            name=f"hashdb-{which}-rebuild",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            lock.release()
            raise

    def _rebuild(self, which: str, generation: int) -> None:
        try:
            start = self._changes.head()
            sets = (
                keypoints.build(self._hashes, self._statuses) if which == KEYPOINTS.name else None
            )
            frames = self._build_keyframes() if which == VPDQ.name else None
            with self._lock:
                if generation != self._generation:
                    return  # a load replaced every index meanwhile
                # what changed while it was built, state by state as replay does
                while batch := self._changes.since(start):
                    changed = {c.hash_id for c in batch}
                    records = list(self._hashes.get_many(changed).values())
                    gone = sorted(changed - {r.id for r in records})
                    if sets is not None:
                        keypoints.apply(sets, self._hashes, records, gone, self._statuses)
                    if frames is not None and self._videos is not None:
                        keyframes.apply(frames, self._videos, records, gone, self._statuses)
                    start = batch[-1].seq
                if sets is not None:
                    self._keypoints = sets
                if frames is not None:
                    self._keyframes = frames
            log.info("the %s keypoint index was rebuilt", which)
        except Exception:  # the old index keeps serving; the next outgrowth tries again
            log.exception("rebuilding the %s keypoint index failed", which)
        finally:
            self._rebuilding[which].release()

    def _build_keyframes(self) -> keyframes.Keyframes:
        if self._videos is None:
            return keyframes.empty()
        return keyframes.build(self._videos, self._statuses)

    @property
    def keypoints(self) -> KeypointIndex:
        """The keypoint sets of matchable `keypoints` rows (hashdb/matching/keypoints.py)."""
        return self._keypoints

    @property
    def keyframes(self) -> keyframes.Keyframes:
        """The keyframes of matchable videos (hashdb/matching/keyframes.py)."""
        return self._keyframes

    def load(self, *, fresh: bool = False) -> bool:
        """Restore (unless `fresh`) or build every index; True if restored from a
        snapshot. Changes committed since the position they reflect are left to
        `replay`."""
        with self._lock:
            self._stamp = self._current_stamp()
            restored = None if fresh else self._restore()
            if restored is None:
                cursor = self._changes.head()
                indexes = self._build()
            else:
                indexes, cursor = restored
            _warm_up(indexes)
            # Not in the snapshot: read from the store. Changes between the snapshot's
            # cursor and now are replayed onto it too, which is idempotent.
            local, frames = keypoints.build(self._hashes, self._statuses), self._build_keyframes()
            self._indexes, self._keypoints, self._keyframes = indexes, local, frames
            self._cursor = cursor
            self._origin = None if restored is None else cursor
            self._generation += 1
        return restored is not None

    def replay(self, evict: Callable[[set[int]], None]) -> int:
        """Apply the change log since `cursor`; returns how many changes. `evict` is
        told each batch's hash ids before their rows are read again. Before the first
        `load` there is nothing to apply to: the load reads the database as it is."""
        with self._lock:
            if not self._indexes:
                return 0
            self._cursor, applied = self._replay_into(self._indexes, self._cursor, evict)
        return applied

    def _replay_into(
        self, indexes: dict[str, HammingIndex], cursor: int, evict: Callable[[set[int]], None]
    ) -> tuple[int, int]:
        """Apply the change log since `cursor` to `indexes`: (new cursor, changes)."""
        applied = 0
        while True:
            batch = self._changes.since(cursor)
            if not batch:
                return cursor, applied
            changed = {c.hash_id for c in batch}
            evict(changed)
            self._apply(indexes, changed)
            cursor = batch[-1].seq
            applied += len(batch)

    def save_snapshot(self) -> None:
        """Write every index with the cursor it reflects (no-op without a directory).

        Concurrent saves, from this process or another, are serialised by the
        snapshot directory's lock; the last one wins, whole. The process adopts its
        own save like any newer snapshot (`adopt_snapshot`), which trades its private
        copy for the shared map (and the writer's delta for a folded snapshot)."""
        if self._snapshot_dir is None:
            return
        with self._lock:
            mine = {n: i for n, i in self._indexes.items() if isinstance(i, MIHIndex)}
            save_snapshots(mine, self._snapshot_dir, self._cursor)

    # -- newer snapshots -------------------------------------------------------------

    def _current_stamp(self) -> Stamp:
        if self._snapshot_dir is None:
            return None
        return snapshot_stamp(self._snapshot_dir, [s.name for s in hamming_signals()])

    def snapshot_changed(self) -> bool:
        """Whether the snapshot files changed since the indexes were loaded or last
        adopted (one `stat` per signal type, nothing read)."""
        return self._snapshot_dir is not None and self._current_stamp() != self._stamp

    def adopt_snapshot(self, evict: Callable[[set[int]], None]) -> bool:
        """Swap to the snapshot on disk if it was saved at a newer cursor than the one
        the indexes came from (and the change log has reached it); True if swapped.

        The new indexes are mapped and warmed outside the lock (searches and replays
        go on meanwhile); then, under it, the change log is replayed onto them from
        the older of the two cursors (so the row cache also forgets what the snapshot
        moved past this process's cursor) and they replace the old ones. A search
        that started before keeps its own references to the old indexes."""
        if self._snapshot_dir is None or not self._adopting.acquire(blocking=False):
            return False
        try:
            stamp = self._current_stamp()
            names = [s.name for s in hamming_signals()]
            cursor = snapshot_cursor(self._snapshot_dir, names)
            if cursor is None:
                return False  # being saved, or incomplete: try again at the next poll
            if not self._newer(cursor):
                self._stamp = stamp
                return False
            loaded = load_snapshots(self._snapshot_dir, {s.name: s.bits for s in hamming_signals()})
            if loaded is None or not self._newer(loaded[1]):
                self._stamp = stamp  # unsound (reason logged) or older: wait for the next save
                return False
            fresh: dict[str, HammingIndex] = dict(loaded[0])
            _warm_up(fresh)
            with self._lock:
                start = min(loaded[1], self._cursor)
                cursor, _ = self._replay_into(fresh, start, evict)
                self._indexes, self._cursor, self._origin = fresh, cursor, loaded[1]
                self._stamp = stamp
            log.info("index snapshot at change %d adopted", loaded[1])
            return True
        finally:
            self._adopting.release()

    def _newer(self, cursor: int) -> bool:
        """Whether a snapshot at `cursor` is worth adopting: newer than the one the
        indexes came from (or than their build), and within this change log."""
        origin = self._origin if self._origin is not None else -1
        return origin < cursor <= self._changes.head()

    # -- building ------------------------------------------------------------------

    def _build(self) -> dict[str, HammingIndex]:
        indexes: dict[str, HammingIndex] = {}
        for signal in hamming_signals():
            index = make_index(signal.bits)
            for ids, codes in self._hashes.iter_codes(signal.name, signal.nbytes, self._statuses):
                index.add(entries.hashes(ids), codes)
            self._add_variants(index, signal)
            indexes[signal.name] = index
        if self._videos is not None:
            for rows, codes in self._videos.iter_frame_codes(statuses=self._statuses):
                indexes[PDQ.name].add(entries.frames(rows), codes)
        for index in indexes.values():
            if isinstance(index, MIHIndex):
                index.compact()  # fold the bulk load into the tables before serving
        return indexes

    def _add_variants(
        self, index: HammingIndex, signal: SignalType, hash_ids: list[int] | None = None
    ) -> None:
        """File the stored variants of the matchable hashes of `signal` (or of those
        among `hash_ids`); a kind no longer stored has no slot and is left out."""
        found = self._hashes.iter_variant_codes(
            signal.name, signal.nbytes, self._statuses, hash_ids=hash_ids
        )
        for images, kinds, codes in found:
            known = [
                (i, slot) for i, k in enumerate(kinds) if (slot := entries.slot_of(k)) is not None
            ]
            if known:
                keep = [i for i, _ in known]
                ids = entries.variants(images[keep], [slot for _, slot in known])
                index.add(ids, codes[keep])

    def _restore(self) -> tuple[dict[str, HammingIndex], int] | None:
        """Indexes from the snapshot directory, if every one loads at one cursor that
        this database's change log has reached; otherwise None (rebuild)."""
        if self._snapshot_dir is None:
            return None
        loaded = load_snapshots(self._snapshot_dir, {s.name: s.bits for s in hamming_signals()})
        if loaded is None:
            return None
        indexes, cursor = loaded
        if cursor > self._changes.head():
            log.warning("index snapshot is ahead of this database's change log; rebuilding")
            return None
        return dict(indexes), cursor

    # -- replay --------------------------------------------------------------------

    def _apply(self, indexes: dict[str, HammingIndex], hash_ids: set[int]) -> None:
        records = self._hashes.get_many(hash_ids)
        videos = [r for r in records.values() if r.signal_type == VPDQ.name]
        self._apply_videos(indexes[PDQ.name], videos)
        gone = sorted(hash_ids - records.keys())  # not in the database: drop everywhere
        keypoints.apply(self._keypoints, self._hashes, records.values(), gone, self._statuses)
        if keypoints.outgrown(self._keypoints):
            self._rebuild_local(KEYPOINTS.name)
        if self._videos is not None:
            keyframes.apply(self._keyframes, self._videos, videos, gone, self._statuses)
            if keypoints.outgrown(self._keyframes.index):
                self._rebuild_local(VPDQ.name)
        for name, index in indexes.items():
            mine = [r for r in records.values() if r.signal_type == name]
            stale = sorted({*(r.id for r in mine), *gone})
            if not stale:
                continue
            index.remove(np.concatenate([entries.hashes(stale), entries.variant_slots(stale)]))
            live = [r for r in mine if r.status in self._statuses]
            if live:
                self._add_hashes(index, SIGNAL_TYPES[name], live)
                self._add_variants(index, SIGNAL_TYPES[name], [r.id for r in live])

    @staticmethod
    def _add_hashes(index: HammingIndex, signal: SignalType, records: list[HashRecord]) -> None:
        codes = np.frombuffer(b"".join(r.value for r in records), np.uint8)
        index.add(entries.hashes([r.id for r in records]), codes.reshape(-1, signal.nbytes))

    def _apply_videos(self, index: HammingIndex, records: Iterable[HashRecord]) -> None:
        """Frames of changed videos leave the PDQ index, and return if still matchable."""
        videos = list(records)
        if self._videos is None or not videos:
            return
        for rows, _ in self._videos.iter_frame_codes(hash_ids=[r.id for r in videos]):
            index.remove(entries.frames(rows))
        live = [r.id for r in videos if r.status in self._statuses]
        if live:
            for rows, codes in self._videos.iter_frame_codes(hash_ids=live):
                index.add(entries.frames(rows), codes)
