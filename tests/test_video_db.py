"""Videos in the database: stored as frame lists, matched by vPDQ's two shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashdb.matching import Matcher, Query
from hashdb.signals import PDQ
from hashdb.store import Member, NewHash, Role, Status, Store
from hashdb.video_match import VideoThresholds
from ingest.records import video_contributions
from ingest.video import EVERY_FRAME, VideoHashes, hash_video_file

SAMPLES = ("chair-orig-22-sd-bar", "doorknob-hd-no-bar", "pattern-sd-with-small-logo-bar")


@pytest.fixture(scope="module")
def hashed(testdata: Path) -> dict[str, VideoHashes]:
    video = testdata / "video"
    out = {name: hash_video_file(video / f"{name}.mp4") for name in SAMPLES}
    out["query"] = hash_video_file(
        video / "chair-22-sd-grey-bar.mp4", frames_per_second=EVERY_FRAME
    )
    return out


@pytest.fixture
def admin(store: Store) -> Member:
    return store.members.create("admin", Role.ADMIN)[0]


@pytest.fixture
def stored(store: Store, admin: Member, hashed: dict[str, VideoHashes]) -> dict[str, int]:
    ids = {}
    for name in SAMPLES:
        video, digests = video_contributions(hashed[name], ("attack_footage",), name)
        ids[name] = store.videos.add(admin.id, video).id
        store.hashes.add(admin.id, digests)
    return ids


def test_a_regraded_copy_matches_its_original_and_no_other_sample(
    store: Store, stored: dict[str, int], hashed: dict[str, VideoHashes]
) -> None:
    matcher = Matcher(store.hashes, store.changes, videos=store.videos)
    query = [f for f in hashed["query"].frames]
    found = matcher.match_video(query)
    assert [m.record.id for m in found] == [stored["chair-orig-22-sd-bar"]]
    score = found[0].score
    assert score.query_share > 0.9 and score.reference_share > 0.9
    assert score.offset is not None and abs(score.offset) < 0.5
    assert found[0].record.labels == ("attack_footage",)


def test_thresholds_on_either_share_narrow_the_result(
    store: Store, stored: dict[str, int], hashed: dict[str, VideoHashes]
) -> None:
    matcher = Matcher(store.hashes, store.changes, videos=store.videos)
    first_five_seconds = [f for f in hashed["query"].frames if f.timestamp < 5]
    clip = matcher.match_video(first_five_seconds)
    assert clip and clip[0].score.reference_share < 0.4
    strict = VideoThresholds(min_reference_share=0.8)
    assert matcher.match_video(first_five_seconds, thresholds=strict) == []


def test_a_still_from_a_stored_video_matches_it_with_the_time_of_the_frame(
    store: Store, stored: dict[str, int], hashed: dict[str, VideoHashes]
) -> None:
    matcher = Matcher(store.hashes, store.changes, videos=store.videos)
    frame = hashed["chair-orig-22-sd-bar"].frames[10]
    (result,) = matcher.match([Query(PDQ, frame.pdq, quality=frame.quality)])
    best = result.matches[0]
    assert best.record.id == stored["chair-orig-22-sd-bar"] and best.distance == 0
    assert best.frame_at == pytest.approx(frame.timestamp)


def test_frames_and_hashes_with_the_same_row_id_are_never_confused(
    store: Store, admin: Member, stored: dict[str, int], hashed: dict[str, VideoHashes]
) -> None:
    """Frame rows and hash rows are numbered apart; their index entries are typed."""
    frames = hashed["chair-orig-22-sd-bar"].frames
    (image,) = store.hashes.add(admin.id, [NewHash(PDQ.name, bytes(32))])
    assert image.id <= len(frames)  # a frame row has this number too
    matcher = Matcher(store.hashes, store.changes, videos=store.videos)
    own, still = matcher.match([Query(PDQ, bytes(32), threshold=0), Query(PDQ, frames[0].pdq)])
    assert [(m.record.id, m.frame_at, m.via) for m in own.matches] == [(image.id, None, None)]
    assert {m.record.id for m in still.matches} == {stored["chair-orig-22-sd-bar"]}


def test_a_retired_video_stops_matching_and_leaves_the_index(
    store: Store, stored: dict[str, int], hashed: dict[str, VideoHashes]
) -> None:
    matcher = Matcher(store.hashes, store.changes, videos=store.videos, sync_interval=0)
    matcher.load()
    frames_before = matcher.sizes()["pdq"]
    store.hashes.set_status([stored["chair-orig-22-sd-bar"]], Status.RETIRED)
    assert matcher.match_video(list(hashed["query"].frames)) == []
    assert matcher.sizes()["pdq"] == frames_before - len(hashed["chair-orig-22-sd-bar"].frames)


def test_a_video_added_after_start_is_matched_after_a_refresh(
    store: Store, admin: Member, hashed: dict[str, VideoHashes]
) -> None:
    matcher = Matcher(store.hashes, store.changes, videos=store.videos, sync_interval=3600)
    matcher.load()
    video, _ = video_contributions(hashed["chair-orig-22-sd-bar"], (), None)
    added = store.videos.add(admin.id, video)
    assert store.videos.add(admin.id, video) == type(added)(added.id, False)  # idempotent
    assert matcher.match_video(list(hashed["query"].frames)) == []
    matcher.refresh()
    assert [m.record.id for m in matcher.match_video(list(hashed["query"].frames))] == [added.id]


def test_a_vpdq_hash_in_a_plain_batch_is_refused_naming_its_position(store: Store) -> None:
    from hashdb.errors import InvalidInput
    from hashdb.signals import VPDQ

    matcher = Matcher(store.hashes, store.changes, videos=store.videos)
    with pytest.raises(InvalidInput) as info:
        matcher.match([Query(PDQ, bytes(32)), Query(VPDQ, bytes(32))])
    assert info.value.index == 1
