"""Prometheus metrics: requests, latencies, match queries and hits, index sizes, and
what an operator watches (index memory, snapshot age, import jobs, followers' lag).

Each app owns its registry (two apps in one process, as in tests, never collide).
Under gunicorn every worker is its own process; `hashdb serve` then sets
`PROMETHEUS_MULTIPROC_DIR` before any worker starts, prometheus_client writes every
worker's values to files there, and `/metrics` (answered by whichever worker)
aggregates all of them: counters and histograms are summed over workers, index
sizes and readiness are the largest and smallest over live workers. Without that
variable (a single process, the test client) the registry is read directly.

The operational gauges:

    hashdb_index_bytes{signal_type}     array memory of a worker's index (the largest
                                        over live workers; mapped snapshot arrays are
                                        shared by the workers of a machine)
    hashdb_snapshot_age_seconds{signal_type}
                                        since the snapshot the index came from was
                                        saved (absent: built from the database)
    hashdb_import_jobs{state}           unfinished import jobs by state (queue depth)
    hashdb_feed_lag{member}             changes a following member is behind: the
                                        head minus the cursor it reported in
                                        `X-Hashdb-Follower-Cursor` on its last export
                                        request (api/export.py)

The first three are read when `/metrics` is scraped (`observe`, cheap: no scan);
the lag when a follower asks for a page. Values a scrape or a request sets are
taken from the worker that set them last (`livemostrecent`).

A request updates its metrics through two calls, whatever it asked: `note_request`
(every request: its count and latency) and, for a lookup, `note_lookup` (queries and
matches by signal type, index sizes if they moved). Both keep the labelled children
they touch, so the hot path does a dictionary lookup per update rather than
prometheus_client's label validation and locking; the children are the ones
`labels()` returns (and keeps) anyway, so nothing grows that would not have grown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector


class Indexes(Protocol):
    """What the metrics read of the indexes (`Consortium.matching` has it)."""

    @property
    def cursor(self) -> int: ...

    def index_sizes(self) -> dict[str, int]: ...


class Operations(Protocol):
    """What the metrics read on a scrape (`Consortium.operations` has it)."""

    def index_bytes(self) -> dict[str, int]: ...

    def snapshot_age(self) -> dict[str, float]: ...

    def import_jobs(self) -> dict[str, int]: ...


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds; the match path should answer a single hash in about a millisecond.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._sizes_at = -1  # the change-log position the index size gauges reflect
        # Labelled children the hot path updates (see the module docstring).
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._lookup_children: dict[str, tuple[Counter, Counter]] = {}
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hashdb_http_requests",
            "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hashdb_http_request_duration_seconds",
            "Time to answer an HTTP request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queries = Counter(
            "hashdb_match_queries",
            "Hashes looked up, by signal type.",
            ["signal_type"],
            registry=self.registry,
        )
        self.matches = Counter(
            "hashdb_matches",
            "Matches returned, by signal type of the query.",
            ["signal_type"],
            registry=self.registry,
        )
        self.index_size = Gauge(
            "hashdb_index_size",
            "Hashes in the in-memory index, by signal type.",
            ["signal_type"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.ready = Gauge(
            "hashdb_ready",
            "1 when the indexes are loaded (the smallest over live workers).",
            multiprocess_mode="livemin",
            registry=self.registry,
        )

        self.index_bytes = Gauge(
            "hashdb_index_bytes",
            "Array memory of the in-memory index, by signal type (largest over live "
            "workers; memory-mapped snapshot arrays included, shared on a machine).",
            ["signal_type"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.snapshot_age = Gauge(
            "hashdb_snapshot_age_seconds",
            "Seconds since the index snapshot the index was loaded from was saved, by "
            "signal type (absent: built from the database).",
            ["signal_type"],
            multiprocess_mode="livemostrecent",
            registry=self.registry,
        )
        self.import_jobs = Gauge(
            "hashdb_import_jobs",
            "Unfinished import jobs, by state (the import queue's depth).",
            ["state"],
            multiprocess_mode="livemostrecent",
            registry=self.registry,
        )
        self.feed_lag = Gauge(
            "hashdb_feed_lag",
            "Changes a following member is behind the feed's head, as of its last "
            "export request that reported its cursor (X-Hashdb-Follower-Cursor).",
            ["member"],
            multiprocess_mode="livemostrecent",
            registry=self.registry,
        )

    def observe(self, operations: Operations) -> None:
        """Read the operational gauges (at a scrape); the import-job count needs the
        database and raises StorageUnavailable if it does not answer, after the
        others are set."""
        self.set_index_bytes(operations.index_bytes())
        for name, age in operations.snapshot_age().items():
            self.snapshot_age.labels(name).set(age)
        for state, count in operations.import_jobs().items():
            self.import_jobs.labels(state).set(count)

    def set_index_bytes(self, sizes: dict[str, int]) -> None:
        for name, size in sizes.items():
            self.index_bytes.labels(name).set(size)

    def note_follower(self, member: str, lag: int) -> None:
        """A follower's lag, from the cursor it reported and the head it was answered."""
        self.feed_lag.labels(member).set(max(0, lag))

    def set_index_sizes(self, sizes: dict[str, int]) -> None:
        for name, size in sizes.items():
            self.index_size.labels(name).set(size)

    def note_request(self, endpoint: str, method: str, status: int, seconds: float | None) -> None:
        """One answered request: its count by endpoint, method and status, and its
        latency by endpoint (None: not timed)."""
        key = (endpoint, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, method, str(status)),
                self.latency.labels(endpoint),
            )
            self._request_children[key] = children
        count, latency = children
        count.inc()
        if seconds is not None:
            latency.observe(seconds)

    def note_lookup(
        self, queried: Mapping[str, int], matched: Mapping[str, int], indexes: Indexes
    ) -> None:
        """One lookup request: the hashes it looked up and the matches it returned, by
        signal type, and the index sizes if the indexes moved (`note_index`)."""
        for name, count in queried.items():
            children = self._lookup_children.get(name)
            if children is None:
                children = (self.queries.labels(name), self.matches.labels(name))
                self._lookup_children[name] = children
            children[0].inc(count)
            found = matched.get(name, 0)
            if found:
                children[1].inc(found)
        self.note_index(indexes)

    def note_index(self, indexes: Indexes) -> None:
        """Index sizes again, if the indexes replayed changes since they were set
        (a request calls this; most find nothing new)."""
        if indexes.cursor != self._sizes_at:
            self._sizes_at = indexes.cursor
            self.set_index_sizes(indexes.index_sizes())

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
