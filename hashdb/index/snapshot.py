"""Index snapshots: the built index on disk, with the change-log position it reflects.

Why: rebuilding the tables of 10M PDQ hashes means reading them all from the
database and sorting sixteen tables; a snapshot's arrays are instead mapped into
memory as they are. A snapshot is a directory of plain `.npy` arrays (read with
`allow_pickle=False`: nothing in it can run code) and a `manifest.json` naming the
format version, the bit length, the layout (bit permutation digest, substring width),
the id space of its entries (`entries.SPACE`: what an id means), the change-log
`cursor`, the size and SHA-256 of every array file, and a `digest` of all of that.
Version 2 was the first with typed entry ids (hashdb/index/entries.py); version 3
lays the files out to be memory-mapped; version 4 adds the tables' tags (a byte
beside each table row, hashdb/index/segment.py). A version 3 snapshot still loads:
its tags are derived from its codes and rows on load, into the process's own memory
(16 bytes per PDQ hash, not shared) until the next save writes version 4. Other
versions are refused and rebuilt.

One copy per machine: `load_snapshot` (by default) maps the big arrays (codes, ids,
the tables' offsets, rows and tags: 120 of the 121 bytes per PDQ hash) read-only
(`np.load(mmap_mode="r")`), so every process on the machine that loads the same
snapshot shares one copy in the page cache. What a process holds of its own is the
`live` mask (1 byte per row, copied: a removal stays in the process that made it)
and what it added since (hashdb/index/mih.py: a buffer, then a private extra
segment; never a private copy of the mapped one). A mapped file must never change
under its readers, so files are never rewritten in place: `save_snapshots` writes a
temporary sibling directory, fsyncs it and renames it over the old one, whose files
stay readable by the processes that mapped them (an unlinked file lives on while it
is mapped). Saves of one snapshot directory are serialised by an exclusive `flock`
on `<root>/.snapshot.lock`, and loads take it shared, so two processes saving at
once leave one whole snapshot and a load never sees the indexes of two saves.

Checksums, and what a load trusts: hashing every byte of a multi-gigabyte snapshot
at every process start (and again at every swap to a newer one) costs each process
a full read and about a second of CPU per gigabyte. So the writer computes the
SHA-256 of each file from what it wrote back on disk, and a load checks what is
cheap and still guards memory safety and compatibility: the manifest's digest, its
format, version, layout and id space, each file's size, and the arrays' invariants
(ids strictly increasing and inside the id space, table offsets monotone and ending
at the row count, rows in range: a corrupt table can never send a kernel outside
its arrays). What a load does not catch is a flipped bit inside `codes` (a wrong
hash for one row, not a crash) or `tags` (a match a search may miss, not a crash);
`verify_snapshot` (and `load_snapshot(verify=True)`) checks every file's SHA-256
for an operator or a test that wants that certainty.
Anything that fails gives `None` and a logged reason, and the caller rebuilds from
the database. Whether a snapshot is stale is the caller's call, from its cursor.

A saved index is folded into one segment when its dead rows and unindexed rows
together reach 1/`FOLD_SHARE` of its indexed ones (at least `FOLD_MIN`), so the
processes that map it start with a small delta; folding costs the writer, briefly,
a private copy of the index.

How the Matcher uses it, at start-up::

    loaded = load_snapshots(root, {"pdq": 256, "phash": 64})
    if loaded is None:
        indexes, cursor = ..., changes.head()    # built from the store
    else:
        indexes, cursor = loaded                 # then replay the change log after it
    ...
    save_snapshots(indexes, root, cursor)        # after a build, or by the worker role

The cursor passed when saving must be one whose changes are all applied to the
indexes (the Matcher's `cursor` under its lock); replaying changes again is harmless.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hashdb.index import entries, kernels
from hashdb.index.layout import layout_for
from hashdb.index.mih import IndexState, MIHIndex
from hashdb.index.segment import Segment, tags_for

log = logging.getLogger(__name__)

FORMAT = "hashdb-index-snapshot"
VERSION = 4
READABLE = (3, VERSION)  # version 3 has no tags: they are derived on load
MANIFEST = "manifest.json"
LOCK = ".snapshot.lock"
FOLD_SHARE = 32
FOLD_MIN = 4096
_ARRAYS = ("codes", "ids", "live", "offsets", "rows", "tags", "extra_ids", "extra_codes")
_MAPPED = frozenset({"codes", "ids", "offsets", "rows", "tags"})  # the rest: small or private


class SnapshotError(Exception):
    """Why a snapshot is unsound (logged by `load_snapshot`, raised by `verify_snapshot`)."""


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
    directory = Path(directory)
    save_snapshots({directory.name: index}, directory.parent, cursor)


def save_snapshots(indexes: Mapping[str, MIHIndex], root: Path, cursor: int) -> None:
    """Write each index to `root / name`, all at `cursor`, under the directory's lock."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root, exclusive=True):
        for name, index in indexes.items():
            _write(index, root / name, cursor)
        _fsync_dir(root)


