"""Stored variants: a contributed image keeps hashes of its content region and, when
it has too few keypoints for its keypoint set to find its crops, of its crop
windows with its PDQ row; they are part of the image (no id, status or history of
their own), match exactly when it does, and stay internal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from alembic import command
from alembic.config import Config
from media_factory import jpeg
from PIL import Image
from sqlalchemy import Engine, MetaData, Table, insert, inspect, select

from hashdb.consortium import vetting
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.errors import NotFound
from hashdb.matching import Matcher, Query
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Status, Store
from hashdb.store.engine import MIGRATIONS, migrate
from hashdb.store.hashes import NewVariant, StoredVariant
from hashdb.store.schema import changes, hash_transitions, hashes, members
from hashdb.variants import CONTENT, CROP_WINDOWS, STORED_KINDS, STORED_THRESHOLDS
from ingest.probes import PLAIN, ProbeOptions, probe_queries
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


def variants_of(store: Store, hash_id: int) -> list[StoredVariant]:
    return store.hashes.variants([hash_id]).get(hash_id, [])


def hash_ids(store: Store) -> list[int]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(hashes.c.id).order_by(hashes.c.id)).scalars())


def cropped_copy(picture: Image.Image) -> bytes:
    w, h = picture.size
    return jpeg(
        picture.crop((round(0.03 * w), round(0.07 * h), round(0.93 * w), round(0.97 * h))), 85
    )


def test_an_image_contribution_stores_its_crop_windows_with_its_pdq_row_not_as_hashes(
    db: Consortium, store: Store, admin: Actor, low_detail_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, admin, jpeg(low_detail_picture), "case-1")
    parent = store.hashes.get(parent_id)
    rows = variants_of(store, parent_id)
    assert {r.kind for r in rows} <= set(STORED_KINDS)
    assert len(rows) >= len(CROP_WINDOWS) - 4  # windows of quality < 50 are left out
    for row in rows:
        assert row.value != parent.value
        assert row.quality is not None and row.quality >= 50
    # pdq, phash, keypoints, md5, sha256: a variant has no id
    assert len(hash_ids(store)) == 5


def test_a_detailed_picture_stores_its_keypoint_set_instead_of_crop_windows(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    """Its keypoint set finds its crops for less index than 74 windows (ingest/records.py)."""
    parent_id = contribute_image(db, admin, jpeg(bridge_picture), "case-1")
    assert not {r.kind for r in variants_of(store, parent_id)} & set(CROP_WINDOWS)
    (keypoint_row,) = [
        r for r in store.hashes.get_many(hash_ids(store)).values() if r.signal_type == "keypoints"
    ]
    probed = probe_queries(cropped_copy(bridge_picture), ProbeOptions.of(["keypoints"]))
    query = probed.keypoint_query()
    assert query is not None
    (result,) = db.matcher.match([query])
    assert [m.record.id for m in result.matches] == [keypoint_row.id]


def test_a_meme_stores_its_content_region(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    meme = Image.new("RGB", (bridge_picture.width, bridge_picture.height + 140), "white")
    meme.paste(bridge_picture, (0, 140))
    parent_id = contribute_image(db, admin, jpeg(meme), "meme")
    assert CONTENT in {r.kind for r in variants_of(store, parent_id)}


def test_a_bare_hash_has_no_variants(db: Consortium, store: Store, admin: Actor) -> None:
    (added,) = db.contributions.add(admin, [NewHash(PDQ.name, bytes(range(32)), (), 90)])
    assert variants_of(store, added.id) == []


def test_contributing_the_same_image_again_adds_no_variants(
    db: Consortium, store: Store, admin: Actor, bridge_picture: Image.Image
) -> None:
    data = jpeg(bridge_picture)
    first = contribute_image(db, admin, data, "case-1")
    before = variants_of(store, first)
    cursor = store.changes.head()
    _, rows = image_contributions(data, ("attack_footage",), "case-1", max_pixels=MAX_PIXELS)
    again = db.contributions.add(admin, rows)
    assert not any(a.created for a in again)
    assert variants_of(store, first) == before
    assert store.changes.since(cursor) == []  # nothing changed


def test_variants_added_later_to_a_bare_hash_match_as_it_does(store: Store, admin: Actor) -> None:
    value, window = bytes(range(32)), bytes(range(1, 33))
    (parent,) = store.hashes.add(admin.id, [NewHash(PDQ.name, value, ("manifesto",), 90, "x")])
    store.hashes.set_status([parent.id], Status.DISPUTED)
    matcher = Matcher(store.hashes, store.changes, sync_interval=0.0)
    assert matcher.match([Query(PDQ, window, threshold=0)])[0].matches == []
    cursor = store.changes.head()
    windows = (NewVariant("crop90_0_0", window, 80),)
    (again,) = store.hashes.add(admin.id, [NewHash(PDQ.name, value, variants=windows)])
    assert (again.id, again.created) == (parent.id, False)
    assert [(v.kind, v.value) for v in variants_of(store, parent.id)] == [("crop90_0_0", window)]
    assert {c.hash_id for c in store.changes.since(cursor)} == {parent.id}  # for the index
    (result,) = matcher.match([Query(PDQ, window, threshold=0)])
    assert [(m.record.id, m.record.status, m.how) for m in result.matches] == [
        (parent.id, Status.DISPUTED, "stored:crop90_0_0")
    ]


def test_a_variant_equal_to_another_row_of_the_contributor_is_not_stored_twice(
    store: Store, admin: Actor
) -> None:
    a, b = bytes(range(32)), bytes(range(1, 33))
    store.hashes.add(admin.id, [NewHash(PDQ.name, b)])
    (parent,) = store.hashes.add(
        admin.id, [NewHash(PDQ.name, a, variants=(NewVariant("crop90_0_0", b, 80),))]
    )
    assert variants_of(store, parent.id) == []


def test_contributing_a_value_held_as_a_variant_makes_it_a_hash_of_its_own(
    db: Consortium, store: Store, admin: Actor
) -> None:
    a, b = bytes(range(32)), bytes(range(1, 33))
    (parent,) = store.hashes.add(
        admin.id, [NewHash(PDQ.name, a, variants=(NewVariant("crop90_0_0", b, 80),))]
    )
    matcher = Matcher(store.hashes, store.changes, sync_interval=0.0)
    assert [m.how for m in matcher.match([Query(PDQ, b)])[0].matches] == ["stored:crop90_0_0"]
    cursor = store.changes.head()
    (own,) = store.hashes.add(admin.id, [NewHash(PDQ.name, b)])
    assert own.created and own.id != parent.id
    assert variants_of(store, parent.id) == []  # the row of its own matches it now
    assert {c.hash_id for c in store.changes.since(cursor)} == {parent.id, own.id}
    assert [e.id for e in db.feed.snapshot(admin)] == [parent.id, own.id]
    (result,) = matcher.match([Query(PDQ, b)])
    assert [(m.record.id, m.via) for m in result.matches] == [(own.id, None)]


def test_retiring_an_image_takes_its_variants_out_of_the_index_with_it(
    db: Consortium, store: Store, admin: Actor, low_detail_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, admin, jpeg(low_detail_picture), "case-1")
    matcher = Matcher(store.hashes, store.changes, sync_interval=0.0)
    matcher.load()
    entries = matcher.sizes()["pdq"]
    assert entries == 1 + len(variants_of(store, parent_id))
    query = probe_queries(cropped_copy(low_detail_picture), PLAIN).pdq_query()
    assert [m.record.id for m in matcher.match([query])[0].matches] == [parent_id]
    cursor = store.changes.head()
    db.vetting.retire(admin, [parent_id], "false positive")
    assert {c.hash_id for c in store.changes.since(cursor)} == {parent_id}  # the image only
    assert matcher.match([query])[0].matches == []
    assert matcher.sizes()["pdq"] == 0
    with store.engine.connect() as conn:
        moved = conn.execute(
            select(hash_transitions.c.hash_id).where(hash_transitions.c.to_status == "retired")
        ).scalars()
        assert list(moved) == [parent_id]


def test_a_variant_has_no_id_to_address(
    db: Consortium, store: Store, admin: Actor, low_detail_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, admin, jpeg(low_detail_picture), "case-1")
    assert variants_of(store, parent_id)
    beyond = max(hash_ids(store)) + 1
    with pytest.raises(NotFound):
        db.vetting.retire(admin, [beyond], "not a hash")
    with pytest.raises(NotFound):
        store.hashes.get(beyond)


def test_approving_and_expiring_an_image_move_its_variants(
    store: Store, admin: Actor, member: Actor, low_detail_picture: Image.Image
) -> None:
    db = Consortium(Settings(sync_interval=0.0, pending_matches=False), store)
    parent_id = contribute_image(db, member, jpeg(low_detail_picture), "case-1")
    query = probe_queries(cropped_copy(low_detail_picture), PLAIN).pdq_query()
    assert db.matcher.match([query])[0].matches == []  # pending: not matched here
    db.vetting.approve(admin, [parent_id])
    db.matcher.refresh()
    assert [m.record.id for m in db.matcher.match([query])[0].matches] == [parent_id]
    when = store.hashes.get(parent_id).created_at
    db.vetting.set_expiry(admin, parent_id, when)
    db.matcher.refresh()
    assert db.matcher.match([query])[0].matches == []  # past its expiry
    assert vetting.expire_due(store.engine) == [parent_id]
    db.matcher.refresh()
    assert db.matcher.sizes()["pdq"] == 0


def test_variants_stay_out_of_the_feed_the_queue_and_the_figures(
    db: Consortium, store: Store, admin: Actor, member: Actor, bridge_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, member, jpeg(bridge_picture), "case-1")
    queued = db.hashes.queue(admin).items
    assert sorted(r.id for r in queued) == hash_ids(store)  # the image's five hashes
    assert parent_id in [r.id for r in queued]
    db.vetting.approve(admin, [r.id for r in queued])
    exported = db.feed.snapshot(admin)
    assert parent_id in [e.id for e in exported]
    assert len(exported) == 5  # pdq, phash, keypoints, md5, sha256
    day = timedelta(days=1)
    figures = db.reports.transparency(admin, _epoch(), datetime.now(UTC) + day)
    assert figures.hashes_by_type == {"keypoints": 1, "md5": 1, "pdq": 1, "phash": 1, "sha256": 1}


def test_a_cropped_copy_matches_the_stored_image(
    db: Consortium, store: Store, admin: Actor, low_detail_picture: Image.Image
) -> None:
    parent_id = contribute_image(db, admin, jpeg(low_detail_picture), "case-1")
    matcher = Matcher(store.hashes, store.changes, sync_interval=0.0)
    (result,) = matcher.match([probe_queries(cropped_copy(low_detail_picture), PLAIN).pdq_query()])
    (match,) = result.matches
    assert match.record.id == parent_id
    assert match.via is not None and match.via.probe is None
    assert (match.via.stored or "").startswith("crop90_")
    assert match.distance <= STORED_THRESHOLDS[match.via.stored or ""]
    assert match.how == f"stored:{match.via.stored}"


def test_an_uploaded_image_stores_variants_that_the_api_does_not_show(
    api: Api, low_detail_picture: Image.Image
) -> None:
    body = api.upload("/v1/media", jpeg(low_detail_picture), labels=["manifesto"]).json
    assert body is not None
    assert [a["signal_type"] for a in body["added"]] == [
        "pdq",
        "phash",
        "keypoints",
        "md5",
        "sha256",
    ]
    assert variants_of(api.store, body["added"][0]["id"])
    assert sorted(a["id"] for a in body["added"]) == hash_ids(api.store)
    response = api.get(f"/v1/hashes/{max(hash_ids(api.store)) + 1}", role="admin")
    assert response.status_code == 404


def _at_revision(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _old_member(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(members)
                .values(name="Old", role="admin", trusted=False, created_at=_epoch())
                .returning(members.c.id)
            ).scalar_one()
        )


def _old_hash(member_id: int, value: bytes, **extra: object) -> dict[str, object]:
    return {
        "signal_type": PDQ.name,
        "value": value,
        "quality": 90,
        "labels": [],
        "contributor_id": member_id,
        "status": "active",
        "reference": "old",
        "created_at": _epoch(),
        "updated_at": _epoch(),
        **extra,
    }


def test_the_migration_upgrades_a_database_of_revision_0003(store: Store) -> None:
    _at_revision(store.engine, "0003")
    assert "derived_from" not in {c["name"] for c in inspect(store.engine).get_columns("hashes")}
    member_id = _old_member(store.engine)
    with store.engine.begin() as conn:
        conn.execute(insert(hashes).values(_old_hash(member_id, bytes(range(32)))))
        conn.execute(insert(changes).values(hash_id=1, op="add", at=_epoch()))
    migrate(store.engine)
    (old,) = store.hashes.find_exact(PDQ.name, [bytes(range(32)), b""]).values()
    assert [r.reference for r in old] == ["old"]
    windows = (NewVariant("crop90_0_0", bytes(range(1, 33)), 80),)
    store.hashes.add(member_id, [NewHash(PDQ.name, bytes(range(32)), variants=windows)])
    assert [v.kind for v in variants_of(store, old[0].id)] == ["crop90_0_0"]


def test_the_migration_moves_derived_rows_out_of_hashes(store: Store) -> None:
    """A database of revision 0006 holding variants as `hashes` rows: they become
    `hash_variants` of their image, and what pointed at them points at the image."""
    _at_revision(store.engine, "0006")
    member_id = _old_member(store.engine)
    image, window = bytes(range(32)), bytes(255 - b for b in range(32))
    old = MetaData()
    old_hashes = Table("hashes", old, autoload_with=store.engine)
    with store.engine.begin() as conn:
        parent = conn.execute(
            insert(old_hashes).values(_old_hash(member_id, image)).returning(old_hashes.c.id)
        ).scalar_one()
        derived = conn.execute(
            insert(old_hashes)
            .values(
                _old_hash(member_id, window, quality=80, derived_from=parent, variant="crop90_0_0")
            )
            .returning(old_hashes.c.id)
        ).scalar_one()
        for hash_id, op in (
            (parent, "add"),
            (derived, "add"),
            (parent, "remove"),
            (derived, "remove"),
        ):
            conn.execute(insert(changes).values(hash_id=hash_id, op=op, at=_epoch()))
        conn.execute(
            insert(hash_transitions).values(
                hash_id=derived, from_status=None, to_status="active", at=_epoch()
            )
        )
    head = store.changes.head()
    migrate(store.engine)
    assert "derived_from" not in {c["name"] for c in inspect(store.engine).get_columns("hashes")}
    assert hash_ids(store) == [parent]
    assert [(v.kind, v.value, v.quality) for v in variants_of(store, parent)] == [
        ("crop90_0_0", window, 80)
    ]
    assert store.changes.head() == head  # no sequence number lost or reused
    assert [(c.hash_id, c.op.value) for c in store.changes.since(0)] == [
        (parent, "add"),
        (parent, "update"),
        (parent, "remove"),
        (parent, "remove"),
    ]
    with store.engine.connect() as conn:
        assert list(conn.execute(select(hash_transitions.c.hash_id)).scalars()) == []
    (result,) = Matcher(store.hashes, store.changes).match([Query(PDQ, window)])
    assert [(m.record.id, m.how) for m in result.matches] == [(parent, "stored:crop90_0_0")]


def test_the_migration_downgrades_variants_back_to_derived_rows(store: Store, admin: Actor) -> None:
    windows = (NewVariant("crop90_0_0", bytes(range(1, 33)), 80),)
    (parent,) = store.hashes.add(admin.id, [NewHash(PDQ.name, bytes(range(32)), variants=windows)])
    _at_revision(store.engine, "0006")
    old_hashes = Table("hashes", MetaData(), autoload_with=store.engine)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(old_hashes.c.derived_from, old_hashes.c.variant, old_hashes.c.value).where(
                old_hashes.c.derived_from.is_not(None)
            )
        ).all()
    assert [tuple(r) for r in rows] == [(parent.id, "crop90_0_0", bytes(range(1, 33)))]
    migrate(store.engine)
    assert [(v.kind, v.value) for v in variants_of(store, parent.id)] == [
        ("crop90_0_0", bytes(range(1, 33)))
    ]


def _epoch() -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC)
