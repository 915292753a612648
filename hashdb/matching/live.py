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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from hashdb.index import HammingIndex, MIHIndex, entries, load_snapshot, make_index, save_snapshot
from hashdb.signals import PDQ, SIGNAL_TYPES, Matching, SignalType
from hashdb.signals.vpdq import VPDQ
from hashdb.store import ChangeLog, HashRecord, HashStore, Status, VideoStore

log = logging.getLogger(__name__)


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
        self._cursor = 0
        self._lock = threading.Lock()

    @property
    def cursor(self) -> int:
        """The change-log position the indexes reflect."""
        return self._cursor

    def sizes(self) -> dict[str, int]:
        """Entries per index (hashes, stored variants and video frames together)."""
        return {name: len(index) for name, index in self._indexes.items()}

    def __getitem__(self, signal_type: str) -> HammingIndex:
        return self._indexes[signal_type]

    def load(self, *, fresh: bool = False) -> bool:
        """Restore (unless `fresh`) or build every index; True if restored from a
        snapshot. Changes committed since the position they reflect are left to
        `replay`."""
        with self._lock:
            restored = None if fresh else self._restore()
            if restored is None:
                cursor = self._changes.head()
                indexes = self._build()
            else:
                indexes, cursor = restored
            _warm_up(indexes)
            self._indexes, self._cursor = indexes, cursor
        return restored is not None

    def replay(self, evict: Callable[[set[int]], None]) -> int:
        """Apply the change log since `cursor`; returns how many changes. `evict` is
        told each batch's hash ids before their rows are read again."""
        applied = 0
        with self._lock:
            while True:
                batch = self._changes.since(self._cursor)
                if not batch:
                    break
                changed = {c.hash_id for c in batch}
                evict(changed)
                self._apply(changed)
                self._cursor = batch[-1].seq
                applied += len(batch)
        return applied

    def save_snapshot(self) -> None:
        """Write every index with the cursor it reflects (no-op without a directory)."""
        if self._snapshot_dir is None:
            return
        with self._lock:
            for name, index in self._indexes.items():
                if isinstance(index, MIHIndex):
                    save_snapshot(index, self._snapshot_dir / name, self._cursor)

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
        loaded = {
            s.name: load_snapshot(self._snapshot_dir / s.name, s.bits) for s in hamming_signals()
        }
        cursors = {found[1] for found in loaded.values() if found is not None}
        if None in loaded.values() or len(cursors) != 1:
            return None
        (cursor,) = cursors
        if cursor > self._changes.head():
            log.warning("index snapshot is ahead of this database's change log; rebuilding")
            return None
        return {name: found[0] for name, found in loaded.items() if found is not None}, cursor

    # -- replay --------------------------------------------------------------------

    def _apply(self, hash_ids: set[int]) -> None:
        records = self._hashes.get_many(hash_ids)
        self._apply_videos([r for r in records.values() if r.signal_type == VPDQ.name])
        gone = sorted(hash_ids - records.keys())  # not in the database: drop everywhere
        for name, index in self._indexes.items():
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

    def _apply_videos(self, records: Iterable[HashRecord]) -> None:
        """Frames of changed videos leave the PDQ index, and return if still matchable."""
        videos = list(records)
        if self._videos is None or not videos:
            return
        index = self._indexes[PDQ.name]
        for rows, _ in self._videos.iter_frame_codes(hash_ids=[r.id for r in videos]):
            index.remove(entries.frames(rows))
        live = [r.id for r in videos if r.status in self._statuses]
        if live:
            for rows, codes in self._videos.iter_frame_codes(hash_ids=live):
                index.add(entries.frames(rows), codes)
