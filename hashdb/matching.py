"""Matching: answer a batch of queries from the in-memory indexes.

The `Matcher` keeps one Hamming index per perceptual signal type (pdq, phash),
built from the database at start and kept current by replaying the change log
(`refresh`). Exact digests (md5, sha256) are looked up in the database, one
statement per batch.

Matched ids are hydrated from a cache of their rows: up to RECORD_CACHE rows,
filled in the background after a load (`warm_records`: a collection that fits is
answered without reading the database at all) and on a miss (one statement per
batch). Every change to a row that a match shows (status, labels, expiry) is in
the change log, and replaying it evicts the row, so the cache never serves a
stale row once the matcher has caught up. An API worker catches up before every request
(`catch_up` with the head it read, hashdb/store/heads.py): a retired hash stops
matching on the next request in every worker; other users replay at least every
`sync_interval` seconds. Expiry is checked against the clock at every match.

A hit on a stored variant of a contributed image (a row derived from its PDQ row:
its content region, a crop window; hashdb/variants.py) is reported as a match of
the parent row, named `stored:<variant>` (after the query probe's own name, if
any), and only within that variant's STORED_THRESHOLDS.

A PDQ query below quality 50 is answered `low_quality` and not matched: such an
image is too featureless for its hash to mean anything.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from hashdb.errors import InvalidInput
from hashdb.index import (
    HammingIndex,
    MIHIndex,
    SearchHits,
    load_snapshot,
    make_index,
    save_snapshot,
)
from hashdb.signals import PDQ, SIGNAL_TYPES, Matching, SignalType
from hashdb.signals.vpdq import VPDQ, Frame
from hashdb.store import MATCHABLE, ChangeLog, HashRecord, HashStore, Status, VideoStore
from hashdb.variants import STORED_THRESHOLDS
from hashdb.video_match import (
    DEFAULT_INTERVAL,
    VideoScore,
    VideoThresholds,
    group_hits,
    rank_candidates,
)


class Probe(NamedTuple):
    """An extra probe of a query with its own threshold (None: the query's)."""

    name: str
    value: bytes
    threshold: int | None = None


log = logging.getLogger(__name__)

RECORD_CACHE = 250_000  # rows kept for hydration (about 500 bytes each)


@dataclass(frozen=True)
class Query:
    """One hash to look up. `quality` is the PDQ quality (0-100) of the image the
    hash came from, when known; it gates every perceptual hash of that image.
    `variants` are extra probes of the same content (for example the dihedral forms
    of an image), each with a name: a `(name, value)` pair is probed at the query's
    threshold, a `Probe` at its own (ingest/probes.py measures one per kind)."""

    signal_type: SignalType
    value: bytes
    threshold: int | None = None
    quality: int | None = None
    variants: tuple[tuple[str, bytes] | Probe, ...] = ()

    @property
    def effective_threshold(self) -> int:
        return self.signal_type.default_threshold if self.threshold is None else self.threshold

    @property
    def low_quality(self) -> bool:
        if self.signal_type.matching is Matching.EXACT or self.quality is None:
            return False
        return self.quality < (PDQ.min_quality or 0)


@dataclass(frozen=True)
class Match:
    record: HashRecord
    distance: int
    variant: str | None = None  # which probe matched; None for the query as given
    # When the match is a frame of a stored video: that frame's time in the video.
    frame_at: float | None = None


@dataclass(frozen=True)
class QueryResult:
    query: Query
    matches: list[Match] = field(default_factory=list)

    @property
    def low_quality(self) -> bool:
        return self.query.low_quality


@dataclass(frozen=True)
class VideoMatch:
    record: HashRecord  # the stored video's vpdq hash
    score: VideoScore


def _warm_up(indexes: dict[str, HammingIndex]) -> None:
    """Search each index once, so that loading its compiled kernels is paid at start
    (before `ready`), not by the first request."""
    for name, index in indexes.items():
        signal = SIGNAL_TYPES[name]
        index.search(np.zeros((1, signal.nbytes), np.uint8), signal.default_threshold or 0)


# The hits of one query: per probe, the index ids and distances it found and the
# probe's name (None for the query as given).
Hits = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], str | None]]


