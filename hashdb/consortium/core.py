"""The consortium as one object: settings, store and matcher wired together, and a
topic object per job that every edge calls.

    consortium.contributions   hashes and videos contributed by a member
    consortium.hashes          hashes read by id, a member's own, the review queue,
                               under the visibility rules
    consortium.vetting         every move of a hash's status, and its history
    consortium.labels          the label taxonomy
    consortium.incidents       crisis incidents
    consortium.feedback        members' feedback on hashes, and disputes
    consortium.outcomes        what members did with matched content
    consortium.matching        lookups capped, priced, charged to the key, answered
                               from the live indexes and counted
    consortium.feed            the export feed followers read (export.py)
    consortium.imports         bulk imports: jobs, files, their hashes, audited
    consortium.reports         the transparency report and the dashboard's figures
    consortium.sync            a local copy following a central hashdb's feed
    consortium.members         members, keys, authentication, console sessions
    consortium.audit           reading the audit log, checkpoints, the chain check
    consortium.idempotency     idempotency keys: a retried request gets its first answer
    consortium.operations      what an operator watches: index memory, snapshot age,
                               import jobs by state (read on every metrics scrape)
    consortium.upkeep          the worker's chores: expiry, index snapshots (upkeep.py)

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

from dataclasses import dataclass

from hashdb.consortium import match_counts, vetting
from hashdb.consortium.audit import Audit
from hashdb.consortium.contributions import Contributions
from hashdb.consortium.export import Feed
from hashdb.consortium.feedback import Feedbacks
from hashdb.consortium.hashes import Hashes, matchable_statuses
from hashdb.consortium.idempotency import Idempotency
from hashdb.consortium.imports import Imports
from hashdb.consortium.incidents import Incidents
from hashdb.consortium.labels import Labels
from hashdb.consortium.matching import Matching
from hashdb.consortium.members import Members
from hashdb.consortium.operations import Operations
from hashdb.consortium.outcomes import Outcomes
from hashdb.consortium.ratelimit import RateLimiter
from hashdb.consortium.reports import Reports
from hashdb.consortium.sync import Sync
from hashdb.consortium.upkeep import Upkeep
from hashdb.matching import Matcher
from hashdb.settings import Settings
from hashdb.store import PoolLimits, Store


@dataclass
class Context:
    """What the topic objects share: the consortium's internals."""

    settings: Settings
    store: Store
    matcher: Matcher
    tally: match_counts.Tally
    limiter: RateLimiter


class Consortium:
    def __init__(self, settings: Settings, store: Store) -> None:
        matcher = Matcher(
            store.hashes,
            store.changes,
            videos=store.videos,
            statuses=matchable_statuses(settings),
            sync_interval=settings.sync_interval,
            snapshot_dir=settings.snapshot_dir,
            save_after_build=settings.snapshot_after_build,
            snapshot_poll=settings.snapshot_poll_seconds,
        )
        self._ctx = Context(
            settings=settings,
            store=store,
            matcher=matcher,
            tally=match_counts.Tally(store.engine, settings.count_flush_seconds),
            limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
        )
        self.contributions = Contributions(self._ctx)
        self.hashes = Hashes(self._ctx)
        self.vetting = vetting.Vetting(self._ctx)
        self.labels = Labels(self._ctx)
        self.incidents = Incidents(self._ctx)
        self.feedback = Feedbacks(self._ctx)
        self.outcomes = Outcomes(self._ctx)
        self.matching = Matching(self._ctx)
        self.feed = Feed(self._ctx)
        self.imports = Imports(self._ctx)
        self.reports = Reports(self._ctx)
        self.sync = Sync(self._ctx)
        self.members = Members(self._ctx)
        self.audit = Audit(self._ctx)
        self.idempotency = Idempotency(self._ctx)
        self.operations = Operations(self._ctx)
        self.upkeep = Upkeep(self._ctx)

    @property
    def settings(self) -> Settings:
        return self._ctx.settings

    def listen_for_changes(self) -> None:
        """Learn of log changes from database notifications rather than a read per
        request (PostgreSQL; see `hashdb.store.heads`). For serving processes: it
        opens one connection outside the pool and a thread, so call it after any
        fork."""
        self._ctx.store.listen_for_changes()

    def check_ready(self) -> None:
        """StorageUnavailable unless the database answers now, on a fresh connection
        with a deadline (the readiness probe)."""
        self._ctx.store.check_ready()

    # The internals, for tests and benchmarks that set up or inspect state; no edge
    # uses them (tests/test_layering.py checks the edges' sources).
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
        """Open the configured database without migrating it: a schema that is not this
        code's is StorageUnavailable naming `hashdb migrate` (see `schema`)."""
        url, pool = settings.resolved_database_url(), PoolLimits.of(settings)
        return cls(settings, Store.open(url, migrate_schema=False, pool=pool))

    def close(self) -> None:
        self.imports.close()  # jobs still held go back to the queue
        self._ctx.tally.close()
        self._ctx.store.close()
