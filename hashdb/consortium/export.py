"""The export feed: the change log as additions, updates and deletions, with a cursor.

A member that matches locally follows this feed instead of downloading the list
again and again. `Feed.page(actor, since, limit)` (`consortium.feed`) reads up to
`limit` change-log entries after sequence number `since` and returns one entry per
changed hash (its latest change in the page), carrying the hash's *current* state:

- `add` / `update`: the hash is exported now (status `active` or `disputed`, not
  past its expiry), with its type, hex value, quality, labels, status and expiry;
  `add` when the change was the hash's creation.
- `delete` (a tombstone): the hash is not exported now (pending, retired, rejected
  or expired); only its id, type and status are given.

Entries are ordered by `seq`; the last entry's `seq` is the cursor to resume from
(`since=<cursor>`), and an empty page means the follower is up to date. Because
each entry is the current state, replaying is idempotent and order-safe: a member
that replays the feed from 0, applying add/update as upsert-by-id and delete as
remove-by-id, ends with exactly the exported list (`replay`). Pending hashes are
left out on purpose: a local copy should hold vetted hashes only; disputed ones
stay in (they still match centrally) and say so in `status`.

Every member may read the feed, whatever its role: what it shows is what every
member may match against. Hashes past their expiry are retired before a page or a
snapshot is read, so that followers get their tombstones.

A contributed image's stored variants (the PDQ of its content region and crop
windows, `hash_variants`) are part of the image, not hashes of their own, and are
never exported. A follower that wants to match re-uploads as we do computes its
own.

Formats (`FeedFormat`):

- `jsonl`: one JSON object per line with the fields of `FeedEntry`.
- `csv`: the same fields with a header row; labels joined by `;`.
- `threatexchange`: the exported PDQ hashes as a signal file for
  python-threatexchange's `local_file` exchange (threatexchange 1.2,
  `threatexchange/exchanges/impl/file_api.py`, `LocalFileSignalExchangeAPI`): one
  signal per line, `<signal type> <hash>` separated by a space, where the type is
  threatexchange's `SignalType.get_name()` (`pdq`). That exchange reads the whole
  file on every fetch, so this format is a snapshot (render it from `replay` of the
  feed from 0), not a delta. Load it with:

      threatexchange config collab edit local_file --create \\
          --json '{"name": "hashdb", "filename": "/path/to/hashdb.te"}'
      threatexchange fetch
      threatexchange match photo upload.jpg

  Our other signal types have no threatexchange counterpart (threatexchange's
  `video_md5` is a video-only digest), so they are left out of this format.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select

from hashdb.consortium.actor import Actor
from hashdb.errors import InvalidInput
from hashdb.signals import SIGNAL_TYPES, get_signal_type
from hashdb.store import ChangeOp, HashRecord, HashStore, Status
from hashdb.store.clock import now
from hashdb.store.schema import changes

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

EXPORTED: frozenset[Status] = frozenset({Status.ACTIVE, Status.DISPUTED})
MAX_LIMIT = 10_000
# python-threatexchange's name for each of our signal types that it knows.
THREATEXCHANGE_TYPES = {"pdq": "pdq"}


class FeedOp(enum.StrEnum):
    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"


class FeedFormat(enum.StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    THREATEXCHANGE = "threatexchange"

    @classmethod
    def parse(cls, value: object, field: str = "format") -> FeedFormat:
        try:
            return cls(str(value))
        except ValueError:
            known = ", ".join(f.value for f in cls)
            raise InvalidInput(
                f"unknown format {value!r}; expected one of {known}", field=field
            ) from None


@dataclass(frozen=True)
class FeedEntry:
    seq: int
    op: FeedOp
    id: int
    signal_type: str
    status: Status
    value: str | None = None  # hex; None on a tombstone
    quality: int | None = None
    labels: tuple[str, ...] = ()
    updated_at: datetime | None = None
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["op"], out["status"], out["labels"] = (
            self.op.value,
            self.status.value,
            list(self.labels),
        )
        for name in ("updated_at", "expires_at"):
            stamp = getattr(self, name)
            out[name] = stamp.isoformat() if stamp else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedEntry:
        """Parse one entry (for example a line of a fetched feed); InvalidInput if bad."""
        try:
            return cls(
                seq=int(data["seq"]),
                op=FeedOp(data["op"]),
                id=int(data["id"]),
                signal_type=str(data["signal_type"]),
                status=Status(data["status"]),
                value=None if data.get("value") is None else str(data["value"]),
                quality=None if data.get("quality") is None else int(data["quality"]),
                labels=tuple(str(x) for x in data.get("labels") or ()),
                updated_at=_stamp(data.get("updated_at")),
                expires_at=_stamp(data.get("expires_at")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"malformed feed entry: {exc}", field="feed") from None


def _stamp(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class FeedPage:
    entries: list[FeedEntry]
    cursor: int  # resume with since=cursor
    more: bool  # the page was full: there may be more after the cursor


def exported(record: HashRecord, at: datetime) -> bool:
    return record.status in EXPORTED and not record.expired(at)


def entry(seq: int, change_op: ChangeOp, record: HashRecord, at: datetime) -> FeedEntry:
    if not exported(record, at):
        return FeedEntry(seq, FeedOp.DELETE, record.id, record.signal_type, record.status)
    return FeedEntry(
        seq=seq,
        op=FeedOp.ADD if change_op is ChangeOp.ADD else FeedOp.UPDATE,
        id=record.id,
        signal_type=record.signal_type,
        status=record.status,
        value=SIGNAL_TYPES[record.signal_type].format(record.value),
        quality=record.quality,
        labels=record.labels,
        updated_at=record.updated_at,
        expires_at=record.expires_at,
    )


def _page(engine: Engine, since: int, limit: int) -> FeedPage:
    """The page of the feed after cursor `since` (see the module docstring)."""
    if since < 0:
        raise InvalidInput("since must be >= 0", field="since")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIMIT}", field="limit")
    with engine.connect() as conn:
        rows = conn.execute(
            select(changes.c.seq, changes.c.hash_id, changes.c.op)
            .where(changes.c.seq > since)
            .order_by(changes.c.seq)
            .limit(limit)
        ).all()
    if not rows:
        return FeedPage([], since, False)
    latest: dict[int, tuple[int, ChangeOp]] = {}
    for seq, hash_id, op in rows:
        first_op = latest[hash_id][1] if hash_id in latest else ChangeOp(op)
        latest[hash_id] = (int(seq), first_op if first_op is ChangeOp.ADD else ChangeOp(op))
    records = HashStore(engine).get_many(latest)
    at = now()
    entries = sorted(
        (entry(seq, op, records[h], at) for h, (seq, op) in latest.items() if h in records),
        key=lambda e: e.seq,
    )
    return FeedPage(entries, int(rows[-1][0]), len(rows) == limit)


def replay(
    entries: Iterable[FeedEntry], state: dict[int, FeedEntry] | None = None
) -> dict[int, FeedEntry]:
    """Apply entries to `state` (id -> entry): what a follower holds afterwards."""
    held = {} if state is None else state
    for e in entries:
        if e.op is FeedOp.DELETE:
            held.pop(e.id, None)
        else:
            held[e.id] = e
    return held


def parse_jsonl(text: str) -> list[FeedEntry]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"feed line {n} is not JSON: {exc.msg}", field="feed") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"feed line {n} is not an object", field="feed")
        out.append(FeedEntry.from_json(data))
    return out


def render_jsonl(entries: Iterable[FeedEntry]) -> Iterator[str]:
    for e in entries:
        yield json.dumps(e.to_json(), separators=(",", ":"), sort_keys=True) + "\n"


CSV_COLUMNS = (
    "seq",
    "op",
    "id",
    "signal_type",
    "status",
    "value",
    "quality",
    "labels",
    "updated_at",
    "expires_at",
)


def render_csv(entries: Iterable[FeedEntry]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        row = e.to_json()
        row["labels"] = ";".join(e.labels)
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


def render_threatexchange(entries: Iterable[FeedEntry]) -> Iterator[str]:
    """The live PDQ hashes among `entries` (a replayed snapshot) as a signal file."""
    for e in entries:
        name = THREATEXCHANGE_TYPES.get(e.signal_type)
        if name and e.op is not FeedOp.DELETE and e.value:
            yield f"{name} {e.value}\n"


def render(entries: Iterable[FeedEntry], fmt: FeedFormat) -> Iterator[str]:
    if fmt is FeedFormat.JSONL:
        return render_jsonl(entries)
    if fmt is FeedFormat.CSV:
        return render_csv(entries)
    return render_threatexchange(entries)


def parse_value(e: FeedEntry) -> bytes:
    """The raw bytes of an entry's hex value (InvalidInput if malformed)."""
    return get_signal_type(e.signal_type, "signal_type").parse(e.value, "value")


class Feed:
    """The export feed, read by any member."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _expire(self) -> None:
        # Imported here: vetting reads EXPORTED from this module (through hashes).
        from hashdb.consortium.vetting import expire_due

        expire_due(self._ctx.store.engine)

    def page(self, actor: Actor, since: int, limit: int = 1000) -> FeedPage:
        """The page of the feed after cursor `since` (see the module docstring);
        hashes past their expiry are retired first."""
        self._expire()
        return _page(self._ctx.store.engine, since, limit)

    def snapshot(self, actor: Actor, page: int = MAX_LIMIT) -> list[FeedEntry]:
        """The exported list now: the feed replayed from 0, ordered by id."""
        self._expire()
        held: dict[int, FeedEntry] = {}
        cursor = 0
        while True:
            got = _page(self._ctx.store.engine, cursor, page)
            replay(got.entries, held)
            if not got.more:
                return [held[i] for i in sorted(held)]
            cursor = got.cursor