def _write(index: MIHIndex, directory: Path, cursor: int) -> None:
    for stale in directory.parent.glob(f".{directory.name}.*"):  # left by a crashed save
        shutil.rmtree(stale, ignore_errors=True)
    state = index.state()
    if _should_fold(state):
        state = _fold(state, index.bits)
    seg = state.segment
    arrays: dict[str, npt.NDArray[Any]] = {
        "codes": seg.codes,
        "ids": seg.ids,
        "live": seg.live,
        "offsets": seg.offsets,
        "rows": seg.rows,
        "tags": seg.tags,
        "extra_ids": state.extra_ids,
        "extra_codes": state.extra_codes,
    }
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
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "bits": index.bits,
            "chunk_bits": kernels.CHUNK_BITS,
            "layout_sha256": _layout_digest(index.bits),
            "entries": entries.SPACE,
            "cursor": int(cursor),
            "count": int(seg.live.sum()) + len(state.extra_ids),
            "files": files,
        }
        manifest["digest"] = _manifest_digest(manifest)
        with (tmp / MANIFEST).open("w") as f:
            f.write(json.dumps(manifest, indent=2))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        old = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.old")
        if directory.exists():
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)  # mapped files stay readable to their mappers
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _should_fold(state: IndexState) -> bool:
    seg = state.segment
    return len(state.extra_ids) + seg.dead >= max(FOLD_MIN, len(seg) // FOLD_SHARE)


def _fold(state: IndexState, bits: int) -> IndexState:
    """`state` as one freshly built segment holding only its live rows."""
    layout = layout_for(bits)
    ids, codes = state.segment.live_rows()
    segment = Segment.build(
        np.concatenate([ids, state.extra_ids]),
        np.concatenate([codes, state.extra_codes]),
        layout.chunks,
    )
    return IndexState(segment, np.empty(0, np.int64), np.empty((0, layout.words), np.uint64))


def load_snapshot(
    directory: Path, bits: int, *, mapped: bool = True, verify: bool = False
) -> tuple[MIHIndex, int] | None:
    """The index saved in `directory` and its cursor, or None (reason logged).

    `mapped`: codes, ids and tables are read-only maps of the files (shared with
    every process that maps them), else copies on the heap. `verify`: check every
    file's SHA-256 as well (reads it all; see the module docstring)."""
    directory = Path(directory)
    found = load_snapshots(directory.parent, {directory.name: bits}, mapped=mapped, verify=verify)
    if found is None:
        return None
    indexes, cursor = found
    return indexes[directory.name], cursor


def load_snapshots(
    root: Path, bits: Mapping[str, int], *, mapped: bool = True, verify: bool = False
) -> tuple[dict[str, MIHIndex], int] | None:
    """The index of each name in `bits` (its bit length), saved in `root / name` at one
    cursor by one save, and that cursor; or None (reason logged)."""
    root = Path(root)
    loaded: dict[str, MIHIndex] = {}
    cursors: set[int] = set()
    with _locked(root, exclusive=False):
        for name, length in bits.items():
            try:
                index, cursor = _load(root / name, length, mapped=mapped, verify=verify)
            except SnapshotError as exc:
                log.warning("index snapshot in %s not used: %s", root / name, exc)
                return None
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("index snapshot in %s not used: unreadable (%s)", root / name, exc)
                return None
            loaded[name] = index
            cursors.add(cursor)
    if len(cursors) > 1:
        log.warning("index snapshots in %s not used: saved at different cursors", root)
        return None
    return loaded, cursors.pop() if cursors else 0


def verify_snapshot(directory: Path, bits: int) -> int:
    """Check a snapshot fully (every file's SHA-256 too); its cursor, or SnapshotError."""
    try:
        return _load(Path(directory), bits, mapped=True, verify=True)[1]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"unreadable ({exc})") from exc


