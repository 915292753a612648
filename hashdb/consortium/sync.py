"""Keeping a local hashdb in step with a central one, through its export feed.

A small platform runs its own hashdb and matcher and follows the consortium's:
`pull` fetches pages of `GET <central>/v1/export?since=<cursor>&limit=<n>&format=jsonl`
(with `Authorization: Bearer <key>`) and applies each page in one local
transaction that also stores the new cursor, so an interrupted sync resumes after
the last page applied and never applies a page twice. It stops at an empty page.

Applying a page: each remote hash id is mapped to a local row (`synced_hashes`),
contributed by a local member standing for the central service (created on first
sync, with no key). An add/update stores or refreshes the row; a delete marks the
mapping dead. A local row is `active` while at least one remote hash mapped to it
is live, and `retired` otherwise (two remote contributors of one value share one
local row). Status changes go through the local change log, so the local matcher
drops a retired hash at once and picks up new ones within its sync interval.

Syncing is an admin's use case (`consortium.sync`: `pull`, `cursor`; the CLI acts
as the first admin, or `--as`): each page applied is audited (`sync.apply`: the
URL, the entries, the new cursor) in the page's transaction.

HTTP uses the standard library. Only http and https URLs are accepted and
redirects are refused (a feed that moved must be configured anew), so a key is
never sent to a server it was not meant for.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.engine import Connection

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.export import FeedEntry, FeedOp, parse_jsonl, parse_value
from hashdb.errors import InvalidInput, OutsideFailure, Unauthenticated
from hashdb.signals import SIGNAL_TYPES
from hashdb.store import ChangeOp, HashStore, NewHash, Role, Status
from hashdb.store.clock import now
from hashdb.store.hashes import lock_change_log, log_changes
from hashdb.store.schema import hashes, members, sync_sources, synced_hashes

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

DEFAULT_PAGE = 1000
TIMEOUT_S = 60.0


class FeedSource(Protocol):
    """Where pages of the export feed come from."""

    def page(self, since: int, limit: int) -> list[FeedEntry]: ...


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

    def page(self, since: int, limit: int) -> list[FeedEntry]:
        query = urllib.parse.urlencode({"since": since, "limit": limit, "format": "jsonl"})
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            f"{self.base_url}/v1/export?{query}",
            headers={"Authorization": f"Bearer {self._key}", "Accept": "application/x-ndjson"},
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
        return parse_jsonl(body)


@dataclass(frozen=True)
class SyncResult:
    pages: int
    entries: int
    cursor: int
    live: int  # local rows made or kept active by this run
    retired: int  # local rows retired by this run
    skipped: int  # entries of signal types this hashdb does not know


def _source_in(conn: Connection, url: str) -> tuple[int, int, int]:
    """(source id, local member id, cursor) for `url`, registering it the first time."""
    row = conn.execute(
        select(sync_sources.c.id, sync_sources.c.member_id, sync_sources.c.cursor).where(
            sync_sources.c.url == url
        )
    ).one_or_none()
    if row is not None:
        return int(row[0]), int(row[1]), int(row[2])
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
    return int(source_id), int(member_id), 0


def _apply_page(
    engine: Engine, store: HashStore, actor: Actor, url: str, entries: Sequence[FeedEntry]
) -> SyncResult:
    """Apply one page of the feed of `url`, store its cursor and audit it, in one
    transaction."""
    live = retired = skipped = 0
    with engine.begin() as conn:
        lock_change_log(conn)
        source_id, member_id, position = _source_in(conn, url)
        touched: set[int] = set()
        for e in entries:
            if e.signal_type not in SIGNAL_TYPES:
                skipped += 1
                continue
            mapped = conn.execute(
                select(synced_hashes.c.hash_id).where(
                    and_(synced_hashes.c.source_id == source_id, synced_hashes.c.remote_id == e.id)
                )
            ).scalar_one_or_none()
            if e.op is FeedOp.DELETE:
                if mapped is not None:
                    conn.execute(
                        update(synced_hashes)
                        .where(synced_hashes.c.source_id == source_id)
                        .where(synced_hashes.c.remote_id == e.id)
                        .values(live=False)
                    )
                    touched.add(int(mapped))
                continue
            local = _store_entry(conn, store, member_id, e)
            if mapped is None:
                conn.execute(
                    insert(synced_hashes).values(
                        source_id=source_id, remote_id=e.id, hash_id=local, live=True
                    )
                )
            else:
                conn.execute(
                    update(synced_hashes)
                    .where(synced_hashes.c.source_id == source_id)
                    .where(synced_hashes.c.remote_id == e.id)
                    .values(hash_id=local, live=True)
                )
                touched.add(int(mapped))
            touched.add(local)
        for hash_id, should_live in sorted(_liveness(conn, touched).items()):
            status = store.current_status_in(conn, [hash_id])[hash_id]
            if should_live and status is not Status.ACTIVE:
                store.set_status_in(conn, [hash_id], Status.ACTIVE, reason=f"synced from {url}")
            elif not should_live and status is not Status.RETIRED:
                store.set_status_in(conn, [hash_id], Status.RETIRED, reason=f"retired at {url}")
                retired += 1
            live += should_live
        if entries:
            position = max(position, entries[-1].seq)
            conn.execute(
                update(sync_sources)
                .where(sync_sources.c.id == source_id)
                .values(cursor=position, updated_at=now())
            )
        audit.append(
            conn,
            actor,
            "sync.apply",
            f"sync:{source_id}",
            {"url": url, "entries": len(entries), "cursor": position, "retired": retired},
        )
    return SyncResult(1, len(entries), position, live, retired, skipped)


def _store_entry(conn: Connection, store: HashStore, member_id: int, e: FeedEntry) -> int:
    """The local row for a live entry: created, or refreshed with the entry's fields."""
    item = NewHash(e.signal_type, parse_value(e), e.labels, e.quality, None, e.expires_at)
    (added,) = store.add_in(conn, member_id, [item], Status.ACTIVE, reason="synced")
    if not added.created:
        conn.execute(
            update(hashes)
            .where(hashes.c.id == added.id)
            .values(
                labels=list(e.labels), quality=e.quality, expires_at=e.expires_at, updated_at=now()
            )
        )
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

    def cursor(self, actor: Actor, url: str) -> int:
        """How far the local copy has followed `url` (0 if never)."""
        require_admin(actor, "sync from a central hashdb")
        with self._ctx.store.engine.connect() as conn:
            found = conn.execute(
                select(sync_sources.c.cursor).where(sync_sources.c.url == url)
            ).scalar_one_or_none()
        return 0 if found is None else int(found)

    def pull(
        self,
        actor: Actor,
        source: FeedSource,
        url: str,
        *,
        limit: int = DEFAULT_PAGE,
        max_pages: int | None = None,
    ) -> SyncResult:
        """Follow `source` (the feed of `url`) from the stored cursor until it is
        empty (or `max_pages` pages were applied); totals of the run."""
        total = SyncResult(0, 0, self.cursor(actor, url), 0, 0, 0)
        while max_pages is None or total.pages < max_pages:
            entries = source.page(total.cursor, limit)
            if not entries:
                break
            store = self._ctx.store
            done = _apply_page(store.engine, store.hashes, actor, url, entries)
            total = replace(
                total,
                pages=total.pages + 1,
                entries=total.entries + done.entries,
                cursor=done.cursor,
                live=total.live + done.live,
                retired=total.retired + done.retired,
                skipped=total.skipped + done.skipped,
            )
        return total
