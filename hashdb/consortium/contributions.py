"""Admitting contributions: every contribution rule, for every edge that adds hashes.

`Contributions` is the one door for hashes coming in (the API, the console, the
CLI and bulk import call it). A PDQ hash below its signal type's quality floor
(50: below it a hash matches unrelated featureless images) is refused, naming the
item. Then, in one transaction: every label is checked against the taxonomy (an unknown label
refuses the whole batch, naming it), `crisis_incident:<id>` labels are resolved to
incidents, each item's start status is chosen (`vetting.initial_status`: pending
for a member, active for an admin, a trusted flagger or an open incident), the rows
are stored with their creation history, and one audit entry records the write.
A video (`contribute_video`) is admitted the same way: its frame list (one vpdq
row) and its file digests share the video's labels, status and incident.
`check_labels` runs the label and incident checks alone, writing nothing, for an
edge that wants to refuse bad labels before doing slow work (an import's plan).

Stored variants (hashdb/variants.py) may come with a PDQ hash contributed without
its image: a member that cannot share the media computes them as an upload would
(ingest/records.py, `hashdb remote contribute --hash-only`). `variants` reads them
for every edge: PDQ only, each a known stored kind once, of PDQ quality >= 50
(a window below it is never stored, as it would match featureless pictures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.engine import Connection

from hashdb.consortium import audit, incidents, labels, vetting
from hashdb.consortium.actor import Actor
from hashdb.errors import InvalidInput
from hashdb.signals import PDQ, SIGNAL_TYPES
from hashdb.store import Added, Member, NewHash, NewVideo, Status
from hashdb.store.hashes import NewVariant
from hashdb.store.schema import hashes
from hashdb.variants import SLOTS

if TYPE_CHECKING:
    from hashdb.consortium.core import Context


def _actor(who: Member | Actor) -> Actor:
    return who if isinstance(who, Actor) else Actor(who)


def _quality_floor(items: Sequence[NewHash]) -> None:
    """InvalidInput naming the first item below its signal type's quality floor."""
    for i, item in enumerate(items):
        signal = SIGNAL_TYPES[item.signal_type]
        floor = signal.min_quality
        if floor is not None and item.quality is not None and item.quality < floor:
            raise InvalidInput(
                f"{signal.name} quality {item.quality} is below {floor}: too little "
                "detail to match reliably",
                field="quality",
                index=i,
            )


def variants(
    signal_type: str, given: Sequence[tuple[str, object, int | None]], index: int | None = None
) -> tuple[NewVariant, ...]:
    """A contributed hash's stored variants, each (kind, hex value, quality), read and
    checked; InvalidInput naming `variants` and the item otherwise."""
    if not given:
        return ()
    if signal_type != PDQ.name:
        raise InvalidInput("stored variants apply to pdq only", field="variants", index=index)
    floor = PDQ.min_quality or 0
    out: list[NewVariant] = []
    for kind, value, quality in given:
        if kind not in SLOTS:
            raise InvalidInput(
                f"unknown stored variant {kind!r}; expected content or a crop window "
                "(crop<keep>_<column>_<row>, hashdb/variants.py)",
                field="variants",
                index=index,
            )
        if quality is None or not floor <= quality <= 100:
            raise InvalidInput(
                f"stored variant {kind}: its PDQ quality must be {floor}-100",
                field="variants",
                index=index,
            )
        out.append(NewVariant(kind, PDQ.parse(value, "variants", index), quality))
    if len({v.kind for v in out}) != len(out):
        raise InvalidInput("a stored variant kind is given twice", field="variants", index=index)
    return tuple(out)


def _incidents(
    conn: Connection, label_sets: Sequence[Sequence[str]], field: str = "labels"
) -> list[incidents.Incident | None]:
    """For each item's labels: the incident it is tagged with, if any. InvalidInput
    (naming the field and the item) for an unknown label or incident."""
    refs = labels.check(conn, label_sets, field)
    tagged: list[int | None] = []
    for i, item_refs in enumerate(refs):
        ids = [r.value for r in item_refs if r.name == labels.INCIDENT_LABEL]
        if any(v is None or not v.isdigit() for v in ids):
            raise InvalidInput(
                f"{labels.INCIDENT_LABEL} takes an incident id", field=field, index=i
            )
        tagged.append(int(ids[0]) if ids and ids[0] else None)
    known = incidents.many_in(conn, (t for t in tagged if t is not None))
    out: list[incidents.Incident | None] = []
    for i, incident_id in enumerate(tagged):
        if incident_id is not None and incident_id not in known:
            raise InvalidInput(f"no incident with id {incident_id}", field=field, index=i)
        out.append(known[incident_id] if incident_id is not None else None)
    return out


def _admit(
    conn: Connection,
    actor: Actor,
    label_sets: Sequence[Sequence[str]],
    *,
    fast_tracked: bool = False,
) -> list[tuple[Status, int | None]]:
    """For each item's labels: its start status and the incident it is tagged with
    (an open incident fast-tracks it). InvalidInput as for `_incidents`."""
    return [
        (
            vetting.initial_status(
                actor.member, fast_tracked=fast_tracked or (i is not None and i.open)
            ),
            i.id if i is not None else None,
        )
        for i in _incidents(conn, label_sets)
    ]


