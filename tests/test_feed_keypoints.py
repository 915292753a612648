"""Keypoint sets travel with the feed, so a follower matches crops as central does.

A live `keypoints` entry carries its set as base64 text (`keypoints`) beside its
value (the set's SHA-256) and its quality (the keypoint count); a tombstone and every
other entry carry none; csv and threatexchange leave sets out. A follower stores
the set with its row, so its matcher finds a crop of the picture; it refuses a page
whose set is missing, malformed, longer than a set can be or does not hash to the
entry's value, and stores nothing of that page.
"""

from __future__ import annotations

import base64
import csv
import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from feed_server import FeedServer
from PIL import Image
from sqlalchemy import select

from hashdb.client import Client
from hashdb.consortium import export, sync
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.consortium.export import FeedEntry, FeedFormat, FeedOp, FeedPage
from hashdb.consortium.keypoints import new_hash
from hashdb.consortium.keypoints import query as keypoint_query
from hashdb.errors import InvalidInput
from hashdb.keypoints.codec import KeypointSet
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.signals.keypoints import digest
from hashdb.store import NewHash, Role, Status, Store
from hashdb.store.schema import hashes, keypoint_sets
from ingest.keypoints import keypoints, query_sets

URL = "central"


def crop(picture: Image.Image, share: float = 0.8) -> Image.Image:
    """The middle `share` of each side of `picture`, re-encoded as JPEG."""
    w, h = picture.size
    cw, ch = round(w * share), round(h * share)
    x, y = (w - cw) // 2, (h - ch) // 2
    buf = io.BytesIO()
    picture.crop((x, y, x + cw, y + ch)).save(buf, "JPEG", quality=85)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def lookup(picture: Image.Image) -> Query:
    return keypoint_query(*query_sets(picture))


def image(seed: int) -> NewHash:
    return NewHash(PDQ.name, random.Random(seed).randbytes(32), ("attack_footage",), 90)


@pytest.fixture(scope="module")
def kps(bridge_picture: Image.Image) -> KeypointSet:
    return keypoints(bridge_picture)


@pytest.fixture(scope="module")
def other(bridge_picture: Image.Image) -> KeypointSet:
    """Another picture's set (the bridge mirrored)."""
    return keypoints(bridge_picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


@pytest.fixture
def db(store: Store) -> Consortium:
    return Consortium(Settings(), store)


@pytest.fixture
def admin(store: Store) -> Actor:
    return Actor(store.members.create("Consortium", Role.ADMIN)[0])


@pytest.fixture
def key(store: Store) -> str:
    return store.members.create("Small platform", Role.MEMBER)[1].secret


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Consortium]:
    copy = Store.open(f"sqlite:///{tmp_path / 'local.sqlite3'}", migrate_schema=True)
    copy.members.create("Local admin", Role.ADMIN)
    follower = Consortium(Settings(), copy)
    yield follower
    follower.close()


def operator(db: Consortium) -> Actor:
    return Actor(db.members.operator())


Row = tuple[str, str, int | None, tuple[str, ...], str, bytes | None]


def keypoint_rows(db: Consortium) -> set[Row]:
    """Each keypoints row: (signal type, hex value, quality, labels, status, set)."""
    with db.store.engine.connect() as conn:
        found = conn.execute(
            select(
                hashes.c.signal_type,
                hashes.c.value,
                hashes.c.quality,
                hashes.c.labels,
                hashes.c.status,
                keypoint_sets.c.data,
            )
            .outerjoin(keypoint_sets, keypoint_sets.c.hash_id == hashes.c.id)
            .where(hashes.c.signal_type == "keypoints")
        ).all()
    return {
        (str(t), bytes(v).hex(), q, tuple(labels), str(s), None if d is None else bytes(d))
        for t, v, q, labels, s, d in found
    }


# ---- export --------------------------------------------------------------------------


def test_a_live_keypoints_entry_carries_its_set_and_its_tombstone_does_not(
    db: Consortium, admin: Actor, kps: KeypointSet
) -> None:
    (stored,) = db.contributions.add(admin, [new_hash(kps, ("attack_footage",))])
    (photo,) = db.contributions.add(admin, [image(1)])
    page = db.feed.page(admin, 0, 100)
    entries = {e.id: e for e in page.entries}
    live = entries[stored.id]
    assert (live.op, live.signal_type, live.value, live.quality) == (
        FeedOp.ADD,
        "keypoints",
        digest(kps.to_bytes()).hex(),
        len(kps),
    )
    assert live.keypoints == kps.to_text() and live.keypoint_set() == kps
    assert entries[photo.id].keypoints is None
    db.vetting.retire(admin, [stored.id], "wrong")
    (gone,) = db.feed.page(admin, page.cursor, 100).entries
    assert (gone.op, gone.value, gone.keypoints) == (FeedOp.DELETE, live.value, None)


