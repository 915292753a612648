"""`hashdb serve`: the HTTP API under gunicorn, through gunicorn's own Python API.

The master process checks that the database's schema is exactly this code's
(`hashdb.consortium.schema.require_current`: behind or ahead is exit 2 naming the
command to run; serving never migrates, `hashdb migrate` does) and makes sure an
admin exists (printing its key the first time, so `make run` ends with a URL and a
key), then forks the workers; each worker builds its own app (`api.create_app`)
after the fork, so no database connection, thread or index is shared between processes. Before
forking, the master imports what the workers run and loads the numba kernels
(`api.loader.preload`), so those pages are shared copy-on-write. Workers and
threads come from settings unless given here. The worker is `api.serving`'s:
gunicorn's threaded worker (which keeps client connections alive), except that a
request is read whole in the worker's event loop, within HASHDB_HEADER_TIMEOUT and
HASHDB_BODY_TIMEOUT, before a thread serves it, so slow clients cannot hold the
threads.

Start-up output: the database, the API's URL and, the first time, the admin key;
with --json one JSON object {"database", "api", "docs", "admin_key"} (admin_key
null when an admin existed), with --quiet nothing (the key is then not shown:
`hashdb members add NAME --role admin` makes another).

Metrics: prometheus_client keeps each worker's values in files under
`PROMETHEUS_MULTIPROC_DIR` so `/metrics` can add up all workers. That variable
must be set before prometheus_client is first imported, so it is set here, before
any worker starts: a fresh temporary directory removed at exit, or the directory
given in the environment, whose stale `*.db` files are wiped first.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from hashdb.cli.common import OUTPUT, Output
from hashdb.consortium import schema
from hashdb.settings import Settings, load_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _metrics_dir() -> Path | None:
    """Prepare the multiprocess metrics directory; returns it if we created it."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    if "prometheus_client" in sys.modules:
        logging.getLogger(__name__).warning(
            "prometheus_client imported before `serve` set %s: /metrics shows one worker",
            MULTIPROC_ENV,
        )
        return None
    created = Path(tempfile.mkdtemp(prefix="hashdb-metrics-"))
    os.environ[MULTIPROC_ENV] = str(created)
    return created


def _first_admin(settings: Settings) -> str | None:
    """In the master, once: a new admin key if none existed."""
    from hashdb.consortium import Consortium

    db = Consortium.open(settings)
    try:
        new_key = db.members.ensure_first_admin()
    finally:
        db.close()
    return new_key.secret if new_key else None


# Each worker touches a heartbeat file on every turn of its loop, so once per
# request; on a disk that is a syscall on every request's path, on tmpfs next to
# nothing (gunicorn's own advice; see docs/measurements.md, "Serving"). gunicorn
# creates the file with mkstemp, so a shared directory is safe.
HEARTBEAT_DIR = Path("/dev/shm")  # noqa: S108


def run_gunicorn(settings: Settings) -> None:
    """Serve until gunicorn's master is told to stop (Ctrl-C, SIGTERM)."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
    from gunicorn.glogging import Logger  # type: ignore[import-untyped]

    from api import logs
    from api.loader import preload
    from api.serving import Limits, worker_class
    from api.wsgi import configure_logging

    limits = Limits.of(settings)

    class _Logger(Logger):  # type: ignore[misc]
        """gunicorn's loggers, written in HASHDB_LOG_FORMAT like the app's (api.logs)."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in (*self.error_log.handlers, *self.access_log.handlers):
                handler.setFormatter(logs.formatter(settings.log_format))

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    def worker_exit(server: Any, worker: Any) -> None:
        # A worker stopping gracefully writes its pending match counts and closes
        # its database (api.context.ApiContext.close).
        from api.context import EXTENSION

        app = getattr(worker, "wsgi", None)
        extensions = getattr(app, "extensions", {})
        if EXTENSION in extensions:
            extensions[EXTENSION].close()

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": settings.bind,
                "workers": settings.workers,
                "threads": settings.threads,
                "worker_class": worker_class(limits),
                "loglevel": settings.log_level,
                "logger_class": _Logger,
                "preload_app": False,
                "child_exit": child_exit,
                "worker_exit": worker_exit,
                "proc_name": "hashdb",
                "control_socket_disable": True,  # two servers on one host would share it
                **({"worker_tmp_dir": str(HEARTBEAT_DIR)} if HEARTBEAT_DIR.is_dir() else {}),
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from api.app import create_app
            from api.context import context
            from api.loader import settle_heap

            configure_logging(settings)
            app = create_app(settings)
            context(app).media.warm()  # a serving worker's first upload finds a child ready
            context(app).loader.when_warm(settle_heap)  # api.loader's module docstring
            return app

    # Imports and numba kernels paid once, in the master, and shared copy-on-write
    # by every worker (api.loader.preload opens no connection and leaves no thread).
    preload()
    _Server().run()


@click.command()
@click.option("--bind", help="host:port to listen on (default HASHDB_BIND, 127.0.0.1:5000).")
@click.option("--workers", type=int, help="Worker processes (default HASHDB_WORKERS).")
@click.option("--threads", type=int, help="Threads per worker (default HASHDB_THREADS).")
@OUTPUT
def serve(bind: str | None, workers: int | None, threads: int | None, out: Output) -> None:
    """Run the HTTP API under gunicorn (Ctrl-C to stop)."""
    overrides = {"bind": bind, "workers": workers, "threads": threads}
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    schema.require_current(settings)  # before any worker: serving never migrates
    created = _metrics_dir()
    try:
        secret = _first_admin(settings)
        database = make_url(settings.resolved_database_url()).render_as_string(hide_password=True)
        api, docs = f"http://{settings.bind}/v1", f"http://{settings.bind}/docs"
        lines = [f"hashdb serving {database}", f"  API:  {api}   docs: {docs}"]
        if secret:
            lines.append(f"  first admin key (shown once, keep it safe): {secret}")
        out.result({"database": database, "api": api, "docs": docs, "admin_key": secret}, lines)
        sys.stdout.flush()
        run_gunicorn(settings)
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
