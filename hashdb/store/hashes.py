"""Hashes: contributed, looked up, retired; every change written to the change log.

A hash row is one contribution: the same value from two contributors is two rows
(both kept, both credited); the same value again from the same contributor is the
same row (idempotent add). Each write that changes whether or how a hash matches
appends to the change log in the same transaction, so the log and the table never
disagree. Each status change (creation included) is also written to
`hash_transitions` with who, when and why; which changes are allowed is a workflow
rule (hashdb/consortium/vetting.py), not a storage one.

A contributed image may also store *variants* of its PDQ row (its content region,
crop windows; hashdb/variants.py), so that a re-upload showing less than the
stored picture still lands near one of its hashes. They live in `hash_variants`,
never in `hashes`: a variant has no id, status or history of its own, so nothing
can address, list, export, count or give feedback to it, and it matches exactly
when its image does. They are written in the image's transaction, with a
change-log entry for the image (its matchable codes changed; replaying it re-reads
the image and its variants). Re-contributing an image adds only the kinds it does
not hold yet. A variant whose value the contributor holds as a hash of its own is
not kept (that row matches it already): one skipped when stored, one dropped when
the contributor later contributes its value.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, and_, delete, insert, select, text, update
from sqlalchemy.engine import Connection, RowMapping

from hashdb.errors import NotFound
from hashdb.signals.keypoints import KEYPOINTS
from hashdb.store.clock import now, utc
from hashdb.store.schema import changes, hash_transitions, hash_variants, hashes, keypoint_sets

# Rows per statement when a batch is sent to the database in pieces.
CHUNK = 500

T = TypeVar("T")


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
class NewVariant:
    """A stored variant of a contributed hash (same signal type), stored with it."""

    kind: str  # as hashdb/variants.py names them ("content", "crop90_3_3", ...)
    value: bytes
    quality: int | None = None


@dataclass(frozen=True)
class StoredVariant:
    """A stored variant as read back: the hash it belongs to, its kind and value."""

    hash_id: int
    kind: str
    value: bytes
    quality: int | None


@dataclass(frozen=True)
class NewHash:
    signal_type: str
    value: bytes
    labels: tuple[str, ...] = ()
    quality: int | None = None
    reference: str | None = None
    expires_at: datetime | None = None  # never matched from then on
    incident_id: int | None = None  # contributed under this crisis incident
    variants: tuple[NewVariant, ...] = ()  # stored with it, in hash_variants
    # A keypoints row's set, in its wire form (`value` is its SHA-256): stored with a
    # new row in keypoint_sets (hashdb/signals/keypoints.py).
    keypoint_set: bytes | None = None


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


def _chunks(seq: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _values_by_type(
    keys: Iterable[tuple[str, bytes]],
) -> Iterator[tuple[str, Sequence[bytes]]]:
    """(signal type, chunk of its values) for `keys`, so that a lookup by value also
    names the type and uses the (signal_type, value) index."""
    by_type: dict[str, set[bytes]] = {}
    for signal_type, value in keys:
        by_type.setdefault(signal_type, set()).add(value)
    for signal_type, values in sorted(by_type.items()):
        for part in _chunks(sorted(values)):
            yield signal_type, part


def lock_change_log(conn: Connection) -> None:
    """Serialise writers to the change log until this transaction ends.

    PostgreSQL hands out sequence numbers at insert time but makes them visible at
    commit; two concurrent writers could commit out of order and a reader at
    cursor N would skip the late N-1. A transaction-level advisory lock makes
    allocation order equal commit order. SQLite serialises writers already.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7266)"))


