"""Snapshots round-trip exactly, and anything corrupt or foreign is refused, not trusted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from hashdb.index import BruteForceIndex, MIHIndex, entries, load_snapshot, save_snapshot


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pdq"]


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
    import hashlib

    path = directory / "offsets.npy"
    offsets = np.load(path)
    offsets[0, 5] = -1
    np.save(path, offsets)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["offsets"] = {
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))


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
        other_id_space,
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