def test_jsonl_carries_the_set_and_csv_and_threatexchange_leave_it_out(
    db: Consortium, admin: Actor, kps: KeypointSet
) -> None:
    db.contributions.add(admin, [new_hash(kps, ("attack_footage",)), image(1)])
    entries = db.feed.page(admin, 0, 100).entries
    lines = "".join(export.render(entries, FeedFormat.JSONL))
    assert export.parse_jsonl(lines) == entries
    rows = list(csv.DictReader(io.StringIO("".join(export.render(entries, FeedFormat.CSV)))))
    assert "keypoints" not in rows[0]
    assert {r["signal_type"]: r["value"] for r in rows}["keypoints"] == digest(kps.to_bytes()).hex()
    signals = "".join(export.render(db.feed.snapshot(admin), FeedFormat.THREATEXCHANGE))
    assert signals == f"pdq {image(1).value.hex()}\n"


# ---- sync ----------------------------------------------------------------------------


def test_a_follower_holds_the_same_row_and_set_and_matches_a_crop_as_central_does(
    db: Consortium,
    admin: Actor,
    key: str,
    local: Consortium,
    kps: KeypointSet,
    bridge_picture: Image.Image,
) -> None:
    (stored,) = db.contributions.add(admin, [new_hash(kps, ("attack_footage",))])
    db.contributions.add(admin, [image(n) for n in range(3)])
    probe = lookup(crop(bridge_picture))
    with FeedServer(db.store) as central, Client(central.url, key) as feed:
        local.sync.pull(operator(local), feed, central.url, limit=2)
        assert keypoint_rows(local) == keypoint_rows(db)
        assert {r[5] for r in keypoint_rows(local)} == {kps.to_bytes()}
        (there,) = db.matching.match(None, [probe])[0].matches
        (here,) = local.matching.match(None, [probe])[0].matches
        assert there.record.id == stored.id
        assert (here.record.value, here.record.labels) == (there.record.value, ("attack_footage",))
        assert here.inliers == there.inliers and here.share == there.share
        db.vetting.retire(admin, [stored.id], "wrong")
        local.sync.pull(operator(local), feed, central.url, limit=2)
    assert local.matching.match(None, [probe])[0].matches == []
    assert keypoint_rows(local) == keypoint_rows(db)


class Tampered:
    """Central's real pages, as JSON, with every keypoints entry's set rewritten."""

    def __init__(self, central: Consortium, reader: Actor, rewrite: Callable[[str], Any]) -> None:
        self._central, self._reader, self._rewrite = central, reader, rewrite

    def export(self, since: int = 0, limit: int = sync.DEFAULT_PAGE) -> FeedPage:
        data = self._central.feed.page(self._reader, since, limit).to_json()
        for e in data["entries"]:
            if e["signal_type"] == "keypoints" and e["keypoints"] is not None:
                e["keypoints"] = self._rewrite(e["keypoints"])
        return FeedPage.from_json(data)


# How a page's set is spoiled (given its text and another picture's set), and what
# the refusal says.
SPOILED: dict[str, tuple[Callable[[str, KeypointSet], Any], str]] = {
    "another picture's set": (lambda text, o: o.to_text(), "does not hash to the entry's value"),
    "bad base64": (lambda text, o: text[:-4] + "!!!!", "standard base64"),
    "truncated": (lambda text, o: text[:-8], "keypoints take"),
    "too long": (lambda text, o: text * 3, "at most 12300 characters"),
    "missing": (lambda text, o: None, "carries its set"),
}


