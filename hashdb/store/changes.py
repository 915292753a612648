"""Reading the change log: what changed after a given sequence number.

Writers append in `hashes.py` (under `lock_change_log`), so readers see sequence
numbers in commit order and a cursor never skips a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from hashdb.store.clock import utc
from hashdb.store.hashes import ChangeOp
from hashdb.store.schema import changes, feed_epoch


@dataclass(frozen=True)
class Change:
    seq: int
    hash_id: int
    op: ChangeOp
    at: datetime


class ChangeLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def head(self) -> int:
        """The newest sequence number (0 for an empty log)."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar_one())

    def epoch(self) -> str:
        """The feed epoch, the id of this database's history ("" before it has one)."""
        with self._engine.connect() as conn:
            return str(conn.execute(select(func.min(feed_epoch.c.epoch))).scalar_one() or "")

    def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(changes).where(changes.c.seq > seq).order_by(changes.c.seq).limit(limit)
            ).mappings()
            return [Change(r["seq"], r["hash_id"], ChangeOp(r["op"]), utc(r["at"])) for r in rows]
