"""Bulk import: every file once, duplicates hashed once, failures reported, resumable."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from media_factory import write_image, write_video
from sqlalchemy import func, select

from hashdb.errors import InvalidInput
from hashdb.signals import SHA256
from hashdb.store import FileState, JobStatus, Member, Role, Store
from hashdb.store.schema import hashes, import_files
from ingest.bulk import plan_files, run_import, start_or_resume
from ingest.manifest import read_manifest
from ingest.pool import open_pool
from ingest.sources import ArchiveLimits, unpack

LIMITS = ArchiveLimits(max_bytes=1 << 30, max_ratio=100.0, max_entries=1000, max_depth=8)


@pytest.fixture
def ops(store: Store) -> Member:
    return store.members.create("Ops team", Role.OPS)[0]


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    root = tmp_path / "collection"
    for i in range(5):
        write_image(root / "images" / f"{i}.png", seed=i)
    shutil.copy(root / "images" / "0.png", root / "images" / "copy-of-0.png")
    (root / "notes.txt").write_text("not media")
    write_video(root / "videos" / "clip.mp4", seed=99)
    (root / ".hidden.png").write_bytes(b"skipped")
    return root


def test_a_folder_is_imported_once_with_duplicates_and_failures_reported(
    store: Store, ops: Member, collection: Path
) -> None:
    files = plan_files(collection, ("attack_footage",), None)
    assert ".hidden.png" not in {f.path for f in files}
    job = start_or_resume(store, ops.id, str(collection), ("attack_footage",), files)
    with open_pool(1) as pool:
        summary = run_import(store, job, collection, pool)
    counts = summary.job.counts
    assert (counts.total, counts.done, counts.duplicates, counts.failed) == (8, 6, 1, 1)
    assert (summary.images, summary.videos) == (5, 1)
    assert summary.frames >= 2
    assert summary.failures == (("notes.txt", summary.failures[0][1]),)
    assert summary.job.status is JobStatus.DONE
    # 5 images x 4 hashes + the video's vpdq hash and its two digests
    assert summary.hashes_added == 23
    duplicate = next(f for f in store.imports.files(job.id) if f.path == "images/copy-of-0.png")
    assert duplicate.status is FileState.DUPLICATE and "images/0.png" in (duplicate.error or "")
    labels = {r.labels for r in store.hashes.get_many(range(1, 30)).values()}
    assert labels == {("attack_footage",)}


def test_imported_images_store_their_variants_like_any_contribution(
    store: Store, ops: Member, collection: Path
) -> None:
    """The crop windows (hashdb/variants.py) are hashed in the worker processes."""
    job = start_or_resume(store, ops.id, str(collection), (), plan_files(collection, (), None))
    with open_pool(1) as pool:
        run_import(store, job, collection, pool)
    with store.engine.connect() as conn:
        parents = conn.execute(
            select(func.count(func.distinct(hashes.c.derived_from))).where(
                hashes.c.derived_from.is_not(None)
            )
        ).scalar_one()
    assert parents == 5  # the PDQ row of each distinct image


def test_importing_again_stores_nothing_twice(store: Store, ops: Member, collection: Path) -> None:
    for _ in range(2):
        job = start_or_resume(store, ops.id, str(collection), (), plan_files(collection, (), None))
        with open_pool(1) as pool:
            run_import(store, job, collection, pool)
    second = store.imports.get(job.id).counts
    assert second.duplicates == 7  # every media file is already stored by this member
    with store.engine.connect() as conn:
        per_value = conn.execute(
            select(func.count()).select_from(hashes).group_by(hashes.c.signal_type, hashes.c.value)
        ).scalars()
        assert set(per_value) == {1}


def test_a_manifest_chooses_the_files_and_adds_their_labels(
    store: Store, ops: Member, collection: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,labels,reference,notes\n"
        "images/1.png,glorification;manifesto,CASE-1,seized 2024\n"
        "images/missing.png,,CASE-2,\n"
    )
    planned = read_manifest(manifest, ("attack_footage",))
    job = start_or_resume(store, ops.id, str(collection), (), planned)
    with open_pool(1) as pool:
        summary = run_import(store, job, collection, pool)
    assert summary.job.counts.total == 2 and summary.images == 1
    assert summary.failures[0][0] == "images/missing.png"
    done = store.imports.files(job.id, FileState.DONE)[0]
    record = store.hashes.get(done.hash_ids[0])
    assert record.labels == ("attack_footage", "glorification", "manifesto")
    assert record.reference == "CASE-1"
    assert done.notes == "seized 2024"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("file,labels\nx.png,\n", "`path` column"),
        ("path,colour\nx.png,red\n", "unknown columns: colour"),
        ("path\n../../etc/passwd\n", "inside the collection"),
        ("path\n\n,\n", "empty path"),
    ],
)
def test_a_bad_manifest_is_refused_with_the_reason(tmp_path: Path, text: str, error: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(InvalidInput, match=error):
        read_manifest(manifest)


def test_an_archive_is_unpacked_and_a_member_escaping_it_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.write(write_image(tmp_path / "a.png", seed=1), "dir/a.png")
    assert (unpack(good, tmp_path / "out", LIMITS) / "dir" / "a.png").is_file()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.png", b"x")
    with pytest.raises(InvalidInput, match="outside the import folder"):
        unpack(bad, tmp_path / "out2", LIMITS)
    assert not (tmp_path / "escape.png").exists()
    assert not (tmp_path / "out2").exists()


def test_hashing_fans_out_over_a_dask_cluster(store: Store, ops: Member, collection: Path) -> None:
    from distributed import LocalCluster

    job = start_or_resume(store, ops.id, str(collection), (), plan_files(collection, (), None))
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            processes=True,
        ) as cluster,
        open_pool(1, cluster.scheduler_address) as pool,
    ):
        summary = run_import(store, job, collection, pool)
    assert summary.job.counts.done == 6 and summary.images == 5 and summary.videos == 1


def _done_count(store: Store, job_id: int) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(import_files)
                .where(import_files.c.job_id == job_id, import_files.c.status == "done")
            ).scalar_one()
        )


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()]


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_an_import_killed_midway_finishes_when_run_again(
    db_url: str, tmp_path: Path, store: Store
) -> None:
    root = tmp_path / "big"
    for i in range(24):
        write_image(root / f"{i:02}.png", seed=i, size=1000)
    env = {**os.environ, "HASHDB_DATABASE_URL": db_url, "HASHDB_DATA_DIR": str(tmp_path)}
    cli = [sys.executable, "-m", "hashdb.cli", "import", str(root), "--workers", "1", "--json"]
    store.members.create("admin", Role.ADMIN)
    first = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    job_id = None
    while time.monotonic() < deadline:
        jobs = store.imports.recent()
        if jobs:
            job_id = jobs[0].id
            if _done_count(store, job_id) >= 3:
                break
        time.sleep(0.05)
    workers = _children(first.pid)
    assert workers  # the hashing pool (and multiprocessing's resource tracker)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Its workers do not outlive it.
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in workers)
    assert job_id is not None
    interrupted = store.imports.get(job_id)
    assert interrupted.status is JobStatus.RUNNING and interrupted.counts.pending > 0
    second = subprocess.run(cli, env=env, capture_output=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr.decode()
    finished = store.imports.get(job_id)
    assert finished.status is JobStatus.DONE
    assert (finished.counts.done, finished.counts.failed) == (24, 0)
    stored = store.hashes.find_exact(
        SHA256.name, [f.sha256 or b"" for f in store.imports.files(job_id)]
    )
    assert sum(len(v) for v in stored.values()) == 24  # each file stored exactly once
