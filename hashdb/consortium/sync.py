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
matches re-encodes of it; a delete marks the mapping dead. A local row is `active`
while at least one remote hash mapped to it is live, and `retired` otherwise (two
remote contributors of one value share one local row). Status changes go through
the local change log, so the local matcher drops a retired hash at once and picks
up new ones within its sync interval.

Syncing is an admin's use case (`consortium.sync`: `pull`, `cursor`; the CLI acts
as the first admin, or `--as`): each page applied is audited (`sync.apply`: the
URL, the entries, the new cursor) in the page's transaction.

HTTP uses the standard library. Only http and https URLs are accepted and
redirects are refused (a feed that moved must be configured anew), so a key is
never sent to a server it was not meant for.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.export import FeedEntry, FeedOp, FeedPage, parse_value
from hashdb.errors import InvalidInput, OutsideFailure, Unauthenticated
from hashdb.signals import SIGNAL_TYPES
from hashdb.signals.vpdq import VPDQ, frames_digest
from hashdb.store import ChangeOp, NewHash, NewVideo, Role, Status, Store
from hashdb.store.clock import now
from hashdb.store.hashes import lock_change_log, log_changes
from hashdb.store.schema import hashes, members, sync_sources, synced_hashes

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

DEFAULT_PAGE = 1000
TIMEOUT_S = 60.0


class FeedSource(Protocol):
    """Where pages of the export feed come from."""

    def page(self, since: int, limit: int) -> FeedPage: ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError for the 3xx response


class HttpFeed:
    """The export feed of a central hashdb at `base_url`, read with `key`."""

    def __init__(self, base_url: str, key: str, *, timeout: float = TIMEOUT_S) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInput("the central URL must be http(s)://host[:port]", field="from")
        if not key:
            raise InvalidInput("an API key is required", field="key")
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    def page(self, since: int, limit: int) -> FeedPage:
        query = urllib.parse.urlencode({"since": since, "limit": limit, "format": "json"})
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            f"{self.base_url}/v1/export?{query}",
            headers={"Authorization": f"Bearer {self._key}", "Accept": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body = response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            exc.close()  # the error carries the open response; release its socket now
            if exc.code in (401, 403):
                raise Unauthenticated(f"the central hashdb refused the key ({exc.code})") from None
            raise OutsideFailure(f"the central hashdb answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise OutsideFailure(f"cannot reach the central hashdb: {exc}") from None
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise OutsideFailure(f"the central hashdb's page is not JSON: {exc.msg}") from None
        try:
            return FeedPage.from_json(data)
        except InvalidInput as exc:
            raise OutsideFailure(f"the central hashdb's page is malformed: {exc}") from None


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
    """Set each touched local row active or retired by its mappings' liveness;
    (rows live, rows retired now)."""
    live = retired = 0
    for hash_id, should_live in sorted(_liveness(conn, touched).items()):
        status = store.hashes.current_status_in(conn, [hash_id])[hash_id]
        if should_live and status is not Status.ACTIVE:
            store.hashes.set_status_in(conn, [hash_id], Status.ACTIVE, reason=f"synced from {url}")
        elif not should_live and status is not Status.RETIRED:
            store.hashes.set_status_in(conn, [hash_id], Status.RETIRED, reason=f"retired at {url}")
            retired += 1
        live += should_live
    return live, retired


def _apply_page(store: Store, actor: Actor, url: str, page: FeedPage) -> SyncResult:
    """Apply one page of the feed of `url`, store its cursor and epoch and audit
    it, in one transaction."""
    skipped = 0
    with store.engine.begin() as conn:
        lock_change_log(conn)
        source = _source_in(conn, url)
        touched: set[int] = set()
        for e in page.entries:
            if e.signal_type not in SIGNAL_TYPES:
                skipped += 1
                continue
            mapped = conn.execute(
                select(synced_hashes.c.hash_id).where(
                    and_(synced_hashes.c.source_id == source.id, synced_hashes.c.remote_id == e.id)
                )
            ).scalar_one_or_none()
            if e.op is FeedOp.DELETE:
                if mapped is not None:
                    conn.execute(
                        update(synced_hashes)
                        .where(synced_hashes.c.source_id == source.id)
                        .where(synced_hashes.c.remote_id == e.id)
                        .values(live=False)
                    )
                    touched.add(int(mapped))
                continue
            local = _store_entry(conn, store, source.member_id, e)
            if mapped is None:
                conn.execute(
                    insert(synced_hashes).values(
                        source_id=source.id, remote_id=e.id, hash_id=local, live=True
                    )
                )
            else:
                conn.execute(
                    update(synced_hashes)
                    .where(synced_hashes.c.source_id == source.id)
                    .where(synced_hashes.c.remote_id == e.id)
                    .values(hash_id=local, live=True)
                )
                touched.add(int(mapped))
            touched.add(local)
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


def _store_entry(conn: Connection, store: Store, member_id: int, e: FeedEntry) -> int:
    """The local row for a live entry: created, or refreshed with the entry's fields.
    A video entry with frames is stored with them (InvalidInput if they do not
    hash to its value)."""
    frames = e.video_frames() if e.signal_type == VPDQ.name else None
    if frames is not None:
        if frames_digest(frames).hex() != e.value:
            raise InvalidInput(
                f"feed entry {e.id}: the frames do not hash to the video's value", field="frames"
            )
        video = NewVideo(
            frames=tuple(frames),
            duration=e.duration or 0.0,
            fps=e.fps or 0.0,
            width=0,
            height=0,
            labels=e.labels,
        )
        added = store.videos.add_in(conn, member_id, video, Status.ACTIVE)
    else:
        item = NewHash(e.signal_type, parse_value(e), e.labels, e.quality, None, e.expires_at)
        (added,) = store.hashes.add_in(conn, member_id, [item], Status.ACTIVE, reason="synced")
    if not added.created or (frames is not None and e.expires_at is not None):
        conn.execute(
            update(hashes)
            .where(hashes.c.id == added.id)
            .values(
                labels=list(e.labels), quality=e.quality, expires_at=e.expires_at, updated_at=now()
            )
        )
        if not added.created:
            log_changes(conn, [added.id], ChangeOp.UPDATE)
    return added.id


def _liveness(conn: Connection, hash_ids: set[int]) -> dict[int, bool]:
    """For each local row: does any remote hash mapped to it stay live?"""
    out = dict.fromkeys(hash_ids, False)
    if hash_ids:
        rows = conn.execute(
            select(synced_hashes.c.hash_id, synced_hashes.c.live).where(
                synced_hashes.c.hash_id.in_(sorted(hash_ids))
            )
        )
        for hash_id, alive in rows:
            out[int(hash_id)] = out[int(hash_id)] or bool(alive)
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
            page = source.page(cursor, limit)
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
