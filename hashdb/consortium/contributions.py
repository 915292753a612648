"""Admitting a batch of contributions: labels checked, start status chosen, recorded.

In one transaction: every label is checked against the taxonomy (an unknown label
refuses the whole batch, naming it), `crisis_incident:<id>` labels are resolved to
incidents, each item's start status is chosen (`vetting.initial_status`: pending
for a member, active for an admin, a trusted flagger or an open incident), the rows
are stored with their creation history, and one audit entry records the write.
A video (`contribute_video`) is admitted the same way: its frame list (one vpdq
row) and its file digests share the video's labels, status and incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import Engine, update
from sqlalchemy.engine import Connection

from hashdb.consortium import audit, incidents, labels, vetting
from hashdb.consortium.actor import Actor
from hashdb.errors import InvalidInput
from hashdb.store import Added, HashStore, NewHash, NewVideo, Status, VideoStore
from hashdb.store.schema import hashes


def _admit(
    conn: Connection, actor: Actor, label_sets: Sequence[Sequence[str]]
) -> list[tuple[Status, int | None]]:
    """For each item's labels: its start status and the incident it is tagged with.
    InvalidInput (naming the item) for an unknown label or incident."""
    refs = labels.check(conn, label_sets)
    tagged: list[int | None] = []
    for i, item_refs in enumerate(refs):
        ids = [r.value for r in item_refs if r.name == labels.INCIDENT_LABEL]
        if any(v is None or not v.isdigit() for v in ids):
            raise InvalidInput(
                f"{labels.INCIDENT_LABEL} takes an incident id", field="labels", index=i
            )
        tagged.append(int(ids[0]) if ids and ids[0] else None)
    known = incidents.many_in(conn, (t for t in tagged if t is not None))
    out: list[tuple[Status, int | None]] = []
    for i, incident_id in enumerate(tagged):
        if incident_id is not None and incident_id not in known:
            raise InvalidInput(f"no incident with id {incident_id}", field="labels", index=i)
        incident = known.get(incident_id) if incident_id is not None else None
        fast = incident is not None and incident.open
        out.append((vetting.initial_status(actor.member, fast_tracked=fast), incident_id))
    return out


def contribute(engine: Engine, actor: Actor, items: Sequence[NewHash]) -> list[Added]:
    """Store `items` for the actor; one result per item, in order."""
    store = HashStore(engine)
    with engine.begin() as conn:
        admitted = _admit(conn, actor, [item.labels for item in items])
        groups: dict[Status, list[int]] = {}
        prepared: list[NewHash] = []
        for i, (item, (status, incident_id)) in enumerate(zip(items, admitted, strict=True)):
            groups.setdefault(status, []).append(i)
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


def contribute_video(
    engine: Engine, actor: Actor, video: NewVideo, digests: Sequence[NewHash]
) -> list[Added]:
    """Store a video for the actor: its vpdq row (with frames) first, then its file
    digests, all in the video's start status; one result per row, in that order."""
    store = HashStore(engine)
    with engine.begin() as conn:
        ((status, incident_id),) = _admit(conn, actor, [video.labels])
        labels.check(conn, [d.labels for d in digests])
        first = VideoStore(engine, store).add_in(conn, actor.id, video, status)
        if first.created and incident_id is not None:
            conn.execute(
                update(hashes).where(hashes.c.id == first.id).values(incident_id=incident_id)
            )
        rest = store.add_in(
            conn, actor.id, [replace(d, incident_id=incident_id) for d in digests], status
        )
        done = [first, *rest]
        audit.append(
            conn,
            actor,
            "videos.contribute",
            f"hash:{first.id}",
            {
                "frames": len(video.frames),
                "created": sum(a.created for a in done),
                "status": status.value,
            },
        )
    return done
