"""Feedback and disputes, outcomes of matches, and match counts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from hashdb.consortium import feedback, match_counts, outcomes, vetting
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.consortium.feedback import ContentHash, DisagreeReason, Kind
from hashdb.errors import InvalidInput, NotFound
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Status, Store
from hashdb.store.clock import utc
from hashdb.store.hashes import NewVariant
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
def db(store: Store) -> Consortium:
    return Consortium(Settings(dispute_threshold=THRESHOLD), store)


@pytest.fixture
def active_id(db: Consortium, people: dict[str, Actor]) -> int:
    (added,) = db.contributions.add(
        people["admin"], [NewHash(PDQ.name, pdq(1), ("manifesto",), 90)]
    )
    return added.id


def disagree(db: Consortium, actor: Actor, hash_id: int) -> feedback.FeedbackResult:
    return db.feedback.give(
        actor, hash_id, Kind.DISAGREE, reason=DisagreeReason.NOT_TERRORIST_CONTENT
    )


def test_disagreement_from_enough_distinct_members_disputes_a_hash(
    store: Store, db: Consortium, people: dict[str, Actor], active_id: int
) -> None:
    first = disagree(db, people["a"], active_id)
    again = disagree(db, people["a"], active_id)
    assert (first.disputed, again.disputed, again.disagreeing_members) == (False, False, 1)
    assert store.hashes.get(active_id).status is Status.ACTIVE
    second = disagree(db, people["b"], active_id)
    assert (second.disputed, second.disagreeing_members) == (True, 2)
    assert store.hashes.get(active_id).status is Status.DISPUTED
    last = db.vetting.history(people["admin"], active_id)[-1]
    assert (last.to_status, last.actor_id) == (Status.DISPUTED, people["b"].id)


def test_agreement_does_not_count_toward_a_dispute(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    db = Consortium(Settings(dispute_threshold=1), store)
    for who in ("a", "b", "c"):
        result = db.feedback.give(people[who], active_id, Kind.AGREE)
        assert not result.disputed
    assert store.hashes.get(active_id).status is Status.ACTIVE


def test_a_false_positive_counts_as_disagreement_and_carries_the_content_hash(
    store: Store, people: dict[str, Actor], active_id: int
) -> None:
    content = ContentHash("pdq", pdq(2))
    db = Consortium(Settings(dispute_threshold=1), store)
    result = db.feedback.give(people["a"], active_id, Kind.FALSE_POSITIVE, content=content)
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
    db: Consortium,
    people: dict[str, Actor],
    active_id: int,
    kind: Kind,
    kwargs: dict[str, object],
    field: str,
) -> None:
    with pytest.raises(InvalidInput) as caught:
        db.feedback.give(people["a"], active_id, kind, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_feedback_kinds_and_reasons_are_a_fixed_list() -> None:
    with pytest.raises(InvalidInput):
        Kind.parse("meh")
    with pytest.raises(InvalidInput):
        DisagreeReason.parse("boring")
    assert DisagreeReason.parse("wrong_label") is DisagreeReason.WRONG_LABEL


def test_feedback_on_an_unknown_hash_is_not_found(db: Consortium, people: dict[str, Actor]) -> None:
    with pytest.raises(NotFound):
        disagree(db, people["a"], 12345)


def test_a_kept_hash_needs_fresh_disagreement_to_be_disputed_again(
    store: Store, db: Consortium, people: dict[str, Actor], active_id: int
) -> None:
    disagree(db, people["a"], active_id)
    disagree(db, people["b"], active_id)
    db.vetting.resolve_dispute(
        people["admin"], active_id, vetting.Resolution.KEEP, "it is propaganda"
    )
    assert store.hashes.get(active_id).status is Status.ACTIVE
    assert not disagree(db, people["a"], active_id).disputed
    assert disagree(db, people["c"], active_id).disputed


def test_members_see_their_own_feedback_and_admins_see_all(
    db: Consortium, people: dict[str, Actor], active_id: int
) -> None:
    disagree(db, people["a"], active_id)
    db.feedback.give(people["b"], active_id, Kind.AGREE)
    assert [f.member_id for f in db.feedback.for_hash(people["a"], active_id)] == [people["a"].id]
    assert len(db.feedback.for_hash(people["admin"], active_id)) == 2


def test_feedback_and_outcomes_follow_what_the_member_may_see_or_have_matched(
    store: Store, people: dict[str, Actor]
) -> None:
    db = Consortium(Settings(pending_matches=False), store)
    pending, rejected = db.contributions.add(
        people["a"], [NewHash(PDQ.name, pdq(5), ("manifesto",), 90), NewHash(PDQ.name, pdq(6))]
    )
    db.vetting.reject(people["admin"], [rejected.id], "no")
    for hidden in (pending.id, rejected.id):
        with pytest.raises(NotFound):
            db.feedback.give(people["b"], hidden, Kind.AGREE)
        with pytest.raises(NotFound):
            db.feedback.for_hash(people["b"], hidden)
        with pytest.raises(NotFound):
            report(db, people["b"], hidden)
    assert db.feedback.give(people["a"], rejected.id, Kind.AGREE).feedback.hash_id == rejected.id
    # Where pending hashes match, a member may have been answered with one.
    matching = Consortium(Settings(pending_matches=True), store)
    assert matching.feedback.give(people["b"], pending.id, Kind.AGREE).feedback.member_id == (
        people["b"].id
    )
    assert report(matching, people["b"], pending.id).hash_id == pending.id
    with pytest.raises(NotFound):
        matching.feedback.give(people["b"], rejected.id, Kind.AGREE)


def test_feedback_and_outcomes_on_a_stored_variant_are_not_found(
    db: Consortium, people: dict[str, Actor]
) -> None:
    crops = tuple(NewVariant(f"crop{i}", pdq(100 + i)) for i in range(5))
    (image,) = db.contributions.add(
        people["admin"], [NewHash(PDQ.name, pdq(1), ("manifesto",), 90, variants=crops)]
    )
    assert db.feedback.give(people["a"], image.id, Kind.AGREE).feedback.hash_id == image.id
    for other in range(image.id + 1, image.id + 1 + len(crops)):
        with pytest.raises(NotFound):
            db.feedback.give(people["a"], other, Kind.AGREE)
        with pytest.raises(NotFound):
            report(db, people["a"], other)
        with pytest.raises(NotFound):
            db.hashes.get(people["admin"], other)
    assert [r.id for r in db.hashes.mine(people["admin"]).items] == [image.id]


def report(db: Consortium, actor: Actor, hash_id: int) -> outcomes.Outcome:
    up = datetime.now(UTC) - timedelta(hours=1)
    return db.outcomes.report(
        actor,
        hash_id,
        outcomes.Action.REMOVED,
        uploaded_at=up,
        matched_at=up,
        actioned_at=up + timedelta(minutes=5),
    )


# ---- outcomes ---------------------------------------------------------------------


def test_an_outcome_records_when_content_was_uploaded_matched_and_actioned(
    db: Consortium, people: dict[str, Actor], active_id: int
) -> None:
    up = datetime.now(UTC) - timedelta(hours=1)
    outcome = db.outcomes.report(
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
    db: Consortium,
    people: dict[str, Actor],
    active_id: int,
    matched: int,
    actioned: int,
    field: str,
) -> None:
    up = datetime.now(UTC) - timedelta(minutes=10)
    with pytest.raises(InvalidInput) as caught:
        db.outcomes.report(
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
    db: Consortium, people: dict[str, Actor], active_id: int, uploaded: datetime, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        db.outcomes.report(
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
    db.matching.match(people["a"], queries)
    db.matching.match(people["a"], queries[:1])
    db.matching.match(people["b"], queries[:1])
    db.matching.match(None, queries[:1])  # not on behalf of a member: not counted
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


HOURS = [datetime(2024, 5, 1, h, tzinfo=UTC) for h in (11, 12)]
FLUSH = st.dictionaries(
    st.tuples(st.sampled_from(HOURS), st.integers(1, 3)),
    st.dictionaries(st.integers(1, 40), st.integers(1, 5), max_size=12).map(Counter),
    max_size=4,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flushes=st.lists(FLUSH, min_size=1, max_size=4))
def test_stored_counts_are_the_sum_of_every_write(
    store: Store, flushes: list[match_counts.Counts]
) -> None:
    """Whatever hours, members and hashes the writes hold, in whatever grouping."""
    with store.engine.begin() as conn:
        conn.execute(delete(match_counts_table))
    expected: Counter[tuple[datetime, int, int]] = Counter()
    for flush in flushes:
        assert match_counts.write(store.engine, flush) == match_counts.total(flush)
        for (hour, member), matched in flush.items():
            expected.update({(hour, member, h): n for h, n in matched.items()})
    t = match_counts_table.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.bucket, t.member_id, t.hash_id, t.count)).all()
    stored = {(utc(bucket), member, hash_id): n for bucket, member, hash_id, n in rows}
    assert stored == dict(expected)


def test_a_batch_without_matches_writes_nothing(store: Store, people: dict[str, Actor]) -> None:
    assert match_counts.record(store.engine, people["a"].id, []) == 0


def test_counts_fall_into_the_hour_of_the_match() -> None:
    at = datetime(2024, 5, 1, 12, 34, 56, 789, tzinfo=UTC)
    assert match_counts.bucket_of(at) == datetime(2024, 5, 1, 12, tzinfo=UTC)
