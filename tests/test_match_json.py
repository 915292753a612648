"""Match results written as bytes (api/match_json.py) read exactly as the schema's.

The match endpoints write their results with byte templates instead of building
and encoding dictionaries; whatever a result holds (any signal type, any labels a
person wrote, any status, a probe or stored variant or neither, a low-quality
query, a keypoints match with its inliers and share), the bytes must be exactly
what pydantic writes for the documented model `schemas.QueryResult`, and a stored
hash whose row changed must never be shown with its old labels.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from api import match_json
from api import schemas as s
from hashdb.matching import Match, Query, QueryResult, Via
from hashdb.signals import KEYPOINTS, MD5, PDQ, PHASH, SHA256
from hashdb.signals.keypoints import MIRROR, digest
from hashdb.store import HashRecord, Status

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)

records = st.builds(
    HashRecord,
    id=st.integers(1, 2**53),
    signal_type=st.just("pdq"),
    value=st.binary(min_size=32, max_size=32),
    quality=st.none() | st.integers(0, 100),
    labels=st.lists(st.text(min_size=1, max_size=12), max_size=3).map(tuple),
    contributor_id=st.integers(1, 1000),
    status=st.sampled_from(Status),
    reference=st.none(),
    created_at=st.integers(0, 10**15).map(lambda us: EPOCH + timedelta(microseconds=us)),
    updated_at=st.just(EPOCH),
)
names = st.none() | st.sampled_from(["rot90", "flip_x", "content", "crop90_3_3", "content_2"])
vias = st.none() | st.builds(Via, probe=names, stored=names).map(
    lambda v: Via.of(v.probe, v.stored)
)
matches = st.builds(
    Match,
    record=records,
    distance=st.integers(0, 128),
    via=vias,
    inliers=st.none(),
    share=st.none(),
)
keypoint_matches = st.builds(
    Match,
    record=records,
    distance=st.just(0),
    via=st.none() | st.just(Via.of(MIRROR, None)),
    inliers=st.integers(12, 256),
    share=st.floats(0, 1).map(lambda f: round(f, 3)),
)


@st.composite
def query_results(draw: st.DrawFn) -> QueryResult:
    """A result of any signal type; a keypoints query's value is a set's wire form
    (any bytes, as far as the writer is concerned), reported as its digest."""
    signal = draw(st.sampled_from([PDQ, PHASH, MD5, SHA256, KEYPOINTS]))
    if signal is KEYPOINTS:
        value = draw(st.binary(min_size=7, max_size=300))
        found = draw(st.lists(keypoint_matches, max_size=3))
    else:
        value = draw(st.binary(min_size=signal.nbytes, max_size=signal.nbytes))
        found = draw(st.lists(matches, max_size=4))
    quality = draw(st.none() | st.integers(0, 256 if signal is KEYPOINTS else 100))
    return QueryResult(Query(signal, value, quality=quality), found)


def as_schema(index: int, r: QueryResult) -> bytes:
    """What pydantic writes for the result as the documented model."""
    q = r.query
    model = s.QueryResult(
        index=index,
        signal_type=q.signal_type.name,
        value=q.signal_type.format(digest(q.value) if q.signal_type is KEYPOINTS else q.value),
        low_quality=r.low_quality,
        matches=[
            s.MatchOut(
                id=m.record.id,
                distance=m.distance,
                via=None if m.via is None else s.ViaOut(probe=m.via.probe, stored=m.via.stored),
                variant=m.how,
                inliers=m.inliers,
                share=m.share,
                labels=list(m.record.labels),
                status=m.record.status.value,
                added_at=m.record.created_at,
            )
            for m in r.matches
        ],
        videos=None,
    )
    return model.model_dump_json().encode()


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, 10_000), r=query_results())
def test_a_result_is_written_byte_for_byte_as_the_schema_writes_it(
    index: int, r: QueryResult
) -> None:
    assert match_json.result(index, r) == as_schema(index, r)


@given(results=st.lists(query_results(), max_size=5))
def test_a_response_is_a_json_document_of_its_results(results: list[QueryResult]) -> None:
    body = match_json.document([("results", match_json.array(match_json.results(results)))])
    decoded = json.loads(body)
    assert decoded == {"results": [json.loads(as_schema(i, r)) for i, r in enumerate(results)]}
    s.MatchResponse.model_validate_json(body)


def test_a_changed_row_is_never_shown_as_it_was() -> None:
    record = HashRecord(1, "pdq", bytes(32), None, ("old",), 1, Status.ACTIVE, None, EPOCH, EPOCH)
    first = QueryResult(Query(PDQ, bytes(32)), [Match(record, 3)])
    assert b'"labels":["old"]' in match_json.result(0, first)
    # The row cache replaces a changed row with a new object, never mutates it.
    changed = replace(record, labels=("new",), status=Status.DISPUTED)
    second = QueryResult(Query(PDQ, bytes(32)), [Match(changed, 3)])
    written = match_json.result(0, second)
    assert b'"labels":["new"]' in written and b'"status":"disputed"' in written
    assert match_json.result(0, first) == as_schema(0, first)  # the old object, still itself
