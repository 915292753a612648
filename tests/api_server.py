"""A real `hashdb serve` process for end-to-end tests, bound to 127.0.0.1.

The server runs the very command users run (gunicorn with several workers), on a
free port, with settings passed as `HASHDB_*` variables; its output goes to a log
file that is printed if it fails to become ready. `stop()` sends SIGTERM, as a
process manager would, and waits for gunicorn to shut its workers down.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SERVE = "from hashdb.cli.serve import serve; serve()"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    database_url: str,
    log_dir: Path,
    *,
    workers: int = 2,
    threads: int = 2,
    timeout: float = 60.0,
    **settings: object,
) -> Server:
    """Start `hashdb serve` and wait until /readyz says the indexes are loaded."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHDB_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["HASHDB_DATABASE_URL"] = database_url
    env["HASHDB_LOG_LEVEL"] = "warning"
    env.update({f"HASHDB_{k.upper()}": str(v) for k, v in settings.items()})
    log = log_dir / f"server-{port}.log"
    command = [sys.executable, "-c", SERVE, "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--threads", str(threads)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()}")
        try:
            # Every worker must be ready: ask several times in a row.
            ready = ready + 1 if requests.get(f"{server.url}/readyz", timeout=10).ok else 0
        except requests.ConnectionError:
            ready = 0
        if ready >= 4 * workers:
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.output()}")


def member_key(database_url: str, name: str) -> str:
    """A new member's API key in the database at `database_url` (already migrated)."""
    from hashdb.store import Role, Store

    store = Store.open(database_url)
    try:
        return store.members.create(name, Role.MEMBER)[1].secret
    finally:
        store.close()
