"""Bulk import: every file once, duplicates hashed once, failures reported, resumable;
refused up front for an unknown label, and audited at its start and finish."""

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
from click.testing import CliRunner
from media_factory import write_image, write_video
from sqlalchemy import func, select

from hashdb.cli import main
from hashdb.consortium import Actor, Consortium
from hashdb.errors import Forbidden, InvalidInput
from hashdb.settings import Settings
from hashdb.signals import SHA256
from hashdb.store import FileState, JobStatus, Role, Status, Store
from hashdb.store.schema import audit_log, hashes, import_files, import_jobs, keypoint_sets
from ingest.bulk import plan_files, run_import
from ingest.manifest import read_manifest
from ingest.pool import open_pool
from ingest.sources import ArchiveLimits, unpack

LIMITS = ArchiveLimits(max_bytes=1 << 30, max_ratio=100.0, max_entries=1000, max_depth=8)


@pytest.fixture
def db(store: Store) -> Consortium:
    return Consortium(Settings(sync_interval=0.0), store)


@pytest.fixture
def ops(store: Store) -> Actor:
    return Actor(store.members.create("Ops team", Role.OPS)[0])


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
    db: Consortium, store: Store, ops: Actor, collection: Path
) -> None:
    files = plan_files(collection, ("attack_footage",), None)
    assert ".hidden.png" not in {f.path for f in files}
    job = db.imports.start(ops, str(collection), ("attack_footage",), files)
    with open_pool(1) as pool:
        summary = run_import(db, ops, job, collection, pool)
    counts = summary.job.counts
    assert (counts.total, counts.done, counts.duplicates, counts.failed) == (8, 6, 1, 1)
    assert (summary.images, summary.videos) == (5, 1)
    assert summary.frames >= 2
    assert summary.failures == (("notes.txt", summary.failures[0][1]),)
    assert summary.job.status is JobStatus.DONE
    # 5 images x 5 hashes (pdq, phash, keypoints, md5, sha256) + the video's vpdq
    # hash and its two digests
    assert summary.hashes_added == 28
    duplicate = next(f for f in store.imports.files(job.id) if f.path == "images/copy-of-0.png")
    assert duplicate.status is FileState.DUPLICATE and "images/0.png" in (duplicate.error or "")
    labels = {r.labels for r in store.hashes.get_many(range(1, 30)).values()}
    assert labels == {("attack_footage",)}


def test_imported_images_store_their_variants_like_any_contribution(
    db: Consortium, store: Store, ops: Actor, collection: Path
) -> None:
    """What finds an image's crops is computed in the worker processes: its keypoint
    set (the collection's pictures are detailed; a low-detail one would store crop
    windows instead, hashdb/variants.py)."""
    job = db.imports.start(ops, str(collection), (), plan_files(collection, (), None))
    with open_pool(1) as pool:
        run_import(db, ops, job, collection, pool)
    with store.engine.connect() as conn:
        sets = conn.execute(select(func.count()).select_from(keypoint_sets)).scalar_one()
    assert sets == 5  # one per distinct image


def test_importing_again_stores_nothing_twice(
    db: Consortium, store: Store, ops: Actor, collection: Path
) -> None:
    for _ in range(2):
        job = db.imports.start(ops, str(collection), (), plan_files(collection, (), None))
        with open_pool(1) as pool:
            run_import(db, ops, job, collection, pool)
    second = store.imports.get(job.id).counts
    assert second.duplicates == 7  # every media file is already stored by this member
    with store.engine.connect() as conn:
        per_value = conn.execute(
            select(func.count()).select_from(hashes).group_by(hashes.c.signal_type, hashes.c.value)
        ).scalars()
        assert set(per_value) == {1}


def test_a_manifest_chooses_the_files_and_adds_their_labels(
    db: Consortium, store: Store, ops: Actor, collection: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,labels,reference,notes\n"
        "images/1.png,glorification;manifesto,CASE-1,seized 2024\n"
        "images/missing.png,,CASE-2,\n"
    )
    planned = read_manifest(manifest, ("attack_footage",))
    job = db.imports.start(ops, str(collection), (), planned)
    with open_pool(1) as pool:
        summary = run_import(db, ops, job, collection, pool)
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