def refresh_statistics(conn: Connection, added: int) -> None:
    """On PostgreSQL, ANALYZE `hashes` when `added` rows grew it by a tenth or more.

    The lookups by value in `add_in` name (signal type, value, contributor), one
    unique index, but without statistics the planner takes a list of 500 values
    for the whole table and scans it: storing 100,000 hashes in batches of 10,000
    into a new database took 95 s, most of it in those scans, until autovacuum
    caught up. Analysing at autovacuum's own threshold (a tenth of the table;
    PostgreSQL's "Populating a Database" advice) keeps the next batch's plans
    right, at most once per 10% of growth.
    """
    if added == 0 or conn.dialect.name != "postgresql":
        return
    rows = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = 'hashes'::regclass")
    ).scalar_one()
    if rows < 0 or added >= 0.1 * rows:
        conn.execute(text("ANALYZE hashes"))


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
        New rows get a creation entry in the history, credited to the contributor;
        each item's variants are stored with it (see the module docstring), once."""
        for item in items:
            if (item.signal_type == KEYPOINTS.name) != (item.keypoint_set is not None):
                # a keypoints row without its set could never match, nor gain one later
                raise ValueError("a keypoints hash, and only one, carries its keypoint set")
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
            sets = [
                {"hash_id": created[key], "data": h.keypoint_set}
                for key, h in fresh.items()
                if h.keypoint_set is not None
            ]
            if sets:
                conn.execute(insert(keypoint_sets), sets)
            log_changes(conn, ids, ChangeOp.ADD)
            record_transitions(
                conn, ((i, None, status) for i in ids), contributor_id, reason or "contributed"
            )
            self._drop_variants_held_as_hashes(conn, contributor_id, fresh, at)
        results: list[Added] = []
        reported: set[tuple[str, bytes]] = set()
        for item in items:
            key = (item.signal_type, item.value)
            if key in created and key not in reported:
                results.append(Added(created[key], True))
                reported.add(key)
            else:
                results.append(Added(known.get(key) or created[key], False))
        self._add_variants(conn, contributor_id, items, {**known, **created}, set(created.values()))
        refresh_statistics(conn, len(created))
        return results

    @staticmethod
    def _existing(
        conn: Connection, contributor_id: int, items: Sequence[NewHash]
    ) -> dict[tuple[str, bytes], int]:
        """The contributor's rows holding `items`' values."""
        found: dict[tuple[str, bytes], int] = {}
        for signal_type, part in _values_by_type((h.signal_type, h.value) for h in items):
            rows = conn.execute(
                select(hashes.c.id, hashes.c.value).where(
                    hashes.c.signal_type == signal_type,
                    hashes.c.value.in_(part),
                    hashes.c.contributor_id == contributor_id,
                )
            )
            for hash_id, value in rows:
                found[(signal_type, bytes(value))] = hash_id
        return found

    @staticmethod
    def _drop_variants_held_as_hashes(
        conn: Connection,
        contributor_id: int,
        fresh: dict[tuple[str, bytes], NewHash],
        at: datetime,
    ) -> None:
        """Drop the contributor's stored variants whose value it now contributes as a
        hash of its own (that row matches them already); their images' matchable
        codes change, so each image gets a change-log entry."""
        dropped: set[tuple[int, str]] = set()
        for signal_type, part in _values_by_type(fresh):
            dropped.update(
                (int(i), str(k))
                for i, k in conn.execute(
                    select(hash_variants.c.hash_id, hash_variants.c.kind)
                    .join(hashes, hashes.c.id == hash_variants.c.hash_id)
                    .where(
                        hashes.c.signal_type == signal_type,
                        hashes.c.contributor_id == contributor_id,
                        hash_variants.c.value.in_(part),
                    )
                )
            )
        if not dropped:
            return
        for hash_id, kind in sorted(dropped):
            conn.execute(
                delete(hash_variants).where(
                    hash_variants.c.hash_id == hash_id, hash_variants.c.kind == kind
                )
            )
        images = sorted({i for i, _ in dropped})
        for chunk in _chunks(images):
            conn.execute(update(hashes).where(hashes.c.id.in_(chunk)).values(updated_at=at))
        log_changes(conn, images, ChangeOp.UPDATE)

    @staticmethod
    def _add_variants(
        conn: Connection,
        contributor_id: int,
        items: Sequence[NewHash],
        ids: dict[tuple[str, bytes], int],
        created: set[int],
    ) -> int:
        """Store the variants of `items` whose kinds their hashes do not hold yet,
        except values the contributor holds as hashes of their own; an existing hash
        that gains variants gets a change-log entry (a new one has its `add`).
        Returns how many variants it stored."""
        wanted: dict[int, dict[str, NewVariant]] = {}
        signal_of: dict[int, str] = {}
        for item in items:
            for v in item.variants:
                hash_id = ids[(item.signal_type, item.value)]
                wanted.setdefault(hash_id, {}).setdefault(v.kind, v)
                signal_of[hash_id] = item.signal_type
        if not wanted:
            return 0
        held: set[tuple[int, str]] = set()
        for part in _chunks(sorted(wanted)):
            held.update(
                (int(i), str(k))
                for i, k in conn.execute(
                    select(hash_variants.c.hash_id, hash_variants.c.kind).where(
                        hash_variants.c.hash_id.in_(part)
                    )
                )
            )
        keys = (
            (signal_of[hash_id], v.value)
            for hash_id, by_kind in wanted.items()
            for v in by_kind.values()
        )
        taken: set[tuple[str, bytes]] = set()
        for signal_type, values in _values_by_type(keys):
            taken.update(
                (signal_type, bytes(value))
                for value in conn.execute(
                    select(hashes.c.value).where(
                        hashes.c.signal_type == signal_type,
                        hashes.c.value.in_(values),
                        hashes.c.contributor_id == contributor_id,
                    )
                ).scalars()
            )
        new = [
            (hash_id, v)
            for hash_id, by_kind in sorted(wanted.items())
            for kind, v in by_kind.items()
            if (hash_id, kind) not in held and (signal_of[hash_id], v.value) not in taken
        ]
        rows = [
            {"hash_id": hash_id, "kind": v.kind, "value": v.value, "quality": v.quality}
            for hash_id, v in new
        ]
        if rows:
            conn.execute(insert(hash_variants), rows)
            gained = sorted({hash_id for hash_id, _ in new} - created)
            for part in _chunks(gained):
                conn.execute(update(hashes).where(hashes.c.id.in_(part)).values(updated_at=now()))
            log_changes(conn, gained, ChangeOp.UPDATE)
        return len(rows)

    def variants(self, hash_ids: Iterable[int]) -> dict[int, list[StoredVariant]]:
        """The stored variants of each of `hash_ids` that has any, by kind."""
        out: dict[int, list[StoredVariant]] = {}
        with self._engine.connect() as conn:
            for part in _chunks(sorted(set(hash_ids))):
                rows = conn.execute(
                    select(hash_variants)
                    .where(hash_variants.c.hash_id.in_(part))
                    .order_by(hash_variants.c.hash_id, hash_variants.c.kind)
                ).mappings()
                for r in rows:
                    out.setdefault(r["hash_id"], []).append(
                        StoredVariant(r["hash_id"], r["kind"], bytes(r["value"]), r["quality"])
                    )
        return out

    def keypoint_sets(self, hash_ids: Iterable[int]) -> dict[int, bytes]:
        """The keypoint set (wire form) of each of `hash_ids` that is a keypoints row."""
        out: dict[int, bytes] = {}
        with self._engine.connect() as conn:
            for part in _chunks(sorted(set(hash_ids))):
                rows = conn.execute(
                    select(keypoint_sets.c.hash_id, keypoint_sets.c.data).where(
                        keypoint_sets.c.hash_id.in_(part)
                    )
                )
                out.update((int(i), bytes(data)) for i, data in rows)
        return out

    def iter_keypoint_sets(
        self,
        statuses: Iterable[Status] = MATCHABLE,
        *,
        hash_ids: Sequence[int] | None = None,
        chunk: int = 10_000,
    ) -> Iterator[list[tuple[int, bytes]]]:
        """(hash id, wire form) of the keypoint sets of hashes in `statuses` (of those
        among `hash_ids`, if given), in chunks ordered by hash id, for an index."""
        query = (
            select(keypoint_sets.c.hash_id, keypoint_sets.c.data)
            .join(hashes, hashes.c.id == keypoint_sets.c.hash_id)
            .where(hashes.c.status.in_([s.value for s in statuses]))
            .order_by(keypoint_sets.c.hash_id)
            .execution_options(yield_per=chunk)
        )
        parts = [query] if hash_ids is None else []
        parts += [
            query.where(keypoint_sets.c.hash_id.in_(part))
            for part in _chunks(sorted(set(hash_ids or ())))
        ]
        with self._engine.connect() as conn:
            for q in parts:
                for part in conn.execute(q).partitions(chunk):
                    yield [(int(r[0]), bytes(r[1])) for r in part]

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

    def iter_variant_codes(
        self,
        signal_type: str,
        nbytes: int,
        statuses: Iterable[Status] = MATCHABLE,
        *,
        hash_ids: Sequence[int] | None = None,
        chunk: int = 100_000,
    ) -> Iterator[tuple[npt.NDArray[np.int64], list[str], npt.NDArray[np.uint8]]]:
        """The stored variants of the hashes of one signal type in `statuses` (of those
        among `hash_ids`, if given), in chunks: (their hashes' ids, their kinds, their
        codes), ordered by hash id."""
        query = (
            select(hash_variants.c.hash_id, hash_variants.c.kind, hash_variants.c.value)
            .join(hashes, hashes.c.id == hash_variants.c.hash_id)
            .where(
                hashes.c.signal_type == signal_type,
                hashes.c.status.in_([s.value for s in statuses]),
            )
            .order_by(hash_variants.c.hash_id, hash_variants.c.kind)
            .execution_options(yield_per=chunk)
        )
        parts = [query] if hash_ids is None else []
        parts += [
            query.where(hash_variants.c.hash_id.in_(part))
            for part in _chunks(sorted(set(hash_ids or ())))
        ]
        with self._engine.connect() as conn:
            for q in parts:
                for part in conn.execute(q).partitions(chunk):
                    ids = np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part))
                    blob = b"".join(bytes(r[2]) for r in part)
                    codes = np.frombuffer(blob, dtype=np.uint8).reshape(len(part), nbytes)
                    yield ids, [str(r[1]) for r in part], codes

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
        Ids whose status really changes get a history entry. (Their stored variants
        have no status: replaying the change adds or drops them with the hash.)"""
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
