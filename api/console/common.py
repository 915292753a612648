"""Small helpers shared by the console's pages: names, ids from forms and query
strings, the text every request may carry, the queue's neighbours of a hash.

Ids are positive 64-bit integers, as the database stores them: anything else in a
form is `InvalidInput` (400), in a path a 404 (the app's `id` converter). No field
of a console request holds a C0 control character but tab and line breaks
(`refuse_control_characters`, run before every view), the same rule as the API's.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import request

from api.console.session import user
from api.context import ApiContext
from api.schemas import control_character
from api.schemas_workflow import MAX_ID
from hashdb.consortium import HashRecord, Match, Query, Status
from hashdb.errors import InvalidInput
from hashdb.signals import SIGNAL_TYPES, Matching


def member_names(ctx: ApiContext) -> dict[int, str]:
    """Member names by id, as the logged-in user may see them."""
    return ctx.db.members.names(user().actor())


def parse_id(text: str) -> int | None:
    """`text` as a database id (1 to 2**63 - 1, ASCII digits only), or None."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def form_ids(name: str = "ids") -> list[int]:
    """Positive integer ids from a repeated form field; InvalidInput on anything else."""
    out = []
    for text in request.form.getlist(name):
        value = parse_id(text)
        if value is None:
            raise InvalidInput(f"{text!r} is not a hash id", field=name)
        out.append(value)
    return out


def refuse_control_characters() -> None:
    """InvalidInput naming the first query parameter or form field that holds a
    control character (tab, line feed and carriage return are allowed)."""
    for source in (request.args, request.form):
        for name, value in source.items(multi=True):
            where = control_character(value)
            if where is not None:
                raise InvalidInput(f"{name}: {where} is not allowed", field=name)


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
    results = ctx.db.matching.match(None, queries)  # not a member's lookup: not counted
    return {
        r.id: [
            m for m in res.matches if m.record.id != r.id and m.record.status is not Status.REJECTED
        ]
        for r, res in zip(wanted, results, strict=True)
    }
