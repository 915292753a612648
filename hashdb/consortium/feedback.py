"""Members' feedback on a hash, and the dispute it can trigger.

Feedback is `agree`, `disagree` (with a reason from `DisagreeReason`) or
`false_positive` (with the hash of the content that matched wrongly). Disagreement
(`disagree` or `false_positive`) from `threshold` distinct members
(HASHDB_DISPUTE_THRESHOLD, default 2) moves an active hash to `disputed`, for an
admin to resolve. Only disagreement given since the hash last became active
counts: when an admin approves a hash or keeps it after a dispute, earlier
objections have been weighed, and it takes fresh ones to dispute it again.
Feedback on a hash in another status is kept (it informs vetting) but moves
nothing. A member may give feedback more than once; it counts once per member.
A member gives feedback on, and reads its own feedback on, a hash it may see or
could have matched (`hashes.reachable_in`); any other id is NotFound
(a stored variant has none).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, insert, select
from sqlalchemy.engine import Connection, RowMapping

from hashdb.consortium import audit, vetting
from hashdb.consortium.actor import Actor
from hashdb.consortium.hashes import reachable_in
from hashdb.consortium.paging import DEFAULT_LIMIT, Page, check_page, page_of
from hashdb.errors import InvalidInput
from hashdb.signals import get_signal_type
from hashdb.store import Status
from hashdb.store.clock import now, utc
from hashdb.store.hashes import lock_change_log
from hashdb.store.schema import feedback, hash_transitions

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

MAX_NOTE_CHARS = 2000


class Kind(enum.StrEnum):
    AGREE = "agree"
    DISAGREE = "disagree"
    FALSE_POSITIVE = "false_positive"

    @classmethod
    def parse(cls, value: object, field: str = "kind") -> Kind:
        try:
            return cls(str(value))
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise InvalidInput(
                f"unknown feedback {value!r}; expected one of {known}", field=field
            ) from None


class DisagreeReason(enum.StrEnum):
    NOT_TERRORIST_CONTENT = "not_terrorist_content"
    WRONG_LABEL = "wrong_label"
    LOW_QUALITY = "low_quality"

    @classmethod
    def parse(cls, value: object, field: str = "reason") -> DisagreeReason:
        try:
            return cls(str(value))
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise InvalidInput(
                f"unknown reason {value!r}; expected one of {known}", field=field
            ) from None


DISAGREEING = frozenset({Kind.DISAGREE, Kind.FALSE_POSITIVE})


@dataclass(frozen=True)
class ContentHash:
    """The hash of a member's content that matched (for `false_positive`)."""

    signal_type: str
    value: bytes


@dataclass(frozen=True)
class Feedback:
    id: int
    hash_id: int
    member_id: int
    kind: Kind
    reason: DisagreeReason | None
    content: ContentHash | None
    note: str | None
    created_at: datetime


@dataclass(frozen=True)
class FeedbackResult:
    feedback: Feedback
    disagreeing_members: int  # distinct members disagreeing since the hash became active
    disputed: bool  # this feedback moved the hash to disputed


def _feedback(row: RowMapping) -> Feedback:
    content = None
    if row["content_signal_type"]:
        content = ContentHash(row["content_signal_type"], bytes(row["content_value"]))
    return Feedback(
        id=row["id"],
        hash_id=row["hash_id"],
        member_id=row["member_id"],
        kind=Kind(row["kind"]),
        reason=DisagreeReason(row["reason"]) if row["reason"] else None,
        content=content,
        note=row["note"],
        created_at=utc(row["created_at"]),
    )


def _validate(kind: Kind, reason: DisagreeReason | None, content: ContentHash | None) -> None:
    if kind is Kind.DISAGREE and reason is None:
        raise InvalidInput("disagreement needs a reason", field="reason")
    if kind is not Kind.DISAGREE and reason is not None:
        raise InvalidInput(f"{kind.value} feedback takes no reason", field="reason")
    if kind is Kind.FALSE_POSITIVE:
        if content is None:
            raise InvalidInput("a false positive needs the matched content's hash", field="content")
        signal = get_signal_type(content.signal_type, "content.signal_type")
        if len(content.value) != signal.nbytes:
            raise InvalidInput(
                f"a {signal.name} hash is {signal.nbytes} bytes", field="content.value"
            )
    elif content is not None:
        raise InvalidInput(f"{kind.value} feedback takes no content hash", field="content")


