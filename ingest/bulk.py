"""Bulk import of a reference collection: resumable, idempotent, parallel.

    plan      every file of the folder/archive (or the manifest) gets a row, `pending`
    digest    the coordinator computes each pending file's SHA-256 (fast, sequential
              I/O); a file whose content was already seen in this job, or that this
              member already stored, is marked `duplicate` and never hashed
    hash      the remaining files go to the pool (local processes or Dask), at most
              a few per worker in flight
    store     the coordinator writes each result in one transaction together with the
              file's `done` mark, or marks it `failed` with the reason

Killing the process at any point loses at most the files in flight; running the
same import again resumes the newest unfinished job over the same source and only
touches `pending` files. Adds are idempotent besides, so nothing is ever stored twice.

The driver never touches the database itself: every step is a use case of the
consortium's `Imports` (`db.imports`), called with the acting member, which checks
the role and the labels before the job is created (`start`), admits each file's
hashes through the contribution path with its `done` mark in one transaction
(`store_image`, `store_video`), and audits the job's start and finish.

Only files inside the import's boundary are read (`within`: HASHDB_IMPORT_ROOT over
HTTP, the folder given to `hashdb import`, the work folder of an unpacked archive).
Each file is resolved (following every link) and opened by `ingest.sources.open_inside`
before its digest; one that resolves outside, or is not a regular file, is marked
`failed` with the reason and never read. Links that stay inside are followed. The
hashing worker is handed the resolved path and checks it again before reading it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashdb.consortium import Actor, Consortium, FileState, ImportFile, ImportJob, PlannedFile
from hashdb.errors import InvalidInput
from ingest.media import Failure, HashedImage, MediaHashes, MediaOptions, hash_media_safely
from ingest.pool import Pool
from ingest.records import contributions, video_contributions
from ingest.sources import open_inside

# Files in flight per worker: enough to keep workers busy, few enough that a kill
# loses little and memory stays bounded.
IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class Progress:
    total: int
    finished: int  # done + failed + duplicates
    failed: int
    elapsed: float

    @property
    def files_per_second(self) -> float:
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class Summary:
    job: ImportJob
    images: int
    videos: int
    frames: int
    hashes_added: int
    failures: tuple[tuple[str, str], ...]  # (path, reason)


def plan_files(
    root: Path, labels: tuple[str, ...], manifest: Sequence[PlannedFile] | None
) -> list[PlannedFile]:
    from ingest.sources import list_files

    if manifest is not None:
        return list(manifest)
    return [PlannedFile(path=p, labels=labels) for p in list_files(root)]


def _sha256(fd: int) -> bytes:
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def _dedupe(
    db: Consortium, actor: Actor, job: ImportJob, root: Path, within: Path
) -> list[tuple[ImportFile, Path]]:
    """Check and digest pending files; mark duplicates and refusals; return the files
    still to hash with their resolved paths."""
    imports = db.imports
    seen: dict[bytes, str] = {
        f.sha256: f.path
        for f in imports.files(actor, job.id)
        if f.sha256 is not None and f.status is not FileState.PENDING
    }
    todo: list[tuple[ImportFile, Path, bytes]] = []
    for f in imports.files(actor, job.id, FileState.PENDING):
        try:
            fd, real = open_inside(root, within, f.path)
        except InvalidInput as exc:
            imports.fail(actor, f.id, exc.message)
            continue
        if f.sha256 is not None:  # resumed: digested before
            os.close(fd)
            digest = f.sha256
        else:
            try:
                digest = _sha256(fd)
            except OSError as exc:
                imports.fail(actor, f.id, f"cannot read: {exc.strerror}")
                continue
            imports.record_digest(actor, f.id, digest)
        if digest in seen:
            imports.skip(actor, f.id, f"same file as {seen[digest]}")
            continue
        seen[digest] = f.path
        todo.append((f, real, digest))
    stored = imports.stored_digests(actor, [d for *_, d in todo])
    fresh = []
    for f, real, digest in todo:
        if digest in stored:
            imports.skip(actor, f.id, f"already stored as hash {stored[digest]}")
        else:
            fresh.append((f, real))
    return fresh


def hash_inside(path: str, within: str, options: MediaOptions) -> MediaHashes | Failure:
    """`hash_media_safely` in a worker, once `path` is seen again to resolve inside
    `within` (it was checked by the coordinator; this narrows the window for a swap)."""
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(within)):
        return Failure("invalid_input", "is a link that leads outside the import root; not read")
    return hash_media_safely(path, options)


def _store_result(
    db: Consortium, actor: Actor, job: ImportJob, f: ImportFile, result: MediaHashes
) -> tuple[str, int, int]:
    """Store one file's hashes and mark it done, atomically; (kind, hashes, frames)."""
    labels = tuple(dict.fromkeys(job.labels + f.labels))
    reference = f.reference or f.path
    if isinstance(result, HashedImage):
        items = contributions(result.hashes, labels, reference, result.variants)
        stored = db.imports.store_image(actor, f, items)
    else:
        video, digests = video_contributions(result, labels, reference)
        stored = db.imports.store_video(actor, f, video, digests)
    return stored.kind, stored.hashes_added, stored.frames


def run_import(
    db: Consortium,
    actor: Actor,
    job: ImportJob,
    root: Path,
    pool: Pool,
    *,
    options: MediaOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    within: Path | None = None,
) -> Summary:
    """Hash and store every pending file of `job` (started by `db.imports.start`)
    under `root` as `actor`; returns the job's summary. Files must resolve inside
    `within` (default: `root`)."""
    options = options or MediaOptions()
    started = time.monotonic()
    imports = db.imports
    total = imports.get(actor, job.id).counts.total
    todo = _dedupe(db, actor, job, root, within or root)
    images = videos = frames = added = 0

    def report() -> None:
        if on_progress is not None:
            counts = imports.get(actor, job.id).counts
            finished = counts.done + counts.failed + counts.duplicates
            on_progress(Progress(total, finished, counts.failed, time.monotonic() - started))

    report()
    for f, result in _hash_all(pool, within or root, todo, options):
        if isinstance(result, Failure):
            imports.fail(actor, f.id, result.message)
        else:
            try:
                kind, new, n_frames = _store_result(db, actor, job, f, result)
            except InvalidInput as exc:  # refused by the contribution rules: nothing stored
                imports.fail(actor, f.id, exc.message)
                report()
                continue
            images += kind == "image"
            videos += kind == "video"
            frames += n_frames
            added += new
        report()
    final = imports.finish(actor, job.id, hashes_added=added)
    failures = tuple(
        (f.path, f.error or "failed") for f in imports.files(actor, job.id, FileState.FAILED)
    )
    return Summary(final, images, videos, frames, added, failures)


def _hash_all(
    pool: Pool, within: Path, files: list[tuple[ImportFile, Path]], options: MediaOptions
) -> Iterator[tuple[ImportFile, MediaHashes | Failure]]:
    """Results as they complete, keeping a bounded number of files in flight."""
    limit = max(1, pool.workers * IN_FLIGHT_PER_WORKER)
    queue = iter(files)
    in_flight: dict[Any, ImportFile] = {}

    def fill() -> None:
        while len(in_flight) < limit:
            item = next(queue, None)
            if item is None:
                return
            f, real = item
            in_flight[pool.submit(hash_inside, str(real), str(within), options)] = f

    fill()
    while in_flight:
        for future in pool.completed(list(in_flight)):
            f = in_flight.pop(future)
            yield f, future.result()
            fill()
            break
