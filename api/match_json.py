"""Match results written straight to JSON bytes, for the match endpoints.

A batch of 1,000 queries answers with a thousand results and a match or more each;
building them as dictionaries and then encoding those took a quarter of a worker's
interpreter time on the batch path (docs/measurements.md, "Result encoding and
the batch path"). Here each result is one bytes template filled in, and what a
match shows of its stored hash (labels, status, the time it was added) is encoded
once per row object and reused while the row cache keeps that object: a change to
the row replaces the object (hashdb/matching/rows.py), so a reused encoding is
never stale.

Contract: `result(i, r)` is byte for byte what pydantic's encoder (`to_json`) writes
for the same result shaped as `schemas.QueryResult` with `videos` null; the
documented schema holds it (tests/test_match_json.py compares the two for varied
results, the schema tests the endpoints). Every value that can carry text a person
wrote (labels) or a name goes through `to_json`; only integers, booleans and the hex
digits of a formatted hash are written directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

from pydantic_core import to_json

from hashdb.consortium import HashRecord, Match, QueryResult

#: Encoded rows kept at most; past it the cache starts again empty.
MAX_ROWS = 100_000

_rows: dict[int, tuple[HashRecord, bytes]] = {}  # by id(record); holds the record


@cache
def _name(text: str) -> bytes:
    return to_json(text)


def _row(record: HashRecord) -> bytes:
    """`"labels":...,"status":...,"added_at":...` of a stored hash, encoded once per
    row object (the entry holds the object, so its id cannot be reused meanwhile)."""
    entry = _rows.get(id(record))
    if entry is not None and entry[0] is record:
        return entry[1]
    fields = to_json(
        {
            "labels": list(record.labels),
            "status": record.status.value,
            "added_at": record.created_at,
        }
    )[1:-1]
    if len(_rows) >= MAX_ROWS:
        _rows.clear()
    _rows[id(record)] = (record, fields)
    return fields


def _match(m: Match) -> bytes:
    if m.inliers is not None:  # a keypoints match: rare, so the general encoder
        return _keypoint_match(m)
    if m.via is None:
        return b'{"id":%d,"distance":%d,"via":null,"variant":null,%s%s}' % (
            m.record.id,
            m.distance,
            _NO_KEYPOINTS,
            _row(m.record),
        )
    via = to_json({"probe": m.via.probe, "stored": m.via.stored})
    return b'{"id":%d,"distance":%d,"via":%s,"variant":%s,%s%s}' % (
        m.record.id,
        m.distance,
        via,
        to_json(m.how),
        _NO_KEYPOINTS,
        _row(m.record),
    )


_NO_KEYPOINTS = b'"inliers":null,"share":null,'


def _keypoint_match(m: Match) -> bytes:
    via = None if m.via is None else {"probe": m.via.probe, "stored": m.via.stored}
    head = {"id": m.record.id, "distance": m.distance, "via": via, "variant": m.how}
    tail = to_json({"inliers": m.inliers, "share": m.share})[1:-1]
    return to_json(head)[:-1] + b"," + tail + b"," + _row(m.record) + b"}"


_RESULT = (
    b'{"index":%d,"signal_type":%s,"value":"%s","low_quality":%s,"matches":[%s],"videos":null}'
)


def result(index: int, r: QueryResult) -> bytes:
    """One result as the JSON of `schemas.QueryResult` (its `videos` null); a
    keypoints query shows its set's digest as its value, as its stored row would."""
    q = r.query
    return _RESULT % (
        index,
        _name(q.signal_type.name),
        q.shown.encode(),
        b"true" if r.low_quality else b"false",
        b",".join([_match(m) for m in r.matches]),
    )


def results(rs: Sequence[QueryResult], positions: Iterable[int] | None = None) -> list[bytes]:
    """`result` of each, at `positions` (default 0..n)."""
    where = range(len(rs)) if positions is None else positions
    return [result(i, r) for i, r in zip(where, rs, strict=True)]


def array(items: Iterable[bytes]) -> bytes:
    """A JSON array of already encoded items."""
    return b"[" + b",".join(items) + b"]"


def document(fields: Iterable[tuple[str, bytes]]) -> bytes:
    """A JSON object of already encoded values, in the order given."""
    return b"{" + b",".join(_name(k) + b":" + v for k, v in fields) + b"}"
