"""Keeping a local hashdb in step with a central one, through its export feed.

A small platform runs its own hashdb and matcher and follows the consortium's:
`pull` fetches pages of `GET <central>/v1/export?since=<cursor>&limit=<n>&format=json`
(with `Authorization: Bearer <key>`) and applies each page in one local
transaction that also stores the page's cursor and epoch, so an interrupted sync
resumes after the last page applied and never applies a page twice. It reads on
while the page says `more` (an empty page may still say `more`: the cursor is
the one the page hands back, never computed from its entries).

A cursor is `(epoch, seq)` (see hashdb/consortium/export.py). When the central's
epoch differs from the one stored with the cursor (its database was restored from
a backup, or a standby promoted), or its change log's head is below the cursor,
the local copy forgets every hash it holds from that central (`resync`: their
mappings are deleted and the local rows retired, in one transaction, audited
`sync.resync`) and replays the feed from 0.

Applying a page: each remote hash id is mapped to a local row (`synced_hashes`),
contributed by a local member standing for the central service (created on first
sync, with no key). An add/update stores or refreshes the row; a video's entry
carries its frames, stored with it as a contributed video is, so the local matcher
matches re-encodes of it; a keypoints entry carries its set, stored beside its row
as a contributed set is (`hashdb.consortium.keypoints.new_hash`), so the local
matcher finds crops of the picture; a delete marks the mapping dead. Frames and
sets are checked against the entry's value (their SHA-256): a page with one that
does not hash to it, or with a live keypoints entry without its set, is refused
whole (InvalidInput naming `frames` or `keypoints`) and nothing of it is stored. A
local row is `active` while at least one remote hash mapped to it is live, and
`retired` otherwise (two remote contributors of one value share one local row).
Status changes go through the local change log, so the local matcher drops a
retired hash at once and picks up new ones within its sync interval. A page is
applied as a batch (its mappings read in one query, its hashes stored by one
`add_in`, its videos one by one, its mappings written in bulk, statuses set with
one call per target status) that leaves what applying its entries one by one, in
order, would: the last entry for a remote id decides its mapping, the last for a
local row its labels.

Syncing is an admin's use case (`consortium.sync`: `pull`, `cursor`; the CLI acts
as the first admin, or `--as`): each page applied is audited (`sync.apply`: the
URL, the entries, the new cursor) in the page's transaction.

Pages come from a `FeedSource`: over HTTP, the member client (`hashdb.client.Client`,
which accepts only http(s) URLs, follows no redirect, so a key is never sent to a
server it was not meant for, and retries what may be retried).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.export import FeedEntry, FeedOp, FeedPage, parse_value
from hashdb.consortium.keypoints import new_hash as keypoints_hash
from hashdb.errors import InvalidInput
from hashdb.signals import SIGNAL_TYPES
from hashdb.signals.keypoints import KEYPOINTS
from hashdb.signals.vpdq import VPDQ, frames_digest
from hashdb.store import ChangeOp, NewHash, NewVideo, Role, Status, Store
from hashdb.store.clock import now
from hashdb.store.hashes import CHUNK, Added, lock_change_log, log_changes
from hashdb.store.schema import hashes, members, sync_sources, synced_hashes

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

DEFAULT_PAGE = 1000


class FeedSource(Protocol):
    """Where pages of the export feed come from: `hashdb.client.Client` over HTTP, or
    a central read in-process."""

    def export(self, since: int = 0, limit: int = DEFAULT_PAGE) -> FeedPage: ...


@dataclass(frozen=True)
class SyncResult:
    pages: int
    entries: int
    cursor: int
    live: int  # local rows made or kept active by this run
    retired: int  # local rows retired by this run
    skipped: int  # entries of signal types this hashdb does not know
    resyncs: int = 0  # times the copy was forgotten and replayed from 0 (epoch changed)


@dataclass(frozen=True)
class _Source:
    id: int
    member_id: int
    cursor: int
    epoch: str | None


def _source_in(conn: Connection, url: str) -> _Source:
    """The sync source for `url`, registering it the first time."""
    row = conn.execute(
        select(
            sync_sources.c.id, sync_sources.c.member_id, sync_sources.c.cursor, sync_sources.c.epoch
        ).where(sync_sources.c.url == url)
    ).one_or_none()
    if row is not None:
        return _Source(int(row[0]), int(row[1]), int(row[2]), row[3])
    at = now()
    # The central service as a local member: credited with synced hashes, no key.
    member_id = conn.execute(
        insert(members).values(
            name=f"sync {url}"[:200], role=Role.MEMBER.value, trusted=True, created_at=at
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    source_id = conn.execute(
        insert(sync_sources).values(url=url, member_id=member_id, cursor=0, updated_at=at)
    ).inserted_primary_key[0]  # type: ignore[index]
    return _Source(int(source_id), int(member_id), 0, None)


def _settle(conn: Connection, store: Store, url: str, touched: set[int]) -> tuple[int, int]:
    """Give each touched local row the status its mappings say (`_wanted`); (rows
    live, rows retired now). Statuses are read in one query and set in one call
    per target status."""
    wanted = _wanted(conn, touched)
    current = store.hashes.current_status_in(conn, sorted(wanted))
    moves: dict[Status, list[int]] = {}
    for hash_id, status in sorted(wanted.items()):
        if status is not current[hash_id]:
            moves.setdefault(status, []).append(hash_id)
    for status, ids in sorted(moves.items()):
        why = f"retired at {url}" if status is Status.RETIRED else f"synced from {url}"
        store.hashes.set_status_in(conn, ids, status, reason=why)
    live = sum(status is not Status.RETIRED for status in wanted.values())
    return live, len(moves.get(Status.RETIRED, ()))


@dataclass(frozen=True)
class _Mapping:
    """What a remote id says of its local row (a `synced_hashes` row)."""

    hash_id: int
    live: bool
    status: str | None  # the remote hash's status (None: synced before statuses were kept)


def _mappings_in(conn: Connection, source_id: int, remote_ids: set[int]) -> dict[int, _Mapping]:
    """The stored mapping of each of `remote_ids` that has one."""
    found: dict[int, _Mapping] = {}
    ordered = sorted(remote_ids)
    for start in range(0, len(ordered), CHUNK):
        rows = conn.execute(
            select(
                synced_hashes.c.remote_id,
                synced_hashes.c.hash_id,
                synced_hashes.c.live,
                synced_hashes.c.status,
            ).where(
                synced_hashes.c.source_id == source_id,
                synced_hashes.c.remote_id.in_(ordered[start : start + CHUNK]),
            )
        )
        for remote_id, hash_id, live, status in rows:
            found[int(remote_id)] = _Mapping(int(hash_id), bool(live), status)
    return found


def _write_mappings(
    conn: Connection, source_id: int, stored: dict[int, _Mapping], final: dict[int, _Mapping]
) -> None:
    """Write each remote id's mapping as the page leaves it: new ones inserted in one
    statement; a stored one whose local row is unchanged (a delete) in one UPDATE per
    (live, status), the others in one executemany UPDATE."""
    fresh = [
        {
            "source_id": source_id,
            "remote_id": r,
            "hash_id": m.hash_id,
            "live": m.live,
            "status": m.status,
        }
        for r, m in sorted(final.items())
        if r not in stored
    ]
    if fresh:
        conn.execute(insert(synced_hashes), fresh)
    same_row: dict[tuple[bool, str | None], list[int]] = {}
    moved: list[dict[str, object]] = []
    for r, m in sorted(final.items()):
        if r not in stored or stored[r] == m:
            continue
        if stored[r].hash_id == m.hash_id:
            same_row.setdefault((m.live, m.status), []).append(r)
        else:
            moved.append({"r": r, "h": m.hash_id, "l": m.live, "s": m.status})
    for (live, status), remote_ids in same_row.items():
        for start in range(0, len(remote_ids), CHUNK):
            conn.execute(
                update(synced_hashes)
                .where(
                    synced_hashes.c.source_id == source_id,
                    synced_hashes.c.remote_id.in_(remote_ids[start : start + CHUNK]),
                )
                .values(live=live, status=status)
            )
    if moved:
        conn.execute(
            update(synced_hashes)
            .where(
                synced_hashes.c.source_id == source_id,
                synced_hashes.c.remote_id == bindparam("r"),
            )
            .values(
                hash_id=bindparam("h", type_=synced_hashes.c.hash_id.type),
                live=bindparam("l", type_=synced_hashes.c.live.type),
                status=bindparam("s", type_=synced_hashes.c.status.type),
            ),
            moved,
        )


def _apply_page(store: Store, actor: Actor, url: str, page: FeedPage) -> SyncResult:
    """Apply one page of the feed of `url`, store its cursor and epoch and audit
    it, in one transaction.

    The page's entries are applied as a batch that leaves what applying them one
    by one, in order, would: every live entry's local row stored or refreshed (the
    last entry for a row gives its fields), every remote id mapped as its last
    entry says, each touched local row settled once."""
    known = [e for e in page.entries if e.signal_type in SIGNAL_TYPES]
    skipped = len(page.entries) - len(known)
    with store.engine.begin() as conn:
        lock_change_log(conn)
        source = _source_in(conn, url)
        stored = _mappings_in(conn, source.id, {e.id for e in known})
        live_entries = [e for e in known if e.op is not FeedOp.DELETE]
        local = iter(_store_entries(conn, store, source.member_id, live_entries))
        final = dict(stored)
        touched: set[int] = set()
        for e in known:
            mapped = final.get(e.id)
            if e.op is FeedOp.DELETE:
                if mapped is not None:
                    final[e.id] = _Mapping(mapped.hash_id, False, e.status.value)
                    touched.add(mapped.hash_id)
                continue
            hash_id = next(local)
            final[e.id] = _Mapping(hash_id, True, e.status.value)
            if mapped is not None:
                touched.add(mapped.hash_id)
            touched.add(hash_id)
        _write_mappings(conn, source.id, stored, final)
        live, retired = _settle(conn, store, url, touched)
        position = max(source.cursor, page.cursor)
        conn.execute(
            update(sync_sources)
            .where(sync_sources.c.id == source.id)
            .values(cursor=position, epoch=page.epoch, updated_at=now())
        )
        audit.append(
            conn,
            actor,
            "sync.apply",
            f"sync:{source.id}",
            {
                "url": url,
                "entries": len(page.entries),
                "cursor": position,
                "epoch": page.epoch,
                "retired": retired,
            },
        )
    return SyncResult(1, len(page.entries), position, live, retired, skipped)


def _resync(store: Store, actor: Actor, url: str, page: FeedPage, why: str) -> int:
    """Forget every hash held from `url` (mappings deleted, local rows no other
    mapping keeps live retired) and move the cursor to (page's epoch, 0), in one
    transaction, audited; returns the local rows retired."""
    with store.engine.begin() as conn:
        lock_change_log(conn)
        source = _source_in(conn, url)
        held = {
            int(h)
            for h in conn.execute(
                select(synced_hashes.c.hash_id).where(synced_hashes.c.source_id == source.id)
            ).scalars()
        }
        conn.execute(delete(synced_hashes).where(synced_hashes.c.source_id == source.id))
        _, retired = _settle(conn, store, url, held)
        conn.execute(
            update(sync_sources)
            .where(sync_sources.c.id == source.id)
            .values(cursor=0, epoch=page.epoch, updated_at=now())
        )
        audit.append(
            conn,
            actor,
            "sync.resync",
            f"sync:{source.id}",
            {
                "url": url,
                "reason": why,
                "from": {"epoch": source.epoch, "cursor": source.cursor},
                "to": {"epoch": page.epoch, "head": page.head},
                "retired": retired,
            },
        )
    return retired


def _video(e: FeedEntry) -> NewVideo | None:
    """A video entry's video with its frames and keyframes (None for any other
    entry); InvalidInput if the frames do not hash to the entry's value or a keyframe
    is malformed."""
    frames = e.video_frames() if e.signal_type == VPDQ.name else None
    if frames is None:
        return None
    if frames_digest(frames).hex() != e.value:
        raise InvalidInput(
            f"feed entry {e.id}: the frames do not hash to the video's value", field="frames"
        )
    return NewVideo(
        frames=tuple(frames),
        duration=e.duration or 0.0,
        fps=e.fps or 0.0,
        width=0,
        height=0,
        labels=e.labels,
        keyframes=tuple(e.video_keyframes()),
    )


def _store_entries(
    conn: Connection, store: Store, member_id: int, entries: Sequence[FeedEntry]
) -> list[int]:
    """The local row of each live entry, in order: created, or refreshed with the
    entry's fields (labels, quality, expiry; in page order, so the last entry for a
    row wins), as storing them one by one would. Videos with frames are stored with
    them, first; every other entry in one `add_in` call."""
    added: dict[int, Added] = {}  # by position in `entries`
    plain: list[int] = []
    for n, e in enumerate(entries):
        video = _video(e)
        if video is None:
            plain.append(n)
        else:
            added[n] = store.videos.add_in(conn, member_id, video, Status.ACTIVE)
    with_frames = set(added)
    items = [_new_hash(entries[n]) for n in plain]
    if items:
        results = store.hashes.add_in(conn, member_id, items, Status.ACTIVE, reason="synced")
        added.update(zip(plain, results, strict=True))
    stale = [n for n in range(len(entries)) if not added[n].created]
    refresh = sorted({n for n in with_frames if entries[n].expires_at is not None}.union(stale))
    if refresh:
        conn.execute(
            update(hashes)
            .where(hashes.c.id == bindparam("b_id"))
            .values(
                labels=bindparam("b_labels", type_=hashes.c.labels.type),
                quality=bindparam("b_quality", type_=hashes.c.quality.type),
                expires_at=bindparam("b_expires_at", type_=hashes.c.expires_at.type),
                updated_at=now(),
            ),
            [
                {
                    "b_id": added[n].id,
                    "b_labels": list(entries[n].labels),
                    "b_quality": entries[n].quality,
                    "b_expires_at": entries[n].expires_at,
                }
                for n in refresh
            ],
        )
    log_changes(conn, [added[n].id for n in stale], ChangeOp.UPDATE)
    return [added[n].id for n in range(len(entries))]


def _new_hash(e: FeedEntry) -> NewHash:
    """An image, digest or keypoints entry as a row to store, with its stored
    variants or its keypoint set."""
    if e.signal_type == KEYPOINTS.name:
        return _keypoints(e)
    variants = tuple(e.variant_values())
    return NewHash(
        e.signal_type, parse_value(e), e.labels, e.quality, None, e.expires_at, None, variants
    )


def _keypoints(e: FeedEntry) -> NewHash:
    """A live keypoints entry as a row to store with its set; InvalidInput naming
    `keypoints` if the set is missing, malformed or does not hash to the entry's
    value, `quality` if the entry's quality is not the set's keypoint count."""
    kps = e.keypoint_set()
    if kps is None:
        raise InvalidInput(
            f"feed entry {e.id}: a live keypoints entry carries its set", field="keypoints"
        )
    item = keypoints_hash(kps, e.labels)
    if item.value != parse_value(e):
        raise InvalidInput(
            f"feed entry {e.id}: the keypoint set does not hash to the entry's value",
            field="keypoints",
        )
    if e.quality != item.quality:
        raise InvalidInput(
            f"feed entry {e.id}: quality {e.quality} is not the set's {item.quality} keypoints",
            field="quality",
        )
    return replace(item, expires_at=e.expires_at)


def _wanted(conn: Connection, hash_ids: set[int]) -> dict[int, Status]:
    """For each local row, the status its remote hashes give it: `active` if any live
    one is active (or was synced before statuses were kept), else `disputed` if any
    live one is disputed, else `retired`."""
    out = dict.fromkeys(hash_ids, Status.RETIRED)
    ordered = sorted(hash_ids)
    for start in range(0, len(ordered), CHUNK):
        rows = conn.execute(
            select(synced_hashes.c.hash_id, synced_hashes.c.status).where(
                synced_hashes.c.hash_id.in_(ordered[start : start + CHUNK]),
                synced_hashes.c.live.is_(True),
            )
        )
        for hash_id, remote in rows:
            said = Status.DISPUTED if remote == Status.DISPUTED.value else Status.ACTIVE
            if out[int(hash_id)] is not Status.ACTIVE:
                out[int(hash_id)] = said
    return out


class Sync:
    """A local copy following a central hashdb's feed (admins)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def position(self, actor: Actor, url: str) -> tuple[str | None, int]:
        """(epoch, cursor): how far the local copy has followed `url` ((None, 0) if
        never)."""
        require_admin(actor, "sync from a central hashdb")
        with self._ctx.store.engine.connect() as conn:
            found = conn.execute(
                select(sync_sources.c.epoch, sync_sources.c.cursor).where(sync_sources.c.url == url)
            ).one_or_none()
        return (None, 0) if found is None else (found[0], int(found[1]))

    def cursor(self, actor: Actor, url: str) -> int:
        """How far the local copy has followed `url` (0 if never)."""
        return self.position(actor, url)[1]

    def pull(
        self,
        actor: Actor,
        source: FeedSource,
        url: str,
        *,
        limit: int = DEFAULT_PAGE,
        max_pages: int | None = None,
    ) -> SyncResult:
        """Follow `source` (the feed of `url`) from the stored cursor while pages say
        `more` (or until `max_pages` pages were applied), resyncing from 0 first if
        the cursor belongs to another history; totals of the run."""
        epoch, cursor = self.position(actor, url)
        store = self._ctx.store
        total = SyncResult(0, 0, cursor, 0, 0, 0)
        while max_pages is None or total.pages < max_pages:
            page = source.export(cursor, limit)
            if cursor > 0 and (page.epoch != epoch or page.head < cursor):
                why = "epoch changed" if page.epoch != epoch else "central head below the cursor"
                retired = _resync(store, actor, url, page, why)
                epoch, cursor = page.epoch, 0
                total = replace(
                    total, cursor=0, retired=total.retired + retired, resyncs=total.resyncs + 1
                )
                continue
            if page.entries or page.cursor != cursor or page.epoch != epoch:
                done = _apply_page(store, actor, url, page)
                epoch, cursor = page.epoch, done.cursor
                total = replace(
                    total,
                    pages=total.pages + 1,
                    entries=total.entries + done.entries,
                    cursor=done.cursor,
                    live=total.live + done.live,
                    retired=total.retired + done.retired,
                    skipped=total.skipped + done.skipped,
                )
            if not page.more:
                break
        return total
