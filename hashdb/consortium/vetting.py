"""The status lifecycle of a hash, and who may move it.

                 approve              disagreement >= threshold
    pending ──────────────> active ───────────────────────────> disputed
     │   │                  │    ^                                │   │
     │   │           retire │    └──────── resolve: keep ─────────┘   │
     │   │                  v                                         │
     │   └─── retire ───> retired <──────── resolve: retire ──────────┘
     │ reject
     v
   rejected

A member's contribution starts `pending`; an admin's, a trusted flagger's, or one
tagged with an open crisis incident starts `active` (`initial_status`). Admins
approve or reject pending hashes (a rejection needs a reason), resolve disputes
(keep: back to `active`; retire) and retire hashes; `feedback` moves an active hash
to `disputed`. A pending hash can also be retired, by its expiry for example.
`retired` and `rejected` are final. Every move is written to the history with the
actor, the time and the reason, and each admin move to the audit log, in the same
transaction as the move itself.

A hash may carry an expiry time: from then on it never matches (the matcher drops
it at once, and the feed shows it deleted), and `expire_due`, run by `hashdb worker`,
retires it for good, which puts its change in the log.

A contributed image's stored variants (hashdb/store/hashes.py) have no id or
status of their own: they match exactly when their image does, so every move and
expiry of the image applies to them, and none moves by itself.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine, and_, select, update
from sqlalchemy.engine import Connection

from hashdb.consortium import audit, labels
from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.hashes import addressable_in, visible_in
from hashdb.consortium.incidents import aware
from hashdb.consortium.paging import DEFAULT_LIMIT, Page, check_page, page_of
from hashdb.errors import Conflict, Forbidden, InvalidInput
from hashdb.store import MATCHABLE, ChangeOp, HashRecord, HashStore, Member, Role, Status
from hashdb.store.clock import now, utc
from hashdb.store.hashes import lock_change_log, log_changes
from hashdb.store.schema import hash_transitions, hashes

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.ACTIVE, Status.REJECTED, Status.RETIRED}),
    Status.ACTIVE: frozenset({Status.DISPUTED, Status.RETIRED}),
    Status.DISPUTED: frozenset({Status.ACTIVE, Status.RETIRED}),
    Status.RETIRED: frozenset(),
    Status.REJECTED: frozenset(),
}
MAX_REASON_CHARS = 2000
MAX_IDS = 10_000


class Resolution(enum.StrEnum):
    KEEP = "keep"  # the dispute is unfounded: back to active
    RETIRE = "retire"


@dataclass(frozen=True)
class Transition:
    id: int  # increases with every move of any hash: the history's page key
    hash_id: int
    from_status: Status | None  # None: the hash was created
    to_status: Status
    actor_id: int | None  # None: the service itself (expiry)
    reason: str | None
    at: datetime


def initial_status(member: Member, *, fast_tracked: bool = False) -> Status:
    """Where a contribution starts: vetted sources and crisis contributions go live."""
    if member.role is Role.ADMIN or member.trusted or fast_tracked:
        return Status.ACTIVE
    return Status.PENDING


def _reason(reason: str | None, *, required: bool) -> str | None:
    text = (reason or "").strip()
    if required and not text:
        raise InvalidInput("a reason is required", field="reason")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason is longer than {MAX_REASON_CHARS} characters", field="reason")
    return text or None


def _ids(hash_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(hash_ids))
    if not 0 < len(ids) <= MAX_IDS:
        raise InvalidInput(f"give 1-{MAX_IDS} hash ids", field="ids")
    return ids


def move_in(
    conn: Connection,
    actor_id: int | None,
    hash_ids: Sequence[int],
    to: Status,
    reason: str | None,
    *,
    only_from: frozenset[Status] | None = None,
) -> dict[int, Status]:
    """Move hashes to `to` inside the caller's transaction, after checking that every
    move is allowed (and, with `only_from`, starts there): NotFound for an unknown
    id, Conflict naming the ids otherwise, and nothing moves.
    Returns the previous statuses."""
    lock_change_log(conn)
    before = {i: a.status for i, a in addressable_in(conn, hash_ids).items()}
    refused = sorted(
        i
        for i, s in before.items()
        if to not in ALLOWED[s] or (only_from is not None and s not in only_from)
    )
    if refused:
        states = sorted({before[i].value for i in refused})
        raise Conflict(
            f"cannot move hash {refused[0]} from {before[refused[0]].value} to {to.value}",
            ids=refused,
            statuses=states,
        )
    HashStore(conn.engine).set_status_in(conn, hash_ids, to, actor_id=actor_id, reason=reason)
    return before


def expire_due(engine: Engine, at: datetime | None = None) -> list[int]:
    """Retire every matchable hash whose expiry has passed; their ids. The service
    itself does this (`hashdb worker`, through `consortium.upkeep`), not an actor;
    no read path calls it."""
    moment = utc(at) if at else now()
    with engine.begin() as conn:
        lock_change_log(conn)
        due = list(
            conn.execute(
                select(hashes.c.id).where(
                    and_(
                        hashes.c.expires_at.is_not(None),
                        hashes.c.expires_at <= moment,
                        hashes.c.status.in_([s.value for s in MATCHABLE]),
                    )
                )
            ).scalars()
        )
        if due:
            HashStore(engine).set_status_in(conn, due, Status.RETIRED, reason="expired")
            audit.append(conn, None, "hash.expire", "hashes", {"ids": due})
    return due


class Vetting:
    """Every move of a hash's status, and its history."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _admin_move(
        self,
        actor: Actor,
        hash_ids: Sequence[int],
        to: Status,
        reason: str | None,
        action: str,
        only_from: frozenset[Status] | None = None,
    ) -> list[HashRecord]:
        ids = _ids(hash_ids)
        store = self._ctx.store
        with store.engine.begin() as conn:
            before = move_in(conn, actor.id, ids, to, reason, only_from=only_from)
            for i in ids:
                audit.append(
                    conn, actor, action, f"hash:{i}", {"from": before[i].value, "reason": reason}
                )
        records = store.hashes.get_many(ids)
        return [records[i] for i in ids]

    def approve(
        self, actor: Actor, hash_ids: Sequence[int], reason: str | None = None
    ) -> list[HashRecord]:
        """Pending -> active (admins only); all move, or none (Conflict naming them)."""
        require_admin(actor, "approve hashes")
        return self._admin_move(
            actor,
            hash_ids,
            Status.ACTIVE,
            _reason(reason, required=False),
            "hash.approve",
            frozenset({Status.PENDING}),
        )

    def reject(self, actor: Actor, hash_ids: Sequence[int], reason: str) -> list[HashRecord]:
        """Pending -> rejected, with a reason (admins only)."""
        require_admin(actor, "reject hashes")
        return self._admin_move(
            actor, hash_ids, Status.REJECTED, _reason(reason, required=True), "hash.reject"
        )

    def retire(self, actor: Actor, hash_ids: Sequence[int], reason: str) -> list[HashRecord]:
        """Pending, active or disputed -> retired, with a reason (admins only)."""
        require_admin(actor, "retire hashes")
        return self._admin_move(
            actor, hash_ids, Status.RETIRED, _reason(reason, required=True), "hash.retire"
        )

    def resolve_dispute(
        self, actor: Actor, hash_id: int, resolution: Resolution, reason: str
    ) -> HashRecord:
        """Disputed -> active (keep) or retired, with a reason (admins only)."""
        require_admin(actor, "resolve disputes")
        to = Status.ACTIVE if resolution is Resolution.KEEP else Status.RETIRED
        (record,) = self._admin_move(
            actor,
            [hash_id],
            to,
            _reason(reason, required=True),
            f"hash.resolve_{resolution.value}",
            frozenset({Status.DISPUTED}),
        )
        return record

    def set_expiry(self, actor: Actor, hash_id: int, expires_at: datetime | None) -> HashRecord:
        """Set or clear a hash's expiry; admins, or the member who contributed it
        (Forbidden for another member that sees the hash, NotFound if it does not)."""
        when = aware(expires_at, "expires_at") if expires_at else None
        store = self._ctx.store
        with store.engine.begin() as conn:
            lock_change_log(conn)
            address = visible_in(conn, actor, hash_id)
            if not actor.is_admin and address.contributor_id != actor.id:
                raise Forbidden("only admins or the contributor may set a hash's expiry")
            if address.status not in MATCHABLE:
                raise Conflict(f"hash {hash_id} is {address.status.value}: it no longer matches")
            conn.execute(
                update(hashes)
                .where(hashes.c.id == hash_id)
                .values(expires_at=when, updated_at=now())
            )
            log_changes(conn, [hash_id], ChangeOp.UPDATE)
            audit.append(
                conn,
                actor,
                "hash.expiry",
                f"hash:{hash_id}",
                {"expires_at": when.isoformat() if when else None},
            )
        return store.hashes.get(hash_id)

    def relabel(self, actor: Actor, hash_id: int, new_labels: Sequence[str]) -> HashRecord:
        """Replace a hash's labels (a category corrected after review, a `wrong_label`
        dispute): admins, or the contributor while the hash is pending. The labels are
        checked against the taxonomy as a contribution's are; a crisis incident tag can
        neither be added nor removed this way (it decided the hash's first status).
        The change reaches followers as an `update` in the feed."""
        store = self._ctx.store
        with store.engine.begin() as conn:
            lock_change_log(conn)
            address = visible_in(conn, actor, hash_id)
            own_pending = address.contributor_id == actor.id and address.status is Status.PENDING
            if not (actor.is_admin or own_pending):
                raise Forbidden("only admins, or the contributor while it is pending, relabel")
            if address.status not in (*MATCHABLE, Status.PENDING):
                raise Conflict(f"hash {hash_id} is {address.status.value}: it no longer matches")
            (refs,) = labels.check(conn, [list(new_labels)])
            wanted = tuple(dict.fromkeys(str(r) for r in refs))
            old = tuple(
                conn.execute(select(hashes.c.labels).where(hashes.c.id == hash_id)).scalar_one()
                or ()
            )

            def incident(tags: Sequence[str]) -> set[str]:
                return {t for t in tags if labels.split(t).name == labels.INCIDENT_LABEL}

            if incident(old) != incident(wanted):
                raise InvalidInput(
                    f"the {labels.INCIDENT_LABEL} tag cannot be changed by relabelling",
                    field="labels",
                )
            if wanted != old:
                conn.execute(
                    update(hashes)
                    .where(hashes.c.id == hash_id)
                    .values(labels=list(wanted), updated_at=now())
                )
                log_changes(conn, [hash_id], ChangeOp.UPDATE)
                audit.append(
                    conn,
                    actor,
                    "hash.relabel",
                    f"hash:{hash_id}",
                    {"from": list(old), "to": list(wanted)},
                )
        return store.hashes.get(hash_id)

    def history(self, actor: Actor, hash_id: int) -> list[Transition]:
        """Every status move of a hash the actor may see, oldest first (NotFound
        otherwise, as for an unknown id)."""
        with self._ctx.store.engine.connect() as conn:
            visible_in(conn, actor, hash_id)
            return _transitions(conn, hash_id, 0, None)

    def transitions(
        self, actor: Actor, hash_id: int, *, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> Page[Transition]:
        """`history` a page at a time: the moves with ids above `after`, oldest first."""
        check_page(after, limit)
        with self._ctx.store.engine.connect() as conn:
            visible_in(conn, actor, hash_id)
            rows = _transitions(conn, hash_id, after, limit + 1)
        return page_of(rows, after, limit, lambda t: t.id)


def _transitions(conn: Connection, hash_id: int, after: int, limit: int | None) -> list[Transition]:
    rows = conn.execute(
        select(hash_transitions)
        .where(hash_transitions.c.hash_id == hash_id, hash_transitions.c.id > after)
        .order_by(hash_transitions.c.id)
        .limit(limit)
    ).mappings()
    return [
        Transition(
            id=r["id"],
            hash_id=r["hash_id"],
            from_status=Status(r["from_status"]) if r["from_status"] else None,
            to_status=Status(r["to_status"]),
            actor_id=r["actor_id"],
            reason=r["reason"],
            at=utc(r["at"]),
        )
        for r in rows
    ]
