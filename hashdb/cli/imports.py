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
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hashdb.cli.common import EXIT_PARTIAL, acting, emit_json, open_db


@click.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
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
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def import_collection(
    source: Path,
    manifest: Path | None,
    labels: tuple[str, ...],
    workers: int,
    scheduler: str | None,
    as_member: str | None,
    as_json: bool,
) -> None:
    """Import every image and video under SOURCE (a folder, .zip or .tar[.gz]).

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
        source = source.resolve()
        planned = read_manifest(manifest, labels) if manifest else None
        db.imports.check(actor, labels, planned or ())
        root = source
        if is_archive(source):
            work = work_folder(db.settings.data_dir)
            root = unpack(source, work, ArchiveLimits.of(db.settings))
        job = db.imports.start(actor, str(source), labels, plan_files(root, labels, planned))
        bar = (
            None
            if as_json
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
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"import #{summary.job.id}: {counts.total} files, {summary.images} images, "
            f"{summary.videos} videos ({summary.frames} frames), "
            f"{summary.hashes_added} hashes added, {counts.duplicates} duplicates, "
            f"{counts.failed} failed"
        )
        for path, reason in summary.failures:
            click.echo(f"  failed: {path}: {reason}", err=True)
    if counts.failed:
        sys.exit(EXIT_PARTIAL)
