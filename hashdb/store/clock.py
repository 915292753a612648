"""Timestamps: always timezone-aware UTC, whatever the backend hands back.

SQLite stores datetimes without a zone; PostgreSQL returns them in the session's
zone. Everything that leaves the store goes through `utc`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
