"""`hashdb import`: bulk-import a folder or archive of images and videos.

The folder given is the import's boundary: a file under it that resolves outside
it (through a link) is reported failed and never read. An archive is unpacked
within the limits of HASHDB_IMPORT_MAX_* into a work folder under
`<data_dir>/imports/` that is removed when the command ends, however it ends; a
refused archive exits with status 2 and names the limit (`ingest.sources`).

The rules are the consortium's (`db.imports`), as for an import over HTTP: the
member (`--as`) must be an ops team or an admin, and every label (`--label` and the
manifest's) must be in the taxonomy, checked before an archive is unpacked or a
file read: an unknown label exits with status 2 and stores nothing. The job's
start and finish are audited (`import.start`, `import.finish`).

`hashdb import -` reads a .zip or .tar (plain, gzip, bzip2 or xz) archive from
standard input: it is copied into the run's work folder, at most
HASHDB_IMPORT_MAX_UNPACKED_BYTES bytes (refused with exit 2 beyond), recognised by
its first bytes (anything else is refused with exit 2), and then unpacked as an
archive named on the command line is. Its job's source is `stdin:sha256:<digest
of the archive>`, so piping the same archive again resumes that job.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click

from hashdb.cli.common import EXIT_PARTIAL, OUTPUT, Output, acting, open_db
from hashdb.cli.inputs import CHUNK, STDIN
from hashdb.errors import InvalidInput


@click.command("import")
@click.argument("source", type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV of path,labels,reference,notes (see README).",
)
@click.option("--label", "labels", multiple=True, help="Label for every file (repeatable).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=2,
    show_default=True,
    help="Local hashing processes.",
)
@click.option(
    "--scheduler",
    envvar="HASHDB_DASK_SCHEDULER",
    help="Dask scheduler address (tcp://HOST:PORT): hash on that cluster instead.",
)
@click.option("--as", "as_member", help="Member to import as (default: the first admin).")
@OUTPUT
def import_collection(
    source: Path,
    manifest: Path | None,
    labels: tuple[str, ...],
    workers: int,
    scheduler: str | None,
    as_member: str | None,
    out: Output,
) -> None:
    """Import every image and video under SOURCE (a folder, .zip or .tar[.gz]; `-`:
    an archive read from standard input).

    Running the same command again resumes an interrupted import: files already
    stored are skipped, and nothing is stored twice.
    """
    from ingest.bulk import Progress, plan_files, run_import
    from ingest.manifest import read_manifest
    from ingest.pool import open_pool
    from ingest.sources import ArchiveLimits, is_archive, remove_work_folder, unpack, work_folder

    db = open_db()
    work = None
    try:
        actor = acting(db, as_member)
        from_stdin = str(source) == STDIN
        source = source if from_stdin else source.resolve()
        planned = read_manifest(manifest, labels) if manifest else None
        db.imports.check(actor, labels, planned or ())
        root, name = source, str(source)
        if from_stdin:
            work = work_folder(db.settings.data_dir)
            archive, digest = _spool_archive(work, db.settings.import_max_unpacked_bytes)
            root, name = unpack(archive, work / "unpacked", ArchiveLimits.of(db.settings)), digest
        elif is_archive(source):
            work = work_folder(db.settings.data_dir)
            root = unpack(source, work, ArchiveLimits.of(db.settings))
        job = db.imports.start(actor, name, labels, plan_files(root, labels, planned))
        bar = (
            None
            if not out.human
            else click.progressbar(
                length=job.counts.total,
                label=f"import #{job.id}",
                file=sys.stderr,
                show_pos=True,
                show_eta=True,
                item_show_func=lambda rate: rate,
            )
        )
        shown = 0

        def on_progress(p: Progress) -> None:
            nonlocal shown
            if bar is not None:
                bar.update(p.finished - shown, f"{p.files_per_second:.1f} files/s")
                shown = p.finished

        with open_pool(workers, scheduler) as pool:
            if bar is not None:
                with bar:
                    summary = run_import(db, actor, job, root, pool, on_progress=on_progress)
            else:
                summary = run_import(db, actor, job, root, pool)
    finally:
        remove_work_folder(work)
        db.close()
    counts = summary.job.counts
    result = {
        "job": summary.job.id,
        "files": counts.total,
        "images": summary.images,
        "videos": summary.videos,
        "frames": summary.frames,
        "hashes_added": summary.hashes_added,
        "duplicates": counts.duplicates,
        "failed": counts.failed,
        "failures": [{"path": p, "reason": r} for p, r in summary.failures],
    }
    if not out.as_json:
        for path, reason in summary.failures:
            out.error(f"  failed: {path}: {reason}")
    out.result(
        result,
        [
            f"import #{summary.job.id}: {counts.total} files, {summary.images} images, "
            f"{summary.videos} videos ({summary.frames} frames), "
            f"{summary.hashes_added} hashes added, {counts.duplicates} duplicates, "
            f"{counts.failed} failed"
        ],
    )
    if counts.failed:
        sys.exit(EXIT_PARTIAL)


# An archive's first bytes, and the name that tells `ingest.sources` how to open it:
# zip; tar compressed with gzip, bzip2 or xz (tarfile opens any of them as `.tar`).
_ARCHIVE_MAGIC = (
    (b"PK\x03\x04", "stdin.zip"),
    (b"PK\x05\x06", "stdin.zip"),  # an empty zip
    (b"\x1f\x8b", "stdin.tar.gz"),
    (b"BZh", "stdin.tar"),
    (b"\xfd7zXZ\x00", "stdin.tar"),
)
_TAR_MAGIC_AT = 257  # "ustar" in a tar header


def _spool_archive(work: Path, limit: int) -> tuple[Path, str]:
    """Copy standard input into `work` as an archive file, at most `limit` bytes
    (HASHDB_IMPORT_MAX_UNPACKED_BYTES); the file and the job source naming it."""
    spooled = work / "stdin"
    digest = hashlib.sha256()
    written = 0
    stream = sys.stdin.buffer
    with spooled.open("xb") as out:
        while chunk := stream.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise InvalidInput(
                    f"the archive on standard input is larger than {limit} bytes "
                    "(HASHDB_IMPORT_MAX_UNPACKED_BYTES)",
                    field="source",
                )
            digest.update(chunk)
            out.write(chunk)
    with spooled.open("rb") as file:
        head = file.read(_TAR_MAGIC_AT + 8)
    name = next((n for magic, n in _ARCHIVE_MAGIC if head.startswith(magic)), None)
    if name is None and head[_TAR_MAGIC_AT : _TAR_MAGIC_AT + 5] == b"ustar":
        name = "stdin.tar"
    if name is None:
        what = "is empty" if written == 0 else "is not a .zip or .tar archive"
        raise InvalidInput(
            f"standard input {what}: `hashdb import -` reads an archive "
            "(a folder must be named on the command line)",
            field="source",
        )
    archive = spooled.rename(work / name)
    return archive, f"stdin:sha256:{digest.hexdigest()}"
