"""Counting the matches the service answers: per member, per hash, per hour.

Only counts are kept, never the members' queries or content. Labels are not
stored here: a hash's labels are joined in when a report asks for matches by
label. Counting costs one `INSERT ... ON CONFLICT DO UPDATE` per write, its rows
aggregated first (each hash appears once): on PostgreSQL one statement per hour
and member taking the hash ids and counts as two arrays; on SQLite one statement
compiled once and executed with many rows (a multi-row VALUES statement would be
compiled anew for every batch, which cost more than the search itself).
An hour is the finest time a report can ask about matches.

The match path does not write: a serving process adds each batch's matches to a
`Tally` in memory, and a background thread writes what accumulated once every
`interval` seconds (HASHDB_COUNT_FLUSH_SECONDS, default 5) in one upsert, and when
the process closes its database. A write per matching request (a transaction and
a commit on PostgreSQL) cost more than the rest of a single-hash lookup together;
the price is that counts reach the reports up to that interval late, and that a
process killed without warning loses at most that much of its counts (counts only:
nothing a member sent is kept anyway). The upsert's rows are the hashes matched in
the interval, so a longer one writes fewer (the cost of writing every second:
docs/measurements.md, "Serving"); reports count by the hour, so 5 seconds costs
them nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import cache

from sqlalchemy import Engine, Insert, text
from sqlalchemy.dialects import sqlite

from hashdb.matching import QueryResult
from hashdb.store.clock import now, utc
from hashdb.store.schema import match_counts

log = logging.getLogger(__name__)

# Matches counted: per (hour bucket, member id), how often each hash id matched.
Counts = dict[tuple[datetime, int], Counter[int]]


@cache
def _upsert_rows() -> Insert:
    """SQLite's statement, built once: executed with many rows, SQLAlchemy compiles
    it once."""
    statement = sqlite.insert(match_counts)
    return statement.on_conflict_do_update(
        index_elements=["bucket", "member_id", "hash_id"],
        set_={"count": match_counts.c.count + statement.excluded.count},
    )


def bucket_of(at: datetime) -> datetime:
    """The hour `at` falls in (UTC)."""
    return utc(at).replace(minute=0, second=0, microsecond=0)


def tally_of(member_id: int, results: Sequence[QueryResult], at: datetime | None = None) -> Counts:
    """The matches of one member's batch, by hour and member, then by hash."""
    matched = Counter([m.record.id for r in results for m in r.matches])
    return {(bucket_of(at or now()), member_id): matched} if matched else {}


def merge(counts: Counts, more: Counts) -> None:
    """Add `more` into `counts`."""
    for key, matched in more.items():
        if key in counts:
            counts[key].update(matched)
        else:
            counts[key] = Counter(matched)


def total(counts: Counts) -> int:
    return sum(sum(matched.values()) for matched in counts.values())


# PostgreSQL: one statement per (hour, member), its hashes and counts as two arrays.
_UPSERT_ARRAYS = text(
    "INSERT INTO match_counts (bucket, member_id, hash_id, count) "
    "SELECT :bucket, :member_id, u.hash_id, u.count "
    "FROM unnest(CAST(:hash_ids AS bigint[]), CAST(:counts AS bigint[])) AS u(hash_id, count) "
    "ON CONFLICT (bucket, member_id, hash_id) "
    "DO UPDATE SET count = match_counts.count + excluded.count"
)


def write(engine: Engine, counts: Counts) -> int:
    """Add `counts` to the stored counts; returns how many matches that was.

    Rows go in key order, so that two processes writing at once take the rows'
    locks in the same order (no deadlock). On PostgreSQL the rows of each hour and
    member travel as two arrays in one statement: executed row by row, the
    parameters of a flush of some 10,000 hashes cost a background thread tens of
    milliseconds of the interpreter's lock, which the requests of the same process
    waited for (docs/measurements.md, "Match counts")."""
    groups = sorted((key, sorted(matched.items())) for key, matched in counts.items() if matched)
    if not groups:
        return 0
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            for (bucket, member), pairs in groups:
                conn.execute(
                    _UPSERT_ARRAYS,
                    {
                        "bucket": bucket,
                        "member_id": member,
                        "hash_ids": [hash_id for hash_id, _ in pairs],
                        "counts": [n for _, n in pairs],
                    },
                )
        else:
            rows = [
                {"bucket": bucket, "member_id": member, "hash_id": hash_id, "count": n}
                for (bucket, member), pairs in groups
                for hash_id, n in pairs
            ]
            conn.execute(_upsert_rows(), rows)
    return total(counts)


def record(
    engine: Engine, member_id: int, results: Sequence[QueryResult], at: datetime | None = None
) -> int:
    """Count every match of one member's batch now; returns how many were counted."""
    return write(engine, tally_of(member_id, results, at))


class Tally:
    """Match counts of this process, written every `interval` seconds in the
    background (at once when `interval` is 0) and on `close`."""

    def __init__(self, engine: Engine, interval: float = 1.0) -> None:
        self._engine = engine
        self._interval = interval
        self._pending: Counts = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(
        self, member_id: int, results: Sequence[QueryResult], at: datetime | None = None
    ) -> None:
        counted = tally_of(member_id, results, at)
        if not counted:
            return
        if self._interval <= 0:
            write(self._engine, counted)
            return
        with self._lock:
            merge(self._pending, counted)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hashdb-match-counts", daemon=True
                )
                self._thread.start()

    @property
    def pending(self) -> int:
        """Matches counted but not written yet."""
        with self._lock:
            return total(self._pending)

    def flush(self) -> int:
        """Write what accumulated; returns how many matches that was."""
        with self._lock:
            counted, self._pending = self._pending, {}
        try:
            return write(self._engine, counted)
        except Exception:
            with self._lock:  # keep them for the next try
                merge(self._pending, counted)
            raise

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:
                log.exception("writing match counts failed; retrying")
