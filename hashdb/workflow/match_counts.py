"""Counting the matches the service answers: per member, per hash, per hour.

Only counts are kept, never the members' queries or content. Labels are not
stored here: a hash's labels are joined in when a report asks for matches by
label. Counting costs one upsert per match batch (a multi-row
`INSERT ... ON CONFLICT DO UPDATE`, in pieces of `ROWS_PER_STATEMENT` rows for a
very large batch), aggregated first so that no row appears twice in a statement.
An hour is the finest time a report can ask about matches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from hashdb.matching import QueryResult
from hashdb.store.clock import now, utc
from hashdb.store.schema import match_counts

# SQLite allows 32766 bound parameters per statement; 4 per row leaves headroom.
ROWS_PER_STATEMENT = 5000


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
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with engine.begin() as conn:
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            statement = dialect.insert(match_counts).values(
                rows[start : start + ROWS_PER_STATEMENT]
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["bucket", "member_id", "hash_id"],
                    set_={"count": match_counts.c.count + statement.excluded.count},
                )
            )
    return sum(counted.values())
