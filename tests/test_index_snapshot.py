"""Snapshots round-trip exactly, are mapped read-only and shared, and anything corrupt or
foreign is refused, not trusted."""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashdb.index import BruteForceIndex, MIHIndex, entries, load_snapshot, save_snapshot
from hashdb.index.snapshot import (
    FOLD_MIN,
    SnapshotError,
    load_snapshots,
    save_snapshots,
    verify_snapshot,
)


def build(tmp_path: Path) -> tuple[MIHIndex, BruteForceIndex, np.ndarray, Path]:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    index, oracle = MIHIndex(256), BruteForceIndex(256)
    for i in (index, oracle):
        i.add(np.arange(2500), codes[:2500])
    index.compact()
    for i in (index, oracle):
        i.remove(np.arange(0, 2500, 5))  # dead rows in the tables
        i.add(np.arange(2500, 3000), codes[2500:])  # rows still in the buffer
    directory = tmp_path / "pdq"
    save_snapshot(index, directory, cursor=42)
    return index, oracle, codes, directory


def test_round_trip_keeps_results_and_cursor(tmp_path: Path) -> None:
    index, oracle, codes, directory = build(tmp_path)
    loaded = load_snapshot(directory, 256)
    assert loaded is not None
    restored, cursor = loaded
    assert cursor == 42 and len(restored) == len(index) == len(oracle)
    for threshold in (0, 31, 90):
        got = restored.search(codes[::7], threshold)
        want = oracle.search(codes[::7], threshold)
        assert all(
            np.array_equal(g.ids, w.ids) and np.array_equal(g.distances, w.distances)
            for g, w in zip(got, want, strict=True)
        )
    restored.add(np.array([0]), codes[:1])  # still updatable
    assert restored.search(codes[:1], 0)[0].ids.tolist() == [0]


def test_saving_again_replaces_the_snapshot(tmp_path: Path) -> None:
    index, _, _, directory = build(tmp_path)
    save_snapshot(index, directory, cursor=43)
    loaded = load_snapshot(directory, 256)
    assert loaded is not None and loaded[1] == 43
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snapshot.lock", "pdq"]


def reseal(directory: Path, manifest: dict[str, Any]) -> None:
    """Write `manifest` with a digest that matches it, as a forger would."""
    body = {key: value for key, value in manifest.items() if key != "digest"}
    manifest["digest"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def flip_a_byte(directory: Path) -> None:
    path = directory / "rows.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(directory: Path) -> None:
    path = directory / "codes.npy"
    path.write_bytes(path.read_bytes()[:-8])


def drop_file(directory: Path) -> None:
    (directory / "ids.npy").unlink()


def garble_manifest(directory: Path) -> None:
    (directory / "manifest.json").write_text("{not json")


def other_version(directory: Path) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["version"] = 999
    (directory / "manifest.json").write_text(json.dumps(manifest))


def forged_checksum(directory: Path) -> None:
    """A consistent-looking snapshot whose tables break the invariants."""
    path = directory / "offsets.npy"
    offsets = np.load(path)
    offsets[0, 5] = -1
    np.save(path, offsets)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["offsets"] = {
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    reseal(directory, manifest)


def second_version(directory: Path) -> None:
    """What hashdb wrote before snapshots were mapped (format version 2)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["version"] = 2
    reseal(directory, manifest)


def edited_manifest(directory: Path) -> None:
    """A manifest changed by hand, without its digest."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["count"] -= 1
    reseal(directory, manifest)


def first_version(directory: Path) -> None:
    """What hashdb wrote before typed entry ids (frames under negative ids)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["version"] = 1
    del manifest["entries"]
    (directory / "manifest.json").write_text(json.dumps(manifest))


def other_id_space(directory: Path) -> None:
    """Saved when the stored variant kinds (and so the slots in the ids) differed."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["entries"] = manifest["entries"].replace("slots=", "slots=0")
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage",
    [
        flip_a_byte,
        truncate,
        drop_file,
        garble_manifest,
        other_version,
        forged_checksum,
        first_version,
        second_version,
        other_id_space,
        edited_manifest,
    ],
)
def test_damaged_snapshot_is_refused_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    _, _, _, directory = build(tmp_path)
    damage(directory)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, logger="hashdb.index.snapshot"):
        assert load_snapshot(directory, 256) is None
    assert "not used" in caplog.text


