"""The roles compose.yaml deploys work together, started exactly as it starts them.

compose.yaml is the one description of the deployment: each role's command and
environment. This test reads them from it and runs the same roles as local processes
on a scratch PostgreSQL database: `migrate` runs once and exits 0, then two `api`
replicas (`hashdb serve`) and a `worker` (`hashdb worker`) start. Only what belongs
to a machine is replaced: the database URL (the scratch database), the bind address
(a free port on 127.0.0.1), the data directory (one per process, as each container
has its own), and the snapshot and import directories (shared by api and worker, as
compose.yaml's volumes share them). There is no proxy: the replicas are asked
directly.

What it proves: both replicas become ready on a schema only `migrate` wrote; a
contribution through one replica is matched through the other; an import enqueued
over HTTP is run to the end by the worker, and what it stored is matched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml  # type: ignore[import-untyped]
from api_server import free_port
from media_factory import write_image

from hashdb.store import Role, Store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"

# The settings a machine decides; every other HASHDB_* value is compose.yaml's.
DATABASE_URL = "HASHDB_DATABASE_URL"
BIND = "HASHDB_BIND"
DATA_DIR = "HASHDB_DATA_DIR"
SNAPSHOT_DIR = "HASHDB_SNAPSHOT_DIR"
IMPORT_ROOT = "HASHDB_IMPORT_ROOT"

READY_SECONDS = 90.0
IMPORT_SECONDS = 60.0


@dataclass(frozen=True)
class ComposeRole:
    name: str
    command: list[str]
    environment: dict[str, str]


def compose_role(name: str) -> ComposeRole:
    service = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"][name]
    raw = service.get("environment") or {}
    if isinstance(raw, list):  # the `- KEY=value` form
        raw = dict(item.split("=", 1) for item in raw)
    environment = {str(k): "" if v is None else str(v) for k, v in raw.items()}
    return ComposeRole(name, [str(part) for part in service["command"]], environment)


@dataclass
class Process:
    role: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


class Deployment:
    """The compose roles as local processes, stopped together by `stop()`."""

    def __init__(self, database_url: str, base: Path) -> None:
        self.database_url = database_url
        self.base = base
        self.snapshots = base / "snapshots"
        self.imports = base / "imports"
        self.processes: list[Process] = []
        for folder in (self.snapshots, self.imports):
            folder.mkdir()

    def environment(self, role: ComposeRole, instance: str, port: int | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HASHDB_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(role.environment)
        data = self.base / f"data-{instance}"
        data.mkdir()
        local = {DATABASE_URL: self.database_url, DATA_DIR: str(data)}
        if SNAPSHOT_DIR in role.environment:
            local[SNAPSHOT_DIR] = str(self.snapshots)
        if IMPORT_ROOT in role.environment:
            local[IMPORT_ROOT] = str(self.imports)
        if port is not None:
            local[BIND] = f"127.0.0.1:{port}"
        env.update(local)
        return env

    def command(self, role: ComposeRole) -> list[str]:
        # The image's ENTRYPOINT is `hashdb`: the same program as `python -m hashdb.cli`.
        return [sys.executable, "-m", "hashdb.cli", *role.command]

    def run_once(self, role: ComposeRole) -> subprocess.CompletedProcess[str]:
        env = self.environment(role, role.name, None)
        return subprocess.run(
            self.command(role), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    def start(self, role: ComposeRole, instance: str, port: int | None = None) -> Process:
        env = self.environment(role, instance, port)
        log = self.base / f"{instance}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                self.command(role), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        process = Process(instance, popen, log)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.role} ---\n{p.output()}" for p in self.processes)


@pytest.fixture
def deployment(new_database: Callable[[str], str], tmp_path: Path) -> Iterator[Deployment]:
    """The roles against an empty PostgreSQL database (no schema: `migrate` makes it)."""
    deployed = Deployment(new_database("postgresql"), tmp_path)
    try:
        yield deployed
    finally:
        deployed.stop()


def wait_ready(deployed: Deployment, url: str, process: Process) -> None:
    deadline = time.monotonic() + READY_SECONDS
    in_a_row = 0
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            pytest.fail(
                f"{process.role} exited with {process.popen.returncode}:\n{deployed.logs()}"
            )
        try:
            # Each of the replica's workers must answer ready: ask several times in a row.
            in_a_row = in_a_row + 1 if requests.get(f"{url}/readyz", timeout=10).ok else 0
        except (requests.ConnectionError, requests.Timeout):  # still starting
            in_a_row = 0
        if in_a_row >= 8:
            return
        time.sleep(0.1)
    pytest.fail(f"{url} not ready after {READY_SECONDS}s:\n{deployed.logs()}")


def new_key(database_url: str, name: str, role: Role) -> str:
    store = Store.open(database_url)
    try:
        return store.members.create(name, role)[1].secret
    finally:
        store.close()


def pdq_matches(url: str, key: str, value: str) -> list[dict[str, Any]]:
    response = requests.post(
        f"{url}/v1/match",
        json={"queries": [{"signal_type": "pdq", "value": value}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    matches: list[dict[str, Any]] = response.json()["results"][0]["matches"]
    return matches


def test_the_compose_roles_run_together_as_compose_starts_them(deployment: Deployment) -> None:
    migrate = deployment.run_once(compose_role("migrate"))
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    api, worker = compose_role("api"), compose_role("worker")
    ports = [free_port(), free_port()]
    replicas = [deployment.start(api, f"api-{n}", port) for n, port in enumerate(ports)]
    worker_process = deployment.start(worker, "worker")
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for url, process in zip(urls, replicas, strict=True):
        wait_ready(deployment, url, process)
    assert worker_process.popen.poll() is None, deployment.logs()

    admin = new_key(deployment.database_url, "deploy-admin", Role.ADMIN)
    ops = new_key(deployment.database_url, "deploy-ops", Role.OPS)
    auth = {"Authorization": f"Bearer {admin}"}

    # A contribution through one replica is matched through the other.
    value = os.urandom(32).hex()
    added = requests.post(
        f"{urls[0]}/v1/hashes",
        json={"hashes": [{"signal_type": "pdq", "value": value}]},
        headers=auth,
        timeout=30,
    )
    assert added.status_code == 201, added.text
    hash_id = added.json()["hashes"][0]["id"]
    assert [m["id"] for m in pdq_matches(urls[1], admin, value)] == [hash_id]

    # An import enqueued over HTTP is run by the worker, and what it stored matches.
    write_image(deployment.imports / "batch" / "a.png", seed=11)
    write_image(deployment.imports / "batch" / "b.png", seed=12)
    started = requests.post(
        f"{urls[1]}/v1/imports",
        json={"path": "batch", "labels": ["manifesto"]},
        headers={"Authorization": f"Bearer {ops}"},
        timeout=30,
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    deadline = time.monotonic() + IMPORT_SECONDS
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = requests.get(f"{urls[0]}/v1/imports/{job_id}", headers=auth, timeout=30).json()
        if job["status"] == "done":
            break
        time.sleep(0.25)
    assert job.get("status") == "done", f"{job}\n{deployment.logs()}"
    assert (job["total"], job["done"], job["failed"]) == (2, 2, 0)

    picture = (deployment.imports / "batch" / "b.png").read_bytes()
    found = requests.post(
        f"{urls[0]}/v1/match/media",
        files={"file": ("b.png", picture)},
        headers=auth,
        timeout=60,
    )
    assert found.status_code == 200, found.text
    pdq = next(r for r in found.json()["results"] if r["signal_type"] == "pdq")
    assert [m["labels"] for m in pdq["matches"]] == [["manifesto"]]

    # SIGTERM, as docker and systemd stop a role: each exits cleanly, none is killed.
    deployment.stop()
    stopped = {p.role: p.popen.returncode for p in deployment.processes}
    assert stopped == {"api-0": 0, "api-1": 0, "worker": 0}, deployment.logs()