class Matcher:
    """In-memory indexes over the store, kept current from the change log."""

    def __init__(
        self,
        hashes: HashStore,
        changes: ChangeLog,
        *,
        videos: VideoStore | None = None,
        statuses: Iterable[Status] = MATCHABLE,
        sync_interval: float = 2.0,
        snapshot_dir: Path | None = None,
    ) -> None:
        self._hashes = hashes
        self._changes = changes
        self._videos = videos
        self._snapshot_dir = snapshot_dir
        self._statuses = frozenset(statuses)
        self._sync_interval = sync_interval
        self._indexes: dict[str, HammingIndex] = {}
        self._cursor = 0
        self._synced_at = 0.0
        self._lock = threading.Lock()
        self._records: dict[int, HashRecord] = {}
        self._evictions = 0  # bumped whenever rows leave the cache (see _cached_records)
        self._evicted: set[int] | None = None  # ids evicted while warm_records reads
        self.ready = False

    @property
    def cursor(self) -> int:
        """The change-log position the indexes reflect."""
        return self._cursor

    def sizes(self) -> dict[str, int]:
        return {name: len(index) for name, index in self._indexes.items()}

    def load(self) -> None:
        """Build every index (start-up): from a snapshot when a sound one exists, else
        from the database; then replay the change log since the position it reflects."""
        with self._lock:
            restored = self._restore()
            if restored is None:
                cursor = self._changes.head()
                indexes = self._build()
            else:
                indexes, cursor = restored
            _warm_up(indexes)
            self._indexes, self._cursor = indexes, cursor
            self._records.clear()
            self._evictions += 1
            self._synced_at = time.monotonic()
            self.ready = True
        # Changes committed while we were reading are replayed now; replay is idempotent.
        self.refresh()
        if restored is None and self._snapshot_dir is not None:
            self.save_snapshot()

    def _build(self) -> dict[str, HammingIndex]:
        indexes: dict[str, HammingIndex] = {}
        for signal in self._hamming_signals():
            index = make_index(signal.bits)
            for ids, codes in self._hashes.iter_codes(signal.name, signal.nbytes, self._statuses):
                index.add(ids, codes)
            indexes[signal.name] = index
        if self._videos is not None:
            for ids, codes in self._videos.iter_frame_codes(statuses=self._statuses):
                indexes[PDQ.name].add(ids, codes)
        for index in indexes.values():
            if isinstance(index, MIHIndex):
                index.compact()  # fold the bulk load into the tables before serving
        return indexes

    @staticmethod
    def _hamming_signals() -> list[SignalType]:
        return [s for s in SIGNAL_TYPES.values() if s.matching is Matching.HAMMING]

    def _restore(self) -> tuple[dict[str, HammingIndex], int] | None:
        """Indexes from the snapshot directory, if every one loads at one cursor that
        this database's change log has reached; otherwise None (rebuild)."""
        if self._snapshot_dir is None:
            return None
        loaded = {
            s.name: load_snapshot(self._snapshot_dir / s.name, s.bits)
            for s in self._hamming_signals()
        }
        cursors = {found[1] for found in loaded.values() if found is not None}
        if None in loaded.values() or len(cursors) != 1:
            return None
        (cursor,) = cursors
        if cursor > self._changes.head():
            log.warning("index snapshot is ahead of this database's change log; rebuilding")
            return None
        return {name: found[0] for name, found in loaded.items() if found is not None}, cursor

    def save_snapshot(self) -> None:
        """Write every index with the cursor it reflects (no-op without a directory)."""
        if self._snapshot_dir is None:
            return
        with self._lock:
            for name, index in self._indexes.items():
                if isinstance(index, MIHIndex):
                    save_snapshot(index, self._snapshot_dir / name, self._cursor)

    def refresh(self) -> int:
        """Apply the change log since the last refresh; returns how many changes."""
        applied = 0
        with self._lock:
            while True:
                batch = self._changes.since(self._cursor)
                if not batch:
                    break
                self._apply({c.hash_id for c in batch})
                self._cursor = batch[-1].seq
                applied += len(batch)
            self._synced_at = time.monotonic()
        return applied

    def maybe_refresh(self) -> None:
        if time.monotonic() - self._synced_at >= self._sync_interval:
            self.refresh()

    def catch_up(self, head: int) -> None:
        """Replay the change log if it has moved past what the indexes reflect
        (`head`: its newest sequence number, as read by the caller)."""
        if head > self._cursor and self.ready:
            self.refresh()

    def _apply(self, hash_ids: set[int]) -> None:
        self._evict(hash_ids)
        records = self._hashes.get_many(hash_ids)
        self._apply_videos([r for r in records.values() if r.signal_type == VPDQ.name])
        for name, index in self._indexes.items():
            nbytes = SIGNAL_TYPES[name].nbytes
            mine = [r for r in records.values() if r.signal_type == name]
            if not mine:
                continue
            index.remove(np.array([r.id for r in mine], dtype=np.int64))
            live = [r for r in mine if r.status in self._statuses]
            if live:
                ids = np.array([r.id for r in live], dtype=np.int64)
                codes = np.frombuffer(b"".join(r.value for r in live), np.uint8)
                index.add(ids, codes.reshape(len(live), nbytes))

    def _apply_videos(self, records: list[HashRecord]) -> None:
        """Frames of changed videos leave the PDQ index, and return if still matchable."""
        if self._videos is None or not records:
            return
        index = self._indexes[PDQ.name]
        for ids, _ in self._videos.iter_frame_codes(hash_ids=[r.id for r in records]):
            index.remove(ids)
        live = [r.id for r in records if r.status in self._statuses]
        if live:
            for ids, codes in self._videos.iter_frame_codes(hash_ids=live):
                index.add(ids, codes)

    def match(self, queries: Sequence[Query]) -> list[QueryResult]:
        """Every matchable hash within each query's threshold, in query order."""
        if not self.ready:
            self.load()
        self.maybe_refresh()
        raw: list[Hits] = [[] for _ in queries]
        by_type: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            if q.signal_type.matching is Matching.VIDEO:
                raise InvalidInput(
                    "a vpdq query is a frame list; match it with match_video",
                    field="signal_type",
                    index=i,
                )
            if not q.low_quality:
                by_type.setdefault(q.signal_type.name, []).append(i)
        for name, positions in by_type.items():
            signal = SIGNAL_TYPES[name]
            if signal.matching is Matching.EXACT:
                self._match_exact(signal, queries, positions, raw)
            else:
                self._match_hamming(signal, queries, positions, raw)
        return self._hydrate(queries, raw)

    def _match_exact(
        self,
        signal: SignalType,
        queries: Sequence[Query],
        positions: list[int],
        raw: list[Hits],
    ) -> None:
        found = self._hashes.find_exact(signal.name, (queries[i].value for i in positions))
        for i in positions:
            rows = found.get(queries[i].value, [])
            if rows:
                ids = np.array([r.id for r in rows], np.int64)
                raw[i].append((ids, np.zeros(len(rows), np.int32), None))

    def _match_hamming(
        self,
        signal: SignalType,
        queries: Sequence[Query],
        positions: list[int],
        raw: list[Hits],
    ) -> None:
        index = self._indexes[signal.name]
        # One probe per (query, variant); probes sharing a threshold are searched together.
        probes: dict[int, list[tuple[int, str | None, bytes]]] = {}
        for i in positions:
            q = queries[i]
            probes.setdefault(q.effective_threshold, []).append((i, None, q.value))
            for extra in q.variants:
                own = extra.threshold if isinstance(extra, Probe) else None
                limit = q.effective_threshold if own is None else own
                probes.setdefault(limit, []).append((i, extra[0], extra[1]))
        for threshold, group in probes.items():
            codes = np.frombuffer(b"".join(code for _, _, code in group), np.uint8)
            hits = index.search(codes.reshape(len(group), signal.nbytes), threshold)
            for (i, variant, _), hit in zip(group, hits, strict=True):
                if len(hit.ids):
                    raw[i].append((hit.ids, hit.distances, variant))

    def match_video(
        self,
        frames: Sequence[Frame],
        *,
        threshold: int | None = None,
        thresholds: VideoThresholds | None = None,
        interval: float = DEFAULT_INTERVAL,
    ) -> list[VideoMatch]:
        """Stored videos matching a query video, scored by vPDQ's two shares.

        Every query frame is searched in the PDQ index; hits on frames of stored
        videos are grouped per video and scored (hashdb.video_match), best first.
        """
        if not self.ready:
            self.load()
        self.maybe_refresh()
        if not frames or self._videos is None:
            return []
        limit = PDQ.default_threshold if threshold is None else threshold
        codes = np.frombuffer(b"".join(f.pdq for f in frames), np.uint8)
        found = self._indexes[PDQ.name].search(codes.reshape(len(frames), PDQ.nbytes), limit)
        frame_rows = {-int(i) for hit in found for i in hit.ids if i < 0}
        owners = self._videos.frame_owners(frame_rows)
        infos = self._videos.info({video for video, _ in owners.values()})
        records = self._hashes.get_many(infos)
        live = {i for i, r in records.items() if r.status in self._statuses}

        def stored_videos_only(hit: SearchHits) -> SearchHits:
            keep = np.array(
                [i < 0 and owners.get(-i, (0, 0.0))[0] in live for i in hit.ids.tolist()],
                dtype=bool,
            )
            return SearchHits(hit.ids[keep], hit.distances[keep])

        def locate(index_id: int) -> tuple[int, int]:
            video = owners[-index_id][0]
            return video, infos[video].position(-index_id)

        ranked = rank_candidates(
            [f.timestamp for f in frames],
            group_hits([stored_videos_only(hit) for hit in found], locate),
            {v: [f.timestamp for f in infos[v].frames] for v in live},
            thresholds or VideoThresholds(),
            interval=interval,
        )
        return [VideoMatch(records[video], score) for video, score in ranked]

    def _evict(self, hash_ids: Iterable[int]) -> None:
        """Forget cached rows that a change touched (called under `_lock`)."""
        self._evictions += 1
        for hash_id in hash_ids:
            self._records.pop(hash_id, None)
            if self._evicted is not None:
                self._evicted.add(hash_id)

    def warm_records(self) -> int:
        """Fill the row cache with matchable rows of the indexed signal types (up to
        RECORD_CACHE); returns how many rows it holds then. Rows that a replay
        touches while they are read are left out (they will be read on a miss)."""
        with self._lock:
            self._evicted = set()
        try:
            ids: list[int] = []
            for signal in self._hamming_signals():
                codes = self._hashes.iter_codes(signal.name, signal.nbytes, self._statuses)
                for part, _ in codes:
                    ids.extend(part.tolist()[: RECORD_CACHE - len(ids)])
                    if len(ids) >= RECORD_CACHE:
                        break
            fresh = self._hashes.get_many(ids)
        finally:
            with self._lock:
                evicted, self._evicted = self._evicted or set(), None
        with self._lock:
            room = RECORD_CACHE - len(self._records)
            for hash_id, record in itertools.islice(fresh.items(), max(room, 0)):
                if hash_id not in evicted:
                    self._records.setdefault(hash_id, record)
            return len(self._records)

    def _cached_records(self, wanted: set[int]) -> dict[int, HashRecord]:
        """The rows of `wanted`, from the cache or (the missing ones) the database.
        Rows read while a replay evicted anything are not cached: they may be from
        before the change the replay applied."""
        found = {i: r for i in wanted if (r := self._records.get(i)) is not None}
        missing = wanted - found.keys()
        if missing:
            evictions = self._evictions
            fresh = self._hashes.get_many(missing)
            found.update(fresh)
            with self._lock:
                room = RECORD_CACHE - len(self._records)
                if evictions == self._evictions and room >= len(fresh):
                    self._records.update(fresh)
        return found

    def _hydrate(self, queries: Sequence[Query], raw: list[Hits]) -> list[QueryResult]:
        chunks = [ids for hits in raw for ids, _, _ in hits]
        ids = set(np.unique(np.concatenate(chunks)).tolist()) if chunks else set()
        # Negative index ids are frames of stored videos (see hashdb.store.videos).
        frames = {-i for i in ids if i < 0}
        owners = self._videos.frame_owners(frames) if frames and self._videos else {}
        wanted = {i for i in ids if i > 0} | {video for video, _ in owners.values()}
        records = self._cached_records(wanted) if wanted else {}
        # A stored variant (hashdb/variants.py) is reported as its parent.
        parents = {r.derived_from for r in records.values() if r.derived_from is not None}
        if parents - records.keys():
            records.update(self._cached_records(parents - records.keys()))
        at = datetime.now(UTC)
        results = []
        for q, hits in zip(queries, raw, strict=True):
            best: dict[int, Match] = {}
            for hit_ids, distances, variant in hits:
                for index_id, distance in zip(hit_ids.tolist(), distances.tolist(), strict=True):
                    hash_id, frame_at, how = index_id, None, variant
                    if index_id < 0:
                        if -index_id not in owners:
                            continue
                        hash_id, frame_at = owners[-index_id]
                    record = records.get(hash_id)
                    if record is not None and record.derived_from is not None:
                        kind = record.variant or ""
                        if distance > STORED_THRESHOLDS.get(kind, -1):
                            continue
                        how = f"{variant}+stored:{kind}" if variant else f"stored:{kind}"
                        hash_id = record.derived_from
                        record = records.get(hash_id)
                    if record is None or not self._live(record, at):
                        continue
                    seen = best.get(hash_id)
                    if seen is None or distance < seen.distance:
                        best[hash_id] = Match(record, distance, how, frame_at)
            found = list(best.values())
            if len(found) > 1:
                found.sort(key=lambda m: (m.distance, m.record.id))
            results.append(QueryResult(q, found))
        return results

    def _live(self, record: HashRecord, at: datetime) -> bool:
        return record.status in self._statuses and not record.expired(at)