def test_missing_or_foreign_snapshot_is_refused(tmp_path: Path) -> None:
    assert load_snapshot(tmp_path / "nothing", 256) is None
    _, _, _, directory = build(tmp_path)
    assert load_snapshot(directory, 64) is None  # saved for 256 bits


def test_ids_outside_the_entry_id_space_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A frame filed under a negative id (the old encoding) is never misread."""
    index = MIHIndex(256)
    index.add(np.array([-7, 3]), np.zeros((2, 32), np.uint8))
    save_snapshot(index, tmp_path / "pdq", cursor=1)
    with caplog.at_level(logging.WARNING, logger="hashdb.index.snapshot"):
        assert load_snapshot(tmp_path / "pdq", 256) is None
    assert "id space" in caplog.text


def test_typed_entries_round_trip(tmp_path: Path) -> None:
    ids = np.concatenate(
        [entries.hashes([1, 2]), entries.variants([1, 1], [0, 74]), entries.frames([1])]
    )
    index = MIHIndex(256)
    index.add(ids, np.zeros((len(ids), 32), np.uint8))
    save_snapshot(index, tmp_path / "pdq", cursor=5)
    loaded = load_snapshot(tmp_path / "pdq", 256)
    assert loaded is not None
    (hit,) = loaded[0].search(np.zeros((1, 32), np.uint8), 0)
    assert sorted(hit.ids.tolist()) == sorted(ids.tolist())


def test_a_flipped_code_passes_a_load_but_not_a_full_verification(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented trade-off: loads check sizes, digest and invariants, not every
    byte's checksum; `verify_snapshot` and `verify=True` do."""
    _, _, _, directory = build(tmp_path)
    path = directory / "codes.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    assert load_snapshot(directory, 256) is not None
    with pytest.raises(SnapshotError, match="checksum"):
        verify_snapshot(directory, 256)
    with caplog.at_level(logging.WARNING, logger="hashdb.index.snapshot"):
        assert load_snapshot(directory, 256, verify=True) is None
    assert "codes.npy does not match its checksum" in caplog.text


def test_a_sound_snapshot_verifies(tmp_path: Path) -> None:
    _, _, _, directory = build(tmp_path)
    assert verify_snapshot(directory, 256) == 42


def mapped_file(array: np.ndarray) -> bool:
    """Whether `array` is a view of a memory-mapped file."""
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, mmap.mmap)


def test_loaded_arrays_are_read_only_maps_and_the_live_mask_is_private(tmp_path: Path) -> None:
    _, _, _, directory = build(tmp_path)
    loaded = load_snapshot(directory, 256)
    assert loaded is not None
    segment = loaded[0].state().segment
    assert segment.shared
    for array in (segment.codes, segment.ids, segment.offsets, segment.rows, segment.tags):
        assert mapped_file(array) and not array.flags.writeable
        assert np.ascontiguousarray(array) is array  # the kernels get the map, not a copy
    assert not mapped_file(segment.live)
    assert loaded[0].mapped_nbytes() == sum(
        a.nbytes for a in (segment.codes, segment.ids, segment.offsets, segment.rows, segment.tags)
    )
    heap = load_snapshot(directory, 256, mapped=False)
    assert heap is not None and not mapped_file(heap[0].state().segment.codes)
    assert heap[0].mapped_nbytes() == 0


def test_a_removal_after_load_stays_in_this_process(tmp_path: Path) -> None:
    _, _, codes, directory = build(tmp_path)
    first, second = load_snapshot(directory, 256), load_snapshot(directory, 256)
    assert first is not None and second is not None
    first[0].remove(np.array([1]))
    assert 1 not in first[0].search(codes[1:2], 0)[0].ids.tolist()
    assert 1 in second[0].search(codes[1:2], 0)[0].ids.tolist()
    third = load_snapshot(directory, 256)  # and the files on disk are untouched
    assert third is not None and 1 in third[0].search(codes[1:2], 0)[0].ids.tolist()


