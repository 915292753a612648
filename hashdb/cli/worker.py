"""`hashdb worker`: the background role (`hashdb.worker`).

Runs queued imports (hashing in HASHDB_IMPORT_WORKERS local processes or on the
Dask cluster at HASHDB_DASK_SCHEDULER, `ingest.jobs`), retires expired hashes and
keeps index snapshots in HASHDB_SNAPSHOT_DIR, each on its HASHDB_WORKER_* interval,
until SIGTERM or SIGINT; then it releases the job in hand and exits 0. `--once`
runs every queued job, one expiry and one snapshot check, and exits.

Output: the log (stderr, HASHDB_LOG_FORMAT) has a line per job start and end;
stdout has one line per event (a streaming command: with `--json` a JSON object a
line, with `--quiet` nothing; `hashdb.cli.common`). A database that is not
migrated (or not initialised) exits 2 with the message naming the command to run:
the operator's to fix, not an outage; other database failures exit 3.
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType

import click

from hashdb.cli.common import OUTPUT, Output
from hashdb.errors import StorageUnavailable

NOT_MIGRATED = frozenset({"empty", "behind"})


@click.command("worker")
@click.option("--once", is_flag=True, help="Run what is due now (every queued job), then exit.")
@OUTPUT
def worker(once: bool, out: Output) -> None:
    """Run queued imports, expiry and index snapshots until stopped (SIGTERM/SIGINT)."""
    from api.wsgi import configure_logging
    from hashdb.cli.common import open_db
    from hashdb.settings import load_settings
    from hashdb.worker import Event, Worker
    from ingest.jobs import run_claimed

    configure_logging(load_settings())
    try:
        db = open_db()
    except StorageUnavailable as exc:
        if exc.details.get("schema") in NOT_MIGRATED:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(2)
        raise

    def show(event: Event) -> None:
        if out.as_json:
            click.echo(json.dumps(event.to_json()))
        elif event.job is not None:
            out.say(f"{event.kind} import {event.job}: {event.outcome or 'started'}")
        else:
            out.say(f"{event.kind}: {event.count}")

    role = Worker(db, run_claimed, show)

    def stop(signum: int, _: FrameType | None) -> None:
        role.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if once:
            role.once()
        else:
            role.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        db.close()
