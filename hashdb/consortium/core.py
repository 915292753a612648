"""The hash database as one object: settings, store and matcher wired together.

Both edges (the CLI and the HTTP API) hold a `Consortium`; it owns the rules that are
not storage and not matching, such as which status a contribution starts in and
which contributions are refused. Low-quality PDQ hashes are refused on
contribution: below quality 50 a hash matches unrelated featureless images.
Contributions then go through the consortium workflow (hashdb/consortium): labels
checked against the taxonomy, a member's hashes start `pending` and an admin's,
a trusted flagger's or a crisis incident's `active`. Whether pending hashes match
is HASHDB_PENDING_MATCHES; a member's matches are counted for the reports (in
memory, written every HASHDB_COUNT_FLUSH_SECONDS by `match_counts.Tally`).
"""

from __future__ import annotations

from collections.abc import Sequence

from hashdb.consortium import contributions, export, match_counts, vetting
from hashdb.consortium.actor import Actor
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


class Consortium:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.matcher = Matcher(
            store.hashes,
            store.changes,
            videos=store.videos,
            statuses=matchable_statuses(settings),
            sync_interval=settings.sync_interval,
            snapshot_dir=settings.snapshot_dir,
        )
        self.tally = match_counts.Tally(store.engine, settings.count_flush_seconds)

    @classmethod
    def open(cls, settings: Settings) -> Consortium:
        return cls(settings, Store.open(settings.resolved_database_url()))

    def close(self) -> None:
        self.tally.close()
        self.store.close()

    def contribute(self, who: Member | Actor, items: Sequence[NewHash]) -> list[Added]:
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
        actor = who if isinstance(who, Actor) else Actor(who)
        return contributions.contribute(self.store.engine, actor, items)

    def contribute_video(
        self, who: Member | Actor, video: NewVideo, digests: Sequence[NewHash]
    ) -> list[Added]:
        """Store a video (frames as one vpdq row, plus its file digests) under the
        same vetting rules as `contribute`; results: the vpdq row, then the digests."""
        actor = who if isinstance(who, Actor) else Actor(who)
        return contributions.contribute_video(self.store.engine, actor, video, digests)

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
        found = self.matcher.match_video(frames, threshold=threshold, thresholds=thresholds)
        if member is not None and found:
            query = Query(VPDQ, frames_digest(frames))
            counted = QueryResult(query, [Match(v.record, 0) for v in found])
            self.tally.add(member.id, [counted])
        return found

    def match(
        self, queries: Sequence[Query], *, member: Member | None = None, heads: Heads | None = None
    ) -> list[QueryResult]:
        """Answer a batch; with `member`, its matches are counted (per hash and hour).
        `heads`: the log heads the caller read for this request (the API reads them
        once per request); read here if not given."""
        self.catch_up(heads)
        results = self.matcher.match(queries)
        if member is not None:
            self.tally.add(member.id, results)
        return results

    def catch_up(self, heads: Heads | None = None) -> None:
        """Replay any change committed anywhere (any process, any server) before a
        match, so that it answers from the database as it is now."""
        self.matcher.catch_up((heads or self.store.heads()).changes)

    def export_page(self, since: int, limit: int) -> export.FeedPage:
        """A page of the export feed; hashes past their expiry are retired first, so
        that followers get their tombstones."""
        vetting.expire_due(self.store.engine)
        return export.feed(self.store.engine, since, limit)
