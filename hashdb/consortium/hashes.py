"""Reading hashes, and who may address which: the visibility rules of the list.

Every use case that takes a hash id finds it through `addressable_in`, the one
place that decides which ids name a hash: an unknown id is NotFound. A contributed
image's stored variants (its content region and crop windows, hashdb/variants.py)
are internal: they live in `hash_variants`, part of their image, with no id of
their own, so no id reaches one and they can never be read, listed, moved, or
given feedback or outcomes.

Who sees a hash (`visible`): an admin sees every one; a member sees its own in
any status, and another member's only while the export feed shows it with its
value and labels (`export.EXPORTED`: active or disputed, not past its expiry).
Another member's pending, rejected, retired or expired hash is NotFound (HTTP
404), indistinguishable from an id that does not exist: the feed withholds those,
and so does every other door. Feedback and outcomes may also name a hash the
member could have been answered with (`reachable_in`: pending ones where the
deployment matches them, and retired ones), since a match answer gave the member
its id; another member's rejected hash stays NotFound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.export import EXPORTED
from hashdb.consortium.paging import DEFAULT_LIMIT, Page, check_page, page_of
from hashdb.errors import InvalidInput, NotFound
from hashdb.settings import Settings
from hashdb.store import MATCHABLE, HashRecord, Status
from hashdb.store.clock import now, utc
from hashdb.store.schema import hashes
from hashdb.store.videos import VideoInfo

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

MAX_PAGE = 1000
CHUNK = 500  # ids per statement


@dataclass(frozen=True)
class Address:
    """What the visibility rules read of a hash row."""

    id: int
    contributor_id: int
    status: Status
    expires_at: datetime | None

    def exported(self, at: datetime) -> bool:
        """Whether the export feed shows this hash with its value (`export.exported`)."""
        return self.status in EXPORTED and (self.expires_at is None or self.expires_at > at)


def matchable_statuses(settings: Settings) -> frozenset[Status]:
    """The statuses a query is answered from, under this deployment's settings."""
    return MATCHABLE if settings.pending_matches else MATCHABLE - {Status.PENDING}


def _addresses_in(conn: Connection, hash_ids: Iterable[int]) -> dict[int, Address]:
    """The hashes among `hash_ids`; unknown ids are left out."""
    wanted = sorted(set(hash_ids))
    found: dict[int, Address] = {}
    for start in range(0, len(wanted), CHUNK):
        rows = conn.execute(
            select(
                hashes.c.id, hashes.c.contributor_id, hashes.c.status, hashes.c.expires_at
            ).where(hashes.c.id.in_(wanted[start : start + CHUNK]))
        )
        for i, contributor, status, expires in rows:
            found[i] = Address(i, contributor, Status(status), utc(expires) if expires else None)
    return found


def addressable_in(conn: Connection, hash_ids: Iterable[int]) -> dict[int, Address]:
    """The hashes `hash_ids` name, read inside the caller's transaction. NotFound
    (naming the ids) for an id that names no hash (a stored variant has none)."""
    wanted = sorted(set(hash_ids))
    found = _addresses_in(conn, wanted)
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound(f"no hash with id {missing[0]}", ids=missing)
    return found


def visible(actor: Actor, address: Address, at: datetime) -> bool:
    """Whether the actor may see the hash (see the module docstring)."""
    return actor.is_admin or address.contributor_id == actor.id or address.exported(at)


def visible_in(conn: Connection, actor: Actor, hash_id: int) -> Address:
    """The hash, if the actor may see it; NotFound otherwise, as for a missing id."""
    address = addressable_in(conn, [hash_id])[hash_id]
    if not visible(actor, address, now()):
        raise NotFound(f"no hash with id {hash_id}", ids=[hash_id])  # as for a missing id
    return address


def reachable_in(conn: Connection, actor: Actor, hash_id: int, settings: Settings) -> Address:
    """The hash, if the actor may see it or could have been answered with it: its
    status is one this deployment matches (`matchable_statuses`), or retired (it
    matched until then, and reports of what was done lag); NotFound otherwise.
    For feedback and outcomes, which follow a match."""
    address = addressable_in(conn, [hash_id])[hash_id]
    followed = matchable_statuses(settings) | {Status.RETIRED}
    if not (visible(actor, address, now()) or address.status in followed):
        raise NotFound(f"no hash with id {hash_id}", ids=[hash_id])  # as for a missing id
    return address


class Hashes:
    """Reading hashes: one by id, a member's own, the review queue."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def get(self, actor: Actor, hash_id: int) -> HashRecord:
        """The hash, if the actor may see it; NotFound otherwise (an unknown id, or
        another member's hash the feed withholds)."""
        record = self._ctx.store.hashes.get(hash_id)  # NotFound for an unknown id
        if not self.viewable(actor, record):
            raise NotFound(f"no hash with id {hash_id}")  # exactly as for an unknown id
        return record

    def viewable(self, actor: Actor, record: HashRecord) -> bool:
        """Whether `get` would show the actor this record (a match may name a hash the
        actor cannot open: another member's pending one, when pending hashes match)."""
        address = Address(record.id, record.contributor_id, record.status, record.expires_at)
        return visible(actor, address, now())

    def videos(self, actor: Actor, hash_ids: Iterable[int]) -> dict[int, VideoInfo]:
        """Shape and frames of each video among `hash_ids` that the actor may see;
        other ids (images, unknown or hidden ones) are left out."""
        at = now()
        with self._ctx.store.engine.connect() as conn:
            found = _addresses_in(conn, hash_ids)
        return self._ctx.store.videos.info(i for i, a in found.items() if visible(actor, a, at))

    def mine(
        self,
        actor: Actor,
        *,
        status: Status | None = None,
        after: int = 0,
        limit: int = DEFAULT_LIMIT,
    ) -> Page[HashRecord]:
        """The actor's own hashes (any status, or only `status`), by id, a page at a
        time after id `after` (their stored variants are part of them)."""
        check_page(after, limit, MAX_PAGE)
        query = (
            select(hashes.c.id)
            .where(hashes.c.contributor_id == actor.id, hashes.c.id > after)
            .order_by(hashes.c.id)
            .limit(limit + 1)
        )
        if status is not None:
            query = query.where(hashes.c.status == status.value)
        return page_of(self._records(query), after, limit, lambda r: r.id)

    def queue(
        self,
        actor: Actor,
        status: Status = Status.PENDING,
        *,
        after: int = 0,
        limit: int = DEFAULT_LIMIT,
    ) -> Page[HashRecord]:
        """Hashes awaiting an admin (pending or disputed), by id, a page at a time
        after id `after` (admins only)."""
        require_admin(actor, "see the review queue")
        if status not in (Status.PENDING, Status.DISPUTED):
            raise InvalidInput("the queue holds pending or disputed hashes", field="status")
        check_page(after, limit, MAX_PAGE)
        query = (
            select(hashes.c.id)
            .where(hashes.c.status == status.value, hashes.c.id > after)
            .order_by(hashes.c.id)
            .limit(limit + 1)
        )
        return page_of(self._records(query), after, limit, lambda r: r.id)

    def _records(self, query: Select[int]) -> list[HashRecord]:
        store = self._ctx.store
        with store.engine.connect() as conn:
            ids = list(conn.execute(query).scalars())
        records = store.hashes.get_many(ids)
        return [records[i] for i in ids]
