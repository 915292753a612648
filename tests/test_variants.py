"""Stored variants: a contributed image keeps hashes of its content region and crop
windows as rows derived from its PDQ row, which follow it and stay internal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from alembic import command
from alembic.config import Config
from media_factory import jpeg
from PIL import Image
from sqlalchemy import Engine, insert, inspect, select

from hashdb.consortium import export, reports, vetting
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.errors import NotFound
from hashdb.matching import Matcher
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import HashRecord, NewHash, Role, Status, Store
from hashdb.store.engine import MIGRATIONS, migrate
from hashdb.store.hashes import NewVariant
from hashdb.store.schema import changes, hash_transitions, hashes, members
from hashdb.variants import CONTENT, CROP_WINDOWS, STORED_KINDS, STORED_THRESHOLDS
from ingest.probes import PLAIN, probe_queries
from ingest.records import image_contributions

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]

MAX_PIXELS = 10**8


@pytest.fixture
def db(store: Store) -> Consortium:
    return Consortium(Settings(sync_interval=0.0), store)


@pytest.fixture
def admin(store: Store) -> Actor:
    return Actor(store.members.create("Consortium", Role.ADMIN)[0])


@pytest.fixture
def member(store: Store) -> Actor:
    return Actor(store.members.create("Platform A", Role.MEMBER)[0])


def contribute_image(db: Consortium, who: Actor, data: bytes, reference: str) -> int:
    """Contribute an image as `POST /v1/media` does; the id of its PDQ row."""
    _, rows = image_contributions(data, ("attack_footage",), reference, max_pixels=MAX_PIXELS)
    added = db.contributions.add(who, rows)
    (pdq_id,) = [a.id for row, a in zip(rows, added, strict=True) if row.signal_type == PDQ.name]
    return pdq_id


def derived(store: Store, parent_id: int) -> list[HashRecord]:
    with store.engine.connect() as conn:
        ids = conn.execute(
            select(hashes.c.id).where(hashes.c.derived_from == parent_id).order_by(hashes.c.id)
        ).scalars()
        wanted = list(ids)
    found = store.hashes.get_many(wanted)
    return [found[i] for i in wanted]


def test_an_image_contribution_stores_its_crop_windows_as_rows_derived_from_its_pdq_row(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, admin, jpeg(bridge_picture), "case-1")
    parent = store.hashes.get(parent_id)
    rows = derived(store, parent_id)
    assert {r.variant for r in rows} <= set(STORED_KINDS)
    assert len(rows) >= len(CROP_WINDOWS) - 4  # windows of quality < 50 are left out
    for row in rows:
        assert row.signal_type == PDQ.name and row.value != parent.value
        assert row.quality is not None and row.quality >= 50
        assert (row.contributor_id, row.labels, row.status, row.reference) == (
            parent.contributor_id,
            parent.labels,
            parent.status,
            parent.reference,
        )
    assert all(r.derived_from is None and r.variant is None for r in [parent])


def test_a_meme_stores_its_content_region(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    meme = Image.new("RGB", (bridge_picture.width, bridge_picture.height + 140), "white")
    meme.paste(bridge_picture, (0, 140))
    parent_id = contribute_image(db, admin, jpeg(meme), "meme")
    assert CONTENT in {r.variant for r in derived(store, parent_id)}


def test_a_bare_hash_has_no_variants(db: Consortium, store: Store, admin: Actor) -> None:
    (added,) = db.contributions.add(admin, [NewHash(PDQ.name, bytes(range(32)), (), 90)])
    assert derived(store, added.id) == []


def test_contributing_the_same_image_again_adds_no_variants(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    data = jpeg(bridge_picture)
    first = contribute_image(db, admin, data, "case-1")
    before = derived(store, first)
    _, rows = image_contributions(data, ("attack_footage",), "case-1", max_pixels=MAX_PIXELS)
    again = db.contributions.add(admin, rows)
    assert not any(a.created for a in again)
    assert derived(store, first) == before


def test_variants_added_later_to_a_bare_hash_take_its_status_and_labels(
    store: Store, admin: Actor
) -> None:
    value = bytes(range(32))
    (parent,) = store.hashes.add(admin.id, [NewHash(PDQ.name, value, ("manifesto",), 90, "x")])
    store.hashes.set_status([parent.id], Status.DISPUTED)
    windows = (NewVariant("crop90_0_0", bytes(range(1, 33)), 80),)
    (again,) = store.hashes.add(admin.id, [NewHash(PDQ.name, value, variants=windows)])
    assert (again.id, again.created) == (parent.id, False)
    (row,) = derived(store, parent.id)
    assert (row.variant, row.status, row.labels, row.reference) == (
        "crop90_0_0",
        Status.DISPUTED,
        ("manifesto",),
        "x",
    )


def test_a_variant_equal_to_another_row_of_the_contributor_is_not_stored_twice(
    store: Store, admin: Actor
) -> None:
    a, b = bytes(range(32)), bytes(range(1, 33))
    store.hashes.add(admin.id, [NewHash(PDQ.name, b)])
    (parent,) = store.hashes.add(
        admin.id, [NewHash(PDQ.name, a, variants=(NewVariant("crop90_0_0", b, 80),))]
    )
    assert derived(store, parent.id) == []


def test_contributing_a_value_held_as_a_variant_makes_it_a_hash_of_its_own(
    store: Store, admin: Actor
) -> None:
    a, b = bytes(range(32)), bytes(range(1, 33))
    (parent,) = store.hashes.add(
        admin.id, [NewHash(PDQ.name, a, variants=(NewVariant("crop90_0_0", b, 80),))]
    )
    (variant,) = derived(store, parent.id)
    (own,) = store.hashes.add(admin.id, [NewHash(PDQ.name, b)])
    assert own.id == variant.id and not own.created
    record = store.hashes.get(own.id)
    assert (record.derived_from, record.variant) == (None, None)
    assert [e.id for e in export.snapshot(store.engine)] == [parent.id, own.id]


def test_retiring_an_image_retires_its_variants_and_logs_them_for_the_index(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, admin, jpeg(bridge_picture), "case-1")
    rows = derived(store, parent_id)
    cursor = store.changes.head()
    vetting.retire(store.engine, admin, [parent_id], "false positive")
    assert {r.status for r in derived(store, parent_id)} == {Status.RETIRED}
    logged = {c.hash_id for c in store.changes.since(cursor)}
    assert logged == {parent_id, *(r.id for r in rows)}
    with store.engine.connect() as conn:
        moved = conn.execute(
            select(hash_transitions.c.hash_id).where(hash_transitions.c.to_status == "retired")
        ).scalars()
        assert list(moved) == [parent_id]  # the parent's history is theirs


def test_a_variant_cannot_be_moved_by_itself(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, admin, jpeg(bridge_picture), "case-1")
    variant = derived(store, parent_id)[0]
    with pytest.raises(NotFound):
        vetting.retire(store.engine, admin, [variant.id], "not a hash of its own")
    assert store.hashes.get(variant.id).status is Status.ACTIVE


def test_approving_and_expiring_an_image_move_its_variants(
    db: Consortium, store: Store, admin: Actor, member: Actor, bridge_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, member, jpeg(bridge_picture), "case-1")
    assert {r.status for r in derived(store, parent_id)} == {Status.PENDING}
    vetting.approve(store.engine, admin, [parent_id])
    assert {r.status for r in derived(store, parent_id)} == {Status.ACTIVE}
    when = store.hashes.get(parent_id).created_at
    vetting.set_expiry(store.engine, admin, parent_id, when)
    assert {r.expires_at for r in derived(store, parent_id)} == {when}
    assert vetting.expire_due(store.engine) == [parent_id]
    assert {r.status for r in derived(store, parent_id)} == {Status.RETIRED}


def test_variants_stay_out_of_the_feed_the_queue_and_the_figures(
    db: Consortium, store: Store, admin: Actor, member: Actor, bridge_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, member, jpeg(bridge_picture), "case-1")
    queued = vetting.queue(store.engine, admin)
    assert parent_id in [r.id for r in queued]
    assert all(r.derived_from is None for r in queued)
    vetting.approve(store.engine, admin, [r.id for r in queued])
    exported = export.snapshot(store.engine)
    assert parent_id in [e.id for e in exported]
    assert len(exported) == 4  # pdq, phash, md5, sha256
    day = timedelta(days=1)
    figures = reports.transparency(store.engine, admin, _epoch(), datetime.now(UTC) + day)
    assert figures.hashes_by_type == {"md5": 1, "pdq": 1, "phash": 1, "sha256": 1}


def test_a_cropped_copy_matches_the_stored_image(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, admin, jpeg(bridge_picture), "case-1")
    w, h = bridge_picture.size
    cropped = bridge_picture.crop(
        (round(0.03 * w), round(0.07 * h), round(0.93 * w), round(0.97 * h))
    )
    matcher = Matcher(store.hashes, store.changes, sync_interval=0.0)
    (result,) = matcher.match([probe_queries(jpeg(cropped, 85), PLAIN).pdq_query()])
    (match,) = result.matches
    assert match.record.id == parent_id
    assert (match.variant or "").startswith("stored:crop90_")
    assert match.distance <= STORED_THRESHOLDS[match.variant.removeprefix("stored:")]


def test_an_uploaded_image_stores_variants_that_the_api_does_not_show(
    api: Api, bridge_picture: Image.Image
) -> None:
    body = api.upload("/v1/media", jpeg(bridge_picture), labels=["manifesto"]).json
    assert body is not None
    assert [a["signal_type"] for a in body["added"]] == ["pdq", "phash", "md5", "sha256"]
    rows = derived(api.store, body["added"][0]["id"])
    assert rows
    response = api.get(f"/v1/hashes/{rows[0].id}", role="admin")
    assert response.status_code == 404


def _at_revision(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_the_migration_upgrades_a_database_of_revision_0003(store: Store) -> None:
    _at_revision(store.engine, "0003")
    assert "derived_from" not in {c["name"] for c in inspect(store.engine).get_columns("hashes")}
    with store.engine.begin() as conn:
        member_id = conn.execute(
            insert(members)
            .values(name="Old", role="admin", trusted=False, created_at=_epoch())
            .returning(members.c.id)
        ).scalar_one()
        conn.execute(
            insert(hashes).values(
                signal_type=PDQ.name,
                value=bytes(range(32)),
                quality=90,
                labels=[],
                contributor_id=member_id,
                status="active",
                reference="old",
                created_at=_epoch(),
                updated_at=_epoch(),
            )
        )
        conn.execute(insert(changes).values(hash_id=1, op="add", at=_epoch()))
    migrate(store.engine)
    (old,) = store.hashes.find_exact(PDQ.name, [bytes(range(32)), b""]).values()
    assert [(r.reference, r.derived_from, r.variant) for r in old] == [("old", None, None)]
    windows = (NewVariant("crop90_0_0", bytes(range(1, 33)), 80),)
    store.hashes.add(member_id, [NewHash(PDQ.name, bytes(range(32)), variants=windows)])
    assert [r.variant for r in derived(store, old[0].id)] == ["crop90_0_0"]


def _epoch() -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC)
