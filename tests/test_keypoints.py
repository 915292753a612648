"""Keypoint sets: the wire form, the extraction's contracts, and matching that finds
crops, tilts and mirrored crops of a real photo while unrelated pictures and random
agreement never verify."""

from __future__ import annotations

import binascii
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media_factory import jpeg_copy, keep
from PIL import Image, ImageOps

from hashdb.errors import InvalidInput
from hashdb.keypoints.codec import MAX_KEYPOINTS, KeypointSet
from hashdb.keypoints.index import DescriptorSearch, IvfSearch, KeypointIndex, MihSearch
from hashdb.keypoints.verify import MIN_COPY_SHARE, MIN_INLIERS, one_to_one, verify
from ingest.keypoints import (
    DEFAULT_LIMIT,
    SCALE_FACTOR,
    SPACING,
    WORKING_SIDE,
    keypoints,
    query_sets,
)


@st.composite
def keypoint_sets(draw: st.DrawFn) -> KeypointSet:
    n = draw(st.integers(0, MAX_KEYPOINTS))
    width = draw(st.integers(1, 4096))
    height = draw(st.integers(1, 4096))
    raw = draw(st.binary(min_size=36 * n, max_size=36 * n))
    body = np.frombuffer(raw, np.uint8)
    geometry = body[: 4 * n].reshape(n, 4)
    return KeypointSet(
        width=width,
        height=height,
        x=geometry[:, 0].copy(),
        y=geometry[:, 1].copy(),
        level=(geometry[:, 2] % 8).astype(np.uint8),
        angle=geometry[:, 3].copy(),
        descriptors=body[4 * n :].reshape(n, 32).copy(),
    )


@pytest.fixture(scope="module")
def bridge(testdata: Path) -> Image.Image:
    return Image.open(testdata / "pdq" / "bridge-mods" / "aaa-orig.jpg").convert("RGB")


@pytest.fixture(scope="module")
def bridge_keypoints(bridge: Image.Image) -> KeypointSet:
    return keypoints(jpeg_copy(bridge, 90))


# -- the wire form ---------------------------------------------------------------


@settings(max_examples=60)
@given(kps=keypoint_sets())
def test_a_keypoint_set_round_trips_through_bytes_and_text(kps: KeypointSet) -> None:
    raw = kps.to_bytes()
    assert len(raw) == 7 + 36 * len(kps)
    assert KeypointSet.from_bytes(raw) == kps
    text = kps.to_text()
    assert KeypointSet.from_text(text) == kps
    assert KeypointSet.from_text(f"  {text}\n") == kps
    assert binascii.a2b_base64(text) == raw


@settings(max_examples=200)
@given(raw=st.binary(max_size=400))
def test_any_bytes_either_parse_to_the_same_bytes_or_are_invalid_input(raw: bytes) -> None:
    try:
        parsed = KeypointSet.from_bytes(raw)
    except InvalidInput:
        return
    assert parsed.to_bytes() == raw


def test_a_real_picture_s_set_is_bounded_and_as_large_as_documented(
    bridge_keypoints: KeypointSet,
) -> None:
    assert len(bridge_keypoints) == DEFAULT_LIMIT
    assert max(bridge_keypoints.width, bridge_keypoints.height) == WORKING_SIDE
    assert len(bridge_keypoints.to_bytes()) == 4615
    assert len(bridge_keypoints.to_text()) == 6156


def _header(version: int, width: int, height: int, n: int) -> bytes:
    return (
        bytes([version])
        + width.to_bytes(2, "big")
        + height.to_bytes(2, "big")
        + n.to_bytes(2, "big")
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01\x00", "shorter than the 7-byte header"),
        (_header(2, 10, 10, 0), "unknown version 2"),
        (_header(1, 0, 10, 0), "outside 1-4096"),
        (_header(1, 10, 5000, 0), "outside 1-4096"),
        (_header(1, 10, 10, 257), "more than the limit of 256"),
        (_header(1, 10, 10, 1) + bytes(35), "take 43 bytes, got 42"),
        (_header(1, 10, 10, 1) + bytes(37), "take 43 bytes, got 44"),
        (_header(1, 10, 10, 1) + bytes([1, 2, 8, 0]) + bytes(32), "pyramid level is 8"),
    ],
)
def test_malformed_bytes_are_invalid_input_naming_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        KeypointSet.from_bytes(raw, field="queries.keypoints", index=2)
    assert (info.value.field, info.value.index) == ("queries.keypoints", 2)


@pytest.mark.parametrize(
    "text",
    [
        "AQ AB",  # a space inside
        "AQAB$A==",  # a character outside the alphabet
        "AQABA",  # not a multiple of 4
        "AQ==AQ==",  # padding inside
        "AQAB-_AA",  # the URL-safe alphabet
    ],
)
def test_text_that_is_not_standard_base64_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="base64"):
        KeypointSet.from_text(text, field="keypoints")


