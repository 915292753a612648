"""The export feed: the change log as additions, updates and deletions, with a cursor.

A member that matches locally follows this feed instead of downloading the list
again and again. `Feed.page(actor, since, limit)` (`consortium.feed`) reads up to
`limit` change-log entries after sequence number `since` and returns one entry per
changed hash (its latest change in the page), carrying the hash's *current* state:

- `add` / `update`: the hash is exported now (status `active` or `disputed`, not
  past its expiry), with its type, hex value, quality, labels, status and expiry;
  `add` when the change was the hash's creation.
- `delete` (a tombstone): the hash is not exported now (pending, retired, rejected
  or expired), or, on a page filtered by label, no longer carries any of the
  labels asked for (its `status` then says it is still live centrally). It gives
  the id, `signal_type`, `status` and, for a hash that was ever exported, its
  `value`, so a follower removes by id or by value (a contribution that was never
  vetted, pending or rejected, keeps its value to itself: null). Two contributors
  may hold one value (two ids): a follower keyed by value removes the value when
  the last id holding it is deleted.

The page contract (`FeedPage`), the same for every format:

- `cursor`: the `seq` of the last change-log entry the page *read*, which may be
  past the last entry it returned (several changes of one hash give one entry;
  a filter skips entries). Resume with `since=<cursor>`. Never compute the cursor
  from the entries.
- `more`: whether the change log holds entries after `cursor`. A follower keeps
  reading while `more` is true; a page may be empty and still say `more: true`
  (everything it read was filtered out), so an empty page is not the end.
- `epoch`: the id of this database's history (a UUID, `feed_epoch`). A cursor is
  the pair `(epoch, seq)`: sequence numbers are reused after a restore from a
  backup or a promoted standby, which gets a new epoch (`Feed.new_epoch`). A
  follower stores the epoch with its cursor and, when a page's epoch differs from
  the stored one, forgets what it holds and replays the feed from 0.
- `head`: the newest `seq` of the change log when the page was read. A follower
  whose cursor is past `head` holds a history this database no longer has: it
  resyncs from 0 too.

Filters: `signal_types` (entries of other types are skipped) and `labels` (a hash
carrying none of them is a `delete`; a label without a value also selects that
label with any value). A filtered page reads and advances exactly as an unfiltered
one: the cursor passes over what the filter skipped.

Videos: a `vpdq` entry's value is the SHA-256 of its frame list; a live one also
carries `frames` (vPDQ's text form, `frame_number,quality,pdq_hex,timestamp`
lines, `hashdb.signals.vpdq.format_frames`), `duration` (seconds) and `fps`, so a
follower can store the video and match re-encodes of it. Every other entry has
them null.

A live video's entry also carries `keyframes`: the keypoint sets of frames a few
seconds apart (hashdb/matching/keyframes.py), each `{"at": seconds, "keypoints":
base64}` (at most MAX_KEYFRAMES), which the follower stores with the video so that
copies with large logos or in other frame sizes match there too; an empty list for a
video stored without them (a frame list sent as vPDQ text), null for every other
entry.

Keypoint sets: a `keypoints` entry's value is the SHA-256 of its set's wire form and
its quality the set's keypoint count (hashdb/signals/keypoints.py); a live one also
carries `keypoints`, the set as base64 text (`KeypointSet.to_text`, at most
`MAX_KEYPOINTS_CHARS` characters), so a follower stores the set beside its row and
matches crops of the picture as central does. A follower refuses a live keypoints
entry whose set is missing, malformed or does not hash to its value, or whose
quality is not the set's keypoint count. Every other entry has `keypoints` null.

Because each entry is the current state, replaying is idempotent and order-safe: a
member that replays the feed from 0, applying add/update as upsert-by-id and
delete as remove-by-id, ends with exactly the exported list (`replay`). Pending
hashes are left out on purpose: a local copy should hold vetted hashes only;
disputed ones stay in (they still match centrally) and say so in `status`.

Every member may read the feed, whatever its role: what it shows is what every
member may match against. Reading writes nothing: a hash past its expiry is shown
as a `delete` whether or not `hashdb worker` has retired it yet (`exported`), so a
follower gets the same answer either way; retiring it (`consortium.upkeep.expire`)
appends its change, which carries the tombstone to followers that read its add.

Images: a contributed image's stored variants (the PDQ of its content region and
crop windows, `hash_variants`, hashdb/variants.py) are part of the image, not
hashes of their own: they have no entry of their own, and a live entry of an image
that has them carries them as `variants` (`[{"kind", "value", "quality"}]`), so a
follower that does not hold the picture matches a cropped or letterboxed re-upload
as central does. The set only grows while the image lives (a new kind arrives as an
`update`); every other entry has `variants` null. (A contributor that later
contributes a variant's value as a hash of its own drops that variant centrally;
the follower keeps it, and holds the value as that hash too, so both match alike.)

Formats (`FeedFormat`):

- `json`: one object, `{"entries": [...], "cursor", "more", "epoch", "head"}`.
- `jsonl`: one JSON object per line with the fields of `FeedEntry`; the page's
  cursor, more, epoch and head travel in the `X-Hashdb-Cursor`, `X-Hashdb-More`,
  `X-Hashdb-Epoch` and `X-Hashdb-Head` response headers (sent with every format).
- `csv`: the fields of `CSV_COLUMNS` with a header row; labels joined by `;`; a
  video's frames, an image's variants and a keypoint set are not in it (a video
  row and a keypoints row show their digest as `value`, which identifies them but
  matches nothing on its own: follow `json` or `jsonl` to copy videos, variants
  and keypoint sets).
- `threatexchange`: the exported PDQ hashes as a signal file for
  python-threatexchange's `local_file` exchange (threatexchange 1.2,
  `threatexchange/exchanges/impl/file_api.py`, `LocalFileSignalExchangeAPI`): one
  signal per line, `<signal type> <hash>` separated by a space, where the type is
  threatexchange's `SignalType.get_name()` (`pdq`). That exchange reads the whole
  file on every fetch, so this format is a snapshot (render it from `replay` of the
  feed from 0), not a delta; it carries no labels. Our other signal types have no
  threatexchange counterpart (threatexchange's `video_md5` is a video-only
  digest; it has no keypoint signal type), so they are left out of this format.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, func, insert, select
from sqlalchemy.engine import Connection

from hashdb.consortium import audit, labels
from hashdb.consortium.actor import Actor, require_admin
from hashdb.errors import InvalidInput
from hashdb.keypoints.codec import MAX_KEYPOINTS, MAX_TEXT_CHARS, KeypointSet
from hashdb.signals import SIGNAL_TYPES, get_signal_type
from hashdb.signals.keypoints import KEYPOINTS, parse_set
from hashdb.signals.vpdq import VPDQ, Frame, format_frames, parse_frames
from hashdb.store import (
    MAX_KEYFRAMES,
    ChangeOp,
    HashRecord,
    HashStore,
    Keyframe,
    Status,
    VideoInfo,
    VideoStore,
)
from hashdb.store.clock import now
from hashdb.store.hashes import NewVariant, StoredVariant
from hashdb.store.schema import changes, feed_epoch, hash_transitions

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

EXPORTED: frozenset[Status] = frozenset({Status.ACTIVE, Status.DISPUTED})
MAX_LIMIT = 10_000
MAX_FILTER_LABELS = 50
# Bounds on what a follower accepts of an entry's stored variants (an image stores
# its content region and 74 crop windows: hashdb/variants.py).
MAX_VARIANTS = 256
MAX_KIND_CHARS = 32  # hash_variants.kind
# The longest base64 text of a keypoint set a follower reads (hashdb/keypoints/codec.py).
MAX_KEYPOINTS_CHARS = MAX_TEXT_CHARS
# The highest quality an entry may carry: PDQ's score (a video's frames' too) is
# 0-100; a keypoints row's is its keypoint count.
MAX_QUALITY = 100
# python-threatexchange's name for each of our signal types that it knows.
THREATEXCHANGE_TYPES = {"pdq": "pdq"}


class FeedOp(enum.StrEnum):
    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"


class FeedFormat(enum.StrEnum):
    JSONL = "jsonl"
    JSON = "json"
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
    value: str | None = None  # hex; null on the tombstone of a never-exported hash
    quality: int | None = None
    labels: tuple[str, ...] = ()
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    frames: str | None = None  # a live video's frame list, vPDQ text
    duration: float | None = None  # a live video's, seconds
    fps: float | None = None  # a live video's
    variants: tuple[FeedVariant, ...] | None = None  # a live image's stored variants
    keypoints: str | None = None  # a live keypoints entry's set, base64 of its wire form
    keyframes: tuple[FeedKeyframe, ...] | None = None  # a live video's

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["op"], out["status"], out["labels"] = (
            self.op.value,
            self.status.value,
            list(self.labels),
        )
        out["variants"] = None if self.variants is None else [asdict(v) for v in self.variants]
        out["keyframes"] = None if self.keyframes is None else [asdict(k) for k in self.keyframes]
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
                quality=_quality(data.get("quality"), _max_quality(str(data["signal_type"]))),
                labels=tuple(str(x) for x in data.get("labels") or ()),
                updated_at=_stamp(data.get("updated_at")),
                expires_at=_stamp(data.get("expires_at")),
                frames=None if data.get("frames") is None else str(data["frames"]),
                duration=None if data.get("duration") is None else float(data["duration"]),
                fps=None if data.get("fps") is None else float(data["fps"]),
                variants=_variants(data.get("variants")),
                keypoints=_text(data.get("keypoints"), "keypoints"),
                keyframes=_keyframes(data.get("keyframes")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"malformed feed entry: {exc}", field="feed") from None

    def variant_values(self) -> list[NewVariant]:
        """A live image's stored variants with their values as bytes (InvalidInput if
        one is malformed); empty if it has none."""
        signal = SIGNAL_TYPES.get(self.signal_type)
        if signal is None or not self.variants:
            return []
        if len(self.variants) > MAX_VARIANTS or any(
            not 0 < len(v.kind) <= MAX_KIND_CHARS for v in self.variants
        ):
            raise InvalidInput(
                f"feed entry {self.id}: at most {MAX_VARIANTS} variants, kinds of "
                f"1-{MAX_KIND_CHARS} characters",
                field="variants",
            )
        return [
            NewVariant(v.kind, signal.parse(v.value, "variants"), v.quality) for v in self.variants
        ]

    def video_frames(self) -> list[Frame] | None:
        """A live video entry's frames (InvalidInput if malformed); None if it has none."""
        if self.frames is None:
            return None
        return parse_frames(self.frames, "frames")

    def video_keyframes(self) -> list[Keyframe]:
        """A live video entry's keyframes in wire form (InvalidInput naming
        `keyframes` if there are too many or one is malformed)."""
        given = self.keyframes or ()
        if len(given) > MAX_KEYFRAMES:
            raise InvalidInput(
                f"feed entry {self.id}: at most {MAX_KEYFRAMES} keyframes, got {len(given)}",
                field="keyframes",
            )
        out = []
        for k in given:
            if len(k.keypoints) > MAX_KEYPOINTS_CHARS or not 0 <= k.at < 1e7:
                raise InvalidInput(
                    f"feed entry {self.id}: a keyframe is a time in seconds and a keypoint "
                    f"set of at most {MAX_KEYPOINTS_CHARS} characters of base64",
                    field="keyframes",
                )
            out.append(Keyframe(k.at, parse_set(k.keypoints, "keyframes").to_bytes()))
        return out

    def keypoint_set(self) -> KeypointSet | None:
        """A live keypoints entry's set (InvalidInput naming `keypoints` if it is
        malformed or longer than a set can be); None if it carries none."""
        if self.keypoints is None:
            return None
        if len(self.keypoints) > MAX_KEYPOINTS_CHARS:
            raise InvalidInput(
                f"feed entry {self.id}: a keypoint set is at most {MAX_KEYPOINTS_CHARS} "
                f"characters of base64, got {len(self.keypoints)}",
                field="keypoints",
            )
        return parse_set(self.keypoints, "keypoints")


