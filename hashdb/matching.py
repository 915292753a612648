"""Matching: answer a batch of queries from the in-memory indexes.

The `Matcher` keeps one Hamming index per perceptual signal type (pdq, phash),
built from the database at start and kept current by replaying the change log
(`refresh`). Exact digests (md5, sha256) are looked up in the database, one
statement per batch. Matched ids are hydrated from the database in one statement
per batch, which also drops any hash whose status stopped being matchable since
the last refresh: a retired hash stops matching at once in every process, while
additions show up within the refresh interval.

A PDQ query below quality 50 is answered `low_quality` and not matched: such an
image is too featureless for its hash to mean anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hashdb.index import HammingIndex, make_index
from hashdb.signals import PDQ, SIGNAL_TYPES, Matching, SignalType
from hashdb.store import MATCHABLE, ChangeLog, HashRecord, HashStore, Status


@dataclass(frozen=True)
class Query:
    """One hash to look up. `quality` is the PDQ quality (0-100) of the image the
    hash came from, when known; it gates every perceptual hash of that image.
    `variants` are extra probes of the same content (for example the dihedral forms
    of an image), each with a name."""

    signal_type: SignalType
    value: bytes
    threshold: int | None = None
    quality: int | None = None
    variants: tuple[tuple[str, bytes], ...] = ()

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


@dataclass(frozen=True)
class QueryResult:
    query: Query
    matches: list[Match] = field(default_factory=list)

    @property
    def low_quality(self) -> bool:
        return self.query.low_quality


class Matcher:
    """In-memory indexes over the store, kept current from the change log."""

    def __init__(
        self,
        hashes: HashStore,
        changes: ChangeLog,
        *,
        statuses: Iterable[Status] = MATCHABLE,
        sync_interval: float = 2.0,
    ) -> None:
        self._hashes = hashes
        self._changes = changes
        self._statuses = frozenset(statuses)
        self._sync_interval = sync_interval
        self._indexes: dict[str, HammingIndex] = {}
        self._cursor = 0
        self._synced_at = 0.0
        self._lock = threading.Lock()
        self.ready = False

    @property
    def cursor(self) -> int:
        """The change-log position the indexes reflect."""
        return self._cursor

    def sizes(self) -> dict[str, int]:
        return {name: len(index) for name, index in self._indexes.items()}

    def load(self) -> None:
        """Build every index from the database (start-up)."""
        with self._lock:
            cursor = self._changes.head()
            indexes: dict[str, HammingIndex] = {}
            for signal in SIGNAL_TYPES.values():
                if signal.matching is not Matching.HAMMING:
                    continue
                index = make_index(signal.bits)
                for ids, codes in self._hashes.iter_codes(
                    signal.name, signal.nbytes, self._statuses
                ):
                    index.add(ids, codes)
                indexes[signal.name] = index
            self._indexes, self._cursor = indexes, cursor
            self._synced_at = time.monotonic()
            self.ready = True
        # Changes committed while we were reading are replayed now; replay is idempotent.
        self.refresh()

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

    def _apply(self, hash_ids: set[int]) -> None:
        records = self._hashes.get_many(hash_ids)
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

    def match(self, queries: Sequence[Query]) -> list[QueryResult]:
        """Every matchable hash within each query's threshold, in query order."""
        if not self.ready:
            self.load()
        self.maybe_refresh()
        raw: list[list[tuple[int, int, str | None]]] = [[] for _ in queries]
        by_type: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
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
        raw: list[list[tuple[int, int, str | None]]],
    ) -> None:
        found = self._hashes.find_exact(signal.name, (queries[i].value for i in positions))
        for i in positions:
            raw[i].extend((r.id, 0, None) for r in found.get(queries[i].value, []))

    def _match_hamming(
        self,
        signal: SignalType,
        queries: Sequence[Query],
        positions: list[int],
        raw: list[list[tuple[int, int, str | None]]],
    ) -> None:
        index = self._indexes[signal.name]
        # One probe per (query, variant); probes sharing a threshold are searched together.
        probes: dict[int, list[tuple[int, str | None, bytes]]] = {}
        for i in positions:
            q = queries[i]
            group = probes.setdefault(q.effective_threshold, [])
            group.append((i, None, q.value))
            group.extend((i, name, code) for name, code in q.variants)
        for threshold, group in probes.items():
            codes = np.frombuffer(b"".join(code for _, _, code in group), np.uint8)
            hits = index.search(codes.reshape(len(group), signal.nbytes), threshold)
            for (i, variant, _), hit in zip(group, hits, strict=True):
                raw[i].extend(
                    (int(h), int(d), variant) for h, d in zip(hit.ids, hit.distances, strict=True)
                )

    def _hydrate(
        self, queries: Sequence[Query], raw: list[list[tuple[int, int, str | None]]]
    ) -> list[QueryResult]:
        ids = {hash_id for hits in raw for hash_id, _, _ in hits}
        records = self._hashes.get_many(ids) if ids else {}
        results = []
        for q, hits in zip(queries, raw, strict=True):
            best: dict[int, Match] = {}
            for hash_id, distance, variant in hits:
                record = records.get(hash_id)
                if record is None or record.status not in self._statuses:
                    continue
                seen = best.get(hash_id)
                if seen is None or distance < seen.distance:
                    best[hash_id] = Match(record, distance, variant)
            ordered = sorted(best.values(), key=lambda m: (m.distance, m.record.id))
            results.append(QueryResult(q, ordered))
        return results
