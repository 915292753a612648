"""The keypoints signal type in the store and the matcher: a set contributed as text
(what a member shares without the media) is stored beside its row, found again in
crops and mirrored crops by the live matcher, and follows its row's status."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from media_factory import jpeg_copy, keep
from PIL import Image, ImageDraw, ImageOps

from hashdb.budget import KEYPOINT_SET_WEIGHT, query_cost
from hashdb.consortium.keypoints import new_hash
from hashdb.consortium.keypoints import query as keypoint_query
from hashdb.errors import InvalidInput
from hashdb.keypoints.index import IVF_MIN_ROWS
from hashdb.matching import Matcher, Query, Via
from hashdb.signals import KEYPOINTS, SIGNAL_TYPES
from hashdb.signals.keypoints import MIRROR, digest, parse_set
from hashdb.store import Member, NewHash, Role, Status, Store
from ingest.keypoints import keypoints, query_sets
from ingest.probes import ProbeOptions, probe_queries


def scene(seed: int, size: int = 512) -> Image.Image:
    """A procedural picture with many corners (shapes of random colours)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(8, size // 4, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            draw.polygon([(x, y), (x + w, y + h // 3), (x + w // 2, y + h)], fill=colour)
    return image


def query(picture: Image.Image) -> Query:
    return keypoint_query(*query_sets(picture))


@pytest.fixture
def member(store: Store) -> Member:
    return store.members.create("A", Role.ADMIN)[0]


@pytest.fixture
def matcher(store: Store) -> Matcher:
    return Matcher(store.hashes, store.changes, sync_interval=0.0)


def test_keypoints_is_a_signal_type_that_takes_no_threshold() -> None:
    assert SIGNAL_TYPES["keypoints"] is KEYPOINTS
    assert KEYPOINTS.max_threshold == 0
    assert query_cost(Query(KEYPOINTS, b"", probes=((MIRROR, b""),))) == 2 * KEYPOINT_SET_WEIGHT


def test_a_set_is_shared_as_base64_text_and_bad_text_names_the_field(
    bridge_picture: Image.Image,
) -> None:
    kps = keypoints(bridge_picture)
    assert parse_set(kps.to_text()) == kps
    with pytest.raises(InvalidInput) as bad:
        parse_set("not base64!", "value", 3)
    assert (bad.value.field, bad.value.index) == ("value", 3)


def test_a_stored_set_is_kept_beside_its_row_and_adding_it_again_is_idempotent(
    store: Store, member: Member, bridge_picture: Image.Image
) -> None:
    kps = keypoints(bridge_picture)
    (first,) = store.hashes.add(member.id, [new_hash(kps)])
    (again,) = store.hashes.add(member.id, [new_hash(kps)])
    assert first.created and not again.created and again.id == first.id
    record = store.hashes.get(first.id)
    assert (record.value, record.quality) == (digest(kps.to_bytes()), len(kps))
    assert store.hashes.keypoint_sets([first.id]) == {first.id: kps.to_bytes()}


def test_crops_and_mirrored_crops_of_a_stored_picture_match_it_with_their_share(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image
) -> None:
    (added,) = store.hashes.add(member.id, [new_hash(keypoints(jpeg_copy(bridge_picture, 90)))])
    store.hashes.add(member.id, [new_hash(keypoints(scene(s))) for s in range(3)])
    crop = jpeg_copy(keep(bridge_picture, 0.8))
    mirrored = jpeg_copy(ImageOps.mirror(keep(bridge_picture, 0.85, 0.2, 0.7)))
    unrelated = jpeg_copy(scene(99))
    found, flipped, nothing = matcher.match([query(crop), query(mirrored), query(unrelated)])
    (match,) = found.matches
    assert match.record.id == added.id and match.via is None
    assert match.inliers is not None and match.inliers >= 12
    assert match.share is not None and 0.5 < match.share < 0.8  # 80% of each side: 0.64
    assert [m.record.id for m in flipped.matches] == [added.id]
    assert flipped.matches[0].via == Via(MIRROR, None)
    assert nothing.matches == []


def test_a_retired_set_stops_matching_and_a_restored_one_matches_again(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image
) -> None:
    (added,) = store.hashes.add(member.id, [new_hash(keypoints(bridge_picture))])
    probe = query(jpeg_copy(keep(bridge_picture, 0.8)))
    matcher.load()
    assert [m.record.id for m in matcher.match([probe])[0].matches] == [added.id]
    store.hashes.set_status([added.id], Status.RETIRED)
    matcher.refresh()
    assert matcher.match([probe])[0].matches == []
    store.hashes.set_status([added.id], Status.ACTIVE)
    matcher.refresh()
    assert [m.record.id for m in matcher.match([probe])[0].matches] == [added.id]


def test_a_featureless_query_is_answered_low_quality() -> None:
    flat = keypoints(Image.new("RGB", (300, 200), "grey"))
    assert Query(KEYPOINTS, flat.to_bytes(), quality=len(flat)).low_quality


def test_a_corpus_large_enough_for_an_inverted_file_still_finds_crops(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image
) -> None:
    """Past IVF_MIN_ROWS descriptors the load trains a FAISS binary IVF on them."""
    others = [keypoints(scene(s)) for s in range(24)]
    assert sum(len(k) for k in others) >= IVF_MIN_ROWS
    (added,) = store.hashes.add(member.id, [new_hash(keypoints(bridge_picture))])
    store.hashes.add(member.id, [new_hash(k) for k in others])
    matcher.load()
    assert type(matcher._indexes.keypoints._search).__name__ == "IvfSearch"
    assert matcher.keypoint_sets() == 25
    (result,) = matcher.match([query(jpeg_copy(keep(bridge_picture, 0.8, 0.3, 0.6)))])
    assert [m.record.id for m in result.matches] == [added.id]


def test_a_keypoints_row_is_never_stored_without_its_set(store: Store, member: Member) -> None:
    """Rows only gain their set when created: one stored without it could never match."""
    with pytest.raises(ValueError):
        store.hashes.add(member.id, [NewHash(KEYPOINTS.name, bytes(32))])
    with pytest.raises(ValueError):
        store.hashes.add(member.id, [NewHash("pdq", bytes(32), keypoint_set=b"\x01")])


def test_a_picture_small_inside_a_screenshot_is_found_from_its_region_s_keypoints(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image
) -> None:
    """Most of a screenshot's keypoints fall on its text and chrome; the query also
    carries the keypoint set of its content region, which finds the picture."""
    (added,) = store.hashes.add(member.id, [new_hash(keypoints(jpeg_copy(bridge_picture, 90)))])
    store.hashes.add(member.id, [new_hash(keypoints(scene(s))) for s in range(3)])
    canvas = Image.new("RGB", (900, 1400), "white")
    draw = ImageDraw.Draw(canvas)
    for row in range(40):  # lines of "text" above and below the picture
        y = 20 + row * 34
        if not 420 <= y <= 900:
            draw.text((30, y), f"line {row}: words that a caption or a comment would hold", "black")
    canvas.paste(bridge_picture.resize((500, 313)), (200, 500))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=85)
    probed = probe_queries(buf.getvalue(), ProbeOptions.of(["content", "keypoints"]))
    assert probed.keypoints is not None
    assert [name for name, _ in probed.keypoints.regions][:1] == ["content"]
    query = probed.keypoint_query()
    assert query is not None
    (result,) = matcher.match([query])
    assert [(m.record.id, m.via) for m in result.matches] == [(added.id, Via("content", None))]


