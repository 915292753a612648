"""The Matcher: answers a batch of queries from the live indexes.

It ties together the three parts of matching: the live indexes (live.py: load,
snapshot, replay), the row cache (rows.py) and hit resolution (resolve.py). Exact
digests (md5, sha256) are looked up in the database, one statement per batch;
perceptual hashes are searched in the indexes, each query with its probes, probes
sharing a threshold in one search. Every lookup through the consortium layer catches
up first (`catch_up` with the change log's head, read once per API request, or by
`Matching.answer` for the console, the CLI and library callers): a retired hash
stops matching on the next request in every worker. `match` called on its own
replays only when its last replay is older than `sync_interval` seconds (there is
no background replay: a matcher nobody asks is not kept current). Expiry is checked
against the clock at every match.

Snapshots: with a `snapshot_dir`, `load` restores the indexes from a sound snapshot
(memory-mapped: one copy per machine, hashdb/index/snapshot.py) or builds them from
the database and then saves one, unless `save_after_build` is off (API workers when
the worker role writes the snapshots: they then never write any). While serving, a
lookup checks at most every `snapshot_poll` seconds (one `stat` per signal type)
whether a newer snapshot was saved, and if so a background thread adopts it
(hashdb/matching/live.py), so what each process holds beyond the shared map stays
small. `adopt_snapshot` does the same in the caller's thread.

A PDQ query below quality 50 is answered `low_quality` and not matched: such an
image is too featureless for its hash to mean anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hashdb.errors import InvalidInput
from hashdb.index import entries
from hashdb.keypoints.codec import KeypointSet
from hashdb.matching import keypoints
from hashdb.matching.live import LiveIndexes
from hashdb.matching.queries import Match, Probe, Query, QueryResult, Via, VideoMatch
from hashdb.matching.resolve import Hits, Resolver
from hashdb.matching.rows import RowCache
from hashdb.signals import PDQ, SIGNAL_TYPES, Matching, SignalType
from hashdb.signals.vpdq import Frame
from hashdb.store import MATCHABLE, ChangeLog, HashStore, Status, VideoStore
from hashdb.video_match import DEFAULT_INTERVAL, VideoThresholds

log = logging.getLogger(__name__)


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
        save_after_build: bool = True,
        snapshot_poll: float = 5.0,
    ) -> None:
        matchable = frozenset(statuses)
        self._hashes = hashes
        self._changes = changes
        self._videos = videos
        self._sync_interval = sync_interval
        self._snapshot_dir = snapshot_dir
        self._save_after_build = save_after_build
        self._snapshot_poll = snapshot_poll
        self._polled_at = time.monotonic()
        self._adopter: threading.Thread | None = None
        self._adopter_lock = threading.Lock()
        self._indexes = LiveIndexes(hashes, changes, videos, matchable, snapshot_dir)
        self._rows = RowCache(hashes, matchable)
        self._resolver = Resolver(hashes, videos, self._rows, matchable)
        self._synced_at = 0.0
        self._loading = threading.Lock()
        self.ready = False
        self.epoch = ""  # the feed epoch the indexes were loaded in

    @property
    def cursor(self) -> int:
        """The change-log position the indexes reflect."""
        return self._indexes.cursor

    def sizes(self) -> dict[str, int]:
        return self._indexes.sizes()

    def nbytes(self) -> dict[str, int]:
        """Bytes of array memory per index (see `LiveIndexes.nbytes`)."""
        return self._indexes.nbytes()

    def keypoint_sets(self) -> int:
        """Stored keypoint sets in the keypoint index (`sizes` counts the others)."""
        return len(self._indexes.keypoints)

    def keyframes(self) -> int:
        """Stored video keyframes in the keyframe index."""
        return len(self._indexes.keyframes)

    def load(self, *, fresh: bool = False) -> None:
        """Build every index (start-up): from a snapshot when a sound one exists (and
        not `fresh`), else from the database; then replay the change log since the
        position it reflects."""
        with self._loading:
            # Read before the indexes: a new epoch during the load is seen next time.
            self.epoch = self._changes.epoch()
            restored = self._indexes.load(fresh=fresh)
            self._rows.clear()
            self._synced_at = time.monotonic()
            self.ready = True
        # Changes committed while we were reading are replayed now; replay is idempotent.
        self.refresh()
        if not restored and self._snapshot_dir is not None and self._save_after_build:
            self.save_snapshot()

    @property
    def snapshot_cursor(self) -> int | None:
        """The cursor of the snapshot the indexes were loaded from, if they were."""
        return self._indexes.snapshot_cursor

    def adopt_snapshot(self) -> bool:
        """Swap to a snapshot saved at a newer cursor than the indexes came from, if
        there is one (see hashdb/matching/live.py); True if swapped."""
        return self.ready and self._indexes.adopt_snapshot(self._rows.evict)

    def _poll_snapshot(self) -> None:
        """Adopt a newer snapshot in the background, checking at most every
        `snapshot_poll` seconds whether one was saved."""
        now = time.monotonic()
        if self._snapshot_dir is None or now - self._polled_at < self._snapshot_poll:
            return
        self._polled_at = now
        if not self.ready or not self._indexes.snapshot_changed():
            return
        with self._adopter_lock:
            if self._adopter is not None and self._adopter.is_alive():
                return
            self._adopter = threading.Thread(
                target=self._adopt_logged, name="hashdb-snapshot-adopter", daemon=True
            )
            self._adopter.start()

    def _adopt_logged(self) -> None:
        try:
            self.adopt_snapshot()
        except Exception:  # the old indexes keep serving; the next poll tries again
            log.exception("adopting a newer index snapshot failed")

    def save_snapshot(self) -> None:
        """Write every index with the cursor it reflects (no-op without a directory),
        then map what was written in place of this process's own copy: the writer,
        too, then holds the shared snapshot plus a small delta (the save folds a
        large delta into the snapshot's tables)."""
        self._indexes.save_snapshot()
        self.adopt_snapshot()

    def refresh(self) -> int:
        """Apply the change log since the last refresh; returns how many changes."""
        applied = self._indexes.replay(self._rows.evict)
        self._synced_at = time.monotonic()
        return applied

    def maybe_refresh(self) -> None:
        self._poll_snapshot()
        if time.monotonic() - self._synced_at >= self._sync_interval:
            self.refresh()

    def catch_up(self, head: int, epoch: str | None = None) -> bool:
        """Replay the change log if it has moved past what the indexes reflect
        (`head`: its newest sequence number, as read by the caller). If `epoch` (the
        feed epoch read with it) differs from the one the indexes were loaded in, or
        the log is behind them, and still is when read again (a concurrent request
        may have replayed past a head read earlier), the database is another history
        (a restored backup, a promoted standby): every index is rebuilt and the row
        cache emptied. True when that happened."""
        self._poll_snapshot()
        if not self.ready:
            return False
        if epoch is not None and epoch != self.epoch and self._changes.epoch() != self.epoch:
            log.warning("the feed epoch changed (a restored database?); rebuilding")
            self.load(fresh=True)
            return True
        if head == self.cursor:
            return False
        if head > self.cursor:
            self.refresh()
            return False
        if self._changes.head() >= self.cursor:
            return False
        log.warning("the change log went backwards (a restored database?); rebuilding")
        self.load(fresh=True)
        return True

    def warm_records(self) -> int:
        """Fill the row cache after a load (see hashdb/matching/rows.py); returns
        how many rows it holds."""
        return self._rows.warm()

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
        local: list[int] = []  # keypoint sets: verified apart, not resolved from hits
        for name, positions in by_type.items():
            signal = SIGNAL_TYPES[name]
            if signal.matching is Matching.EXACT:
                self._match_exact(signal, queries, positions, raw)
            elif signal.matching is Matching.LOCAL:
                local += positions
            else:
                self._match_hamming(signal, queries, positions, raw)
        results = self._resolver.results(queries, raw)
        for i in local:
            results[i] = self._match_local(queries[i])
        return results

    def _match_local(self, query: Query) -> QueryResult:
        """A keypoints query (its value and probes are keypoint sets in wire form):
        the live stored sets that verification accepts, most inliers first."""
        sets: list[tuple[str | None, KeypointSet]] = [(None, KeypointSet.from_bytes(query.value))]
        sets += [(p[0], KeypointSet.from_bytes(p[1])) for p in query.probes]
        hits = keypoints.search(self._indexes.keypoints, sets)
        records = self._rows.get({h.hash_id for h in hits}) if hits else {}
        at = datetime.now(UTC)
        matches = [
            Match(record, 0, Via.of(h.probe, None), inliers=h.inliers, share=round(h.share, 3))
            for h in hits
            if (record := records.get(h.hash_id)) is not None and self._resolver.live(record, at)
        ]
        return QueryResult(query, matches)

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
                ids = entries.hashes([r.id for r in rows])
                raw[i].append((ids, np.zeros(len(rows), np.int32), None))

    def _match_hamming(
        self,
        signal: SignalType,
        queries: Sequence[Query],
        positions: list[int],
        raw: list[Hits],
    ) -> None:
        index = self._indexes[signal.name]
        # One search row per (query, probe); rows sharing a threshold are searched together.
        searches: dict[int, list[tuple[int, str | None, bytes]]] = {}
        for i in positions:
            q = queries[i]
            searches.setdefault(q.effective_threshold, []).append((i, None, q.value))
            for probe in q.probes:
                own = probe.threshold if isinstance(probe, Probe) else None
                limit = q.effective_threshold if own is None else own
                searches.setdefault(limit, []).append((i, probe[0], probe[1]))
        for threshold, group in searches.items():
            codes = np.frombuffer(b"".join(code for _, _, code in group), np.uint8)
            hits = index.search(codes.reshape(len(group), signal.nbytes), threshold)
            for (i, probe_name, _), hit in zip(group, hits, strict=True):
                if len(hit.ids):
                    raw[i].append((hit.ids, hit.distances, probe_name))

    def match_video(
        self,
        frames: Sequence[Frame],
        *,
        keyframes: Sequence[tuple[float, KeypointSet]] = (),
        threshold: int | None = None,
        thresholds: VideoThresholds | None = None,
        interval: float = DEFAULT_INTERVAL,
    ) -> list[VideoMatch]:
        """Stored videos matching a query video, scored by vPDQ's two shares.

        Every query frame is searched in the PDQ index, every query keyframe ((time,
        keypoint set) pairs) in the keyframe index (hashdb/matching/keyframes.py);
        hits on frames and keyframes of stored videos are grouped per video and
        scored (hashdb.video_match), best first.
        """
        if not self.ready:
            self.load()
        self.maybe_refresh()
        if not frames or self._videos is None:
            return []
        limit = PDQ.default_threshold if threshold is None else threshold
        codes = np.frombuffer(b"".join(f.pdq for f in frames), np.uint8)
        found = self._indexes[PDQ.name].search(codes.reshape(len(frames), PDQ.nbytes), limit)
        hits = self._indexes.keyframes.search(keyframes) if keyframes else []
        return self._resolver.videos(
            frames, found, thresholds or VideoThresholds(), interval, hits, limit
        )