@dataclass(frozen=True)
class FeedVariant:
    """One stored variant of an image (its content region, a crop window: see
    hashdb/variants.py) as the feed carries it: kind, hex value, quality."""

    kind: str
    value: str
    quality: int | None = None


@dataclass(frozen=True)
class FeedKeyframe:
    """One keyframe of a video as the feed carries it: its time in seconds and its
    keypoint set as base64 text."""

    at: float
    keypoints: str


def _keyframes(data: object) -> tuple[FeedKeyframe, ...] | None:
    if data is None:
        return None
    if not isinstance(data, list):
        raise TypeError("keyframes must be a list")
    out = []
    for k in data:
        text = _text(k["keypoints"], "a keyframe's keypoints")
        if text is None:
            raise TypeError("a keyframe's keypoints must be text")
        out.append(FeedKeyframe(float(k["at"]), text))
    return tuple(out)


def _variants(data: object) -> tuple[FeedVariant, ...] | None:
    if data is None:
        return None
    if not isinstance(data, list):
        raise TypeError("variants must be a list")
    return tuple(
        FeedVariant(str(v["kind"]), str(v["value"]), _quality(v.get("quality"))) for v in data
    )


def _max_quality(signal_type: str) -> int:
    return MAX_KEYPOINTS if signal_type == KEYPOINTS.name else MAX_QUALITY


