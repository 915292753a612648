"""Matching: every matchable stored hash within the threshold, current with the log."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hashdb.index import BruteForceIndex, make_index, save_snapshot
from hashdb.matching import Matcher, Query, Via
from hashdb.signals import MD5, PDQ, PHASH
from hashdb.store import Member, NewHash, Role, Status, Store
from hashdb.store.hashes import NewVariant
from hashdb.variants import STORED_THRESHOLDS


def flip(value: bytes, bits: int) -> bytes:
    """`value` with its first `bits` bits inverted: exactly `bits` away."""
    out = bytearray(value)
    for b in range(bits):
        out[b // 8] ^= 0x80 >> (b % 8)
    return bytes(out)


@pytest.fixture
def member(store: Store) -> Member:
    return store.members.create("A", Role.ADMIN)[0]


@pytest.fixture
def matcher(store: Store) -> Matcher:
    return Matcher(store.hashes, store.changes, sync_interval=0.0)


def test_matches_are_inclusive_at_the_threshold_and_exclude_threshold_plus_one(
    store: Store, member: Member, matcher: Matcher
) -> None:
    base = bytes(32)
    near, edge, beyond = flip(base, 5), flip(base, 31), flip(base, 32)
    added = store.hashes.add(member.id, [NewHash("pdq", v) for v in (near, edge, beyond)])
    (result,) = matcher.match([Query(PDQ, base)])
    assert [(m.record.id, m.distance) for m in result.matches] == [
        (added[0].id, 5),
        (added[1].id, 31),
    ]


def test_a_batch_matches_like_the_brute_force_oracle(
    store: Store, member: Member, matcher: Matcher
) -> None:
    rng = np.random.default_rng(7)
    stored = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    stored[150:] = stored[:150] ^ (rng.random((150, 32)) < 0.05).astype(np.uint8)
    added = store.hashes.add(member.id, [NewHash("pdq", bytes(row)) for row in stored])
    created = [i for i, a in enumerate(added) if a.created]  # random rows may repeat
    oracle = BruteForceIndex(256)
    oracle.add(np.array([added[i].id for i in created]), stored[created])
    queries = stored[rng.choice(300, 40)] ^ (rng.random((40, 32)) < 0.03).astype(np.uint8)
    results = matcher.match([Query(PDQ, bytes(q)) for q in queries])
    expected = oracle.search(queries, 31)
    for result, want in zip(results, expected, strict=True):
        assert [(m.record.id, m.distance) for m in result.matches] == list(
            zip(want.ids.tolist(), want.distances.tolist(), strict=True)
        )


def test_changes_are_seen_once_the_matcher_catches_up_with_the_log(
    store: Store, member: Member
) -> None:
    """Additions and retirements alike: an API worker catches up before every
    request (tests/test_freshness.py), other users every sync interval."""
    matcher = Matcher(store.hashes, store.changes, sync_interval=3600)
    matcher.load()
    value = bytes(range(32))
    (added,) = store.hashes.add(member.id, [NewHash("pdq", value)])
    assert matcher.match([Query(PDQ, value)])[0].matches == []  # not yet replayed
    matcher.catch_up(store.heads().changes)
    assert [m.record.id for m in matcher.match([Query(PDQ, value)])[0].matches] == [added.id]
    store.hashes.set_status([added.id], Status.RETIRED)
    matcher.catch_up(store.heads().changes)
    assert matcher.match([Query(PDQ, value)])[0].matches == []
    assert matcher.sizes()["pdq"] == 0


def test_a_retired_hash_that_becomes_active_again_matches_again(
    store: Store, member: Member, matcher: Matcher
) -> None:
    value = bytes(range(32))
    (added,) = store.hashes.add(member.id, [NewHash("pdq", value)])
    store.hashes.set_status([added.id], Status.RETIRED)
    assert matcher.match([Query(PDQ, value)])[0].matches == []
    store.hashes.set_status([added.id], Status.ACTIVE)
    assert len(matcher.match([Query(PDQ, value)])[0].matches) == 1
    assert matcher.sizes()["pdq"] == 1


def test_a_low_quality_query_is_reported_and_not_matched(
    store: Store, member: Member, matcher: Matcher
) -> None:
    value = bytes(32)
    store.hashes.add(member.id, [NewHash("pdq", value), NewHash("phash", bytes(8))])
    low, low_phash, fine = matcher.match(
        [
            Query(PDQ, value, quality=20),
            Query(PHASH, bytes(8), quality=20),
            Query(PDQ, value, quality=80),
        ]
    )
    assert low.low_quality and low.matches == []
    assert low_phash.low_quality and low_phash.matches == []
    assert not fine.low_quality and len(fine.matches) == 1


def test_exact_digests_match_only_when_equal(
    store: Store, member: Member, matcher: Matcher
) -> None:
    digest = b"\x42" * 16
    store.hashes.add(member.id, [NewHash("md5", digest)])
    hit, miss = matcher.match([Query(MD5, digest), Query(MD5, flip(digest, 1))])
    assert [m.distance for m in hit.matches] == [0]
    assert miss.matches == []


def test_probes_are_searched_and_the_best_one_is_reported(
    store: Store, member: Member, matcher: Matcher
) -> None:
    stored = bytes(range(32))
    store.hashes.add(member.id, [NewHash("pdq", stored)])
    unrelated = bytes(255 - b for b in stored)
    (result,) = matcher.match(
        [Query(PDQ, unrelated, probes=(("rotate90", flip(stored, 3)), ("flip_x", stored)))]
    )
    assert [(m.distance, m.via) for m in result.matches] == [(0, Via(probe="flip_x"))]
    assert result.matches[0].how == "flip_x"


def test_a_match_of_the_query_as_given_has_no_via(
    store: Store, member: Member, matcher: Matcher
) -> None:
    store.hashes.add(member.id, [NewHash("pdq", bytes(32))])
    (result,) = matcher.match([Query(PDQ, bytes(32))])
    assert [(m.via, m.how) for m in result.matches] == [(None, None)]


@pytest.mark.parametrize(
    ("via", "text"),
    [
        (Via(probe="flip_x"), "flip_x"),
        (Via(stored="crop90_3_3"), "stored:crop90_3_3"),
        (Via("content", "content"), "content+stored:content"),
    ],
)
def test_via_is_written_as_the_api_has_always_written_it(via: Via, text: str) -> None:
    assert str(via) == text
    assert Via.of(via.probe, via.stored) == via and Via.of(None, None) is None


def test_a_stored_variant_matches_as_its_image_within_its_own_threshold(
    store: Store, member: Member, matcher: Matcher
) -> None:
    image, window = bytes(range(32)), bytes(255 - b for b in range(32))
    (added,) = store.hashes.add(
        member.id, [NewHash("pdq", image, variants=(NewVariant("crop90_0_0", window, 80),))]
    )
    near, beyond = flip(window, STORED_THRESHOLDS["crop90_0_0"]), flip(window, 40)
    hit, wide, miss = matcher.match(
        [
            Query(PDQ, near),
            Query(PDQ, beyond, threshold=64),
            Query(PDQ, flip(window, 3), probes=(("flip_x", window),)),
        ]
    )
    assert [(m.record.id, m.via) for m in hit.matches] == [(added.id, Via(stored="crop90_0_0"))]
    assert wide.matches == []  # the query's threshold does not widen the variant's
    (best,) = miss.matches
    assert (best.distance, best.how) == (0, "flip_x+stored:crop90_0_0")


def test_an_image_and_its_variants_leave_and_return_to_the_index_together(
    store: Store, member: Member, matcher: Matcher
) -> None:
    window = bytes(255 - b for b in range(32))
    (added,) = store.hashes.add(
        member.id,
        [NewHash("pdq", bytes(range(32)), variants=(NewVariant("crop90_0_0", window, 80),))],
    )
    matcher.load()
    assert matcher.sizes()["pdq"] == 2
    store.hashes.set_status([added.id], Status.RETIRED)
    assert matcher.match([Query(PDQ, window)])[0].matches == []
    assert matcher.sizes()["pdq"] == 0
    store.hashes.set_status([added.id], Status.ACTIVE)
    assert [m.record.id for m in matcher.match([Query(PDQ, window)])[0].matches] == [added.id]
    assert matcher.sizes()["pdq"] == 2


def test_a_per_query_threshold_overrides_the_default(
    store: Store, member: Member, matcher: Matcher
) -> None:
    base = bytes(32)
    store.hashes.add(member.id, [NewHash("pdq", flip(base, 40))])
    default, wide = matcher.match([Query(PDQ, base), Query(PDQ, base, threshold=40)])
    assert default.matches == [] and len(wide.matches) == 1


def test_an_index_built_at_start_holds_only_matchable_hashes(store: Store, member: Member) -> None:
    added = store.hashes.add(member.id, [NewHash("pdq", bytes([i]) * 32) for i in range(4)])
    store.hashes.set_status([added[0].id], Status.REJECTED)
    matcher = Matcher(store.hashes, store.changes)
    matcher.load()
    assert matcher.sizes() == {"pdq": 3, "phash": 0}
    assert matcher.cursor == store.changes.head()


def test_a_restart_loads_the_snapshot_and_replays_only_newer_changes(
    store: Store, member: Member, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = store.hashes.add(member.id, [NewHash("pdq", bytes([1]) * 32)])
    Matcher(store.hashes, store.changes, snapshot_dir=tmp_path).load()  # builds and saves
    assert (tmp_path / "pdq" / "manifest.json").is_file()
    later = store.hashes.add(member.id, [NewHash("pdq", bytes([2]) * 32)])
    store.hashes.set_status([first[0].id], Status.RETIRED)
    restarted = Matcher(store.hashes, store.changes, snapshot_dir=tmp_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        restarted.load()
    assert "not used" not in caplog.text  # restored, not rebuilt
    assert restarted.sizes()["pdq"] == 1
    (hit,) = restarted.match([Query(PDQ, bytes([2]) * 32)])
    assert [m.record.id for m in hit.matches] == [later[0].id]


def test_a_corrupt_snapshot_is_rebuilt_from_the_database(
    store: Store, member: Member, tmp_path: Path
) -> None:
    store.hashes.add(member.id, [NewHash("pdq", bytes([1]) * 32)])
    Matcher(store.hashes, store.changes, snapshot_dir=tmp_path).load()
    for array in (tmp_path / "pdq").glob("*.npy"):
        array.write_bytes(array.read_bytes()[:-8])
    restarted = Matcher(store.hashes, store.changes, snapshot_dir=tmp_path)
    restarted.load()
    assert restarted.sizes()["pdq"] == 1


def test_a_snapshot_ahead_of_the_database_is_not_trusted(
    store: Store, member: Member, tmp_path: Path
) -> None:
    store.hashes.add(member.id, [NewHash("pdq", bytes([1]) * 32)])
    for name, bits in (("pdq", 256), ("phash", 64)):  # from some other, busier database
        foreign = make_index(bits)
        foreign.add(np.array([999], dtype=np.int64), np.zeros((1, bits // 8), dtype=np.uint8))
        save_snapshot(foreign, tmp_path / name, cursor=10**6)  # type: ignore[arg-type]
    matcher = Matcher(store.hashes, store.changes, snapshot_dir=tmp_path)
    matcher.load()
    assert matcher.sizes() == {"pdq": 1, "phash": 0}