def disagreeing_members_in(conn: Connection, hash_id: int) -> int:
    """Distinct members disagreeing with the hash since it last became active."""
    since = conn.execute(
        select(func.max(hash_transitions.c.at)).where(
            hash_transitions.c.hash_id == hash_id,
            hash_transitions.c.to_status == Status.ACTIVE.value,
        )
    ).scalar_one_or_none()
    condition = and_(
        feedback.c.hash_id == hash_id,
        feedback.c.kind.in_([k.value for k in DISAGREEING]),
    )
    if since is not None:
        condition = and_(condition, feedback.c.created_at >= since)
    return int(
        conn.execute(
            select(func.count(func.distinct(feedback.c.member_id))).where(condition)
        ).scalar_one()
    )


class Feedbacks:
    """Members' feedback on hashes, and the disputes it triggers."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def give(
        self,
        actor: Actor,
        hash_id: int,
        kind: Kind,
        *,
        reason: DisagreeReason | None = None,
        content: ContentHash | None = None,
        note: str | None = None,
    ) -> FeedbackResult:
        """Record the actor's feedback; disputes the hash when disagreement reaches
        HASHDB_DISPUTE_THRESHOLD distinct members. NotFound for a hash the actor
        may not address (see the module docstring)."""
        _validate(kind, reason, content)
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise InvalidInput(f"note is longer than {MAX_NOTE_CHARS} characters", field="note")
        threshold = self._ctx.settings.dispute_threshold
        with self._ctx.store.engine.begin() as conn:
            if kind in DISAGREEING:
                # Before the audit lock (lock order: change log, then audit), and so that
                # the status read below cannot change before a dispute is recorded.
                lock_change_log(conn)
            status = reachable_in(conn, actor, hash_id, self._ctx.settings).status
            new_id = conn.execute(
                insert(feedback).values(
                    hash_id=hash_id,
                    member_id=actor.id,
                    kind=kind.value,
                    reason=reason.value if reason else None,
                    content_signal_type=content.signal_type if content else None,
                    content_value=content.value if content else None,
                    note=note,
                    created_at=now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            audit.append(
                conn,
                actor,
                "feedback.give",
                f"hash:{hash_id}",
                {"kind": kind.value, "reason": reason.value if reason else None},
            )
            count = disagreeing_members_in(conn, hash_id) if kind in DISAGREEING else 0
            disputed = status is Status.ACTIVE and kind in DISAGREEING and count >= threshold
            if disputed:
                why = f"{count} members disagree (threshold {threshold})"
                vetting.move_in(conn, actor.id, [hash_id], Status.DISPUTED, why)
                audit.append(conn, actor, "hash.dispute", f"hash:{hash_id}", {"members": count})
            row = conn.execute(select(feedback).where(feedback.c.id == new_id)).mappings().one()
            return FeedbackResult(_feedback(row), count, disputed)

    def for_hash(self, actor: Actor, hash_id: int) -> list[Feedback]:
        """Feedback on a hash, oldest first: all of it for admins, their own for
        members. NotFound for a hash the actor may not address."""
        query = select(feedback).where(feedback.c.hash_id == hash_id).order_by(feedback.c.id)
        if not actor.is_admin:
            query = query.where(feedback.c.member_id == actor.id)
        with self._ctx.store.engine.connect() as conn:
            reachable_in(conn, actor, hash_id, self._ctx.settings)
            return [_feedback(r) for r in conn.execute(query).mappings()]

    def page(
        self, actor: Actor, hash_id: int, *, after: int = 0, limit: int = DEFAULT_LIMIT
    ) -> Page[Feedback]:
        """`for_hash` a page at a time: the feedback with ids above `after`, by id."""
        check_page(after, limit)
        query = (
            select(feedback)
            .where(feedback.c.hash_id == hash_id, feedback.c.id > after)
            .order_by(feedback.c.id)
            .limit(limit + 1)
        )
        if not actor.is_admin:
            query = query.where(feedback.c.member_id == actor.id)
        with self._ctx.store.engine.connect() as conn:
            reachable_in(conn, actor, hash_id, self._ctx.settings)
            rows = [_feedback(r) for r in conn.execute(query).mappings()]
        return page_of(rows, after, limit, lambda f: f.id)
