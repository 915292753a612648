"""A snapshot of the previous format still loads and answers exactly.

Version 3 snapshots have no `tags.npy` (the byte beside each table row that lets a
probe skip most candidates, hashdb/index/segment.py): a load derives the tags from
the snapshot's codes and rows, after checking that the rows are in range, and the
next save writes the current version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from hashdb.index import BruteForceIndex, MIHIndex, load_snapshot, save_snapshot
from hashdb.index.layout import Plan
from hashdb.index.snapshot import VERSION


def near(centres: np.ndarray, per: int, rng: np.random.Generator) -> np.ndarray:
    """`per` codes around each centre, 0 to 40 bits away (matches and near misses)."""
    out = []
    for centre in centres:
        for _ in range(per):
            bits = np.unpackbits(centre)
            bits[rng.choice(256, size=int(rng.integers(0, 41)), replace=False)] ^= 1
            out.append(np.packbits(bits))
    return np.array(out, dtype=np.uint8)


def build(tmp_path: Path) -> tuple[MIHIndex, BruteForceIndex, np.ndarray, Path]:
    rng = np.random.default_rng(40)
    centres = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    codes = np.concatenate(
        [rng.integers(0, 256, (2000, 32), dtype=np.uint8), near(centres, 25, rng)]
    )
    ids = np.arange(len(codes))
    index, oracle = MIHIndex(256), BruteForceIndex(256)
    for i in (index, oracle):
        i.add(ids[:2600], codes[:2600])
    index.compact()
    for i in (index, oracle):
        i.remove(ids[:2600:7])  # dead rows in the tables
        i.add(ids[2600:], codes[2600:])  # rows still in the buffer
    directory = tmp_path / "pdq"
    save_snapshot(index, directory, cursor=7)
    return index, oracle, centres, directory


def as_version_3(directory: Path) -> None:
    """Rewrite a saved snapshot as version 3 wrote it: no tags, version 3, resealed."""
    (directory / "tags.npy").unlink()
    manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
    manifest["version"] = 3
    del manifest["files"]["tags"]
    body = {key: value for key, value in manifest.items() if key != "digest"}
    manifest["digest"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))


def equal_to_oracle(
    index: MIHIndex,
    oracle: BruteForceIndex,
    queries: np.ndarray,
    thresholds: tuple[int, ...] = (0, 30, 31, 32, 90),
) -> bool:
    for threshold in thresholds:
        got, want = index.search(queries, threshold), oracle.search(queries, threshold)
        if not all(
            np.array_equal(g.ids, w.ids) and np.array_equal(g.distances, w.distances)
            for g, w in zip(got, want, strict=True)
        ):
            return False
    return True


def test_a_version_3_snapshot_loads_with_derived_tags_and_answers_exactly(
    tmp_path: Path,
) -> None:
    index, oracle, centres, directory = build(tmp_path)
    saved_tags = np.array(index.state().segment.tags)
    as_version_3(directory)
    for mapped in (True, False):
        loaded = load_snapshot(directory, 256, mapped=mapped)
        assert loaded is not None and loaded[1] == 7
        restored = loaded[0]
        segment = restored.state().segment
        assert np.array_equal(segment.tags, saved_tags)
        assert not segment.tags.flags.writeable
        if mapped:  # the derived tags are this process's own, not part of the shared map
            assert restored.mapped_nbytes() == sum(
                a.nbytes for a in (segment.codes, segment.ids, segment.offsets, segment.rows)
            )
        assert equal_to_oracle(restored, oracle, centres)
        restored._plan = Plan.PROBE  # the plan that reads the tags, for a batch too
        assert equal_to_oracle(restored, oracle, centres, (0, 30, 31, 32))


def test_a_loaded_version_3_snapshot_is_saved_as_the_current_version(tmp_path: Path) -> None:
    _, oracle, centres, directory = build(tmp_path)
    as_version_3(directory)
    loaded = load_snapshot(directory, 256)
    assert loaded is not None
    save_snapshot(loaded[0], directory, cursor=8)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["version"] == VERSION and "tags" in manifest["files"]
    again = load_snapshot(directory, 256)
    assert again is not None and again[1] == 8
    assert equal_to_oracle(again[0], oracle, centres)


def test_a_version_3_snapshot_with_rows_out_of_range_is_refused_before_deriving_tags(
    tmp_path: Path,
) -> None:
    """Tags are read through the rows: a row outside the codes must never be followed."""
    _, _, _, directory = build(tmp_path)
    as_version_3(directory)
    rows = np.load(directory / "rows.npy")
    rows[3, 100] = len(rows[0]) + 1000
    with (directory / "rows.npy").open("wb") as f:
        np.save(f, rows, allow_pickle=False)  # same size: only the invariants can tell
    assert load_snapshot(directory, 256) is None
