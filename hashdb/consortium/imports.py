"""Bulk imports as a use case: who may import, which labels, what is audited, how
each file's hashes are admitted.

The import driver (`ingest.bulk`, run by `hashdb import` and by the API's
background runner) does the file work: planning, digests, hashing in a pool. Every
state change it makes goes through `Imports`, with the acting member:

    start         role (ops or admin) and every label (the job's and each planned
                  file's) checked against the taxonomy before anything is stored;
                  then the member's unfinished job over the same source is resumed
                  (new files planned) or a new one is created with its files, in one
                  transaction with the audit entry `import.start` (source, labels,
                  files planned). An unknown label refuses the import up front:
                  no job, no audit entry, no file read.
    digest        a file's SHA-256, recorded once (a resumed job never reads it again)
    skip / fail   a file marked `duplicate` or `failed`, with the reason
    store_image   a file's hashes admitted through the contribution path
    store_video   (`contributions`: labels, incident, start status, creation history,
                  change log, stored variants), in one transaction with the file's
                  `done` mark, so a killed import stored a file and marked it, or
                  neither
    finish        the job marked done, in one transaction with the audit entry
                  `import.finish` (files done, duplicates, failed, hashes added)

Imported hashes start `active`: an ops team or an admin imports a vetted reference
collection, which the vetting rules treat as a fast track
(`vetting.initial_status(..., fast_tracked=True)`), as they do a crisis incident.
Job and file views (`get`, `recent`, `files`) are for ops and admins, as the
imports themselves are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_staff
from hashdb.consortium.contributions import Contributions
from hashdb.errors import Forbidden
from hashdb.signals import SHA256
from hashdb.store import (
    Added,
    FileState,
    ImportFile,
    ImportJob,
    JobStatus,
    NewHash,
    NewVideo,
    PlannedFile,
    Status,
)
from hashdb.store.imports import ImportStore
from hashdb.store.schema import import_jobs

if TYPE_CHECKING:
    from hashdb.consortium.core import Context


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

    def start(
        self, actor: Actor, source: str, job_labels: Sequence[str], files: Sequence[PlannedFile]
    ) -> ImportJob:
        """The actor's unfinished job over `source`, resumed with any new files, or a
        new job with `files`; checked as `check` does first, and audited."""
        self.check(actor, job_labels, files)
        with self._ctx.store.engine.begin() as conn:
            job_id = ImportStore.resumable_in(conn, actor.id, source)
            resumed = job_id is not None
            if job_id is None:
                job_id = ImportStore.create_in(conn, actor.id, source, job_labels)
            else:
                ImportStore.touch_in(conn, job_id)
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
        return job

    def running(self, actor: Actor, source: str, fresh_after: datetime) -> ImportJob | None:
        """A running job over `source` whose heartbeat is newer than `fresh_after`
        (one that another process is working on), if any."""
        require_staff(actor, "import collections")
        with self._ctx.store.engine.connect() as conn:
            job_id = conn.execute(
                select(import_jobs.c.id)
                .where(
                    import_jobs.c.source == source,
                    import_jobs.c.status == JobStatus.RUNNING.value,
                    import_jobs.c.updated_at > fresh_after,
                )
                .order_by(import_jobs.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        return None if job_id is None else self._jobs.get(int(job_id))

    def touch(self, actor: Actor, job_id: int) -> None:
        """The job's heartbeat: it is being worked on now."""
        self._own(actor, job_id)
        self._jobs.touch(job_id)

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
        """Mark the job done and audit what it did (`import.finish`), in one transaction."""
        self._own(actor, job_id)
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