def test_hashing_fans_out_over_a_dask_cluster(
    db: Consortium, store: Store, ops: Actor, collection: Path
) -> None:
    from distributed import LocalCluster

    job = db.imports.start(ops, str(collection), (), plan_files(collection, (), None))
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
        summary = run_import(db, ops, job, collection, pool)
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
    for i in range(12):
        write_image(root / f"{i:02}.png", seed=i, size=500)
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
    assert (finished.counts.done, finished.counts.failed) == (12, 0)
    stored = store.hashes.find_exact(
        SHA256.name, [f.sha256 or b"" for f in store.imports.files(job_id)]
    )
    assert sum(len(v) for v in stored.values()) == 12  # each file stored exactly once


def _audit(store: Store) -> list[tuple[str, str, dict[str, object]]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.action, audit_log.c.target, audit_log.c.details).order_by(
                audit_log.c.seq
            )
        ).all()
    return [(a, t, d) for a, t, d in rows]


def _count(store: Store, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _cli(db_url: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {"HASHDB_DATABASE_URL": db_url, "HASHDB_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["import", *args], env=env)
    return result.exit_code, result.output


def test_an_unknown_label_is_refused_before_any_job_or_file(
    db: Consortium, store: Store, ops: Actor, collection: Path
) -> None:
    with pytest.raises(InvalidInput, match="no_such_label") as refused:
        db.imports.start(ops, str(collection), ("no_such_label",), [])
    assert refused.value.details["field"] == "labels"
    member = Actor(store.members.create("Platform A", Role.MEMBER)[0])
    with pytest.raises(Forbidden):
        db.imports.start(member, str(collection), (), plan_files(collection, (), None))
    assert (_count(store, import_jobs), _count(store, import_files)) == (0, 0)
    assert _audit(store) == []


def test_the_cli_refuses_an_unknown_label_with_exit_2_and_stores_nothing(
    db_url: str, store: Store, collection: Path, tmp_path: Path
) -> None:
    store.members.create("admin", Role.ADMIN)
    code, output = _cli(db_url, tmp_path, str(collection), "--label", "no_such_label")
    assert code == 2, output
    assert "unknown label(s): no_such_label" in output
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,labels\nimages/1.png,cats\n")
    code, output = _cli(db_url, tmp_path, str(collection), "--manifest", str(manifest))
    assert code == 2 and "cats" in output, output
    assert (_count(store, import_jobs), _count(store, hashes)) == (0, 0)
    assert _audit(store) == []


def test_a_cli_import_is_audited_at_its_start_and_finish_and_stored_as_a_contribution(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "few"
    for i in range(2):
        write_image(root / f"{i}.png", seed=i)
    admin = store.members.create("admin", Role.ADMIN)[0]
    code, output = _cli(
        db_url, tmp_path, str(root), "--label", "manifesto", "--workers", "1", "--json"
    )
    assert code == 0, output
    [job] = store.imports.recent()
    entries = _audit(store)
    assert [(a, t) for a, t, _ in entries] == [
        ("import.start", f"import:{job.id}"),
        ("import.finish", f"import:{job.id}"),
    ]
    start, finish = entries[0][2], entries[1][2]
    assert (start["labels"], start["files"], start["source"]) == (["manifesto"], 2, str(root))
    assert (finish["done"], finish["failed"], finish["duplicates"]) == (2, 0, 0)
    assert finish["hashes_added"] == _count(store, hashes)
    # The contribution path: every row has its creation in the history and the change log.
    stored = store.hashes.get_many(range(1, 1000))
    assert {(r.status, r.labels, r.contributor_id) for r in stored.values()} == {
        (Status.ACTIVE, ("manifesto",), admin.id)
    }
    with store.engine.connect() as conn:
        from hashdb.store.schema import changes, hash_transitions

        created = conn.execute(
            select(func.count())
            .select_from(hash_transitions)
            .where(hash_transitions.c.from_status.is_(None))
        ).scalar_one()
        logged = conn.execute(select(func.count(func.distinct(changes.c.hash_id)))).scalar_one()
    assert created == logged == _count(store, hashes)
