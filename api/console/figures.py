"""The dashboard's numbers, read straight from the database in a few grouped queries.

Holdings (hashes by type, status and label) are counted now, over every hash; labels
are counted by taxonomy name (`terrorist_entity:<name>` counts as
`terrorist_entity`), grouping first by the stored label list so the database does
the heavy counting. Activity (matches, feedback) is per UTC day over the last
`DAYS` days: matches from the hourly match counts, feedback from its rows.
Freshness compares this process's index cursor with the head of the change log.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, Text, cast, func, select

from hashdb.consortium import Status, now, utc
from hashdb.consortium.feedback import Kind
from hashdb.consortium.labels import split
from hashdb.matching import Matcher
from hashdb.store import ChangeLog
from hashdb.store.schema import changes, feedback, hashes, match_counts

DAYS = 30


@dataclass(frozen=True)
class Holdings:
    by_type: dict[str, int]
    by_status: dict[str, int]
    by_label: dict[str, int]
    by_type_status: dict[tuple[str, str], int]

    @property
    def total(self) -> int:
        return sum(self.by_type.values())

    def status(self, status: Status) -> int:
        return self.by_status.get(status.value, 0)


@dataclass(frozen=True)
class Activity:
    days: list[date]
    matches: list[int]
    feedback: dict[str, list[int]] = field(default_factory=dict)  # kind -> per day


@dataclass(frozen=True)
class Freshness:
    loaded: bool
    index_sizes: dict[str, int]
    cursor: int  # change-log position the indexes reflect
    head: int  # newest change-log position
    last_change_at: datetime | None

    @property
    def behind(self) -> int:
        return max(0, self.head - self.cursor)


def holdings(engine: Engine) -> Holdings:
    labels_text = cast(hashes.c.labels, Text)
    query = (
        select(hashes.c.signal_type, hashes.c.status, labels_text, func.count())
        .where(hashes.c.derived_from.is_(None))  # stored variants are internal
        .group_by(hashes.c.signal_type, hashes.c.status, labels_text)
    )
    by_type: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    by_label: Counter[str] = Counter()
    by_type_status: Counter[tuple[str, str]] = Counter()
    with engine.connect() as conn:
        for signal_type, status, text, n in conn.execute(query):
            by_type[signal_type] += n
            by_status[status] += n
            by_type_status[(signal_type, status)] += n
            names = {split(str(label)).name for label in (json.loads(text) if text else [])}
            for name in names:
                by_label[name] += n
    return Holdings(
        dict(sorted(by_type.items())),
        {s.value: by_status.get(s.value, 0) for s in Status},
        dict(by_label.most_common()),
        dict(by_type_status),
    )


def day_list(end: date, days: int = DAYS) -> list[date]:
    return [end - timedelta(days=days - 1 - i) for i in range(days)]


def activity(engine: Engine, *, today: date | None = None, days: int = DAYS) -> Activity:
    last = today or now().date()
    span = day_list(last, days)
    start = datetime.combine(span[0], datetime.min.time()).replace(tzinfo=now().tzinfo)
    position = {d: i for i, d in enumerate(span)}
    matches = [0] * days
    per_kind = {k.value: [0] * days for k in Kind}
    with engine.connect() as conn:
        rows = conn.execute(
            select(match_counts.c.bucket, func.sum(match_counts.c.count))
            .where(match_counts.c.bucket >= start)
            .group_by(match_counts.c.bucket)
        )
        for bucket, n in rows:
            i = position.get(utc(bucket).date())
            if i is not None:
                matches[i] += int(n)
        rows = conn.execute(
            select(feedback.c.created_at, feedback.c.kind).where(feedback.c.created_at >= start)
        )
        for at, kind in rows:
            i = position.get(utc(at).date())
            if i is not None and kind in per_kind:
                per_kind[kind][i] += 1
    return Activity(span, matches, per_kind)


def freshness(engine: Engine, matcher: Matcher, loaded: bool) -> Freshness:
    with engine.connect() as conn:
        last = conn.execute(select(func.max(changes.c.at))).scalar_one_or_none()
    return Freshness(
        loaded=loaded,
        index_sizes=matcher.sizes(),
        cursor=matcher.cursor,
        head=ChangeLog(engine).head(),
        last_change_at=utc(last) if last else None,
    )


def match_days(engine: Engine, hash_id: int, *, days: int = DAYS) -> tuple[int, Activity]:
    """All-time matches of one hash, and its matches per day over the last `days`."""
    span = day_list(now().date(), days)
    position = {d: i for i, d in enumerate(span)}
    per_day = [0] * days
    total = 0
    with engine.connect() as conn:
        rows = conn.execute(
            select(match_counts.c.bucket, func.sum(match_counts.c.count))
            .where(match_counts.c.hash_id == hash_id)
            .group_by(match_counts.c.bucket)
        )
        for bucket, n in rows:
            total += int(n)
            i = position.get(utc(bucket).date())
            if i is not None:
                per_day[i] += int(n)
    return total, Activity(span, per_day)