@pytest.fixture(scope="module")
def mapped_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (1500, 32), dtype=np.uint8)
    codes[750:] = codes[:750] ^ (rng.random((750, 32)) < 0.04).astype(np.uint8)  # near pairs
    index = MIHIndex(256)
    index.add(np.arange(1500), codes)
    index.compact()
    directory = tmp_path_factory.mktemp("mapped") / "pdq"
    save_snapshot(index, directory, cursor=1)
    return directory, codes


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["add", "remove", "compact"]),
            st.lists(st.integers(0, 1999), min_size=1, max_size=40),
            st.integers(0, 2**32 - 1),
        ),
        max_size=8,
    ),
    threshold=st.sampled_from([0, 16, 31, 70]),
)
def test_updates_after_a_mapped_load_match_the_oracle(
    mapped_dir: tuple[Path, np.ndarray], steps: list[tuple[str, list[int], int]], threshold: int
) -> None:
    """Adds, removes and compactions on a mapped index answer like the brute-force
    oracle, and never fold the mapped base into a private copy."""
    directory, codes = mapped_dir
    loaded = load_snapshot(directory, 256)
    assert loaded is not None
    index = loaded[0]
    mapped = index.mapped_nbytes()
    oracle = BruteForceIndex(256)
    oracle.add(np.arange(1500), codes)
    queries = np.concatenate([codes[::50], codes[::77] ^ 3])
    for action, ids, seed in steps:
        chosen = np.array(ids, dtype=np.int64)
        if action == "add":  # new ids and replaced codes of stored ones
            new = np.random.default_rng(seed).integers(0, 256, (len(chosen), 32), dtype=np.uint8)
            near = queries[chosen[::2] % len(queries)].copy()
            near[:, 0] ^= 1  # one bit from a query: between its hits in the mapped base
            new[::2] = near
            index.add(chosen, new)
            oracle.add(chosen, new)
        elif action == "remove":
            index.remove(chosen)
            oracle.remove(chosen)
        else:
            index.compact()
    assert index.mapped_nbytes() == mapped and index.state().segment.shared
    got, want = index.search(queries, threshold), oracle.search(queries, threshold)
    assert len(index) == len(oracle)
    for g, w in zip(got, want, strict=True):
        assert g.ids.tolist() == w.ids.tolist() and g.distances.tolist() == w.distances.tolist()


def test_a_saved_mapped_index_with_a_large_delta_is_folded(tmp_path: Path) -> None:
    """The snapshot written after many additions to a mapped index holds one segment, so
    the processes that map it start without a delta."""
    _, oracle, _, directory = build(tmp_path)
    loaded = load_snapshot(directory, 256)
    assert loaded is not None
    index = loaded[0]
    more = np.random.default_rng(9).integers(0, 256, (FOLD_MIN, 32), dtype=np.uint8)
    index.add(np.arange(10_000, 10_000 + FOLD_MIN), more)
    oracle.add(np.arange(10_000, 10_000 + FOLD_MIN), more)
    save_snapshot(index, tmp_path / "again", cursor=50)
    again = load_snapshot(tmp_path / "again", 256)
    assert again is not None
    state = again[0].state()
    assert len(state.extra_ids) == 0 and len(state.segment) == len(oracle)
    got = again[0].search(more[::100], 0)
    assert [h.ids.tolist() for h in got] == [h.ids.tolist() for h in oracle.search(more[::100], 0)]


def test_concurrent_saves_leave_one_whole_snapshot(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    indexes = []
    for k in range(4):
        index = MIHIndex(256)
        index.add(
            np.arange(k * 1000, k * 1000 + 500 + k), rng.integers(0, 256, (500 + k, 32), np.uint8)
        )
        indexes.append(index)
    directory = tmp_path / "pdq"
    errors: list[BaseException] = []

    def save(k: int) -> None:
        try:
            for _ in range(5):
                save_snapshot(indexes[k], directory, cursor=k)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cursor = verify_snapshot(directory, 256)
    loaded = load_snapshot(directory, 256)
    assert loaded is not None and len(loaded[0]) == 500 + cursor  # one save's index, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snapshot.lock", "pdq"]


def test_indexes_saved_at_different_cursors_are_not_loaded_together(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A set of snapshots is one save's: never a PDQ index of one change-log position
    with a pHash index of another."""
    save_snapshot(MIHIndex(256), tmp_path / "pdq", cursor=3)
    save_snapshot(MIHIndex(64), tmp_path / "phash", cursor=4)
    with caplog.at_level(logging.WARNING, logger="hashdb.index.snapshot"):
        assert load_snapshots(tmp_path, {"pdq": 256, "phash": 64}) is None
    assert "different cursors" in caplog.text
    save_snapshots({"pdq": MIHIndex(256), "phash": MIHIndex(64)}, tmp_path, cursor=5)
    loaded = load_snapshots(tmp_path, {"pdq": 256, "phash": 64})
    assert loaded is not None and loaded[1] == 5 and set(loaded[0]) == {"pdq", "phash"}
