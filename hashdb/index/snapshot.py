"""Index snapshots: the built index on disk, with the change-log position it reflects.

Why: rebuilding the tables of 10M PDQ hashes means reading them all from the
database and sorting sixteen tables; loading the built arrays back is a sequential
read. A snapshot is a directory of plain `.npy` arrays (read with
`allow_pickle=False`: nothing in it can run code) and a `manifest.json` naming the
format version, the bit length, the layout (bit permutation digest, substring width),
the id space of its entries (`entries.SPACE`: what an id means), the change-log
`cursor`, and the size and SHA-256 of every array file. Version 2 is the first with
typed entry ids (hashdb/index/entries.py); a version 1 snapshot filed video frames
under negative ids and stored variants as hash ids, so it is refused and rebuilt.

`load_snapshot` trusts nothing: a missing, unreadable, truncated or tampered file, a
checksum mismatch, another format version, layout or id space, or arrays that break
the index's invariants (ids strictly increasing and inside the id space, table
offsets monotone and ending at the row count, rows in range) all give `None` and a
logged reason, and the caller rebuilds from the database. Whether a snapshot is
stale (older than what the change log can still replay) is the caller's call, from
the cursor it returns.

`save_snapshot` writes into a temporary sibling directory and renames it into place,
so a crash mid-write leaves the previous snapshot intact.

How the Matcher uses it, at start-up::

    loaded = load_snapshot(directory, signal.bits)
    if loaded is None:
        index, cursor = make_index(signal.bits), changes.head()   # then add from the store
    else:
        index, cursor = loaded       # then replay the change log after `cursor`
    ...
    save_snapshot(index, directory, cursor)   # after a build from the database

The cursor passed to `save_snapshot` must be one whose changes are all applied to the
index (the Matcher's `cursor` under its lock); replaying changes again is harmless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hashdb.index import entries, kernels
from hashdb.index.layout import layout_for
from hashdb.index.mih import IndexState, MIHIndex
from hashdb.index.segment import Segment

log = logging.getLogger(__name__)

FORMAT = "hashdb-index-snapshot"
VERSION = 2
MANIFEST = "manifest.json"
_ARRAYS = ("codes", "ids", "live", "offsets", "rows", "extra_ids", "extra_codes")


class SnapshotError(Exception):
    """Why a snapshot was not loaded (logged by `load_snapshot`, never raised out)."""


def _layout_digest(bits: int) -> str:
    layout = layout_for(bits)
    return hashlib.sha256(layout.permutation.tobytes()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def save_snapshot(index: MIHIndex, directory: Path, cursor: int) -> None:
    """Write `index` (reflecting change-log position `cursor`) to `directory`."""
    state = index.state()
    seg = state.segment
    arrays: dict[str, npt.NDArray[Any]] = {
        "codes": seg.codes,
        "ids": seg.ids,
        "live": seg.live,
        "offsets": seg.offsets,
        "rows": seg.rows,
        "extra_ids": state.extra_ids,
        "extra_codes": state.extra_codes,
    }
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        files = {}
        for name, array in arrays.items():
            path = tmp / f"{name}.npy"
            with path.open("wb") as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "bits": index.bits,
            "chunk_bits": kernels.CHUNK_BITS,
            "layout_sha256": _layout_digest(index.bits),
            "entries": entries.SPACE,
            "cursor": int(cursor),
            "count": len(index),
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        old = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.old")
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_snapshot(directory: Path, bits: int) -> tuple[MIHIndex, int] | None:
    """The index saved in `directory` and its cursor, or None (reason logged)."""
    try:
        return _load(Path(directory), bits)
    except SnapshotError as exc:
        log.warning("index snapshot in %s not used: %s", directory, exc)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("index snapshot in %s not used: unreadable (%s)", directory, exc)
    return None


def _load(directory: Path, bits: int) -> tuple[MIHIndex, int]:
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise SnapshotError("no snapshot")
    manifest = json.loads(manifest_path.read_text())
    expected = {
        "format": FORMAT,
        "version": VERSION,
        "bits": bits,
        "chunk_bits": kernels.CHUNK_BITS,
        "layout_sha256": _layout_digest(bits),
        "entries": entries.SPACE,
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise SnapshotError(f"incompatible: {key} is {manifest.get(key)!r}, need {value!r}")
    cursor = manifest["cursor"]
    if not isinstance(cursor, int) or cursor < 0:
        raise SnapshotError("bad cursor")
    arrays = {}
    for name in _ARRAYS:
        entry = manifest["files"][name]
        path = directory / f"{name}.npy"
        if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise SnapshotError(f"{path.name} does not match its checksum")
        arrays[name] = np.load(path, allow_pickle=False)
    state = _state(arrays, bits)
    index = MIHIndex.from_state(bits, state)
    if len(index) != manifest["count"]:
        raise SnapshotError("entry count does not match the manifest")
    return index, cursor


def _check(array: npt.NDArray[Any], dtype: type, shape: tuple[int, ...], name: str) -> None:
    if array.dtype != np.dtype(dtype) or array.shape != shape:
        raise SnapshotError(f"{name} has {array.dtype} {array.shape}, need {dtype} {shape}")


def _state(arrays: dict[str, npt.NDArray[Any]], bits: int) -> IndexState:
    layout = layout_for(bits)
    ids = arrays["ids"]
    n = len(ids)
    _check(ids, np.int64, (n,), "ids")
    _check(arrays["codes"], np.uint64, (n, layout.words), "codes")
    _check(arrays["live"], np.bool_, (n,), "live")
    _check(arrays["offsets"], np.int32, (layout.chunks, kernels.BUCKETS + 1), "offsets")
    _check(arrays["rows"], np.int32, (layout.chunks, n), "rows")
    extra = len(arrays["extra_ids"])
    _check(arrays["extra_ids"], np.int64, (extra,), "extra_ids")
    _check(arrays["extra_codes"], np.uint64, (extra, layout.words), "extra_codes")
    offsets, rows = arrays["offsets"], arrays["rows"]
    if n > 1 and not (ids[1:] > ids[:-1]).all():
        raise SnapshotError("ids are not strictly increasing")
    if not (entries.valid(ids).all() and entries.valid(arrays["extra_ids"]).all()):
        raise SnapshotError("ids outside the index entry id space")
    if (offsets[:, 0] != 0).any() or (offsets[:, -1] != n).any():
        raise SnapshotError("table offsets do not span the rows")
    if (np.diff(offsets, axis=1) < 0).any():
        raise SnapshotError("table offsets are not monotone")
    if n and (rows.min() < 0 or rows.max() >= n):
        raise SnapshotError("table rows out of range")
    segment = Segment(arrays["codes"], ids, arrays["live"], offsets, rows)
    return IndexState(segment, arrays["extra_ids"], arrays["extra_codes"])
