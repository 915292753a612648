"""Admitting a batch of contributions: labels checked, start status chosen, recorded.

In one transaction: every label is checked against the taxonomy (an unknown label
refuses the whole batch, naming it), `crisis_incident:<id>` labels are resolved to
incidents, each item's start status is chosen (`vetting.initial_status`: pending
for a member, active for an admin, a trusted flagger or an open incident), the rows
are stored with their creation history, and one audit entry records the write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Engine

from hashdb.errors import InvalidInput
from hashdb.store import Added, HashStore, NewHash, Status
from hashdb.workflow import audit, incidents, labels, vetting
from hashdb.workflow.actor import Actor


def contribute(engine: Engine, actor: Actor, items: Sequence[NewHash]) -> list[Added]:
    """Store `items` for the actor; one result per item, in order."""
    store = HashStore(engine)
    with engine.begin() as conn:
        refs = labels.check(conn, [item.labels for item in items])
        tagged: list[int | None] = []
        for i, item_refs in enumerate(refs):
            ids = [r.value for r in item_refs if r.name == labels.INCIDENT_LABEL]
            if any(v is None or not v.isdigit() for v in ids):
                raise InvalidInput(
                    f"{labels.INCIDENT_LABEL} takes an incident id", field="labels", index=i
                )
            tagged.append(int(ids[0]) if ids and ids[0] else None)
        known = incidents.many_in(conn, (t for t in tagged if t is not None))
        for i, incident_id in enumerate(tagged):
            if incident_id is not None and incident_id not in known:
                raise InvalidInput(f"no incident with id {incident_id}", field="labels", index=i)
        groups: dict[Status, list[int]] = {}
        prepared: list[NewHash] = []
        for i, (item, incident_id) in enumerate(zip(items, tagged, strict=True)):
            incident = known.get(incident_id) if incident_id is not None else None
            fast = incident is not None and incident.open
            groups.setdefault(vetting.initial_status(actor.member, fast_tracked=fast), []).append(i)
            prepared.append(replace(item, incident_id=incident_id))
        results: list[Added | None] = [None] * len(items)
        for status, positions in groups.items():
            added = store.add_in(conn, actor.id, [prepared[p] for p in positions], status)
            for p, a in zip(positions, added, strict=True):
                results[p] = a
        done = [a for a in results if a is not None]
        audit.append(
            conn,
            actor,
            "hashes.contribute",
            "hashes",
            {
                "items": len(items),
                "created": sum(a.created for a in done),
                "statuses": {s.value: len(p) for s, p in sorted(groups.items())},
            },
        )
    return done
