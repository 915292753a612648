"""The consortium as one object: settings, store and matcher wired together, and a
topic object per job that every edge calls.

    consortium.contributions   hashes and videos contributed by a member
    consortium.matching        queries answered from the live indexes, counted

The internals (store, matcher, tally, rate limiter) live in one `Context` that the
topic objects share; an edge holds the `Consortium` and never reaches into them.
Low-quality PDQ hashes are refused on contribution: below quality 50 a hash
matches unrelated featureless images. Contributions go through the consortium
rules: labels checked against the taxonomy, a member's hashes start `pending` and
an admin's, a trusted flagger's or a crisis incident's `active`. Whether pending
hashes match is HASHDB_PENDING_MATCHES; a member's matches are counted for the
reports (in memory, written every HASHDB_COUNT_FLUSH_SECONDS by
`match_counts.Tally`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hashdb.consortium import contributions, export, match_counts, vetting
from hashdb.consortium.actor import Actor
from hashdb.consortium.ratelimit import RateLimiter
from hashdb.errors import InvalidInput
from hashdb.matching import Match, Matcher, Query, QueryResult, VideoMatch
from hashdb.settings import Settings
from hashdb.signals import SIGNAL_TYPES
from hashdb.signals.vpdq import VPDQ, Frame, frames_digest
from hashdb.store import MATCHABLE, Added, Heads, Member, NewHash, NewVideo, Status, Store
from hashdb.video_match import VideoThresholds


def matchable_statuses(settings: Settings) -> frozenset[Status]:
    """The statuses a query is answered from, under this deployment's settings."""
    return MATCHABLE if settings.pending_matches else MATCHABLE - {Status.PENDING}


def _actor(who: Member | Actor) -> Actor:
    return who if isinstance(who, Actor) else Actor(who)


@dataclass
class Context:
    """What the topic objects share: the consortium's internals."""

    settings: Settings
    store: Store
    matcher: Matcher
    tally: match_counts.Tally
    limiter: RateLimiter


class Contributions:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def add(self, who: Member | Actor, items: Sequence[NewHash]) -> list[Added]:
        """Store a batch of hashes contributed by `who`, refusing unusable ones and
        unknown labels (InvalidInput naming them); the start status follows the
        vetting rules. Pass an Actor to have its key and request id audited."""
        for i, item in enumerate(items):
            signal = SIGNAL_TYPES[item.signal_type]
            floor = signal.min_quality
            if floor is not None and item.quality is not None and item.quality < floor:
                raise InvalidInput(
                    f"{signal.name} quality {item.quality} is below {floor}: too little "
                    "detail to match reliably",
                    field="quality",
                    index=i,
                )
        return contributions.contribute(self._ctx.store.engine, _actor(who), items)

    def add_video(
        self, who: Member | Actor, video: NewVideo, digests: Sequence[NewHash]
    ) -> list[Added]:
        """Store a video (frames as one vpdq row, plus its file digests) under the
        same vetting rules as `add`; results: the vpdq row, then the digests."""
        return contributions.contribute_video(self._ctx.store.engine, _actor(who), video, digests)


class Matching:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def match(
        self, queries: Sequence[Query], *, member: Member | None = None, heads: Heads | None = None
    ) -> list[QueryResult]:
        """Answer a batch; with `member`, its matches are counted (per hash and hour).
        `heads`: the log heads the caller read for this request (the API reads them
        once per request); read here if not given."""
        self.catch_up(heads)
        results = self._ctx.matcher.match(queries)
        if member is not None:
            self._ctx.tally.add(member.id, results)
        return results

    def match_video(
        self,
        frames: Sequence[Frame],
        *,
        threshold: int | None = None,
        thresholds: VideoThresholds | None = None,
        member: Member | None = None,
        heads: Heads | None = None,
    ) -> list[VideoMatch]:
        """Stored videos matching a query video's frames; with `member`, each matched
        video is counted once for the reports, as an image match is. `heads` as
        for `match`."""
        self.catch_up(heads)
        found = self._ctx.matcher.match_video(frames, threshold=threshold, thresholds=thresholds)
        if member is not None and found:
            query = Query(VPDQ, frames_digest(frames))
            counted = QueryResult(query, [Match(v.record, 0) for v in found])
            self._ctx.tally.add(member.id, [counted])
        return found

    def catch_up(self, heads: Heads | None = None) -> None:
        """Replay any change committed anywhere (any process, any server) before a
        match, so that it answers from the database as it is now."""
        self._ctx.matcher.catch_up((heads or self._ctx.store.heads()).changes)


class Feed:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def page(self, since: int, limit: int) -> export.FeedPage:
        """A page of the export feed; hashes past their expiry are retired first, so
        that followers get their tombstones."""
        vetting.expire_due(self._ctx.store.engine)
        return export.feed(self._ctx.store.engine, since, limit)


class Consortium:
    def __init__(self, settings: Settings, store: Store) -> None:
        matcher = Matcher(
            store.hashes,
            store.changes,
            videos=store.videos,
            statuses=matchable_statuses(settings),
            sync_interval=settings.sync_interval,
            snapshot_dir=settings.snapshot_dir,
        )
        self._ctx = Context(
            settings=settings,
            store=store,
            matcher=matcher,
            tally=match_counts.Tally(store.engine, settings.count_flush_seconds),
            limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
        )
        self.contributions = Contributions(self._ctx)
        self.matching = Matching(self._ctx)
        self.feed = Feed(self._ctx)

    # Until every edge goes through the topic objects, these expose the internals.
    @property
    def settings(self) -> Settings:
        return self._ctx.settings

    @property
    def store(self) -> Store:
        return self._ctx.store

    @property
    def matcher(self) -> Matcher:
        return self._ctx.matcher

    @property
    def tally(self) -> match_counts.Tally:
        return self._ctx.tally

    @property
    def limiter(self) -> RateLimiter:
        return self._ctx.limiter

    @classmethod
    def open(cls, settings: Settings) -> Consortium:
        return cls(settings, Store.open(settings.resolved_database_url()))

    def close(self) -> None:
        self._ctx.tally.close()
        self._ctx.store.close()
