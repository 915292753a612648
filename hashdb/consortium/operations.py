"""What an operator watches of a running process, read cheaply enough for every scrape.

`/metrics` (api/metrics.py) reads these on each scrape, so each is bounded work that
never grows with the number of hashes:

- `index_bytes`: array memory of each in-memory index, by signal type (arrays of a
  memory-mapped snapshot included: shared between the processes of a machine);
  held in memory, no database work.
- `snapshot_age`: seconds since the snapshot the indexes were loaded from (or last
  swapped to) was saved, per signal type, from its manifest's modification time
  (one `stat` each); empty when the indexes were built from the database or no
  snapshot directory is set.
- `import_jobs`: unfinished import jobs by state (every `JobStatus` but `done`,
  zeros included), one grouped count over the jobs table's status index;
  StorageUnavailable when the database does not answer.

They take no actor: like readiness, they describe the process, not anyone's data.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hashdb.errors import StorageUnavailable
from hashdb.index.snapshot import snapshot_stamp
from hashdb.store import JobStatus
from hashdb.store.schema import import_jobs

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

UNFINISHED = tuple(state for state in JobStatus if state is not JobStatus.DONE)


class Operations:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def index_bytes(self) -> dict[str, int]:
        """Bytes of array memory per in-memory index, by signal type."""
        return self._ctx.matcher.nbytes()

    def snapshot_age(self) -> dict[str, float]:
        """Seconds since each signal type's loaded snapshot was saved; empty if the
        indexes were not loaded from a snapshot."""
        root = self._ctx.settings.snapshot_dir
        if root is None or self._ctx.matcher.snapshot_cursor is None:
            return {}
        names = sorted(self._ctx.matcher.sizes())  # the signal types indexed here
        stamp = snapshot_stamp(root, names)
        if stamp is None:
            return {}  # being replaced right now: the next scrape sees the new one
        now = time.time()
        return {
            name: max(0.0, now - mtime_ns / 1e9)
            for name, (_, mtime_ns) in zip(names, stamp, strict=True)
        }

    def import_jobs(self) -> dict[str, int]:
        """Unfinished import jobs by state (every state but `done`, zeros included)."""
        counted = {state.value: 0 for state in UNFINISHED}
        query = (
            select(import_jobs.c.status, func.count())
            .where(import_jobs.c.status.in_(list(counted)))
            .group_by(import_jobs.c.status)
        )
        try:
            with self._ctx.store.engine.connect() as conn:
                for state, count in conn.execute(query):
                    counted[str(state)] = int(count)
        except (DBAPIError, PoolTimeout) as exc:
            raise StorageUnavailable(f"cannot count import jobs: {exc}") from None
        return counted
