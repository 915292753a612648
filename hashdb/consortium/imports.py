"""Bulk imports as a use case: who may import, which labels, what is audited, how
each file's hashes are admitted.

The import driver (`ingest.bulk`, run by `hashdb import` in its own process and
by `hashdb worker` for queued jobs, `ingest.jobs`) does the file work: planning,
digests, hashing in a pool. Every state change it makes goes through `Imports`,
with the acting member:

    enqueue       role (ops or admin) and every label (the job's and each planned
                  file's) checked against the taxonomy before anything is stored;
                  then the member's unfinished job over the same source is resumed
                  (new files planned) or a new one is created with its files, in one
                  transaction with the audit entry `import.start` (source, labels,
                  files planned), and left `queued` for a worker (`POST /v1/imports`).
                  An unknown label refuses the import up front: no job, no audit
                  entry, no file read. A job another process holds (a live lease)
                  is not taken over: Conflict.
    start         the same, and the job is claimed by this process at once
                  (`hashdb import` runs it itself)
    claim         a worker takes the oldest claimable job (queued, or running with
                  a lapsed lease), acting as the member that started it
    digest        a file's SHA-256, recorded once (a resumed job never reads it again)
    skip / fail   a file marked `duplicate` or `failed`, with the reason
    store_image   a file's hashes admitted through the contribution path
    store_video   (`contributions`: labels, incident, start status, creation history,
                  change log, stored variants), in one transaction with the file's
                  `done` mark, so a killed import stored a file and marked it, or
                  neither
    finish        the job marked done, in one transaction with the audit entry
                  `import.finish` (files done, duplicates, failed, hashes added)

A job this process holds keeps its lease through `Leases`: a daemon thread renews
every held lease each fifth of HASHDB_IMPORT_LEASE_SECONDS, independently of the
job's progress, so one slow file does not let the lease lapse; only a process
that died or hung loses it. A holder that finds its lease taken (`holds` false)
stops; `finish` and `release` end the renewal.

Imported hashes start `active`: an ops team or an admin imports a vetted reference
collection, which the vetting rules treat as a fast track
(`vetting.initial_status(..., fast_tracked=True)`), as they do a crisis incident.
Job and file views (`get`, `recent`, `files`) are for ops and admins, as the
imports themselves are.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_staff
from hashdb.consortium.contributions import Contributions
from hashdb.consortium.paging import DEFAULT_LIMIT, Page, check_page, page_of
from hashdb.errors import Conflict, Forbidden
from hashdb.signals import SHA256
from hashdb.store import (
    Added,
    FileState,
    ImportFile,
    ImportJob,
    NewHash,
    NewVideo,
    PlannedFile,
    Status,
)
from hashdb.store.clock import now
from hashdb.store.imports import ImportStore

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

log = logging.getLogger(__name__)


def worker_id() -> str:
    """A process's name as a job holder: host:pid:random (a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def died_here(holder: str | None) -> bool:
    """Whether `holder` was a process of this host that is gone (so its lease need
    not be waited out: `hashdb import` killed and run again at once)."""
    parts = (holder or "").split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class Claim:
    """A job a worker holds: the job, and the member that started it, whom the worker
    acts as (the job's files are that member's contributions)."""

    job: ImportJob
    actor: Actor


class Leases:
    """The import leases this process holds, renewed by one daemon thread (started
    with the first lease, ended when none is left) every fifth of the lease."""

    def __init__(self, jobs: ImportStore, seconds: float) -> None:
        self.holder = worker_id()
        self._jobs = jobs
        self._seconds = seconds
        self._held: set[int] = set()
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def until(self) -> datetime:
        return now() + timedelta(seconds=self._seconds)

    def hold(self, job_id: int) -> None:
        with self._lock:
            self._held.add(job_id)
            self._lost.discard(job_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._renew, name="import-leases", daemon=True
                )
                self._thread.start()

    def drop(self, job_id: int) -> None:
        with self._lock:
            self._held.discard(job_id)
            self._lost.discard(job_id)

    def holds(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._held and job_id not in self._lost

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._held)

    def _renew(self) -> None:
        while True:
            self._wake.wait(self._seconds / 5)
            with self._lock:
                held = sorted(self._held - self._lost)
                if not held:
                    self._thread = None
                    return
            for job_id in held:
                try:
                    kept = self._jobs.renew(job_id, self.holder, self.until())
                except Exception:  # the database is away: try again; the lease may lapse
                    log.warning("cannot renew the lease on import %d", job_id, exc_info=True)
                    continue
                if not kept:
                    log.warning("lost the lease on import %d to another worker", job_id)
                    with self._lock:
                        self._lost.add(job_id)


