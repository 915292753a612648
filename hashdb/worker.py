"""The background role, `hashdb worker`: the one kind of process that does the
service's own work, so that API workers only answer (and enqueue) and reads never
write.

It runs two loops on their own threads until told to stop:

- jobs (the calling thread): claim the oldest claimable import job
  (`consortium.imports.claim`: queued, or running with a lapsed lease), run it
  through the `run_job` it was given (the CLI passes `ingest.jobs.run_claimed`:
  `hashdb` itself never imports `ingest`), and look again at once; with nothing
  to do, wait HASHDB_WORKER_POLL_SECONDS. One line is logged when a job starts and
  one when it ends. A job that cannot run here (its source is not on this
  machine) or that stopped on an error is released and not claimed again by this
  worker (`exclude`), so it cannot loop on it.
- upkeep (a thread): every HASHDB_WORKER_EXPIRY_SECONDS retire the hashes past
  their expiry (`consortium.upkeep.expire`, audited `hash.expire`); and, when
  HASHDB_SNAPSHOT_DIR is set, keep this worker's own indexes current (replaying
  the change log every poll) and save them as snapshots once
  HASHDB_WORKER_SNAPSHOT_CHANGES change-log entries have been applied since the
  last save, or HASHDB_WORKER_SNAPSHOT_SECONDS after the first unsaved one,
  whichever comes first. Nothing is saved while nothing changed, except at start
  when there was no snapshot to map: then one is saved at once, so serving
  processes (which never save where a worker runs) map it instead of building.

`stop()` (the CLI calls it on SIGTERM and SIGINT) ends both loops: the job in
hand is released at its next file boundary (files in flight are lost and hashed
again by whoever resumes it; nothing is stored twice) and the upkeep thread
finishes the chore it is in. `drain()` runs queued jobs until none is left and
returns; `once()` (`hashdb worker --once`) does that, one expiry and one snapshot.

Without any worker running, `POST /v1/imports` still answers 202 and the job
stays `queued` (`GET /v1/imports/<id>` says so) until one starts; hashes past
their expiry neither match nor are exported, but stay unretired; serving
processes build their indexes from the database when no snapshot is there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hashdb.consortium import Claim, Consortium, ImportJob

log = logging.getLogger(__name__)


class JobRun(Protocol):
    """What running one claimed job reports (`ingest.jobs.Ran`)."""

    @property
    def outcome(self) -> str: ...

    @property
    def job(self) -> ImportJob: ...


RunJob = Callable[[Consortium, Claim, Callable[[], bool]], JobRun]


@dataclass(frozen=True)
class Event:
    """One thing the worker did, for the CLI to print (`--json`: one object a line)."""

    kind: str  # job.start, job.end, job.error, expire, snapshot
    job: int | None = None
    outcome: str | None = None
    count: int = 0  # files (job), hashes retired (expire), cursor (snapshot)

    def to_json(self) -> dict[str, object]:
        return {"event": self.kind, "job": self.job, "outcome": self.outcome, "count": self.count}


class Worker:
    def __init__(
        self,
        db: Consortium,
        run_job: RunJob,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self._db = db
        self._run_job = run_job
        self._on_event = on_event or (lambda _: None)
        self._stop = threading.Event()
        self._excluded: set[int] = set()
        settings = db.settings
        self._poll = settings.worker_poll_seconds
        self._expiry_every = settings.worker_expiry_seconds
        self._snapshot_changes = settings.worker_snapshot_changes
        self._snapshot_every = settings.worker_snapshot_seconds
        self._unsaved = 0
        self._first_unsaved: float | None = None

    @property
    def holder(self) -> str:
        return self._db.imports.holder

    def stop(self) -> None:
        self._stop.set()

    def stopping(self) -> bool:
        return self._stop.is_set()

    # ---- the role ----------------------------------------------------------------------

    def run(self) -> None:
        """Claim and run jobs, and keep up the upkeep, until `stop()`."""
        upkeep = threading.Thread(target=self._upkeep_loop, name="worker-upkeep", daemon=True)
        upkeep.start()
        try:
            while not self._stop.is_set():
                if not self.run_one():
                    self._stop.wait(self._poll)
        finally:
            self._stop.set()
            upkeep.join()

    def drain(self) -> int:
        """Run claimable jobs until none is left (or `stop()`); how many ran."""
        ran = 0
        while not self._stop.is_set() and self.run_one():
            ran += 1
        return ran

    def once(self) -> None:
        """Everything due now, then return: every claimable job, one expiry, and (with
        HASHDB_SNAPSHOT_DIR) the indexes brought up to date and saved."""
        self.drain()
        self.expire()
        upkeep = self._db.upkeep
        if upkeep.snapshots:
            upkeep.load_index()
            upkeep.save_snapshot()
            self._on_event(Event("snapshot", count=upkeep.index_cursor))

    def run_one(self) -> bool:
        """Claim one job and run it; False when there was none to claim."""
        claim = self._db.imports.claim(exclude=sorted(self._excluded))
        if claim is None:
            return False
        job = claim.job
        log.info("import %d: started (%d files) by %s", job.id, job.counts.total, self.holder)
        self._on_event(Event("job.start", job.id, None, job.counts.total))
        try:
            ran = self._run_job(self._db, claim, self.stopping)
        except Exception:
            log.exception("import %d: stopped on an error; released", job.id)
            self._excluded.add(job.id)
            self._db.imports.release(job.id)
            self._on_event(Event("job.error", job.id, "error", job.counts.total))
            return True
        if ran.outcome == "unreachable":
            self._excluded.add(job.id)
        c = ran.job.counts
        log.info(
            "import %d: %s (%d done, %d duplicates, %d failed, %d pending)",
            job.id,
            ran.outcome,
            c.done,
            c.duplicates,
            c.failed,
            c.pending,
        )
        self._on_event(Event("job.end", job.id, str(ran.outcome), c.total))
        return True

    # ---- upkeep ------------------------------------------------------------------------

    def _upkeep_loop(self) -> None:
        upkeep = self._db.upkeep
        loaded = not upkeep.snapshots  # no indexes to keep without snapshots
        next_expiry = time.monotonic()
        while not self._stop.is_set():
            try:
                if not loaded:
                    upkeep.load_index()
                    loaded = True
                    if not upkeep.index_from_snapshot:  # none yet: serving processes
                        self._first_unsaved = time.monotonic() - self._snapshot_every
                if time.monotonic() >= next_expiry:
                    self.expire()
                    next_expiry = time.monotonic() + self._expiry_every
                if upkeep.snapshots:
                    self.keep_index()
            except Exception:  # the database is away: try again next time
                log.exception("upkeep failed; retrying")
            self._stop.wait(min(self._poll, self._expiry_every))

    def expire(self) -> list[int]:
        """Retire the hashes past their expiry now (logged when there were any)."""
        retired = self._db.upkeep.expire()
        if retired:
            log.info("expired %d hashes", len(retired))
            self._on_event(Event("expire", count=len(retired)))
        return retired

    def keep_index(self) -> bool:
        """Replay the change log into this worker's indexes and save snapshots when
        enough changes or time have passed (see the module docstring); True if saved."""
        upkeep = self._db.upkeep
        applied = upkeep.refresh_index()
        if applied:
            self._unsaved += applied
            if self._first_unsaved is None:
                self._first_unsaved = time.monotonic()
        if self._first_unsaved is None:
            return False
        waited = time.monotonic() - self._first_unsaved
        if self._unsaved < self._snapshot_changes and waited < self._snapshot_every:
            return False
        upkeep.save_snapshot()
        self._unsaved, self._first_unsaved = 0, None
        log.info("saved index snapshots at change %d", upkeep.index_cursor)
        self._on_event(Event("snapshot", count=upkeep.index_cursor))
        return True