def _quality(value: object, highest: int = MAX_QUALITY) -> int | None:
    """A quality as a feed carries it: null or 0-`highest` (ValueError otherwise)."""
    if value is None:
        return None
    quality = int(str(value))
    if not 0 <= quality <= highest:
        raise ValueError(f"quality {quality} is not 0-{highest}")
    return quality


def _text(value: object, name: str) -> str | None:
    """A text field as a feed carries it: null or a string (TypeError otherwise)."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} must be text")


def _stamp(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class FeedPage:
    """A page of the feed and where it leaves the reader (see the module docstring)."""

    entries: list[FeedEntry]
    cursor: int  # the seq of the last change-log entry read: resume with since=cursor
    more: bool  # the change log holds entries after the cursor: read on
    epoch: str = ""  # the database's history the cursor belongs to
    head: int = 0  # the change log's newest seq when the page was read

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": [e.to_json() for e in self.entries],
            "cursor": self.cursor,
            "more": self.more,
            "epoch": self.epoch,
            "head": self.head,
        }

    @classmethod
    def from_json(cls, data: object) -> FeedPage:
        """Parse a `format=json` page; InvalidInput if malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise InvalidInput("malformed feed page: no entries", field="feed")
        if not all(isinstance(e, dict) for e in data["entries"]):
            raise InvalidInput("malformed feed page: an entry is not an object", field="feed")
        entries = [FeedEntry.from_json(e) for e in data["entries"]]
        try:
            more = data["more"]
            if not isinstance(more, bool):
                raise TypeError("more must be true or false")
            return cls(entries, int(data["cursor"]), more, str(data["epoch"]), int(data["head"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"malformed feed page: {exc}", field="feed") from None


@dataclass(frozen=True)
class FeedFilter:
    """Which entries a page returns: every one by default."""

    signal_types: frozenset[str] = frozenset()
    labels: tuple[str, ...] = ()

    def skips(self, signal_type: str) -> bool:
        return bool(self.signal_types) and signal_type not in self.signal_types

    def selects(self, record_labels: Sequence[str]) -> bool:
        if not self.labels:
            return True
        return any(
            have == want or (":" not in want and have.startswith(want + ":"))
            for want in self.labels
            for have in record_labels
        )


NO_FILTER = FeedFilter()


def exported(record: HashRecord, at: datetime) -> bool:
    return record.status in EXPORTED and not record.expired(at)


# What a live video's entry carries besides its row: frames (vPDQ text), duration,
# fps and keyframes.
VideoShape = tuple[str, float, float, tuple[FeedKeyframe, ...]]


def video_shape(v: VideoInfo) -> VideoShape:
    keyframes = tuple(
        FeedKeyframe(k.timestamp, KeypointSet.from_bytes(k.data).to_text()) for k in v.keyframes
    )
    return format_frames(v.frames), v.duration, v.fps, keyframes


def entry(
    seq: int,
    change_op: ChangeOp,
    record: HashRecord,
    at: datetime,
    *,
    selected: bool = True,
    video: VideoShape | None = None,
    variants: Sequence[StoredVariant] = (),
    keypoints: str | None = None,
    was_exported: bool = True,
) -> FeedEntry:
    """The entry for `record`'s latest change `seq`: a tombstone unless it is exported
    (and `selected` by the page's label filter); `video` is (frames, duration, fps,
    keyframes), `variants` the image's stored variants, `keypoints` a keypoints row's set (text).
    A tombstone carries the value only if the hash was ever exported (`was_exported`):
    a pending or rejected contribution's value is not every member's to read."""
    value = SIGNAL_TYPES[record.signal_type].format(record.value)
    live = exported(record, at)
    if not (selected and live):
        shown = value if live or was_exported else None
        return FeedEntry(
            seq, FeedOp.DELETE, record.id, record.signal_type, record.status, value=shown
        )
    frames, duration, fps, keyframes = video if video is not None else (None, None, None, None)
    return FeedEntry(
        seq=seq,
        op=FeedOp.ADD if change_op is ChangeOp.ADD else FeedOp.UPDATE,
        id=record.id,
        signal_type=record.signal_type,
        status=record.status,
        value=value,
        quality=record.quality,
        labels=record.labels,
        updated_at=record.updated_at,
        expires_at=record.expires_at,
        frames=frames,
        duration=duration,
        fps=fps,
        variants=tuple(
            FeedVariant(v.kind, SIGNAL_TYPES[record.signal_type].format(v.value), v.quality)
            for v in variants
        )
        or None,
        keypoints=keypoints,
        keyframes=keyframes,
    )


def epoch_in(conn: Connection) -> str:
    """The database's feed epoch (made here if the table is empty, as a schema
    created without migration 0008's row would be)."""
    found = conn.execute(select(feed_epoch.c.epoch).limit(1)).scalar_one_or_none()
    if found is not None:
        return str(found)
    conn.execute(insert(feed_epoch).values(epoch=str(uuid.uuid4()), created_at=now()))
    return str(conn.execute(select(feed_epoch.c.epoch).limit(1)).scalar_one())


def _head(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(changes.c.seq), 0))).scalar_one())


