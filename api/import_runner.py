"""Imports started over HTTP: checked and planned here, run by `hashdb worker`.

`POST /v1/imports` never hashes. It checks the request, plans the job's files and
leaves the job `queued` (`consortium.imports.enqueue`), answering 202; a worker
claims it and runs it (`hashdb.worker`, `ingest.jobs`). With no worker running the
job stays `queued`, and `GET /v1/imports/<id>` says so, until one starts.

Only paths under HASHDB_IMPORT_ROOT may be imported (the caller names a server
path, so without a root the API would read any file the service can); `..` is
refused outright and a path that resolves outside the root (through a link, for
example) is refused too. Every file of a folder must resolve inside the root too:
a link inside the collection that leads out of it is marked failed and never read
(`ingest.bulk`, when the worker opens it).

An archive is unpacked here within the limits of HASHDB_IMPORT_MAX_*
(`ingest.sources`), so that a hostile or corrupt one is a 4xx now rather than a
failed job later, and so that its files can be planned; the work folder is removed
before the answer. The worker unpacks it again into the job's own folder
(`<data_dir>/imports/<job id>/`): API and worker need share only the import root.

Starting the same source again while its job is unfinished resumes that job (new
files planned, `queued` again) unless a worker holds it now: 409.

The rules are the consortium's (`db.imports`, as for `hashdb import`): the role
and the labels (the request's and the manifest's) are checked before an archive
is unpacked or a file read, so an unknown label is a 400 that leaves no job and
no audit entry behind; the job is created with its files and its `import.start`
audit entry in one transaction. Imported hashes are `active`: ops teams import
vetted reference collections.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from hashdb.consortium import Actor, Consortium, ImportJob, now
from hashdb.errors import Forbidden, InvalidInput

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
    """The HTTP side of imports: where paths are checked, planned and enqueued."""

    def __init__(self, db: Consortium) -> None:
        self._db = db

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

    @staticmethod
    def running_here(job: ImportJob) -> bool:
        """Whether a worker holds the job now (it is being hashed). The response field
        keeps its first name, from when API workers hashed imports themselves."""
        return job.leased(now())

    def start(
        self, actor: Actor, path: str, labels: tuple[str, ...], manifest: str | None
    ) -> ImportJob:
        """Check and plan the import of `path` (under the root) and queue it for a
        worker; the job as queued."""
        from ingest.bulk import plan_files
        from ingest.manifest import read_manifest
        from ingest.sources import (
            ArchiveLimits,
            is_archive,
            remove_work_folder,
            unpack,
            work_folder,
        )

        settings = self._db.settings
        root = self.root
        source = inside_root(root, path, "path")
        listed = None
        if manifest is not None:
            listed = read_manifest(inside_root(root, manifest, "manifest"), labels)
        self._db.imports.check(actor, labels, listed or ())
        work = None
        try:
            folder = source
            if is_archive(source):
                work = work_folder(settings.data_dir)
                folder = unpack(source, work, ArchiveLimits.of(settings))
            planned = plan_files(folder, labels, listed)
        finally:
            remove_work_folder(work)
        return self._db.imports.enqueue(actor, str(source), labels, planned)
