"""Running an import job that a worker claimed (`hashdb worker`, `hashdb.worker`).

The job was planned where it was accepted (`POST /v1/imports`, `api.import_runner`)
and its files are rows already; the worker finds them again from the job's source:

- a folder is read in place; its boundary (`within`) is HASHDB_IMPORT_ROOT when
  the folder lies under it (as over HTTP), else the folder itself (as for
  `hashdb import`);
- an archive is unpacked, within HASHDB_IMPORT_MAX_*, into the job's own work
  folder `<data_dir>/imports/<job id>/`, emptied first (a worker that died left
  it half written) and removed when the run ends, however it ends. The API
  unpacked it once already to check it and plan its files; unpacking again here
  keeps the API and the workers free to run on different machines that share
  only the import root.

A source this machine cannot see is not run here: the job is released for another
worker (`Outcome.UNREACHABLE`). An archive that is refused now (changed since it
was planned) fails every pending file with the reason and finishes the job.

The hashing is `ingest.bulk.run_import` in the pool HASHDB_IMPORT_WORKERS /
HASHDB_DASK_SCHEDULER names; between files it checks that the worker is not
stopping and still holds the job's lease (renewed by `consortium.imports.Leases`
independently of progress): when stopping, the job is released at once, losing
only the files in flight; when the lease was taken by another worker, this one
stops without touching the job again. Resuming stores nothing twice
(`ingest.bulk`).
"""

from __future__ import annotations

import enum
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hashdb.consortium import Claim, Consortium, FileState, ImportJob
from hashdb.errors import HashdbError
from hashdb.settings import Settings
from ingest.pool import PoolContext, open_pool
from ingest.sources import WORK_PARENT, ArchiveLimits, is_archive, remove_work_folder, unpack

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    DONE = "done"  # every file stored, failed or skipped; the job is done
    RELEASED = "released"  # the worker is stopping: back in the queue
    LOST = "lost"  # another worker took the lease: left to it
    UNREACHABLE = "unreachable"  # the source is not on this machine: released


@dataclass(frozen=True)
class Ran:
    outcome: Outcome
    job: ImportJob  # as it was left
    hashes_added: int = 0


class _Interrupted(Exception):
    pass


def job_folder(settings: Settings, job_id: int) -> Path:
    """The job's work folder, `<data_dir>/imports/<job id>/`."""
    return settings.data_dir / WORK_PARENT / str(job_id)


def locate(settings: Settings, job: ImportJob) -> tuple[Path, Path, Path | None] | None:
    """(folder to read, boundary, work folder to remove) for `job`'s source; None if
    the source is not on this machine. Unpacks an archive (HashdbError if refused)."""
    source = Path(job.source)
    if not source.exists():
        return None
    if is_archive(source):
        work = job_folder(settings, job.id)
        shutil.rmtree(work, ignore_errors=True)
        folder = unpack(source, work, ArchiveLimits.of(settings)).resolve()
        return folder, folder, work
    root = settings.import_root
    if root is not None and source.resolve().is_relative_to(root.resolve()):
        return source, root.resolve(), None
    return source, source, None


def run_claimed(
    db: Consortium,
    claim: Claim,
    stopping: Callable[[], bool],
    pools: Callable[[], PoolContext] | None = None,
) -> Ran:
    """Run the claimed job to its end, or until the worker stops or loses it."""
    from ingest.bulk import Progress, run_import

    settings, imports = db.settings, db.imports
    job, actor = claim.job, claim.actor
    work = None
    try:
        try:
            found = locate(settings, job)
        except HashdbError as exc:
            return _refused(db, claim, exc.message)
        if found is None:
            imports.release(job.id)
            return Ran(Outcome.UNREACHABLE, imports.get(actor, job.id))
        folder, within, work = found

        def check(_: Progress) -> None:
            if stopping() or not imports.holds(job.id):
                raise _Interrupted

        opened = (
            pools()
            if pools is not None
            else open_pool(settings.import_workers, settings.dask_scheduler)
        )
        try:
            with opened as pool:
                summary = run_import(db, actor, job, folder, pool, on_progress=check, within=within)
        except _Interrupted:
            if not imports.holds(job.id):
                return Ran(Outcome.LOST, imports.get(actor, job.id))
            imports.release(job.id)
            return Ran(Outcome.RELEASED, imports.get(actor, job.id))
        return Ran(Outcome.DONE, summary.job, summary.hashes_added)
    finally:
        remove_work_folder(work)


def _refused(db: Consortium, claim: Claim, reason: str) -> Ran:
    """The source can no longer be read as planned: every pending file fails with
    the reason, and the job is done."""
    imports, actor, job = db.imports, claim.actor, claim.job
    for f in imports.files(actor, job.id, FileState.PENDING):
        imports.fail(actor, f.id, reason)
    return Ran(Outcome.DONE, imports.finish(actor, job.id))
