"""Crisis mode: an admin opens an incident; contributions tagged with it go live.

During an attack, copies spread in minutes, and vetting each contribution would
slow the response. So an admin opens an incident (a name and a start time); a
contribution labelled `crisis_incident:<id>` of an open incident goes straight to
`active` (and is counted per incident in the transparency report). Closing the
incident records its end; later contributions with its label are vetted as usual.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.paging import DEFAULT_LIMIT, Page, check_page, page_of
from hashdb.errors import Conflict, InvalidInput, NotFound
from hashdb.store.clock import now, utc
from hashdb.store.schema import incidents

if TYPE_CHECKING:
    from hashdb.consortium.core import Context


@dataclass(frozen=True)
class Incident:
    id: int
    name: str
    description: str | None
    started_at: datetime
    ended_at: datetime | None
    opened_by: int
    closed_by: int | None

    @property
    def open(self) -> bool:
        return self.ended_at is None


def _incident(row: RowMapping) -> Incident:
    return Incident(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        started_at=utc(row["started_at"]),
        ended_at=utc(row["ended_at"]) if row["ended_at"] else None,
        opened_by=row["opened_by"],
        closed_by=row["closed_by"],
    )


def aware(value: datetime, field: str) -> datetime:
    """`value` in UTC; a time without a zone is refused rather than guessed."""
    if value.tzinfo is None:
        raise InvalidInput(f"{field} needs a time zone (for example +00:00)", field=field)
    return utc(value)


def get_in(conn: Connection, incident_id: int) -> Incident:
    row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).mappings()
    found = row.one_or_none()
    if found is None:
        raise NotFound(f"no incident with id {incident_id}")
    return _incident(found)


def many_in(conn: Connection, ids: Iterable[int]) -> dict[int, Incident]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = conn.execute(select(incidents).where(incidents.c.id.in_(wanted))).mappings()
    return {r["id"]: _incident(r) for r in rows}


class Incidents:
    """Crisis incidents: admins open, close and list them."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def open(
        self,
        actor: Actor,
        name: str,
        *,
        started_at: datetime | None = None,
        description: str | None = None,
    ) -> Incident:
        """Open a crisis incident (admins only); it starts now unless told otherwise."""
        require_admin(actor, "open incidents")
        name = name.strip()
        if not 0 < len(name) <= 200:
            raise InvalidInput("incident name must be 1-200 characters", field="name")
        start = aware(started_at, "started_at") if started_at else now()
        with self._ctx.store.engine.begin() as conn:
            new_id = conn.execute(
                insert(incidents).values(
                    name=name, description=description, started_at=start, opened_by=actor.id
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            audit.append(conn, actor, "incident.open", f"incident:{new_id}", {"name": name})
            return get_in(conn, int(new_id))

    def close(
        self, actor: Actor, incident_id: int, *, ended_at: datetime | None = None
    ) -> Incident:
        """Close an open incident, recording its end (admins only); Conflict if closed."""
        require_admin(actor, "close incidents")
        end = aware(ended_at, "ended_at") if ended_at else now()
        with self._ctx.store.engine.begin() as conn:
            current = get_in(conn, incident_id)
            if not current.open:
                raise Conflict(f"incident {incident_id} is already closed")
            if end < current.started_at:
                raise InvalidInput("an incident cannot end before it started", field="ended_at")
            conn.execute(
                update(incidents)
                .where(incidents.c.id == incident_id)
                .values(ended_at=end, closed_by=actor.id)
            )
            audit.append(conn, actor, "incident.close", f"incident:{incident_id}")
            return get_in(conn, incident_id)

    def get(self, actor: Actor, incident_id: int) -> Incident:
        """One incident (admins only); NotFound for an unknown id."""
        require_admin(actor, "see incidents")
        with self._ctx.store.engine.connect() as conn:
            return get_in(conn, incident_id)

    def all(self, actor: Actor, *, open_only: bool = False) -> list[Incident]:
        """Every incident (or the open ones), oldest first (admins only)."""
        require_admin(actor, "see incidents")
        query = select(incidents).order_by(incidents.c.started_at, incidents.c.id)
        if open_only:
            query = query.where(incidents.c.ended_at.is_(None))
        with self._ctx.store.engine.connect() as conn:
            return [_incident(r) for r in conn.execute(query).mappings()]

    def page(self, actor: Actor, *, after: int = 0, limit: int = DEFAULT_LIMIT) -> Page[Incident]:
        """Incidents with ids above `after`, by id (the order they were opened in, which
        a back-dated `started_at` does not change), a page at a time (admins only)."""
        require_admin(actor, "see incidents")
        check_page(after, limit)
        query = (
            select(incidents)
            .where(incidents.c.id > after)
            .order_by(incidents.c.id)
            .limit(limit + 1)
        )
        with self._ctx.store.engine.connect() as conn:
            rows = [_incident(r) for r in conn.execute(query).mappings()]
        return page_of(rows, after, limit, lambda i: i.id)
