"""Bulk import jobs: one row per job, one row per file, counts derived from the files.

A file moves `pending -> done | failed | duplicate` exactly once. `done` is written
in the same transaction as the file's hashes (`complete_in`), so an import killed at
any moment either stored a file and marked it, or did neither; running the job again
picks up the `pending` files only. Counts (done, failed, duplicates, remaining) are
computed from the file rows, never kept separately, so they cannot drift.

A new job is created together with its planned files in one transaction
(`create_in`), so a plan that cannot be stored leaves no job behind.

A job is `queued` (accepted, nobody works on it), `running` (claimed by a worker,
`claimed_by`, until `lease_until`, which the holder's heartbeat keeps renewing) or
`done`. A running job whose lease has lapsed (its holder died or hung) is claimable
again, as a queued one is (`claimable`): claiming is one conditional UPDATE
(`claim_in`, `take_in`) whose WHERE repeats that test, so of two processes racing
for one job exactly one changes the row; on PostgreSQL the candidate is also
picked `FOR UPDATE SKIP LOCKED`, so racing workers take different jobs instead of
queueing behind one row lock. Renewing and releasing name the holder, so a
process that lost its lease cannot extend or drop another's.

The rules (who may import, which labels, the audit entries of a job's start and
finish, how a file's hashes are admitted) are the consortium layer's
(`hashdb.consortium.imports`): it composes the `*_in` methods here into its own
transactions.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Engine, and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping

from hashdb.errors import NotFound
from hashdb.store.clock import now, utc
from hashdb.store.hashes import CHUNK
from hashdb.store.schema import import_files, import_jobs


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class FileState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class PlannedFile:
    path: str  # relative to the import's source
    labels: tuple[str, ...] = ()
    reference: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class ImportFile:
    id: int
    path: str
    labels: tuple[str, ...]
    reference: str | None
    notes: str | None
    sha256: bytes | None
    status: FileState
    kind: str | None
    error: str | None
    hash_ids: tuple[int, ...]
    frames: int | None


@dataclass(frozen=True)
class ImportCounts:
    total: int
    done: int
    failed: int
    duplicates: int
    pending: int


@dataclass(frozen=True)
class ImportJob:
    id: int
    member_id: int
    source: str
    labels: tuple[str, ...]
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    counts: ImportCounts
    claimed_by: str | None = None  # the worker holding (or that last held) the job
    lease_until: datetime | None = None  # the holder's lease; claimable again after it

    def leased(self, at: datetime) -> bool:
        """Whether a worker holds the job at `at` (running, lease not lapsed)."""
        return (
            self.status is JobStatus.RUNNING
            and self.lease_until is not None
            and self.lease_until > at
        )


def claimable(at: datetime) -> ColumnElement[bool]:
    """Queued, or running with a lease that lapsed by `at` (or never had one: a job
    left running by a version without leases)."""
    c = import_jobs.c
    lapsed = or_(c.lease_until.is_(None), c.lease_until <= at)
    return or_(
        c.status == JobStatus.QUEUED.value,
        and_(c.status == JobStatus.RUNNING.value, lapsed),
    )


def held_by(holder: str) -> ColumnElement[bool]:
    """Running and claimed by `holder` (whether or not its lease lapsed)."""
    c = import_jobs.c
    return and_(c.status == JobStatus.RUNNING.value, c.claimed_by == holder)


def _file(row: RowMapping) -> ImportFile:
    return ImportFile(
        id=row["id"],
        path=row["path"],
        labels=tuple(row["labels"]),
        reference=row["reference"],
        notes=row["notes"],
        sha256=bytes(row["sha256"]) if row["sha256"] is not None else None,
        status=FileState(row["status"]),
        kind=row["kind"],
        error=row["error"],
        hash_ids=tuple(row["hash_ids"] or ()),
        frames=row["frames"],
    )


class ImportStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @staticmethod
    def create_in(
        conn: Connection,
        member_id: int,
        source: str,
        labels: Sequence[str],
        holder: str | None = None,
        lease_until: datetime | None = None,
    ) -> int:
        """A new job (no files yet): queued, or running and held by `holder` until
        `lease_until`; its id."""
        at = now()
        job_id = conn.execute(
            insert(import_jobs).values(
                member_id=member_id,
                source=source,
                labels=list(labels),
                status=(JobStatus.QUEUED if holder is None else JobStatus.RUNNING).value,
                created_at=at,
                updated_at=at,
                claimed_by=holder,
                lease_until=lease_until if holder is not None else None,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        return int(job_id)

    @staticmethod
    def take_in(
        conn: Connection,
        job_id: int,
        holder: str | None,
        lease_until: datetime | None,
        *,
        dead: str | None = None,
    ) -> bool:
        """Take over job `job_id` if it is claimable now (or still held by `dead`: the
        caller itself, or a holder known to have died): held by `holder` until
        `lease_until`, or queued again when `holder` is None. False (nothing changed)
        if it is done or another process holds a live lease."""
        at = now()
        which = claimable(at) if dead is None else held_by(dead)
        values: dict[str, object] = {
            "status": (JobStatus.QUEUED if holder is None else JobStatus.RUNNING).value,
            "claimed_by": holder,
            "lease_until": lease_until if holder is not None else None,
            "updated_at": at,
        }
        done = conn.execute(
            update(import_jobs).where(import_jobs.c.id == job_id, which).values(**values)
        )
        return done.rowcount == 1

    @staticmethod
    def claim_in(
        conn: Connection, holder: str, lease_until: datetime, exclude: Sequence[int] = ()
    ) -> int | None:
        """Claim the oldest claimable job (not in `exclude`) for `holder`; its id, or
        None when there is none (or a racing process took each candidate first)."""
        for _ in range(3):  # a candidate taken by a racer between the read and the update
            query = (
                select(import_jobs.c.id)
                .where(claimable(now()))
                .order_by(import_jobs.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if exclude:
                query = query.where(import_jobs.c.id.not_in(sorted(exclude)))
            job_id = conn.execute(query).scalar_one_or_none()
            if job_id is None:
                return None
            if ImportStore.take_in(conn, int(job_id), holder, lease_until):
                return int(job_id)
        return None

    def renew(self, job_id: int, holder: str, lease_until: datetime) -> bool:
        """Extend `holder`'s lease on a running job; False if it holds it no more."""
        with self._engine.begin() as conn:
            done = conn.execute(
                update(import_jobs)
                .where(import_jobs.c.id == job_id, held_by(holder))
                .values(lease_until=lease_until, updated_at=now())
            )
            return done.rowcount == 1

    def release(self, job_id: int, holder: str) -> bool:
        """Put a running job `holder` holds back in the queue, at once claimable."""
        with self._engine.begin() as conn:
            return self.take_in(conn, job_id, None, None, dead=holder)

    @staticmethod
    def resumable_in(conn: Connection, member_id: int, source: str) -> int | None:
        """The newest unfinished job of this member over this source, if any."""
        job_id = conn.execute(
            select(import_jobs.c.id)
            .where(
                import_jobs.c.member_id == member_id,
                import_jobs.c.source == source,
                import_jobs.c.status.in_(UNFINISHED),
            )
            .order_by(import_jobs.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        return None if job_id is None else int(job_id)

    def get(self, job_id: int) -> ImportJob:
        with self._engine.connect() as conn:
            return self.get_in(conn, job_id)

    @staticmethod
    def get_in(conn: Connection, job_id: int) -> ImportJob:
        row = conn.execute(select(import_jobs).where(import_jobs.c.id == job_id)).mappings()
        found = row.one_or_none()
        if found is None:
            raise NotFound(f"no import job with id {job_id}")
        states: dict[str, int] = dict(
            conn.execute(
                select(import_files.c.status, func.count())
                .where(import_files.c.job_id == job_id)
                .group_by(import_files.c.status)
            ).all()
        )
        counts = ImportCounts(
            total=sum(states.values()),
            done=states.get(FileState.DONE.value, 0),
            failed=states.get(FileState.FAILED.value, 0),
            duplicates=states.get(FileState.DUPLICATE.value, 0),
            pending=states.get(FileState.PENDING.value, 0),
        )
        return ImportJob(
            id=found["id"],
            member_id=found["member_id"],
            source=found["source"],
            labels=tuple(found["labels"]),
            status=JobStatus(found["status"]),
            created_at=utc(found["created_at"]),
            updated_at=utc(found["updated_at"]),
            finished_at=utc(found["finished_at"]) if found["finished_at"] else None,
            counts=counts,
            claimed_by=found["claimed_by"],
            lease_until=utc(found["lease_until"]) if found["lease_until"] else None,
        )

    def recent(self, limit: int = 50) -> list[ImportJob]:
        with self._engine.connect() as conn:
            ids = conn.execute(
                select(import_jobs.c.id).order_by(import_jobs.c.id.desc()).limit(limit)
            ).scalars()
            wanted = list(ids)
        return [self.get(i) for i in wanted]

    def after(self, after: int, limit: int) -> list[ImportJob]:
        """Up to `limit` jobs with ids above `after`, oldest first."""
        with self._engine.connect() as conn:
            wanted = list(
                conn.execute(
                    select(import_jobs.c.id)
                    .where(import_jobs.c.id > after)
                    .order_by(import_jobs.c.id)
                    .limit(limit)
                ).scalars()
            )
        return [self.get(i) for i in wanted]

    @staticmethod
    def plan_in(conn: Connection, job_id: int, files: Sequence[PlannedFile]) -> int:
        known = set(
            conn.execute(
                select(import_files.c.path).where(import_files.c.job_id == job_id)
            ).scalars()
        )
        at = now()
        rows = [
            {
                "job_id": job_id,
                "path": f.path,
                "labels": list(f.labels),
                "reference": f.reference,
                "notes": f.notes,
                "status": FileState.PENDING.value,
                "updated_at": at,
            }
            for f in files
            if f.path not in known
        ]
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(import_files), rows[start : start + CHUNK])
        return len(rows)

    def files(self, job_id: int, state: FileState | None = None) -> list[ImportFile]:
        query = select(import_files).where(import_files.c.job_id == job_id)
        if state is not None:
            query = query.where(import_files.c.status == state.value)
        with self._engine.connect() as conn:
            return [_file(r) for r in conn.execute(query.order_by(import_files.c.id)).mappings()]

    def record_digest(self, file_id: int, sha256: bytes) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(import_files).where(import_files.c.id == file_id).values(sha256=sha256)
            )

    def mark(
        self, file_id: int, state: FileState, *, error: str | None = None, kind: str | None = None
    ) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(import_files)
                .where(import_files.c.id == file_id)
                .values(status=state.value, error=error, kind=kind, updated_at=now())
            )

    @staticmethod
    def complete_in(
        conn: Connection, file_id: int, kind: str, hash_ids: Sequence[int], frames: int | None
    ) -> None:
        """Mark a file done, inside the transaction that stored its hashes."""
        conn.execute(
            update(import_files)
            .where(import_files.c.id == file_id)
            .values(
                status=FileState.DONE.value,
                kind=kind,
                hash_ids=list(hash_ids),
                frames=frames,
                error=None,
                updated_at=now(),
            )
        )

    @staticmethod
    def finish_in(conn: Connection, job_id: int) -> None:
        at = now()
        conn.execute(
            update(import_jobs)
            .where(import_jobs.c.id == job_id)
            .values(status=JobStatus.DONE.value, finished_at=at, updated_at=at, lease_until=None)
        )