def test_a_corpus_grown_by_replay_gets_the_search_its_size_needs(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image
) -> None:
    """A service that starts empty (exact MIH) and grows through contributions is
    rebuilt with a trained IVF once it outgrows MIH, without a restart and without
    a lookup waiting for it (the rebuild runs in the background)."""
    matcher.load()
    assert type(matcher._indexes.keypoints._search).__name__ == "MihSearch"
    (added,) = store.hashes.add(member.id, [new_hash(keypoints(bridge_picture))])
    matcher.refresh()
    store.hashes.add(member.id, [new_hash(keypoints(scene(s))) for s in range(24)])
    matcher.refresh()
    deadline = time.monotonic() + 60
    while matcher._indexes.rebuilding and time.monotonic() < deadline:
        time.sleep(0.05)
    assert type(matcher._indexes.keypoints._search).__name__ == "IvfSearch"
    assert matcher.keypoint_sets() == 25
    (result,) = matcher.match([query(jpeg_copy(keep(bridge_picture, 0.8)))])
    assert [m.record.id for m in result.matches] == [added.id]


def test_a_status_change_that_keeps_a_set_matchable_leaves_it_as_indexed(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image
) -> None:
    """A set never changes: an approval or a dispute neither re-reads nor re-adds it."""
    (added,) = store.hashes.add(member.id, [new_hash(keypoints(bridge_picture))])
    matcher.load()
    held = matcher._indexes.keypoints.rows
    store.hashes.set_status([added.id], Status.DISPUTED)
    matcher.refresh()
    assert matcher._indexes.keypoints.rows == held
    (result,) = matcher.match([query(jpeg_copy(keep(bridge_picture, 0.8)))])
    assert [(m.record.id, m.record.status) for m in result.matches] == [(added.id, Status.DISPUTED)]