def snapshot_cursor(root: Path, names: Iterable[str]) -> int | None:
    """The cursor the snapshots `root / name` were saved at, when they agree (a
    cheap read of their manifests, nothing verified); else None."""
    cursors = set()
    for name in names:
        try:
            manifest = json.loads((Path(root) / name / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        cursor = manifest.get("cursor") if isinstance(manifest, dict) else None
        if not isinstance(cursor, int):
            return None
        cursors.add(cursor)
    return cursors.pop() if len(cursors) == 1 else None


def snapshot_stamp(root: Path, names: Iterable[str]) -> tuple[tuple[int, int], ...] | None:
    """What changes when any of the snapshots `root / name` is saved again (inode and
    modification time of each manifest): one `stat` each, for polling; None if any
    is missing."""
    stamp = []
    for name in names:
        try:
            st = (Path(root) / name / MANIFEST).stat()
        except OSError:
            return None
        stamp.append((st.st_ino, st.st_mtime_ns))
    return tuple(stamp)


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    body = {key: value for key, value in manifest.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _locked(root: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold `root`'s snapshot lock. A reader that cannot open the lock file (no such
    directory yet, or one it may not write) reads unlocked: each directory is still
    replaced whole, only a set saved together may then be seen half-replaced."""
    try:
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        fd = -1
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock


def reading(root: Path) -> contextlib.AbstractContextManager[None]:
    """Hold `root`'s snapshot lock shared, as a load does: no save replaces a snapshot
    meanwhile (for copying the directory, as a backup does)."""
    return _locked(root, exclusive=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load(directory: Path, bits: int, *, mapped: bool, verify: bool) -> tuple[MIHIndex, int]:
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise SnapshotError("no snapshot")
    manifest = json.loads(manifest_path.read_text())
    if not isinstance(manifest, dict):
        raise SnapshotError("the manifest is not an object")
    if manifest.get("version") not in READABLE:
        raise SnapshotError(
            f"incompatible: version is {manifest.get('version')!r}, need one of {READABLE}"
        )
    expected = {
        "format": FORMAT,
        "bits": bits,
        "chunk_bits": kernels.CHUNK_BITS,
        "layout_sha256": _layout_digest(bits),
        "entries": entries.SPACE,
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            raise SnapshotError(f"incompatible: {key} is {manifest.get(key)!r}, need {value!r}")
    if manifest.get("digest") != _manifest_digest(manifest):
        raise SnapshotError("the manifest does not match its digest")
    cursor = manifest["cursor"]
    if not isinstance(cursor, int) or cursor < 0:
        raise SnapshotError("bad cursor")
    arrays = {}
    for name in _ARRAYS:
        if name == "tags" and manifest["version"] == 3:
            continue  # derived by `_state`
        entry = manifest["files"][name]
        path = directory / f"{name}.npy"
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise SnapshotError(f"{path.name} has {size} bytes, the manifest says {entry['bytes']}")
        if verify and _sha256(path) != entry["sha256"]:
            raise SnapshotError(f"{path.name} does not match its checksum")
        if mapped and name in _MAPPED:
            arrays[name] = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
        else:
            arrays[name] = np.load(path, allow_pickle=False)
    state = _state(arrays, bits, shared=mapped)
    index = MIHIndex.from_state(bits, state)
    if len(index) != manifest["count"]:
        raise SnapshotError("entry count does not match the manifest")
    return index, cursor


def _check(array: npt.NDArray[Any], dtype: type, shape: tuple[int, ...], name: str) -> None:
    if array.dtype != np.dtype(dtype) or array.shape != shape:
        raise SnapshotError(f"{name} has {array.dtype} {array.shape}, need {dtype} {shape}")


def _state(arrays: dict[str, npt.NDArray[Any]], bits: int, *, shared: bool) -> IndexState:
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
    if "tags" not in arrays:  # version 3; its rows are checked in range above
        arrays["tags"] = tags_for(arrays["codes"], rows)
    _check(arrays["tags"], np.uint8, (layout.chunks, n), "tags")
    for name in _MAPPED:  # read-only, mapped or not: the kernels see one array type
        arrays[name].setflags(write=False)
    segment = Segment(
        arrays["codes"], arrays["ids"], arrays["live"], offsets, rows, arrays["tags"], shared=shared
    )
    return IndexState(segment, arrays["extra_ids"], arrays["extra_codes"])