@dataclass(frozen=True)
class FileStored:
    """What storing one file's result added."""

    kind: str  # "image" or "video"
    hashes_added: int  # rows created (not already stored)
    frames: int  # video frames stored (0 for an image)


class Imports:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._contributions = Contributions(ctx)
        self._leases = Leases(ctx.store.imports, ctx.settings.import_lease_seconds)

    @property
    def _jobs(self) -> ImportStore:
        return self._ctx.store.imports

    # ---- the rules checked before any work ---------------------------------------

    def check(
        self, actor: Actor, job_labels: Sequence[str], files: Sequence[PlannedFile] = ()
    ) -> None:
        """Refuse an import the actor may not start, or whose labels (the job's, field
        `labels`, or a planned file's, field `manifest`) are not in the taxonomy:
        Forbidden or InvalidInput naming the label. Nothing is stored."""
        require_staff(actor, "import collections")
        self._contributions.check_labels([job_labels], field="labels")
        extra = {f.labels for f in files if f.labels != tuple(job_labels)}
        if extra:
            self._contributions.check_labels(sorted(extra), field="manifest")

    # ---- a job's life ------------------------------------------------------------

    def enqueue(
        self, actor: Actor, source: str, job_labels: Sequence[str], files: Sequence[PlannedFile]
    ) -> ImportJob:
        """The actor's unfinished job over `source`, resumed with any new files, or a
        new job with `files`, left `queued` for a worker; checked as `check` does
        first, and audited. Conflict if another process holds the job now."""
        return self._plan(actor, source, job_labels, files, hold=False)

    def start(
        self, actor: Actor, source: str, job_labels: Sequence[str], files: Sequence[PlannedFile]
    ) -> ImportJob:
        """As `enqueue`, but the job is claimed by this process at once, its lease
        renewed until `finish` or `release` (`hashdb import` runs it itself)."""
        return self._plan(actor, source, job_labels, files, hold=True)

    def _plan(
        self,
        actor: Actor,
        source: str,
        job_labels: Sequence[str],
        files: Sequence[PlannedFile],
        *,
        hold: bool,
    ) -> ImportJob:
        self.check(actor, job_labels, files)
        holder = self._leases.holder if hold else None
        until = self._leases.until() if hold else None
        with self._ctx.store.engine.begin() as conn:
            job_id = ImportStore.resumable_in(conn, actor.id, source)
            resumed = job_id is not None
            if job_id is None:
                job_id = ImportStore.create_in(conn, actor.id, source, job_labels, holder, until)
            elif not ImportStore.take_in(conn, job_id, holder, until):
                held = ImportStore.get_in(conn, job_id)
                mine = held.claimed_by == self.holder or died_here(held.claimed_by)
                dead = held.claimed_by if mine else None  # this process's, or a dead one's
                if dead is None or not ImportStore.take_in(conn, job_id, holder, until, dead=dead):
                    raise Conflict(
                        f"import {job_id} of this source is running on {held.claimed_by}",
                        job=job_id,
                    )
            new = ImportStore.plan_in(conn, job_id, files)
            job = ImportStore.get_in(conn, job_id)
            audit.append(
                conn,
                actor,
                "import.start",
                f"import:{job_id}",
                {
                    "source": source,
                    "labels": list(job_labels),
                    "files": job.counts.total,
                    "new_files": new,
                    "resumed": resumed,
                },
            )
        if hold:
            self._leases.hold(job_id)
        return job

    # ---- workers -------------------------------------------------------------------

    @property
    def holder(self) -> str:
        """This process's name on the jobs it holds (host:pid:random)."""
        return self._leases.holder

    def claim(self, exclude: Sequence[int] = ()) -> Claim | None:
        """Take the oldest claimable job (queued, or running with a lapsed lease; not
        one of `exclude`) for this process, its lease renewed from now on; None when
        there is none. The service itself claims (a worker is no member); the claim
        acts as the member that started the job."""
        with self._ctx.store.engine.begin() as conn:
            job_id = ImportStore.claim_in(conn, self.holder, self._leases.until(), exclude)
            job = None if job_id is None else ImportStore.get_in(conn, job_id)
        if job is None:
            return None
        self._leases.hold(job.id)
        member = self._ctx.store.members.get(job.member_id)
        return Claim(job, Actor(member, request_id=f"worker-{secrets.token_hex(8)}"))

    def holds(self, job_id: int) -> bool:
        """Whether this process still holds the job (its lease was not taken)."""
        return self._leases.holds(job_id)

    def release(self, job_id: int) -> bool:
        """Give a job this process holds back to the queue (at shutdown, or when it
        cannot be run here); False if it was not held any more."""
        self._leases.drop(job_id)
        return self._jobs.release(job_id, self.holder)

    def close(self) -> None:
        """Release every job this process still holds (it is closing its database)."""
        for job_id in self._leases.held():
            self.release(job_id)

    def record_digest(self, actor: Actor, file_id: int, sha256: bytes) -> None:
        require_staff(actor, "import collections")
        self._jobs.record_digest(file_id, sha256)

    def skip(self, actor: Actor, file_id: int, reason: str) -> None:
        """Mark a file `duplicate` (same bytes as another file, or stored already)."""
        require_staff(actor, "import collections")
        self._jobs.mark(file_id, FileState.DUPLICATE, error=reason)

    def fail(self, actor: Actor, file_id: int, reason: str) -> None:
        require_staff(actor, "import collections")
        self._jobs.mark(file_id, FileState.FAILED, error=reason)

    def stored_digests(self, actor: Actor, digests: Sequence[bytes]) -> dict[bytes, int]:
        """Of these SHA-256 digests, those the actor has stored already (in any
        status), each with one of its hash ids: a file with such bytes is a duplicate."""
        require_staff(actor, "import collections")
        found = self._ctx.store.hashes.find_exact(SHA256.name, list(digests), statuses=list(Status))
        out: dict[bytes, int] = {}
        for digest, records in found.items():
            mine = [r.id for r in records if r.contributor_id == actor.id]
            if mine:
                out[digest] = mine[0]
        return out

    def store_image(self, actor: Actor, file: ImportFile, items: Sequence[NewHash]) -> FileStored:
        """Admit one image's hashes as a contribution of the actor and mark the file
        done, in one transaction."""
        require_staff(actor, "import collections")
        with self._ctx.store.engine.begin() as conn:
            added = self._contributions.admit_in(conn, actor, items, fast_tracked=True)
            ImportStore.complete_in(conn, file.id, "image", [a.id for a in added], None)
        return FileStored("image", _created(added), 0)

    def store_video(
        self,
        actor: Actor,
        file: ImportFile,
        video: NewVideo,
        digests: Sequence[NewHash],
    ) -> FileStored:
        """Admit one video (frames and file digests) as a contribution of the actor
        and mark the file done, in one transaction."""
        require_staff(actor, "import collections")
        with self._ctx.store.engine.begin() as conn:
            added = self._contributions.admit_video_in(
                conn, actor, video, digests, fast_tracked=True
            )
            ImportStore.complete_in(
                conn, file.id, "video", [a.id for a in added], len(video.frames)
            )
        return FileStored("video", _created(added), len(video.frames))

    def finish(self, actor: Actor, job_id: int, *, hashes_added: int = 0) -> ImportJob:
        """Mark the job done and audit what it did (`import.finish`), in one transaction;
        this process's lease on it ends."""
        self._own(actor, job_id)
        self._leases.drop(job_id)
        with self._ctx.store.engine.begin() as conn:
            ImportStore.finish_in(conn, job_id)
            job = ImportStore.get_in(conn, job_id)
            c = job.counts
            audit.append(
                conn,
                actor,
                "import.finish",
                f"import:{job_id}",
                {
                    "files": c.total,
                    "done": c.done,
                    "duplicates": c.duplicates,
                    "failed": c.failed,
                    "hashes_added": hashes_added,
                },
            )
        return job

    # ---- views -------------------------------------------------------------------

    def get(self, actor: Actor, job_id: int) -> ImportJob:
        require_staff(actor, "see imports")
        return self._jobs.get(job_id)

    def recent(self, actor: Actor, limit: int = 50) -> list[ImportJob]:
        """The newest jobs first."""
        require_staff(actor, "see imports")
        return self._jobs.recent(limit)

    def page(self, actor: Actor, *, after: int = 0, limit: int = DEFAULT_LIMIT) -> Page[ImportJob]:
        """Jobs with ids above `after`, oldest first, a page at a time."""
        require_staff(actor, "see imports")
        check_page(after, limit)
        return page_of(self._jobs.after(after, limit + 1), after, limit, lambda j: j.id)

    def files(self, actor: Actor, job_id: int, state: FileState | None = None) -> list[ImportFile]:
        """A job's files (in one state if given), in planning order."""
        require_staff(actor, "see imports")
        self._jobs.get(job_id)  # NotFound for an unknown job
        return self._jobs.files(job_id, state)

    def _own(self, actor: Actor, job_id: int) -> ImportJob:
        """The job, if the actor may work on it: its own, or any for an admin."""
        require_staff(actor, "import collections")
        job = self._jobs.get(job_id)
        if job.member_id != actor.id and not actor.is_admin:
            raise Forbidden("only the member that started an import may work on it", job=job_id)
        return job


def _created(added: Sequence[Added]) -> int:
    return sum(a.created for a in added)
