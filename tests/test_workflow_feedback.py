"""Feedback and disputes, outcomes of matches, and match counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hashdb.consortium import feedback, match_counts, outcomes, vetting
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.consortium.feedback import ContentHash, DisagreeReason, Kind
from hashdb.errors import InvalidInput, NotFound
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Status, Store
from hashdb.store.schema import match_counts as match_counts_table

THRESHOLD = 2


def pdq(seed: int) -> bytes:
    return bytes((seed * 37 + i * 11) % 256 for i in range(32))


@pytest.fixture
def people(store: Store) -> dict[str, Actor]:
    out = {"admin": Actor(store.members.create("Consortium", Role.ADMIN)[0])}
    for name in ("a", "b", "c"):
        out[name] = Actor(store.members.create(f"Platform {name}", Role.MEMBER)[0])
    return out


@pytest.fixture
def active_id(store: Store, people: dict[str, Actor]) -> int:
    db = Consortium(Settings(), store)
    (added,) = db.contributions.add(
        people["admin"], [NewHash(PDQ.name, pdq(1), ("manifesto",), 90)]
    )
    return added.id


def disagree(store: Store, actor: Actor, hash_id: int) -> feedback.FeedbackResult:
    return feedback.give(
        store.engine,
        actor,
        hash_id,
        Kind.DISAGREE,
        reason=DisagreeReason.NOT_TERRORIST_CONTENT,
        threshold=THRESHOLD,
    )


def test_disagreement_from_enough_distinct_members_disputes_a_hash(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    first = disagree(store, people["a"], active_id)
    again = disagree(store, people["a"], active_id)
    assert (first.disputed, again.disputed, again.disagreeing_members) == (False, False, 1)
    assert store.hashes.get(active_id).status is Status.ACTIVE
    second = disagree(store, people["b"], active_id)
    assert (second.disputed, second.disagreeing_members) == (True, 2)
    assert store.hashes.get(active_id).status is Status.DISPUTED
    last = vetting.history(store.engine, active_id)[-1]
    assert (last.to_status, last.actor_id) == (Status.DISPUTED, people["b"].id)


def test_agreement_does_not_count_toward_a_dispute(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    for who in ("a", "b", "c"):
        result = feedback.give(store.engine, people[who], active_id, Kind.AGREE, threshold=1)
        assert not result.disputed
    assert store.hashes.get(active_id).status is Status.ACTIVE


def test_a_false_positive_counts_as_disagreement_and_carries_the_content_hash(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    content = ContentHash("pdq", pdq(2))
    result = feedback.give(
        store.engine, people["a"], active_id, Kind.FALSE_POSITIVE, content=content, threshold=1
    )
    assert result.disputed and result.feedback.content == content


@pytest.mark.parametrize(
    ("kind", "kwargs", "field"),
    [
        (Kind.DISAGREE, {}, "reason"),
        (Kind.AGREE, {"reason": DisagreeReason.WRONG_LABEL}, "reason"),
        (Kind.FALSE_POSITIVE, {}, "content"),
        (Kind.FALSE_POSITIVE, {"content": ContentHash("pdq", b"short")}, "content.value"),
        (Kind.FALSE_POSITIVE, {"content": ContentHash("nope", b"x")}, "content.signal_type"),
    ],
)
def test_feedback_is_validated_naming_the_field(
    store: Store,
    people: dict[str, Actor],
    active_id: int,
    kind: Kind,
    kwargs: dict[str, object],
    field: str,
) -> None:
    with pytest.raises(InvalidInput) as caught:
        feedback.give(store.engine, people["a"], active_id, kind, threshold=2, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_feedback_kinds_and_reasons_are_a_fixed_list() -> None:
    with pytest.raises(InvalidInput):
        Kind.parse("meh")
    with pytest.raises(InvalidInput):
        DisagreeReason.parse("boring")
    assert DisagreeReason.parse("wrong_label") is DisagreeReason.WRONG_LABEL


def test_feedback_on_an_unknown_hash_is_not_found(store: Store, people: dict[str, Actor]) -> None:
    with pytest.raises(NotFound):
        disagree(store, people["a"], 12345)


def test_a_kept_hash_needs_fresh_disagreement_to_be_disputed_again(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    disagree(store, people["a"], active_id)
    disagree(store, people["b"], active_id)
    vetting.resolve_dispute(
        store.engine, people["admin"], active_id, vetting.Resolution.KEEP, "it is propaganda"
    )
    assert store.hashes.get(active_id).status is Status.ACTIVE
    assert not disagree(store, people["a"], active_id).disputed
    assert disagree(store, people["c"], active_id).disputed


def test_members_see_their_own_feedback_and_admins_see_all(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    disagree(store, people["a"], active_id)
    feedback.give(store.engine, people["b"], active_id, Kind.AGREE, threshold=THRESHOLD)
    assert [f.member_id for f in feedback.for_hash(store.engine, people["a"], active_id)] == [
        people["a"].id
    ]
    assert len(feedback.for_hash(store.engine, people["admin"], active_id)) == 2


# ---- outcomes ---------------------------------------------------------------------


def test_an_outcome_records_when_content_was_uploaded_matched_and_actioned(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    up = datetime.now(UTC) - timedelta(hours=1)
    outcome = outcomes.report(
        store.engine,
        people["a"],
        active_id,
        outcomes.Action.REMOVED,
        uploaded_at=up,
        matched_at=up + timedelta(minutes=1),
        actioned_at=up + timedelta(minutes=20),
    )
    assert outcome.time_to_action == timedelta(minutes=20)
    assert (outcome.member_id, outcome.action) == (people["a"].id, outcomes.Action.REMOVED)


@pytest.mark.parametrize(
    ("matched", "actioned", "field"),
    [(-1, 5, "matched_at"), (5, 1, "actioned_at"), (5, 24 * 60, "actioned_at")],
)
def test_outcome_times_must_be_in_order_and_not_in_the_future(
    store: Store,
    people: dict[str, Actor],
    active_id: int,
    matched: int,
    actioned: int,
    field: str,
) -> None:
    up = datetime.now(UTC) - timedelta(minutes=10)
    with pytest.raises(InvalidInput) as caught:
        outcomes.report(
            store.engine,
            people["a"],
            active_id,
            outcomes.Action.KEPT,
            uploaded_at=up,
            matched_at=up + timedelta(minutes=matched),
            actioned_at=up + timedelta(minutes=actioned),
        )
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("uploaded", "field"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), "uploaded_at"),
        (datetime(1999, 12, 31, 23, 59, tzinfo=UTC), "uploaded_at"),
        (datetime.now(UTC) + timedelta(hours=1), "uploaded_at"),
    ],
)
def test_outcome_times_before_2000_or_in_the_future_are_refused(
    store: Store, people: dict[str, Actor], active_id: int, uploaded: datetime, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        outcomes.report(
            store.engine,
            people["a"],
            active_id,
            outcomes.Action.REMOVED,
            uploaded_at=uploaded,
            matched_at=datetime.now(UTC),
            actioned_at=datetime.now(UTC),
        )
    assert caught.value.field == field
    assert datetime(2000, 1, 1, tzinfo=UTC) == outcomes.EARLIEST


def test_an_unknown_action_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        outcomes.Action.parse("deleted")
    assert caught.value.field == "action"
    assert outcomes.Action.parse("escalated_to_authorities") is outcomes.Action.ESCALATED


# ---- match counts -----------------------------------------------------------------


def test_every_match_is_counted_per_member_hash_and_hour(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    db = Consortium(Settings(), store)
    queries = [Query(PDQ, pdq(1)), Query(PDQ, pdq(1)), Query(PDQ, pdq(9))]
    db.matching.match(queries, member=people["a"].member)
    db.matching.match(queries[:1], member=people["a"].member)
    db.matching.match(queries[:1], member=people["b"].member)
    db.matching.match(queries[:1])  # not on behalf of a member: not counted
    db.tally.flush()  # written every HASHDB_COUNT_FLUSH_SECONDS; now, for the test
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                match_counts_table.c.member_id,
                match_counts_table.c.hash_id,
                match_counts_table.c.count,
            ).order_by(match_counts_table.c.member_id)
        ).all()
    assert [tuple(r) for r in rows] == [
        (people["a"].id, active_id, 3),
        (people["b"].id, active_id, 1),
    ]


def test_a_batch_without_matches_writes_nothing(store: Store, people: dict[str, Actor]) -> None:
    assert match_counts.record(store.engine, people["a"].id, []) == 0


def test_counts_fall_into_the_hour_of_the_match() -> None:
    at = datetime(2024, 5, 1, 12, 34, 56, 789, tzinfo=UTC)
    assert match_counts.bucket_of(at) == datetime(2024, 5, 1, 12, tzinfo=UTC)