def test_text_must_be_a_string() -> None:
    with pytest.raises(InvalidInput, match="base64 string"):
        KeypointSet.from_text(b"AQAB")


def test_valid_base64_of_malformed_bytes_is_invalid_input(bridge_keypoints: KeypointSet) -> None:
    truncated = binascii.b2a_base64(bridge_keypoints.to_bytes()[:-3], newline=False).decode()
    with pytest.raises(InvalidInput, match="bytes, got"):
        KeypointSet.from_text(truncated)


# -- extraction ------------------------------------------------------------------


def test_extraction_is_deterministic_and_the_same_for_an_image_or_its_array(
    bridge: Image.Image, bridge_keypoints: KeypointSet
) -> None:
    picture = jpeg_copy(bridge, 90)
    assert keypoints(picture).to_bytes() == bridge_keypoints.to_bytes()
    assert keypoints(np.asarray(picture)).to_bytes() == bridge_keypoints.to_bytes()


def test_keypoints_of_one_level_keep_their_spacing(bridge_keypoints: KeypointSet) -> None:
    kps = bridge_keypoints
    x = (kps.x + 0.5) * kps.width / 256
    y = (kps.y + 0.5) * kps.height / 256
    slack = 2 * np.hypot(kps.width, kps.height) / 256  # two quantisation cells
    for level in range(8):
        at = np.flatnonzero(kps.level == level)
        gaps = np.hypot(x[at, None] - x[None, at], y[at, None] - y[None, at])
        gaps[np.arange(len(at)), np.arange(len(at))] = np.inf
        if len(at) > 1:
            assert gaps.min() >= SPACING * SCALE_FACTOR**level - slack
    # every level contributes (a copy shown smaller meets the coarse ones)
    assert set(kps.level.tolist()) == set(range(8))


def test_a_featureless_picture_has_no_keypoints() -> None:
    flat = keypoints(Image.new("RGB", (300, 200), (120, 130, 140)))
    assert len(flat) == 0
    assert (flat.width, flat.height) == (512, 341)
    assert KeypointSet.from_text(flat.to_text()) == flat


def test_the_limit_bounds_the_set(bridge: Image.Image) -> None:
    assert len(keypoints(bridge, limit=64)) == 64
    with pytest.raises(ValueError):
        keypoints(bridge, limit=MAX_KEYPOINTS + 1)


# -- matching ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["mih", "ivf"])
def bridge_index(
    request: pytest.FixtureRequest, bridge_keypoints: KeypointSet, testdata: Path
) -> KeypointIndex:
    others = [
        keypoints(Image.open(testdata / "pdq" / "reference" / "labelme-subset" / name))
        for name in ("q0746.jpg", "q1050.jpg")
    ]
    training = np.concatenate([bridge_keypoints.descriptors] + [o.descriptors for o in others])
    search: DescriptorSearch = (
        MihSearch() if request.param == "mih" else IvfSearch(training, nlist=4, nprobe=4)
    )
    index = KeypointIndex(search)
    index.add(7, bridge_keypoints)
    for k, other in enumerate(others):
        index.add(100 + k, other)
    return index


@pytest.mark.parametrize(
    ("edit", "share"),
    [
        (lambda im: keep(im, 0.8), 0.64),
        (lambda im: keep(im, 0.85, 0.05, 0.9), 0.72),
        (lambda im: im.rotate(3, resample=Image.Resampling.BICUBIC), 0.97),
        (lambda im: keep(ImageOps.mirror(im), 0.88, 0.9, 0.2), 0.77),
    ],
    ids=["crop_central_80", "crop_offcentre_85", "rotate_3", "mirror_crop"],
)
def test_edited_copies_of_a_real_photo_verify_with_the_share_they_cover(
    bridge: Image.Image,
    bridge_index: KeypointIndex,
    edit: Callable[[Image.Image], Image.Image],
    share: float,
) -> None:
    found = bridge_index.match(query_sets(jpeg_copy(edit(bridge))))
    assert found[0].reference == 7
    verdict = found[0].verdict
    assert verdict.matched and verdict.inliers >= 2 * MIN_INLIERS
    assert verdict.frame_share == pytest.approx(share, abs=0.05)
    assert not verdict.is_part
    assert [f.reference for f in found if f.verdict.matched] == [7]


