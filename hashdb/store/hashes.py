"""Hashes: contributed, looked up, retired; every change written to the change log.

A hash row is one contribution: the same value from two contributors is two rows
(both kept, both credited); the same value again from the same contributor is the
same row (idempotent add). Each write that changes whether or how a hash matches
appends to the change log in the same transaction, so the log and the table never
disagree. Each status change (creation included) is also written to
`hash_transitions` with who, when and why; which changes are allowed is a workflow
rule (hashdb/workflow/vetting.py), not a storage one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, and_, insert, select, text, update
from sqlalchemy.engine import Connection, RowMapping

from hashdb.errors import NotFound
from hashdb.store.clock import now, utc
from hashdb.store.schema import changes, hash_transitions, hashes

# Rows per statement when a batch is sent to the database in pieces.
CHUNK = 500


class Status(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DISPUTED = "disputed"
    RETIRED = "retired"
    REJECTED = "rejected"


# Statuses whose hashes are answered by a match query.
MATCHABLE: frozenset[Status] = frozenset({Status.ACTIVE, Status.PENDING, Status.DISPUTED})


class ChangeOp(enum.StrEnum):
    ADD = "add"
    UPDATE = "update"
    REMOVE = "remove"


@dataclass(frozen=True)
class NewHash:
    signal_type: str
    value: bytes
    labels: tuple[str, ...] = ()
    quality: int | None = None
    reference: str | None = None
    expires_at: datetime | None = None  # never matched from then on
    incident_id: int | None = None  # contributed under this crisis incident


@dataclass(frozen=True)
class HashRecord:
    id: int
    signal_type: str
    value: bytes
    quality: int | None
    labels: tuple[str, ...]
    contributor_id: int
    status: Status
    reference: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    incident_id: int | None = None

    def expired(self, at: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at


@dataclass(frozen=True)
class Added:
    id: int
    created: bool  # False when the contributor had already added this hash


def _record(row: RowMapping) -> HashRecord:
    return HashRecord(
        id=row["id"],
        signal_type=row["signal_type"],
        value=bytes(row["value"]),
        quality=row["quality"],
        labels=tuple(row["labels"]),
        contributor_id=row["contributor_id"],
        status=Status(row["status"]),
        reference=row["reference"],
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
        expires_at=utc(row["expires_at"]) if row["expires_at"] else None,
        incident_id=row["incident_id"],
    )


def _chunks(seq: Sequence[object], size: int = CHUNK) -> Iterator[Sequence[object]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def lock_change_log(conn: Connection) -> None:
    """Serialise writers to the change log until this transaction ends.

    PostgreSQL hands out sequence numbers at insert time but makes them visible at
    commit; two concurrent writers could commit out of order and a reader at
    cursor N would skip the late N-1. A transaction-level advisory lock makes
    allocation order equal commit order. SQLite serialises writers already.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7266)"))


def log_changes(conn: Connection, hash_ids: Iterable[int], op: ChangeOp) -> None:
    at = now()
    rows = [{"hash_id": i, "op": op.value, "at": at} for i in hash_ids]
    if rows:
        conn.execute(insert(changes), rows)


def record_transitions(
    conn: Connection,
    moves: Iterable[tuple[int, Status | None, Status]],
    actor_id: int | None,
    reason: str | None,
) -> None:
    """Write (hash id, from, to) status moves to the history, one statement."""
    at = now()
    rows = [
        {
            "hash_id": hash_id,
            "from_status": None if old is None else old.value,
            "to_status": new.value,
            "actor_id": actor_id,
            "reason": reason,
            "at": at,
        }
        for hash_id, old, new in moves
    ]
    if rows:
        conn.execute(insert(hash_transitions), rows)


class HashStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(
        self,
        contributor_id: int,
        items: Sequence[NewHash],
        status: Status = Status.ACTIVE,
        *,
        reason: str | None = None,
    ) -> list[Added]:
        """Store a batch of contributions; one result per item, in order."""
        with self._engine.begin() as conn:
            return self.add_in(conn, contributor_id, items, status, reason=reason)

    def add_in(
        self,
        conn: Connection,
        contributor_id: int,
        items: Sequence[NewHash],
        status: Status = Status.ACTIVE,
        *,
        reason: str | None = None,
    ) -> list[Added]:
        """`add` inside the caller's transaction (so related rows commit together).
        New rows get a creation entry in the history, credited to the contributor."""
        at = now()
        lock_change_log(conn)
        known = self._existing(conn, contributor_id, items)
        fresh: dict[tuple[str, bytes], NewHash] = {}
        for item in items:
            key = (item.signal_type, item.value)
            if key not in known:
                fresh.setdefault(key, item)
        created: dict[tuple[str, bytes], int] = {}
        if fresh:
            rows = [
                {
                    "signal_type": h.signal_type,
                    "value": h.value,
                    "quality": h.quality,
                    "labels": list(h.labels),
                    "contributor_id": contributor_id,
                    "status": status.value,
                    "reference": h.reference,
                    "created_at": at,
                    "updated_at": at,
                    "expires_at": h.expires_at,
                    "incident_id": h.incident_id,
                }
                for h in fresh.values()
            ]
            ids = (
                conn.execute(
                    insert(hashes).returning(hashes.c.id, sort_by_parameter_order=True), rows
                )
                .scalars()
                .all()
            )
            created = dict(zip(fresh, ids, strict=True))
            log_changes(conn, ids, ChangeOp.ADD)
            record_transitions(
                conn, ((i, None, status) for i in ids), contributor_id, reason or "contributed"
            )
        results: list[Added] = []
        reported: set[tuple[str, bytes]] = set()
        for item in items:
            key = (item.signal_type, item.value)
            if key in created and key not in reported:
                results.append(Added(created[key], True))
                reported.add(key)
            else:
                results.append(Added(known.get(key) or created[key], False))
        return results

    @staticmethod
    def _existing(
        conn: Connection, contributor_id: int, items: Sequence[NewHash]
    ) -> dict[tuple[str, bytes], int]:
        found: dict[tuple[str, bytes], int] = {}
        values = sorted({h.value for h in items})
        for part in _chunks(values):
            rows = conn.execute(
                select(hashes.c.id, hashes.c.signal_type, hashes.c.value).where(
                    hashes.c.contributor_id == contributor_id, hashes.c.value.in_(part)
                )
            )
            for hash_id, signal_type, value in rows:
                found[(signal_type, bytes(value))] = hash_id
        return found

    def get(self, hash_id: int) -> HashRecord:
        found = self.get_many([hash_id]).get(hash_id)
        if found is None:
            raise NotFound(f"no hash with id {hash_id}")
        return found

    def get_many(self, ids: Iterable[int]) -> dict[int, HashRecord]:
        wanted = sorted(set(ids))
        out: dict[int, HashRecord] = {}
        with self._engine.connect() as conn:
            for part in _chunks(wanted):
                for row in conn.execute(select(hashes).where(hashes.c.id.in_(part))).mappings():
                    out[row["id"]] = _record(row)
        return out

    def find_exact(
        self, signal_type: str, values: Iterable[bytes], statuses: Iterable[Status] = MATCHABLE
    ) -> dict[bytes, list[HashRecord]]:
        """Rows whose value equals one of `values` exactly (digest lookups)."""
        wanted = sorted(set(values))
        status_values = [s.value for s in statuses]
        out: dict[bytes, list[HashRecord]] = {}
        with self._engine.connect() as conn:
            for part in _chunks(wanted):
                rows = conn.execute(
                    select(hashes)
                    .where(
                        and_(
                            hashes.c.signal_type == signal_type,
                            hashes.c.value.in_(part),
                            hashes.c.status.in_(status_values),
                        )
                    )
                    .order_by(hashes.c.id)
                ).mappings()
                for row in rows:
                    record = _record(row)
                    out.setdefault(record.value, []).append(record)
        return out

    def iter_codes(
        self,
        signal_type: str,
        nbytes: int,
        statuses: Iterable[Status] = MATCHABLE,
        chunk: int = 100_000,
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]]:
        """All (ids, codes) of one signal type, in chunks, for building an index."""
        status_values = [s.value for s in statuses]
        query = (
            select(hashes.c.id, hashes.c.value)
            .where(hashes.c.signal_type == signal_type, hashes.c.status.in_(status_values))
            .order_by(hashes.c.id)
            .execution_options(yield_per=chunk)
        )
        with self._engine.connect() as conn:
            for part in conn.execute(query).partitions(chunk):
                ids = np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part))
                blob = b"".join(bytes(r[1]) for r in part)
                yield ids, np.frombuffer(blob, dtype=np.uint8).reshape(len(part), nbytes)

    def set_status(
        self,
        hash_ids: Sequence[int],
        status: Status,
        *,
        actor_id: int | None = None,
        reason: str | None = None,
    ) -> list[HashRecord]:
        """Move hashes to `status`, logging the change; NotFound if any id is unknown."""
        with self._engine.begin() as conn:
            self.set_status_in(conn, hash_ids, status, actor_id=actor_id, reason=reason)
        records = self.get_many(hash_ids)
        return [records[i] for i in hash_ids]

    @staticmethod
    def current_status_in(conn: Connection, hash_ids: Sequence[int]) -> dict[int, Status]:
        """The status of each id, read inside the caller's transaction; NotFound if any
        id is unknown."""
        found: dict[int, Status] = {}
        for part in _chunks(sorted(set(hash_ids))):
            rows = conn.execute(select(hashes.c.id, hashes.c.status).where(hashes.c.id.in_(part)))
            found.update((i, Status(s)) for i, s in rows)
        missing = sorted(set(hash_ids) - set(found))
        if missing:
            raise NotFound(f"no hash with id {missing[0]}", ids=missing)
        return found

    def set_status_in(
        self,
        conn: Connection,
        hash_ids: Sequence[int],
        status: Status,
        *,
        actor_id: int | None = None,
        reason: str | None = None,
    ) -> dict[int, Status]:
        """`set_status` inside the caller's transaction; returns the previous statuses.
        Ids whose status really changes get a history entry."""
        op = ChangeOp.UPDATE if status in MATCHABLE else ChangeOp.REMOVE
        lock_change_log(conn)
        before = self.current_status_in(conn, hash_ids)
        for part in _chunks(sorted(before)):
            conn.execute(
                update(hashes)
                .where(hashes.c.id.in_(part))
                .values(status=status.value, updated_at=now())
            )
        log_changes(conn, hash_ids, op)
        moved = [(i, old, status) for i, old in sorted(before.items()) if old is not status]
        record_transitions(conn, moved, actor_id, reason)
        return before
