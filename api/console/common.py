"""Small helpers shared by the console's pages: names, ids from forms, the queue's
neighbours of a hash."""

from __future__ import annotations

from collections.abc import Iterable

from flask import request

from api.context import ApiContext
from hashdb.errors import InvalidInput
from hashdb.matching import Match, Query
from hashdb.signals import SIGNAL_TYPES, Matching
from hashdb.store import HashRecord, Member, Status


def member_names(ctx: ApiContext) -> dict[int, str]:
    return {m.id: m.name for m in ctx.db.store.members.all()}


def members_by_id(ctx: ApiContext) -> dict[int, Member]:
    return {m.id: m for m in ctx.db.store.members.all()}


def form_ids(name: str = "ids") -> list[int]:
    """Positive integer ids from a repeated form field; InvalidInput on anything else."""
    out = []
    for text in request.form.getlist(name):
        if not text.isdigit() or int(text) < 1:
            raise InvalidInput(f"{text!r} is not a hash id", field=name)
        out.append(int(text))
    return out


def hex_of(record: HashRecord) -> str:
    return SIGNAL_TYPES[record.signal_type].format(record.value)


def similar(ctx: ApiContext, records: Iterable[HashRecord]) -> dict[int, list[Match]]:
    """For each record, the other hashes it would match (perceptual: within the
    default threshold; digests: the same value from other contributors).
    Video hashes are compared frame by frame on their own page, not here."""
    wanted = [r for r in records if SIGNAL_TYPES[r.signal_type].matching is not Matching.VIDEO]
    if not wanted:
        return {}
    queries = [Query(SIGNAL_TYPES[r.signal_type], r.value) for r in wanted]
    ctx.db.catch_up()
    results = ctx.db.matcher.match(queries)
    return {
        r.id: [
            m for m in res.matches if m.record.id != r.id and m.record.status is not Status.REJECTED
        ]
        for r, res in zip(wanted, results, strict=True)
    }
