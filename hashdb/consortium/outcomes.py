"""What a member did with a match: removed, kept, or escalated to the authorities.

A member reports, for content that matched a hash, when the content was uploaded,
when it matched and when the member acted. From these the report computes the
takedown rate (share of reported outcomes that are removals) and time to action
(actioned minus uploaded; the EU terrorist-content regulation, 2021/784 art. 3(3),
requires removal within one hour of a removal order, so the report also gives the
share of removals within an hour). Times must be in order
(uploaded <= matched <= actioned), none before `EARLIEST` (the service and the
regulation are younger; a year-0001 upload would otherwise dominate the median)
and none in the future beyond `CLOCK_SKEW`. The hash must be one the member may
see or could have matched (`hashes.reachable_in`); any other id is NotFound (a
stored variant has none).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor
from hashdb.consortium.hashes import reachable_in
from hashdb.consortium.incidents import aware
from hashdb.errors import InvalidInput
from hashdb.store.clock import now, utc
from hashdb.store.schema import outcomes

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

CLOCK_SKEW = timedelta(minutes=5)
# No content matched a hash of this service before this moment.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


class Action(enum.StrEnum):
    REMOVED = "removed"
    KEPT = "kept"
    ESCALATED = "escalated_to_authorities"

    @classmethod
    def parse(cls, value: object, field: str = "action") -> Action:
        try:
            return cls(str(value))
        except ValueError:
            known = ", ".join(a.value for a in cls)
            raise InvalidInput(
                f"unknown action {value!r}; expected one of {known}", field=field
            ) from None


@dataclass(frozen=True)
class Outcome:
    id: int
    hash_id: int
    member_id: int
    action: Action
    uploaded_at: datetime
    matched_at: datetime
    actioned_at: datetime
    created_at: datetime

    @property
    def time_to_action(self) -> timedelta:
        return self.actioned_at - self.uploaded_at


def _outcome(row: RowMapping) -> Outcome:
    return Outcome(
        id=row["id"],
        hash_id=row["hash_id"],
        member_id=row["member_id"],
        action=Action(row["action"]),
        uploaded_at=utc(row["uploaded_at"]),
        matched_at=utc(row["matched_at"]),
        actioned_at=utc(row["actioned_at"]),
        created_at=utc(row["created_at"]),
    )


class Outcomes:
    """What members did with content that matched."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def report(
        self,
        actor: Actor,
        hash_id: int,
        action: Action,
        *,
        uploaded_at: datetime,
        matched_at: datetime,
        actioned_at: datetime,
    ) -> Outcome:
        """Record what the actor did with content that matched `hash_id`."""
        up = aware(uploaded_at, "uploaded_at")
        matched = aware(matched_at, "matched_at")
        acted = aware(actioned_at, "actioned_at")
        at = now()
        for field, value in (("uploaded_at", up), ("matched_at", matched), ("actioned_at", acted)):
            if value < EARLIEST:
                raise InvalidInput(f"{field} is before {EARLIEST.date().isoformat()}", field=field)
            if value > at + CLOCK_SKEW:
                raise InvalidInput(f"{field} is in the future", field=field)
        if matched < up:
            raise InvalidInput("matched_at is before uploaded_at", field="matched_at")
        if acted < matched:
            raise InvalidInput("actioned_at is before matched_at", field="actioned_at")
        with self._ctx.store.engine.begin() as conn:
            reachable_in(conn, actor, hash_id, self._ctx.settings)
            new_id = conn.execute(
                insert(outcomes).values(
                    hash_id=hash_id,
                    member_id=actor.id,
                    action=action.value,
                    uploaded_at=up,
                    matched_at=matched,
                    actioned_at=acted,
                    created_at=at,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            audit.append(conn, actor, "outcome.report", f"hash:{hash_id}", {"action": action.value})
            row = conn.execute(select(outcomes).where(outcomes.c.id == new_id)).mappings().one()
            return _outcome(row)