def _ever_exported(engine: Engine, hash_ids: Sequence[int]) -> set[int]:
    """Which of `hash_ids` were ever in an exported status (their history says so)."""
    if not hash_ids:
        return set()
    with engine.connect() as conn:
        return {
            int(i)
            for i in conn.execute(
                select(hash_transitions.c.hash_id)
                .where(
                    hash_transitions.c.hash_id.in_(sorted(hash_ids)),
                    hash_transitions.c.to_status.in_(sorted(s.value for s in EXPORTED)),
                )
                .distinct()
            ).scalars()
        }


def _page(
    engine: Engine,
    videos: VideoStore,
    since: int,
    limit: int,
    where: FeedFilter = NO_FILTER,
) -> FeedPage:
    """The page of the feed after cursor `since` (see the module docstring)."""
    if since < 0:
        raise InvalidInput("since must be >= 0", field="since")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIMIT}", field="limit")
    with engine.begin() as conn:
        epoch = epoch_in(conn)
        head = _head(conn)
        rows = conn.execute(
            select(changes.c.seq, changes.c.hash_id, changes.c.op)
            .where(changes.c.seq > since)
            .order_by(changes.c.seq)
            .limit(limit + 1)  # one more than returned: is there more?
        ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    if not rows:
        return FeedPage([], since, False, epoch, head)
    latest: dict[int, tuple[int, ChangeOp]] = {}
    for seq, hash_id, op in rows:
        first_op = latest[hash_id][1] if hash_id in latest else ChangeOp(op)
        latest[hash_id] = (int(seq), first_op if first_op is ChangeOp.ADD else ChangeOp(op))
    records = {
        i: r
        for i, r in HashStore(engine).get_many(latest).items()
        if not where.skips(r.signal_type)
    }
    at = now()
    live_videos = [i for i, r in records.items() if r.signal_type == VPDQ.name and exported(r, at)]
    ever = _ever_exported(engine, [i for i, r in records.items() if not exported(r, at)])
    shapes = {i: video_shape(v) for i, v in videos.info(live_videos, with_keyframes=True).items()}
    live_images = [i for i, r in records.items() if r.signal_type != VPDQ.name and exported(r, at)]
    stored = HashStore(engine).variants(live_images)
    live_sets = [
        i for i, r in records.items() if r.signal_type == KEYPOINTS.name and exported(r, at)
    ]
    sets = {
        i: KeypointSet.from_bytes(wire).to_text()
        for i, wire in HashStore(engine).keypoint_sets(live_sets).items()
    }
    entries = sorted(
        (
            entry(
                seq,
                op,
                records[h],
                at,
                selected=where.selects(records[h].labels),
                video=shapes.get(h),
                variants=stored.get(h, ()),
                keypoints=sets.get(h),
                was_exported=h in ever,
            )
            for h, (seq, op) in latest.items()
            if h in records
        ),
        key=lambda e: e.seq,
    )
    return FeedPage(entries, int(rows[-1][0]), more, epoch, max(head, int(rows[-1][0])))


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
    """Entries in a line format (a `json` page is `FeedPage.to_json`)."""
    if fmt is FeedFormat.JSONL:
        return render_jsonl(entries)
    if fmt is FeedFormat.CSV:
        return render_csv(entries)
    if fmt is FeedFormat.THREATEXCHANGE:
        return render_threatexchange(entries)
    raise InvalidInput("a json page is rendered whole: FeedPage.to_json", field="format")


def parse_value(e: FeedEntry) -> bytes:
    """The raw bytes of an entry's hex value (InvalidInput if malformed)."""
    return get_signal_type(e.signal_type, "signal_type").parse(e.value, "value")


class Feed:
    """The export feed, read by any member; its epoch, renewed by an admin."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def filter(
        self, signal_types: Sequence[str] = (), label_names: Sequence[str] = ()
    ) -> FeedFilter:
        """A page filter, checked: InvalidInput naming `signal_type` for an unknown
        type, `label` for a label the taxonomy does not know (deprecated ones are
        allowed: stored hashes name them)."""
        for name in signal_types:
            get_signal_type(name, "signal_type")
        if len(label_names) > MAX_FILTER_LABELS:
            raise InvalidInput(f"at most {MAX_FILTER_LABELS} labels", field="label")
        if label_names:
            with self._ctx.store.engine.begin() as conn:  # the taxonomy may seed itself
                known = labels.taxonomy_in(conn)
            unknown = [t for t in label_names if labels.split(t).name not in known]
            if unknown:
                raise InvalidInput(
                    f"unknown label(s): {', '.join(unknown)}", field="label", unknown=unknown
                )
        return FeedFilter(frozenset(signal_types), tuple(label_names))

    def page(
        self, actor: Actor, since: int, limit: int = 1000, where: FeedFilter = NO_FILTER
    ) -> FeedPage:
        """The page of the feed after cursor `since` (see the module docstring)."""
        store = self._ctx.store
        return _page(store.engine, store.videos, since, limit, where)

    def epoch(self, actor: Actor) -> str:
        """The id of this database's history that feed cursors belong to."""
        with self._ctx.store.engine.begin() as conn:
            return epoch_in(conn)

    def new_epoch(self, actor: Actor, reason: str) -> str:
        """Start a new feed epoch (admins), after a restore from a backup or the
        promotion of a standby: every follower then resyncs from zero. Audited
        (`feed.epoch`)."""
        require_admin(actor, "start a new feed epoch")
        fresh = str(uuid.uuid4())
        with self._ctx.store.engine.begin() as conn:
            old = epoch_in(conn)
            conn.execute(delete(feed_epoch))
            conn.execute(insert(feed_epoch).values(epoch=fresh, created_at=now()))
            audit.append(
                conn, actor, "feed.epoch", "feed", {"from": old, "to": fresh, "reason": reason}
            )
        return fresh

    def snapshot(self, actor: Actor, page: int = MAX_LIMIT) -> list[FeedEntry]:
        """The exported list now: the feed replayed from 0, ordered by id."""
        store = self._ctx.store
        held: dict[int, FeedEntry] = {}
        cursor = 0
        while True:
            got = _page(store.engine, store.videos, cursor, page)
            replay(got.entries, held)
            if not got.more:
                return [held[i] for i in sorted(held)]
            cursor = got.cursor
