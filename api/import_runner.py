"""Imports started over HTTP: each runs in a background thread of the worker that
accepted it, hashing in a local process pool (HASHDB_IMPORT_WORKERS) or on a Dask
cluster (HASHDB_DASK_SCHEDULER), exactly as `hashdb import` does.

Only paths under HASHDB_IMPORT_ROOT may be imported (the caller names a server
path, so without a root the API would read any file the service can); `..` is
refused outright and a path that resolves outside the root (through a link, for
example) is refused too. One import per source runs at a time: a second start
over a running source is a 409, in this process by the thread registry, and
across workers and servers by the job's heartbeat (a running job touched in the
last `STALE_AFTER` seconds). A job whose process died stays `running` with a
stale heartbeat; starting the same source again resumes it (`Imports.start`),
storing nothing twice.

Every file of a folder must resolve inside the root too: a link inside the
collection that leads out of it is marked failed and never read (`ingest.bulk`).
An archive is unpacked within the limits of HASHDB_IMPORT_MAX_* (`ingest.sources`)
into a work folder of its own under `<data_dir>/imports/`, outside the lock (a
second start of the same archive is refused before and after unpacking); the
folder is removed when the import ends, or at once when it is refused.

The rules are the consortium's (`db.imports`, as for `hashdb import`): the role
and the labels (the request's and the manifest's) are checked before an archive
is unpacked or a file read, so an unknown label is a 400 that leaves no job and
no audit entry behind; the job is created with its files and its `import.start`
audit entry in one transaction, each file's hashes are admitted through the
contribution path, and the job's end is audited (`import.finish`). Imported
hashes are `active`: ops teams import vetted reference collections.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path, PurePosixPath

from hashdb.consortium import Actor, Consortium, ImportJob, now
from hashdb.errors import Conflict, Forbidden, InvalidInput
from ingest.sources import remove_work_folder

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(seconds=60)
HEARTBEAT_S = 5.0
DISABLED = (
    "imports over HTTP are disabled on this server: set HASHDB_IMPORT_ROOT to the folder "
    "they may read (or run `hashdb import` on the server)"
)


def inside_root(root: Path, given: str, field: str) -> Path:
    """`given` (relative to the root, or absolute) resolved, if it lies under `root`."""
    if not given.strip() or "\x00" in given:
        raise InvalidInput(f"{field} must name a file or folder", field=field)
    if ".." in PurePosixPath(given.replace("\\", "/")).parts:
        raise InvalidInput(f"{field} must not contain `..`", field=field)
    base = root.resolve()
    found = (base / given).resolve()
    if not found.is_relative_to(base):
        raise InvalidInput(f"{field} lies outside the import root", field=field)
    if not found.exists():
        raise InvalidInput(f"{field} {given!r} does not exist under the import root", field=field)
    return found


class ImportRunner:
    def __init__(self, db: Consortium) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}

    @property
    def root(self) -> Path:
        root = self._db.settings.import_root
        if root is None:
            raise Forbidden(DISABLED)
        return root

    def shown(self, source: str) -> str:
        """A job's source as callers see it: relative to the import root."""
        root = self._db.settings.import_root
        path = Path(source)
        if root is not None and path.is_relative_to(root.resolve()):
            return path.relative_to(root.resolve()).as_posix() or "."
        return source

    def running_here(self, job: ImportJob) -> bool:
        with self._lock:
            thread = self._threads.get(job.source)
        return thread is not None and thread.is_alive()

    def start(
        self, actor: Actor, path: str, labels: tuple[str, ...], manifest: str | None
    ) -> ImportJob:
        """Plan the import of `path` (under the root) and start hashing it in the
        background; the job as planned."""
        from ingest.bulk import plan_files
        from ingest.manifest import read_manifest
        from ingest.sources import ArchiveLimits, is_archive, unpack, work_folder

        settings = self._db.settings
        root = self.root
        source = inside_root(root, path, "path")
        listed = None
        if manifest is not None:
            listed = read_manifest(inside_root(root, manifest, "manifest"), labels)
        self._db.imports.check(actor, labels, listed or ())
        key = str(source)
        with self._lock:
            self._check_free(actor, key, path)
        work = None
        try:
            folder, within = source, root
            if is_archive(source):
                work = work_folder(settings.data_dir)
                folder = within = unpack(source, work, ArchiveLimits.of(settings))
            planned = plan_files(folder, labels, listed)
            with self._lock:
                self._check_free(actor, key, path)
                job = self._db.imports.start(actor, key, labels, planned)
                thread = threading.Thread(
                    target=self._run,
                    args=(actor, job, folder, within, work),
                    name=f"import-{job.id}",
                    daemon=True,
                )
                self._threads[key] = thread
                thread.start()
        except BaseException:
            remove_work_folder(work)
            raise
        return job

    def _check_free(self, actor: Actor, key: str, path: str) -> None:
        """Conflict if an import of this source runs here, or in another process
        (its heartbeat is fresh); called under the lock."""
        if key in self._threads and self._threads[key].is_alive():
            raise Conflict(f"an import of {path} is already running", source=path)
        job = self._db.imports.running(actor, key, now() - STALE_AFTER)
        if job is not None:
            raise Conflict(
                f"import {job.id} of {path} is running on another worker or server", job=job.id
            )

    def _run(
        self, actor: Actor, job: ImportJob, folder: Path, within: Path, work: Path | None
    ) -> None:
        from ingest.bulk import Progress, run_import
        from ingest.pool import open_pool

        settings, imports = self._db.settings, self._db.imports
        beat = time.monotonic()

        def heartbeat(_: Progress) -> None:
            nonlocal beat
            if time.monotonic() - beat >= HEARTBEAT_S:
                imports.touch(actor, job.id)
                beat = time.monotonic()

        try:
            with open_pool(settings.import_workers, settings.dask_scheduler) as pool:
                summary = run_import(
                    self._db, actor, job, folder, pool, on_progress=heartbeat, within=within
                )
            log.info(
                "import %d done: %d files, %d failed",
                job.id,
                summary.job.counts.total,
                summary.job.counts.failed,
            )
        except Exception:
            # The job stays `running`; starting the same source again resumes it.
            log.exception("import %d stopped", job.id)
        finally:
            remove_work_folder(work)
            with self._lock:
                self._threads.pop(job.source, None)

    def join(self, timeout: float) -> None:
        """Wait for running imports (at shutdown) up to `timeout` seconds in all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
