"""The service's own upkeep, done by `hashdb worker` and never on a read path.

    expire          retire every matchable hash past its expiry, audited
                    `hash.expire` with the ids, in one transaction with their
                    change-log entries (`vetting.expire_due`). Until it runs, an
                    expired hash already never matches (the matcher checks the
                    expiry of every hit) and the feed already shows it as a
                    `delete`: retiring only makes that permanent and puts a change
                    in the log, so followers that read its add earlier drop it.
    load_index      build (or restore) this process's own indexes, as a serving
                    process does at start
    refresh_index   replay the change log into them; how many entries it applied
    save_snapshot   write them to HASHDB_SNAPSHOT_DIR with the cursor they reflect
                    (`Matcher.save_snapshot`), so serving processes start from it;
                    False when no directory is set

No actor: these are the service's acts, as the expiry always was. How often each
runs is the worker's business (HASHDB_WORKER_* settings, `hashdb.worker`).
The transparency report needs no upkeep: it is computed when read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashdb.consortium.vetting import expire_due

if TYPE_CHECKING:
    from hashdb.consortium.core import Context


class Upkeep:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def expire(self) -> list[int]:
        """Retire every matchable hash past its expiry now; their ids."""
        return expire_due(self._ctx.store.engine)

    def load_index(self) -> None:
        self._ctx.matcher.load()

    def refresh_index(self) -> int:
        """Replay the change log into this process's indexes; entries applied."""
        return self._ctx.matcher.refresh()

    @property
    def index_cursor(self) -> int:
        return self._ctx.matcher.cursor

    @property
    def index_from_snapshot(self) -> bool:
        """Whether this process's indexes were mapped from a snapshot (not built from
        the database)."""
        return self._ctx.matcher.snapshot_cursor is not None

    @property
    def snapshots(self) -> bool:
        """Whether snapshots are kept (HASHDB_SNAPSHOT_DIR is set)."""
        return self._ctx.settings.snapshot_dir is not None

    def save_snapshot(self) -> bool:
        """Write this process's indexes as snapshots; False without a directory."""
        if not self.snapshots:
            return False
        self._ctx.matcher.save_snapshot()
        return True