def test_a_smaller_crop_is_matched_with_the_share_it_covers(
    bridge: Image.Image, bridge_index: KeypointIndex
) -> None:
    found = bridge_index.match(query_sets(jpeg_copy(keep(bridge, 0.7, 0.7, 0.5))))
    assert found[0].reference == 7 and found[0].verdict.matched
    assert found[0].verdict.frame_share == pytest.approx(0.49, abs=0.05)
    # the inliers' hull lies inside the query's frame
    assert found[0].verdict.hull_share < found[0].verdict.frame_share
    assert not found[0].verdict.is_part


def test_a_fifth_of_the_photo_is_matched_as_a_part(
    bridge: Image.Image, bridge_index: KeypointIndex
) -> None:
    # the bridge's detailed upper left: a crop has to hold enough of the reference's
    # keypoints, and a reference keeps DEFAULT_LIMIT of them over the whole picture
    found = bridge_index.match(query_sets(jpeg_copy(keep(bridge, 0.45, 0.15, 0.2))))
    assert found[0].reference == 7 and found[0].verdict.matched
    assert found[0].verdict.frame_share == pytest.approx(0.2, abs=0.03)
    assert found[0].verdict.frame_share < MIN_COPY_SHARE
    assert found[0].verdict.is_part


def test_a_tilt_is_measured(bridge: Image.Image, bridge_index: KeypointIndex) -> None:
    found = bridge_index.match(
        query_sets(jpeg_copy(bridge.rotate(3, resample=Image.Resampling.BICUBIC)))
    )
    # the query turned 3 degrees counter-clockwise; mapping it back turns clockwise,
    # which is positive in image coordinates (y down)
    assert found[0].verdict.rotation == pytest.approx(3, abs=1)
    assert found[0].verdict.scale == pytest.approx(1, abs=0.05)


def test_unrelated_photos_do_not_match(bridge_index: KeypointIndex, testdata: Path) -> None:
    for name in ("labelme-subset/q0122.jpg", "labelme-subset/q2821.jpg", "pen-and-coaster.png"):
        picture = Image.open(testdata / "pdq" / "reference" / name).convert("RGB")
        assert not any(f.verdict.matched for f in bridge_index.match(query_sets(picture)))


def test_a_removed_reference_no_longer_matches_and_may_come_back(
    bridge: Image.Image, bridge_keypoints: KeypointSet
) -> None:
    index = KeypointIndex(MihSearch())
    index.add(1, bridge_keypoints)
    with pytest.raises(ValueError):
        index.add(1, bridge_keypoints)
    query = query_sets(jpeg_copy(keep(bridge, 0.8)))
    assert index.match(query)[0].verdict.matched
    index.remove(1)
    assert index.match(query) == []
    assert len(index) == 0
    index.add(1, bridge_keypoints)  # a retired hash restored: its rows come back
    assert [f.reference for f in index.match(query) if f.verdict.matched] == [1]
    assert len(index) == 1


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(MIN_INLIERS, MAX_KEYPOINTS))
def test_random_keypoints_never_verify_even_when_every_descriptor_agrees(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)

    def random_set() -> KeypointSet:
        return KeypointSet(
            width=int(rng.integers(200, 513)),
            height=int(rng.integers(200, 513)),
            x=rng.integers(0, 256, n, dtype=np.uint8),
            y=rng.integers(0, 256, n, dtype=np.uint8),
            level=rng.integers(0, 8, n, dtype=np.uint8),
            angle=rng.integers(0, 256, n, dtype=np.uint8),
            descriptors=rng.integers(0, 256, (n, 32), dtype=np.uint8),
        )

    query, reference = random_set(), random_set()
    rows = np.arange(n, dtype=np.int64)
    # each query keypoint paired with a random reference keypoint at distance 0
    verdict = verify(query, reference, rows, rng.permutation(rows), np.zeros(n, np.int32))
    assert not verdict.matched


@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 64)), max_size=80
    )
)
def test_one_to_one_uses_each_keypoint_once_keeping_given_pairs(
    pairs: list[tuple[int, int, int]],
) -> None:
    q = np.array([p[0] for p in pairs], dtype=np.int64)
    r = np.array([p[1] for p in pairs], dtype=np.int64)
    d = np.array([p[2] for p in pairs], dtype=np.int32)
    kept = one_to_one(q, r, d)
    kept_q, kept_r = q[kept], r[kept]
    assert len(set(kept_q.tolist())) == len(kept_q)
    assert len(set(kept_r.tolist())) == len(kept_r)
    assert set(zip(kept_q.tolist(), kept_r.tolist(), strict=True)) <= set(
        zip(q.tolist(), r.tolist(), strict=True)
    )
    if pairs:
        nearest = min(pairs, key=lambda p: (p[2], p[0], p[1]))
        assert (nearest[0], nearest[1]) in set(zip(kept_q.tolist(), kept_r.tolist(), strict=True))