class Contributions:
    """Hashes and videos contributed by a member."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def check_labels(self, label_sets: Sequence[Sequence[str]], *, field: str = "labels") -> None:
        """Check the labels of each item of a batch as `add` would (taxonomy,
        values, incidents), writing nothing: InvalidInput naming `field`, the
        item's index and the unknown labels. For an edge that refuses bad labels
        before slow work, such as an import's plan."""
        with self._ctx.store.engine.begin() as conn:  # the taxonomy may seed itself
            _incidents(conn, label_sets, field)

    def add(self, who: Member | Actor, items: Sequence[NewHash]) -> list[Added]:
        """Store a batch of hashes contributed by `who`, one result per item, in
        order, and audit it (`hashes.contribute`). Pass an Actor to have its key and
        request id audited. Refusals as for `admit_in`."""
        actor = _actor(who)
        with self._ctx.store.engine.begin() as conn:
            added, statuses = self._admit_in(conn, actor, items, fast_tracked=False)
            audit.append(
                conn,
                actor,
                "hashes.contribute",
                "hashes",
                {
                    "items": len(items),
                    "created": sum(a.created for a in added),
                    "statuses": {s.value: n for s, n in sorted(statuses.items())},
                },
            )
        return added

    def admit_in(
        self,
        conn: Connection,
        actor: Actor,
        items: Sequence[NewHash],
        *,
        fast_tracked: bool = False,
    ) -> list[Added]:
        """Store a batch inside the caller's transaction (which audits it), one
        result per item, in order: InvalidInput naming the item for one below the
        quality floor, an unknown label or incident. The start status follows the
        vetting rules; `fast_tracked` starts every item `active` (bulk imports by
        ops)."""
        return self._admit_in(conn, actor, items, fast_tracked=fast_tracked)[0]

    def _admit_in(
        self, conn: Connection, actor: Actor, items: Sequence[NewHash], *, fast_tracked: bool
    ) -> tuple[list[Added], dict[Status, int]]:
        _quality_floor(items)
        admitted = _admit(conn, actor, [item.labels for item in items], fast_tracked=fast_tracked)
        groups: dict[Status, list[int]] = {}
        prepared: list[NewHash] = []
        for i, (item, (status, incident_id)) in enumerate(zip(items, admitted, strict=True)):
            groups.setdefault(status, []).append(i)
            prepared.append(replace(item, incident_id=incident_id))
        results: list[Added | None] = [None] * len(items)
        for status, positions in groups.items():
            added = self._ctx.store.hashes.add_in(
                conn, actor.id, [prepared[p] for p in positions], status
            )
            for p, a in zip(positions, added, strict=True):
                results[p] = a
        return [a for a in results if a is not None], {s: len(p) for s, p in groups.items()}

    def add_video(
        self, who: Member | Actor, video: NewVideo, digests: Sequence[NewHash]
    ) -> list[Added]:
        """Store a video (frames as one vpdq row, plus its file digests) under the
        same rules as `add`, all in the video's start status, and audit it
        (`videos.contribute`); results: the vpdq row, then the digests."""
        actor = _actor(who)
        with self._ctx.store.engine.begin() as conn:
            done, status = self._admit_video_in(conn, actor, video, digests, fast_tracked=False)
            audit.append(
                conn,
                actor,
                "videos.contribute",
                f"hash:{done[0].id}",
                {
                    "frames": len(video.frames),
                    "created": sum(a.created for a in done),
                    "status": status.value,
                },
            )
        return done

    def admit_video_in(
        self,
        conn: Connection,
        actor: Actor,
        video: NewVideo,
        digests: Sequence[NewHash],
        *,
        fast_tracked: bool = False,
    ) -> list[Added]:
        """`add_video` inside the caller's transaction (which audits it), with
        `fast_tracked` as for `admit_in`."""
        return self._admit_video_in(conn, actor, video, digests, fast_tracked=fast_tracked)[0]

    def _admit_video_in(
        self,
        conn: Connection,
        actor: Actor,
        video: NewVideo,
        digests: Sequence[NewHash],
        *,
        fast_tracked: bool,
    ) -> tuple[list[Added], Status]:
        _quality_floor(digests)
        ((status, incident_id),) = _admit(conn, actor, [video.labels], fast_tracked=fast_tracked)
        labels.check(conn, [d.labels for d in digests])
        store = self._ctx.store
        first = store.videos.add_in(conn, actor.id, video, status)
        if first.created and incident_id is not None:
            conn.execute(
                update(hashes).where(hashes.c.id == first.id).values(incident_id=incident_id)
            )
        rest = store.hashes.add_in(
            conn, actor.id, [replace(d, incident_id=incident_id) for d in digests], status
        )
        return [first, *rest], status
