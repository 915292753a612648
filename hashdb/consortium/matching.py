"""Matching: the one use case that answers a lookup, whichever edge asked.

The API (`POST /v1/match`, `POST /v1/match/media`), the console's lookup page and
`hashdb match` all answer through `Matching.answer` (or `match`, its form for hash
queries only), which in this order:

1. refuses a threshold above its signal type's cap (`hashdb.budget.check_threshold`);
2. prices the request in query units (`hashdb.budget`: each hash query with its
   probes, each video query one PDQ probe per frame) and refuses one above
   HASHDB_MAX_REQUEST_COST (BudgetExceeded, 413), before any index work;
3. takes those units from the acting key's index-work bucket (HASHDB_KEY_COST_PER_SECOND,
   burst HASHDB_KEY_COST_BURST; RateLimited, 429 with the seconds until they are back);
4. catches up with the change log (`heads`: what the caller read for this request)
   and searches the indexes;
5. counts the matches for the member's reports (`match_counts.Tally`).

A key's request rate (HASHDB_RATE_LIMIT_PER_MINUTE, one token a request) is taken by
`Members.admit`, before the edge does any work for the request, since hashing an upload costs
far more than matching it: the API takes it at its door for every request
(api/auth.py), the console's lookup page calls it itself, so a member's lookups
spend one budget whichever edge they come through. An actor without a key (the CLI)
is capped and priced but charges no bucket; no actor at all (`None`: sync, library
callers) is not counted either.

The edges ask the queries the same way too: an uploaded image is probed as
`ingest.probes` describes (its content region always, so a letterboxed copy
matches; its rotations and flips when asked), a query video is hashed at every
frame. That is edge work (decoding never happens in `hashdb`); this module takes
the resulting queries.

The indexes' lifecycle in a serving process (load, row cache, sizes, kernel
warm-up) is reached through this object as well, so that the API's loader and
metrics need nothing from the matcher or the index themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hashdb.budget import check_request_cost, check_threshold, request_cost, video_cost
from hashdb.consortium.actor import Actor
from hashdb.errors import InvalidInput
from hashdb.index import MIHIndex
from hashdb.index.layout import Plan
from hashdb.keypoints.codec import KeypointSet
from hashdb.matching import Match, Query, QueryResult, VideoMatch
from hashdb.signals import PDQ, SIGNAL_TYPES
from hashdb.signals import Matching as SignalMatching
from hashdb.signals.vpdq import VPDQ, Frame, frames_digest
from hashdb.store import Heads
from hashdb.video_match import VideoThresholds

if TYPE_CHECKING:
    from hashdb.consortium.core import Context


@dataclass(frozen=True)
class VideoQuery:
    """A query video: its frames (quality >= 50 only, as vPDQ compares them), the PDQ
    threshold each frame is searched at (None: PDQ's default), and the least share of
    either side a stored video must match to be reported."""

    frames: tuple[Frame, ...]
    threshold: int | None = None
    thresholds: VideoThresholds = field(default_factory=VideoThresholds)
    # Frames hashed again with a layout edit undone (bars cut off, a static logo
    # painted over: ingest/video_regions.py), each at its frame's time, so a hit
    # counts in that frame's second; searched with the frames, never stored.
    probes: tuple[Frame, ...] = ()
    # Keypoint sets of frames a few seconds apart, each with its frame's time
    # (hashdb/matching/keyframes.py): they find a copy whose frames' PDQ drifted
    # (a large logo, greyed and boxed into another frame size).
    keyframes: tuple[tuple[float, KeypointSet], ...] = ()

    @property
    def searched(self) -> tuple[Frame, ...]:
        """The frames and the probes, in time order: every row the index is asked."""
        if not self.probes:
            return self.frames
        return tuple(sorted((*self.frames, *self.probes), key=lambda f: f.timestamp))


@dataclass(frozen=True)
class Answer:
    """What one lookup found, in the order it was asked."""

    results: list[QueryResult]  # one per hash query
    videos: list[list[VideoMatch]]  # one per video query: the stored videos it matches
    cost: int  # query units the request was priced at (and charged, with a key)


def price(queries: Sequence[Query], videos: Sequence[VideoQuery] = ()) -> int:
    """Query units of a lookup (hashdb/budget.py): its hash queries with their probes,
    and one PDQ probe per frame and per frame probe, and a keypoint set per keyframe,
    of each video query."""
    return request_cost(queries) + sum(
        video_cost(len(v.frames) + len(v.probes), v.threshold, len(v.keyframes)) for v in videos
    )


# Rows of the tiny indexes the kernels are warmed on: enough for the tables to hold
# entries, few enough that warming costs only the compilation.
_WARM_ROWS = 64


@functools.cache
def warm_index_kernels() -> None:
    """Once per process (compiled kernels stay compiled), run every numba kernel of the
    index a request can reach, on tiny inputs: its three search plans (probe, join,
    scan) and its build, at the width of each Hamming signal type."""
    rng = np.random.default_rng(0)
    widths = sorted({s.bits for s in SIGNAL_TYPES.values() if s.matching is SignalMatching.HAMMING})
    for bits in widths:
        codes = rng.integers(0, 256, (_WARM_ROWS, bits // 8), dtype=np.uint8)
        for how in Plan:
            index = MIHIndex(bits, threads=1, background=False, plan=how)
            index.add(np.arange(1, _WARM_ROWS + 1, dtype=np.int64), codes)
            index.compact()
            index.add(np.array([_WARM_ROWS + 1], dtype=np.int64), codes[:1])  # a buffered row
            index.search(codes[:2], bits // 8)


class Matching:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    # ---- the use case ----

    def answer(
        self,
        actor: Actor | None,
        queries: Sequence[Query] = (),
        videos: Sequence[VideoQuery] = (),
        *,
        heads: Heads | None = None,
    ) -> Answer:
        """Answer a lookup of hash `queries` and query `videos` as one request: capped,
        priced, charged to the actor's key, answered from the database as it is now,
        and counted for the actor's member (see the module docstring)."""
        settings = self._ctx.settings
        for i, q in enumerate(queries):
            if q.signal_type.matching is SignalMatching.VIDEO:
                raise InvalidInput(
                    "a vpdq query is a frame list: ask it as a video query",
                    field="signal_type",
                    index=i,
                )
            check_threshold(settings, q.signal_type, q.threshold, "threshold", i)
        for v in videos:
            check_threshold(settings, PDQ, v.threshold, "threshold")
        cost = price(queries, videos)
        check_request_cost(settings, cost)
        if actor is not None and actor.key_id is not None:
            self._ctx.limiter.spend(
                actor.key_id, cost, settings.key_cost_per_second, settings.key_cost_capacity
            )
        self.catch_up(heads)
        matcher = self._ctx.matcher
        results = matcher.match(queries) if queries else []
        found = [
            matcher.match_video(
                v.searched, keyframes=v.keyframes, threshold=v.threshold, thresholds=v.thresholds
            )
            for v in videos
        ]
        if actor is not None:
            counted = list(results)
            for v, matches in zip(videos, found, strict=True):
                if matches:
                    query = Query(VPDQ, frames_digest(v.frames))
                    counted.append(QueryResult(query, [Match(m.record, 0) for m in matches]))
            self._ctx.tally.add(actor.id, counted)
        return Answer(results, found, cost)

    def match(
        self, actor: Actor | None, queries: Sequence[Query], *, heads: Heads | None = None
    ) -> list[QueryResult]:
        """`answer` for hash queries only: their results, in query order."""
        return self.answer(actor, queries, heads=heads).results

    def catch_up(self, heads: Heads | None = None) -> bool:
        """Replay any change committed anywhere (any process, any server) before a
        match, so that it answers from the database as it is now. If the change log
        went backwards (a restored backup, a promoted standby) the indexes are
        rebuilt and True is returned, for the caller to drop its own caches; so they
        are if the feed epoch changed (a restore that happens to look ahead)."""
        now = heads or self._ctx.store.heads()
        return self._ctx.matcher.catch_up(now.changes, now.epoch)

    @property
    def epoch(self) -> str:
        """The feed epoch the indexes were loaded in ("" before they are)."""
        return self._ctx.matcher.epoch

    def other_history(self, heads: Heads) -> bool:
        """Whether `heads` (read by the caller) may belong to another history than the
        indexes: the log is behind them, or the feed epoch changed. Cheap: no read."""
        matcher = self._ctx.matcher
        return heads.changes < matcher.cursor or (matcher.ready and heads.epoch != matcher.epoch)

    # ---- the indexes, for the process that serves ----

    @property
    def ready(self) -> bool:
        """Whether the indexes are in memory (`load` has run)."""
        return self._ctx.matcher.ready

    @property
    def cursor(self) -> int:
        """The change-log position the indexes reflect."""
        return self._ctx.matcher.cursor

    def index_sizes(self) -> dict[str, int]:
        """Rows in each in-memory index, by signal type (video frames count as PDQ)."""
        return self._ctx.matcher.sizes()

    def keypoint_sets(self) -> int:
        """Stored keypoint sets in the keypoint index."""
        return self._ctx.matcher.keypoint_sets()

    def load(self) -> None:
        """Build the indexes (from a sound snapshot if there is one, else the database)
        and replay the change log since; a serving process runs it in the background."""
        self._ctx.matcher.load()

    def warm_records(self) -> int:
        """Fill the row cache that matches are hydrated from; returns the rows it holds."""
        return self._ctx.matcher.warm_records()
