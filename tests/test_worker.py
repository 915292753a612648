"""`hashdb worker`, the background role: API workers only enqueue imports, a worker
claims and runs them under a renewed lease, and reads never write (expiry and index
snapshots are the worker's chores).

Every test that touches the store runs on SQLite and PostgreSQL (`db_url`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from media_factory import write_image
from sqlalchemy import create_engine, func, inspect, select, update
from worker_fixtures import run_queued

from api.context import context
from hashdb.cli import main
from hashdb.consortium import Actor, Claim, Consortium, JobStatus, NewHash, now
from hashdb.settings import Settings
from hashdb.signals import PDQ, SHA256
from hashdb.store import Role, Status, Store
from hashdb.store.schema import audit_log, changes, hashes, import_jobs
from hashdb.worker import Worker
from ingest.bulk import plan_files
from ingest.jobs import Ran, run_claimed
from ingest.pool import PoolContext

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
PDQ_HEX = "f" * 16 + "0" * 48


def _count(store: Store, table: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _head(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar_one())


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url, data_dir=tmp_path / "data", sync_interval=0.0, import_workers=1
    )


Open = Callable[..., Consortium]


@pytest.fixture
def consortium(settings: Settings, store: Store) -> Iterator[Open]:
    """Consortiums over the test store, as separate worker processes have (each with
    its own holder id); the jobs they still hold are released at the end."""
    made: list[Consortium] = []

    def make(**overrides: Any) -> Consortium:
        made.append(Consortium(settings.model_copy(update=overrides), store))
        return made[-1]

    yield make
    for db in made:
        db.imports.close()


@pytest.fixture
def ops(store: Store) -> Actor:
    return Actor(store.members.create("Ops team", Role.OPS)[0])


def _collection(root: Path, n: int, size: int = 256) -> Path:
    for i in range(n):
        write_image(root / f"{i:02}.png", seed=i, size=size)
    return root


def _enqueue(db: Consortium, actor: Actor, folder: Path) -> int:
    return db.imports.enqueue(actor, str(folder), (), plan_files(folder, (), None)).id


# ---- enqueue over HTTP, run by a worker ------------------------------------------------


@pytest.mark.slow
def test_post_imports_only_queues_and_a_worker_runs_the_job(
    make_api: MakeApi, tmp_path: Path
) -> None:
    _collection(tmp_path / "root" / "batch", 3)
    api: Api = make_api(import_root=tmp_path / "root", import_workers=1)
    started = api.post("/v1/imports", {"path": "batch", "labels": ["manifesto"]}, "ops")
    assert started.status_code == 202, started.json
    job = started.json
    assert job is not None
    assert (job["status"], job["running_here"], job["total"]) == ("queued", False, 3)
    time.sleep(1.0)  # nothing runs it in the API worker, however long we wait
    shown = api.get(f"/v1/imports/{job['id']}", "ops").json
    assert shown is not None and (shown["status"], shown["pending"]) == ("queued", 3)
    assert _count(api.store, hashes) == 0

    assert run_queued(context(api.app).settings) == 1
    done = api.get(f"/v1/imports/{job['id']}", "ops").json
    assert done is not None
    assert (done["status"], done["done"], done["running_here"]) == ("done", 3, False)
    assert _count(api.store, hashes) > 0


def test_starting_a_queued_source_again_resumes_the_same_job(
    settings: Settings, store: Store, ops: Actor, tmp_path: Path, consortium: Open
) -> None:
    folder = _collection(tmp_path / "batch", 1)
    db = consortium()
    first = _enqueue(db, ops, folder)
    write_image(folder / "late.png", seed=50)
    again = db.imports.enqueue(ops, str(folder), (), plan_files(folder, (), None))
    assert (again.id, again.status, again.counts.total) == (first, JobStatus.QUEUED, 2)


def test_a_source_a_worker_holds_is_a_conflict(
    settings: Settings, store: Store, ops: Actor, tmp_path: Path, consortium: Open
) -> None:
    folder = _collection(tmp_path / "batch", 1)
    db = consortium()
    job_id = _enqueue(db, ops, folder)
    claim = consortium().imports.claim()
    assert claim is not None and claim.job.id == job_id
    from hashdb.errors import Conflict

    with pytest.raises(Conflict, match=f"import {job_id}"):
        _enqueue(db, ops, folder)


# ---- claiming ----------------------------------------------------------------------------


def test_two_workers_racing_never_claim_one_job(
    settings: Settings, store: Store, ops: Actor, tmp_path: Path, consortium: Open
) -> None:
    db = consortium()
    jobs = {_enqueue(db, ops, _collection(tmp_path / f"batch-{n}", 1)) for n in range(4)}
    workers = [consortium() for _ in range(2)]
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def claim_all(i: int) -> None:
        start.wait()
        while (claim := workers[i].imports.claim()) is not None:
            claimed[i].append(claim.job.id)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    every = claimed[0] + claimed[1]
    assert sorted(every) == sorted(jobs)  # each job claimed exactly once
    for i, worker in enumerate(workers):
        for job_id in claimed[i]:
            job = store.imports.get(job_id)
            assert job.status is JobStatus.RUNNING
            assert job.claimed_by == worker.imports.holder
            assert job.lease_until is not None and job.lease_until > now()
    assert workers[0].imports.holder != workers[1].imports.holder
    for worker in workers:
        worker.imports.close()


def test_a_lapsed_lease_is_claimable_again_and_a_live_one_is_not(
    settings: Settings, store: Store, ops: Actor, tmp_path: Path, consortium: Open
) -> None:
    db = consortium()
    job_id = _enqueue(db, ops, _collection(tmp_path / "batch", 1))
    first = consortium().imports.claim()
    assert first is not None
    second = consortium()
    assert second.imports.claim() is None
    with store.engine.begin() as conn:
        conn.execute(
            update(import_jobs)
            .where(import_jobs.c.id == job_id)
            .values(lease_until=now() - timedelta(seconds=1))
        )
    taken = second.imports.claim()
    assert taken is not None and taken.job.id == job_id
    assert store.imports.get(job_id).claimed_by == second.imports.holder


# ---- the heartbeat -----------------------------------------------------------------------


class SlowPool:
    """A pool whose every file takes `seconds` longer: one slow file, no progress."""

    def __init__(self, seconds: float) -> None:
        self.workers = 1
        self._seconds = seconds
        self._threads = ThreadPoolExecutor(1)

    def _slow(self, fn: Callable[..., Any], *args: Any) -> Any:
        time.sleep(self._seconds)
        return fn(*args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._threads.submit(self._slow, fn, *args)

    def completed(self, futures: Iterable[Future[Any]]) -> Iterator[Future[Any]]:
        return as_completed(list(futures))

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
def test_the_heartbeat_renews_the_lease_while_one_slow_file_hashes(
    settings: Settings, store: Store, ops: Actor, tmp_path: Path, consortium: Open
) -> None:
    lease = 1.0
    db = consortium(import_lease_seconds=lease)
    job_id = _enqueue(db, ops, _collection(tmp_path / "batch", 1))

    def run_slowly(db: Consortium, claim: Claim, stopping: Callable[[], bool]) -> Ran:
        return run_claimed(db, claim, stopping, pools=lambda: PoolContext(SlowPool(4 * lease)))

    worker = threading.Thread(target=Worker(db, run_slowly).drain)
    worker.start()
    leases: list[datetime] = []
    while worker.is_alive():
        job = store.imports.get(job_id)
        if job.status is JobStatus.RUNNING and job.counts.done == 0:
            assert job.lease_until is not None and job.lease_until > now()  # never lapsed
            leases.append(job.lease_until)
        time.sleep(lease / 10)
    worker.join()
    assert len(set(leases)) >= 3  # renewed again and again while no file finished
    assert store.imports.get(job_id).status is JobStatus.DONE


# ---- a worker killed mid-job ------------------------------------------------------------


def _worker_env(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `hashdb worker` subprocess: this test's database, one
    hashing process, a quick poll; no HASHDB_* setting of the caller's leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHDB_")}
    return env | {
        "HASHDB_DATABASE_URL": db_url,
        "HASHDB_DATA_DIR": str(tmp_path / "data"),
        "HASHDB_IMPORT_WORKERS": "1",
        "HASHDB_WORKER_POLL_SECONDS": "0.1",
        **extra,
    }


def _done(store: Store, job_id: int) -> int:
    return store.imports.get(job_id).counts.done


@pytest.mark.slow
def test_a_killed_worker_leaves_a_lapsed_lease_and_another_resumes_without_storing_twice(
    settings: Settings, store: Store, ops: Actor, db_url: str, tmp_path: Path, consortium: Open
) -> None:
    db = consortium()
    job_id = _enqueue(db, ops, _collection(tmp_path / "big", 12, size=500))
    env = _worker_env(db_url, tmp_path, HASHDB_IMPORT_LEASE_SECONDS="2")
    first = subprocess.Popen(
        [sys.executable, "-m", "hashdb.cli", "worker", "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while _done(store, job_id) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    killed = store.imports.get(job_id)
    assert killed.status is JobStatus.RUNNING and killed.counts.pending > 0
    assert killed.claimed_by is not None and f":{first.pid}:" in killed.claimed_by

    time.sleep(2.5)  # the lease lapses: nobody renews it
    assert not store.imports.get(job_id).leased(now())
    assert run_queued(settings) == 1
    finished = store.imports.get(job_id)
    assert finished.status is JobStatus.DONE
    assert (finished.counts.done, finished.counts.failed) == (12, 0)
    stored = store.hashes.find_exact(
        SHA256.name, [f.sha256 or b"" for f in store.imports.files(job_id)]
    )
    assert sum(len(v) for v in stored.values()) == 12  # each file stored exactly once


@pytest.mark.slow
def test_sigterm_releases_the_job_in_hand_and_exits_0(
    settings: Settings, store: Store, ops: Actor, db_url: str, tmp_path: Path, consortium: Open
) -> None:
    db = consortium()
    job_id = _enqueue(db, ops, _collection(tmp_path / "big", 12, size=500))
    env = _worker_env(db_url, tmp_path)
    worker = subprocess.Popen(
        [sys.executable, "-m", "hashdb.cli", "worker", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while _done(store, job_id) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert '"event": "job.start"' in out and '"outcome": "released"' in out
    left = store.imports.get(job_id)
    assert (left.status, left.claimed_by, left.lease_until) == (JobStatus.QUEUED, None, None)
    assert left.counts.pending > 0


# ---- reads never write; expiry is the worker's -----------------------------------------


def _expire_now(store: Store, hash_id: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(hashes)
            .where(hashes.c.id == hash_id)
            .values(expires_at=now() - timedelta(minutes=1))
        )


def _export(api: Api) -> dict[int, dict[str, Any]]:
    page = api.get("/v1/export?since=0&format=json").json
    assert page is not None
    return {e["id"]: e for e in page["entries"]}


def test_reading_the_feed_writes_nothing_and_shows_an_expired_hash_deleted(
    api: Api,
) -> None:
    [kept, expired] = api.add(
        {"signal_type": "pdq", "value": PDQ_HEX, "labels": ["manifesto"]},
        {"signal_type": "md5", "value": "a" * 32, "labels": ["manifesto"]},
        role="admin",
    )
    _expire_now(api.store, expired)
    before = (_count(api.store, audit_log), _head(api.store))

    entries = _export(api)
    assert entries[kept]["op"] == "add"
    assert (entries[expired]["op"], entries[expired]["value"]) == ("delete", "a" * 32)
    assert api.get("/v1/export?since=0&format=jsonl").status_code == 200
    assert api.get("/v1/export?format=threatexchange").status_code == 200
    assert (_count(api.store, audit_log), _head(api.store)) == before  # nothing written
    assert api.store.hashes.get(expired).status is Status.ACTIVE  # not retired by a read

    db = context(api.app).db
    assert Worker(db, run_claimed).expire() == [expired]
    assert api.store.hashes.get(expired).status is Status.RETIRED
    assert _head(api.store) == before[1] + 1  # its change: followers get the tombstone
    with api.store.engine.connect() as conn:
        action, details = conn.execute(
            select(audit_log.c.action, audit_log.c.details).order_by(audit_log.c.seq.desc())
        ).first() or ("", {})
    assert (action, details) == ("hash.expire", {"ids": [expired]})
    assert (_export(api)[expired]["op"], _export(api)[expired]["status"]) == ("delete", "retired")


def test_an_expired_hash_never_matches_before_the_worker_retires_it(api: Api) -> None:
    db = context(api.app).db
    admin = Actor(db.members.operator())
    soon = now() + timedelta(seconds=2)
    db.contributions.add(
        admin, [NewHash(PDQ.name, bytes.fromhex(PDQ_HEX), quality=100, expires_at=soon)]
    )
    assert api.match({"signal_type": "pdq", "value": PDQ_HEX})[0]["matches"]
    time.sleep(2.5)
    assert api.match({"signal_type": "pdq", "value": PDQ_HEX})[0]["matches"] == []


# ---- index snapshots -------------------------------------------------------------------


def _stamps(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


def test_the_worker_saves_a_snapshot_after_n_changes(
    settings: Settings, store: Store, tmp_path: Path, consortium: Open
) -> None:
    snapshots = tmp_path / "snapshots"
    tuned_values: dict[str, Any] = {
        "snapshot_dir": snapshots,
        "worker_snapshot_changes": 3,
        "worker_snapshot_seconds": 3600.0,
    }
    db = consortium(**tuned_values)
    admin = Actor(store.members.create("Admin", Role.ADMIN)[0])
    worker = Worker(db, run_claimed)
    db.upkeep.load_index()  # as the worker's upkeep thread starts: built, and saved
    first = _stamps(snapshots)
    assert first

    def add(n: int) -> None:
        value = bytes([n]) * 32
        db.contributions.add(admin, [NewHash(PDQ.name, value, quality=100, labels=("manifesto",))])

    add(1)
    add(2)
    assert worker.keep_index() is False and _stamps(snapshots) == first
    time.sleep(0.01)
    add(3)
    assert worker.keep_index() is True
    assert _stamps(snapshots) != first  # written again (whatever the files' format)
    assert db.upkeep.index_cursor == _head(store)
    assert worker.keep_index() is False  # nothing changed since


# ---- the command ------------------------------------------------------------------------


def test_the_worker_exits_2_on_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    create_engine(url).dispose()
    env = {"HASHDB_DATABASE_URL": url, "HASHDB_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["worker", "--once"], env=env)
    assert result.exit_code == 2, result.output
    assert "hashdb init" in result.output


def test_worker_once_runs_the_queue_and_prints_json(
    settings: Settings, store: Store, ops: Actor, db_url: str, tmp_path: Path, consortium: Open
) -> None:
    db = consortium()
    job_id = _enqueue(db, ops, _collection(tmp_path / "batch", 1))
    env = {"HASHDB_DATABASE_URL": db_url, "HASHDB_DATA_DIR": str(tmp_path / "data")}
    env["HASHDB_IMPORT_WORKERS"] = "1"
    result = CliRunner().invoke(main, ["worker", "--once", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert f'"job": {job_id}, "outcome": "done"' in result.output
    assert store.imports.get(job_id).status is JobStatus.DONE


def test_a_job_whose_source_is_not_here_is_left_for_another_worker(
    settings: Settings, store: Store, ops: Actor, tmp_path: Path, consortium: Open
) -> None:
    folder = _collection(tmp_path / "elsewhere", 1)
    db = consortium()
    job_id = _enqueue(db, ops, folder)
    (folder / "00.png").unlink()
    folder.rmdir()
    worker = Worker(consortium(), run_claimed)
    assert worker.run_one() is True
    assert worker.run_one() is False  # not claimed again by this worker
    left = store.imports.get(job_id)
    assert (left.status, left.claimed_by) == (JobStatus.QUEUED, None)


# ---- the migration ----------------------------------------------------------------------


def test_migration_0010_adds_the_lease_columns_and_downgrades_queued_jobs(
    store: Store, ops: Actor, settings: Settings, tmp_path: Path, consortium: Open
) -> None:
    from alembic import command
    from alembic.config import Config

    from hashdb.store.engine import MIGRATIONS

    job_id = _enqueue(consortium(), ops, _collection(tmp_path / "batch", 1))

    def to(revision: str, up: bool) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            (command.upgrade if up else command.downgrade)(config, revision)

    def columns() -> set[str]:
        return {c["name"] for c in inspect(store.engine).get_columns("import_jobs")}

    to("0009", up=False)
    assert not {"claimed_by", "lease_until"} & columns()
    with store.engine.connect() as conn:
        status = conn.execute(select(import_jobs.c.status).where(import_jobs.c.id == job_id))
        assert status.scalar_one() == "running"  # an interrupted import, resumable
    to("head", up=True)
    assert {"claimed_by", "lease_until"} <= columns()
    claim = consortium().imports.claim()  # null lease: lapsed
    assert claim is not None and claim.job.id == job_id


def test_a_worker_that_finds_no_snapshot_saves_one_at_start_for_serving_processes(
    settings: Settings, store: Store, tmp_path: Path, consortium: Open
) -> None:
    """Where a worker runs, serving processes never save (HASHDB_SNAPSHOT_AFTER_BUILD
    off); the worker must not wait for a change before the first snapshot exists."""
    snapshots = tmp_path / "snapshots"
    db = consortium(
        snapshot_dir=snapshots,
        snapshot_after_build=False,
        worker_snapshot_changes=1000,
        worker_snapshot_seconds=3600.0,
        worker_poll_seconds=0.05,
    )
    worker = Worker(db, run_claimed)
    running = threading.Thread(target=worker.run)
    running.start()
    try:
        deadline = time.monotonic() + 30
        while not list(snapshots.rglob("manifest.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        running.join(30)
    assert list(snapshots.rglob("manifest.json")), "no snapshot saved at start"
