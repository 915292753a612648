"""Counting the matches the service answers: per member, per hash, per hour.

Only counts are kept, never the members' queries or content. Labels are not
stored here: a hash's labels are joined in when a report asks for matches by
label. Counting costs one `INSERT ... ON CONFLICT DO UPDATE` per match batch,
executed with many rows (aggregated first, so each hash appears once) from a
statement compiled once: a multi-row VALUES statement would be compiled anew for
every batch, which cost more than the search itself.
An hour is the finest time a report can ask about matches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import cache

from sqlalchemy import Engine, Insert
from sqlalchemy.dialects import postgresql, sqlite

from hashdb.matching import QueryResult
from hashdb.store.clock import now, utc
from hashdb.store.schema import match_counts


@cache
def _upsert(dialect_name: str) -> Insert:
    """One statement per dialect, built once: executed with many rows, SQLAlchemy
    compiles it once and the driver pipelines the rows (this is the match path)."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(match_counts)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["bucket", "member_id", "hash_id"],
        set_={"count": match_counts.c.count + statement.excluded.count},
    )


def bucket_of(at: datetime) -> datetime:
    """The hour `at` falls in (UTC)."""
    return utc(at).replace(minute=0, second=0, microsecond=0)


def record(
    engine: Engine, member_id: int, results: Sequence[QueryResult], at: datetime | None = None
) -> int:
    """Count every match of one member's batch; returns how many were counted."""
    counted = Counter(m.record.id for r in results for m in r.matches)
    if not counted:
        return 0
    bucket = bucket_of(at or now())
    rows = [
        {"bucket": bucket, "member_id": member_id, "hash_id": h, "count": n}
        for h, n in sorted(counted.items())
    ]
    with engine.begin() as conn:
        conn.execute(_upsert(engine.dialect.name), rows)
    return sum(counted.values())
