"""The hash database as one object: settings, store and matcher wired together.

Both edges (the CLI and the HTTP API) hold a `HashDB`; it owns the rules that are
not storage and not matching, such as which status a contribution starts in and
which contributions are refused. Low-quality PDQ hashes are refused on
contribution: below quality 50 a hash matches unrelated featureless images.
"""

from __future__ import annotations

from collections.abc import Sequence

from hashdb.errors import InvalidInput
from hashdb.matching import Matcher, Query, QueryResult
from hashdb.settings import Settings
from hashdb.signals import SIGNAL_TYPES
from hashdb.store import Added, HashRecord, Member, NewHash, Status, Store


class HashDB:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.matcher = Matcher(store.hashes, store.changes, sync_interval=settings.sync_interval)

    @classmethod
    def open(cls, settings: Settings) -> HashDB:
        return cls(settings, Store.open(settings.resolved_database_url()))

    def close(self) -> None:
        self.store.close()

    def contribute(self, member: Member, items: Sequence[NewHash]) -> list[Added]:
        """Store a batch of hashes contributed by `member`, refusing unusable ones."""
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
        return self.store.hashes.add(member.id, items, Status.ACTIVE)

    def match(self, queries: Sequence[Query]) -> list[QueryResult]:
        return self.matcher.match(queries)

    def retire(self, hash_id: int) -> HashRecord:
        return self.store.hashes.set_status([hash_id], Status.RETIRED)[0]
