"""Labels, vetting and crisis incidents: who starts where, who may move what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hashdb.consortium import labels, vetting
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.errors import Conflict, Forbidden, InvalidInput, NotFound
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Status, Store


def pdq(seed: int) -> bytes:
    return bytes((seed * 37 + i * 11) % 256 for i in range(32))


def item(seed: int, *tags: str) -> NewHash:
    return NewHash(PDQ.name, pdq(seed), tags or ("attack_footage",), 90)


@pytest.fixture
def people(store: Store) -> dict[str, Actor]:
    admin, _ = store.members.create("Consortium", Role.ADMIN)
    a, _ = store.members.create("Platform A", Role.MEMBER)
    b, _ = store.members.create("Platform B", Role.MEMBER)
    flagger, _ = store.members.create("Trusted NGO", Role.MEMBER, trusted=True)
    return {"admin": Actor(admin), "a": Actor(a), "b": Actor(b), "flagger": Actor(flagger)}


@pytest.fixture
def db(store: Store) -> Consortium:
    return Consortium(Settings(), store)


# ---- labels --------------------------------------------------------------------


def test_the_default_taxonomy_is_there_with_descriptions(db: Consortium) -> None:
    names = {label.name: label for label in db.labels.all()}
    for expected in (
        "terrorist_entity",
        "attack_footage",
        "glorification",
        "manifesto",
        "recruitment_instruction",
        "imminent_threat",
        "crisis_incident",
    ):
        assert names[expected].description
    assert names["terrorist_entity"].value_kind is labels.ValueKind.OPTIONAL
    assert names["crisis_incident"].value_kind is labels.ValueKind.REQUIRED


def test_an_unknown_label_refuses_the_batch_naming_it(
    db: Consortium, people: dict[str, Actor]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        db.contributions.add(people["a"], [item(1), item(2, "attack_footage", "cats", "dogs:x")])
    assert caught.value.field == "labels" and caught.value.index == 1
    assert caught.value.details["unknown"] == ["cats", "dogs:x"]
    assert "cats" in caught.value.message
    assert db.store.hashes.get_many([1, 2]) == {}


@pytest.mark.parametrize(
    "tag", ["attack_footage:extra", "crisis_incident", "crisis_incident:abc", "crisis_incident:99"]
)
def test_label_values_follow_the_taxonomy(
    db: Consortium, people: dict[str, Actor], tag: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        db.contributions.add(people["a"], [item(1, tag)])
    assert caught.value.field == "labels"


def test_an_entity_name_is_optional_on_terrorist_entity(
    db: Consortium, people: dict[str, Actor]
) -> None:
    added = db.contributions.add(
        people["a"], [item(1, "terrorist_entity"), item(2, "terrorist_entity:X")]
    )
    assert [db.store.hashes.get(a.id).labels for a in added] == [
        ("terrorist_entity",),
        ("terrorist_entity:X",),
    ]


def test_admins_manage_labels_and_members_cannot(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    with pytest.raises(Forbidden):
        db.labels.add(people["a"], "hostage_video", "Hostage videos.", labels.ValueKind.NONE)
    db.labels.add(people["admin"], "hostage_video", "Hostage videos.", labels.ValueKind.NONE)
    with pytest.raises(Conflict):
        db.labels.add(people["admin"], "hostage_video", "Again.", labels.ValueKind.NONE)
    db.contributions.add(people["a"], [item(1, "hostage_video")])
    db.labels.edit(people["admin"], "hostage_video", deprecated=True)
    with pytest.raises(InvalidInput):
        db.contributions.add(people["a"], [item(2, "hostage_video")])


def test_labels_can_be_checked_up_front_without_writing(
    db: Consortium, people: dict[str, Actor]
) -> None:
    db.contributions.check_labels([["attack_footage"], ["terrorist_entity:X"]])
    with pytest.raises(InvalidInput) as caught:
        db.contributions.check_labels([["manifesto"], ["cats"]], field="manifest")
    assert (caught.value.field, caught.value.index) == ("manifest", 1)
    assert caught.value.details["unknown"] == ["cats"]
    with pytest.raises(InvalidInput):
        db.contributions.check_labels([["crisis_incident:99"]])
    assert db.hashes.mine(people["a"]).items == []


def test_the_quality_floor_is_a_contribution_rule(db: Consortium, people: dict[str, Actor]) -> None:
    low = NewHash(PDQ.name, pdq(1), ("attack_footage",), 49)
    with pytest.raises(InvalidInput) as caught:
        db.contributions.add(people["a"], [item(2), low])
    assert (caught.value.field, caught.value.index) == ("quality", 1)
    assert db.hashes.mine(people["a"]).items == []


# ---- where a contribution starts -------------------------------------------------


def test_a_members_contribution_is_pending_and_vetted_ones_are_active(
    db: Consortium, people: dict[str, Actor]
) -> None:
    statuses = {
        who: db.store.hashes.get(db.contributions.add(people[who], [item(n)])[0].id).status
        for n, who in enumerate(("a", "admin", "flagger"))
    }
    assert statuses == {"a": Status.PENDING, "admin": Status.ACTIVE, "flagger": Status.ACTIVE}


def test_pending_hashes_match_flagged_pending_by_default(
    db: Consortium, people: dict[str, Actor]
) -> None:
    db.contributions.add(people["a"], [item(1)])
    (result,) = db.matching.match(None, [Query(PDQ, pdq(1))])
    assert [m.record.status for m in result.matches] == [Status.PENDING]


def test_a_deployment_can_keep_pending_hashes_from_matching(
    store: Store, people: dict[str, Actor]
) -> None:
    db = Consortium(Settings(pending_matches=False), store)
    (added,) = db.contributions.add(people["a"], [item(1)])
    assert db.matching.match(None, [Query(PDQ, pdq(1))])[0].matches == []
    db.vetting.approve(people["admin"], [added.id])
    db.matcher.refresh()
    assert len(db.matching.match(None, [Query(PDQ, pdq(1))])[0].matches) == 1


# ---- moves ------------------------------------------------------------------------


def test_an_admin_approves_and_the_history_says_who_when_and_why(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    (added,) = db.contributions.add(people["a"], [item(1)])
    (record,) = db.vetting.approve(people["admin"], [added.id], "checked")
    assert record.status is Status.ACTIVE
    created, approved = db.vetting.history(people["admin"], added.id)
    assert (created.from_status, created.to_status, created.actor_id) == (
        None,
        Status.PENDING,
        people["a"].id,
    )
    assert (approved.from_status, approved.to_status) == (Status.PENDING, Status.ACTIVE)
    assert (approved.actor_id, approved.reason) == (people["admin"].id, "checked")
    assert approved.at >= created.at


def test_a_member_cannot_approve_reject_retire_or_see_the_queue(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    (added,) = db.contributions.add(people["a"], [item(1)])
    for call in (
        lambda: db.vetting.approve(people["a"], [added.id]),
        lambda: db.vetting.reject(people["b"], [added.id], "no"),
        lambda: db.vetting.retire(people["flagger"], [added.id], "no"),
        lambda: db.hashes.queue(people["a"]),
        lambda: db.vetting.resolve_dispute(people["a"], added.id, vetting.Resolution.KEEP, "ok"),
    ):
        with pytest.raises(Forbidden):
            call()
    assert store.hashes.get(added.id).status is Status.PENDING


def test_rejection_and_retirement_need_a_reason(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    (added,) = db.contributions.add(people["a"], [item(1)])
    for move in (db.vetting.reject, db.vetting.retire):
        with pytest.raises(InvalidInput) as caught:
            move(people["admin"], [added.id], "  ")
        assert caught.value.field == "reason"


def test_final_statuses_are_final_and_a_refused_batch_moves_nothing(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    first, second = db.contributions.add(people["a"], [item(1), item(2)])
    db.vetting.reject(people["admin"], [first.id], "not terrorist content")
    with pytest.raises(Conflict) as caught:
        db.vetting.approve(people["admin"], [second.id, first.id])
    assert caught.value.details["ids"] == [first.id]
    assert store.hashes.get(second.id).status is Status.PENDING
    with pytest.raises(Conflict):
        db.vetting.retire(people["admin"], [first.id], "again")
    with pytest.raises(NotFound):
        db.vetting.approve(people["admin"], [999])


def test_the_queue_lists_pending_hashes_oldest_first(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    added = db.contributions.add(people["a"], [item(1), item(2), item(3)])
    db.vetting.approve(people["admin"], [added[1].id])
    queued = db.hashes.queue(people["admin"])
    assert [r.id for r in queued.items] == [added[0].id, added[2].id]
    assert (queued.cursor, queued.more) == (added[2].id, False)


# ---- expiry ----------------------------------------------------------------------


def test_an_expired_hash_stops_matching_at_once_and_is_retired_by_the_sweep(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    (added,) = db.contributions.add(people["admin"], [item(1)])
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert db.matching.match(None, [Query(PDQ, pdq(1))])[0].matches
    with pytest.raises(Forbidden):
        db.vetting.set_expiry(people["b"], added.id, past)
    db.vetting.set_expiry(people["admin"], added.id, past)
    assert db.matching.match(None, [Query(PDQ, pdq(1))])[0].matches == []
    assert vetting.expire_due(store.engine) == [added.id]
    assert store.hashes.get(added.id).status is Status.RETIRED
    assert db.vetting.history(people["admin"], added.id)[-1].reason == "expired"


def test_an_expiry_needs_a_time_zone(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    (added,) = db.contributions.add(people["a"], [item(1)])
    with pytest.raises(InvalidInput) as caught:
        db.vetting.set_expiry(people["a"], added.id, datetime(2030, 1, 1))
    assert caught.value.field == "expires_at"


# ---- crisis incidents -------------------------------------------------------------


def test_contributions_tagged_with_an_open_incident_are_fast_tracked(
    db: Consortium, store: Store, people: dict[str, Actor]
) -> None:
    with pytest.raises(Forbidden):
        db.incidents.open(people["a"], "Attack in X")
    incident = db.incidents.open(people["admin"], "Attack in X")
    assert incident.open
    tag = f"crisis_incident:{incident.id}"
    (during,) = db.contributions.add(people["a"], [item(1, "attack_footage", tag)])
    record = store.hashes.get(during.id)
    assert (record.status, record.incident_id) == (Status.ACTIVE, incident.id)

    closed = db.incidents.close(people["admin"], incident.id)
    assert closed.ended_at is not None and closed.ended_at >= closed.started_at
    with pytest.raises(Conflict):
        db.incidents.close(people["admin"], incident.id)
    (after,) = db.contributions.add(people["a"], [item(2, tag)])
    assert store.hashes.get(after.id).status is Status.PENDING
    assert store.hashes.get(after.id).incident_id == incident.id


# ---- who sees which hash ------------------------------------------------------------


def test_a_member_sees_its_own_hashes_and_others_only_as_the_feed_does(
    db: Consortium, people: dict[str, Actor]
) -> None:
    pending, rejected, approved = db.contributions.add(people["a"], [item(1), item(2), item(3)])
    db.vetting.reject(people["admin"], [rejected.id], "not terrorist content")
    db.vetting.approve(people["admin"], [approved.id])
    for hidden in (pending.id, rejected.id):
        with pytest.raises(NotFound) as caught:
            db.hashes.get(people["b"], hidden)
        assert caught.value.message == f"no hash with id {hidden}"  # as for an unknown id
        with pytest.raises(NotFound):
            db.vetting.history(people["b"], hidden)
        assert db.hashes.get(people["a"], hidden).id == hidden
        assert db.hashes.get(people["admin"], hidden).id == hidden
    assert db.hashes.get(people["b"], approved.id).status is Status.ACTIVE
    with pytest.raises(NotFound):
        db.hashes.get(people["b"], 999)


def test_another_members_retired_or_expired_hash_is_not_found(
    db: Consortium, people: dict[str, Actor]
) -> None:
    retired, expiring = db.contributions.add(people["admin"], [item(1), item(2)])
    db.vetting.retire(people["admin"], [retired.id], "withdrawn")
    past = datetime.now(UTC) - timedelta(seconds=1)
    db.vetting.set_expiry(people["admin"], expiring.id, past)
    for hidden in (retired.id, expiring.id):
        with pytest.raises(NotFound):
            db.hashes.get(people["b"], hidden)
        assert db.hashes.get(people["admin"], hidden).id == hidden


def test_only_the_contributor_or_an_admin_sets_an_expiry_and_others_get_not_found(
    db: Consortium, people: dict[str, Actor]
) -> None:
    (pending,) = db.contributions.add(people["a"], [item(1)])
    later = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(NotFound):  # b cannot see a's pending hash at all
        db.vetting.set_expiry(people["b"], pending.id, later)
    assert db.vetting.set_expiry(people["a"], pending.id, later).expires_at == later


def test_a_member_lists_its_own_hashes_a_page_at_a_time(
    db: Consortium, people: dict[str, Actor]
) -> None:
    mine = db.contributions.add(people["a"], [item(1), item(2), item(3)])
    db.contributions.add(people["b"], [item(4)])
    db.vetting.reject(people["admin"], [mine[1].id], "no")
    assert [r.id for r in db.hashes.mine(people["a"]).items] == [a.id for a in mine]
    second = db.hashes.mine(people["a"], after=mine[0].id, limit=1)
    assert [r.id for r in second.items] == [mine[1].id]
    assert (second.cursor, second.more) == (mine[1].id, True)
    rejected = db.hashes.mine(people["a"], status=Status.REJECTED)
    assert ([r.id for r in rejected.items], rejected.more) == ([mine[1].id], False)
    with pytest.raises(InvalidInput) as caught:
        db.hashes.mine(people["a"], limit=0)
    assert caught.value.field == "limit"
