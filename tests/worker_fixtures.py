"""Running `hashdb worker`'s job loop from a test: `run_queued(settings)` claims and
runs every queued import with a Consortium of its own (as a worker process has),
then returns how many jobs it ran."""

from __future__ import annotations

from hashdb.consortium import Consortium
from hashdb.settings import Settings
from hashdb.worker import Worker
from ingest.jobs import run_claimed


def run_queued(settings: Settings) -> int:
    db = Consortium.open(settings)
    try:
        return Worker(db, run_claimed).drain()
    finally:
        db.close()