@pytest.mark.parametrize("spoiled", SPOILED)
def test_a_page_whose_set_is_tampered_or_malformed_is_refused_and_nothing_is_stored(
    db: Consortium,
    admin: Actor,
    local: Consortium,
    kps: KeypointSet,
    other: KeypointSet,
    spoiled: str,
) -> None:
    db.contributions.add(admin, [image(1), new_hash(kps, ("attack_footage",))])
    rewrite, message = SPOILED[spoiled]
    feed = Tampered(db, admin, lambda text: rewrite(text, other))
    with pytest.raises(InvalidInput, match=message) as refused:
        local.sync.pull(operator(local), feed, URL)
    assert refused.value.field == "keypoints"
    with local.store.engine.connect() as conn:
        assert conn.execute(select(hashes.c.id)).all() == []
        assert conn.execute(select(keypoint_sets.c.hash_id)).all() == []
    assert local.sync.cursor(operator(local), URL) == 0


class Pages:
    """A central that hands out one page of the given entries."""

    def __init__(self, *entries: FeedEntry) -> None:
        self._entries = list(entries)

    def export(self, since: int = 0, limit: int = sync.DEFAULT_PAGE) -> FeedPage:
        cursor = max([since, *(e.seq for e in self._entries)])
        return FeedPage(self._entries, cursor, False, "epoch-1", cursor)


def keypoints_entry(kps: KeypointSet, **fields: Any) -> FeedEntry:
    """A live keypoints entry of `kps` (seq 1, remote id 10 unless `fields` say)."""
    given = {"seq": 1, "op": FeedOp.ADD, "id": 10, "status": Status.ACTIVE}
    given |= {"value": digest(kps.to_bytes()).hex(), "quality": len(kps), **fields}
    return FeedEntry(signal_type="keypoints", keypoints=kps.to_text(), **given)


def test_a_follower_stores_a_set_on_each_backend_and_refuses_a_quality_that_is_not_its_count(
    store: Store, kps: KeypointSet
) -> None:
    follower = Consortium(Settings(), store)
    admin = Actor(store.members.create("Local admin", Role.ADMIN)[0])
    with pytest.raises(InvalidInput) as refused:
        follower.sync.pull(admin, Pages(keypoints_entry(kps, quality=len(kps) - 1)), URL)
    assert refused.value.field == "quality" and keypoint_rows(follower) == set()
    follower.sync.pull(admin, Pages(keypoints_entry(kps, labels=("manifesto",))), URL)
    value = digest(kps.to_bytes()).hex()
    assert keypoint_rows(follower) == {
        ("keypoints", value, len(kps), ("manifesto",), "active", kps.to_bytes())
    }


def test_two_remote_ids_of_one_set_share_a_row_that_lives_while_either_does(
    store: Store, kps: KeypointSet
) -> None:
    follower = Consortium(Settings(), store)
    admin = Actor(store.members.create("Local admin", Role.ADMIN)[0])
    follower.sync.pull(admin, Pages(keypoints_entry(kps), keypoints_entry(kps, seq=2, id=11)), URL)
    relabelled = keypoints_entry(kps, seq=4, id=11, op=FeedOp.UPDATE, labels=("manifesto",))
    gone = FeedEntry(
        3, FeedOp.DELETE, 10, "keypoints", Status.RETIRED, digest(kps.to_bytes()).hex()
    )
    follower.sync.pull(admin, Pages(gone, relabelled), URL)
    value = digest(kps.to_bytes()).hex()
    assert keypoint_rows(follower) == {
        ("keypoints", value, len(kps), ("manifesto",), "active", kps.to_bytes())
    }


@pytest.mark.parametrize(
    ("quality", "keypoints", "ok"),
    [(200, None, True), (256, None, True), (257, None, False), (90, 12, False)],
)
def test_a_keypoints_entry_parses_with_its_count_as_quality_and_its_set_as_text(
    quality: int, keypoints: object, ok: bool
) -> None:
    data = {"seq": 1, "op": "add", "id": 7, "signal_type": "keypoints", "status": "active"}
    data |= {"value": "00" * 32, "quality": quality, "keypoints": keypoints}
    if ok:
        assert FeedEntry.from_json(data).quality == quality
        return
    with pytest.raises(InvalidInput) as caught:
        FeedEntry.from_json(data)
    assert caught.value.field == "feed"


def test_a_keypoints_text_that_is_not_a_set_names_the_field() -> None:
    for text in ("not base64!", base64.b64encode(b"\x02" + bytes(6)).decode()):
        with pytest.raises(InvalidInput) as caught:
            FeedEntry(1, FeedOp.ADD, 7, "keypoints", Status.ACTIVE, keypoints=text).keypoint_set()
        assert caught.value.field == "keypoints"
