"""The id space of index entries: what an id in a Hamming index refers to.

One PDQ index serves three kinds of entry, and an index id says which it is and
where it points, so that a hit is resolved without a lookup table:

    kind     bits 60-62   bits 8-59                      bits 0-7
    HASH     0            the `hashes` row id (bits 0-59)
    VARIANT  1            its image's `hashes` row id     its kind's slot
    FRAME    2            the `video_frames` row id (bits 0-59)

An id is never negative. A HASH entry's id is the hash id itself. A stored
variant (hashdb/variants.py) is filed under its image: the hit names the image and
the kind (`SLOTS`), and replaying the image's change removes every slot it could
hold (`variant_slots`) before adding the ones it holds now, so a variant dropped
from the database never lingers in the index. This module is the only place that
packs or unpacks these ids; the matcher, its hit resolution and the snapshots
(which record `SPACE` and refuse ids outside it) all go through it.
"""

from __future__ import annotations

import enum
import hashlib
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from hashdb.variants import SLOTS, STORED_KINDS

Ids = npt.NDArray[np.int64]

KIND_SHIFT = 60
SLOT_BITS = 8
ROW_LIMIT = 1 << KIND_SHIFT  # hash and frame row ids below this
IMAGE_LIMIT = 1 << (KIND_SHIFT - SLOT_BITS)  # a variant's image id below this
_ROW_MASK = ROW_LIMIT - 1
_SLOT_MASK = (1 << SLOT_BITS) - 1

if len(STORED_KINDS) > 1 << SLOT_BITS:
    raise RuntimeError(f"{len(STORED_KINDS)} stored variant kinds do not fit {SLOT_BITS} bits")


class EntryKind(enum.IntEnum):
    HASH = 0  # a `hashes` row: an image's PDQ, a pHash
    VARIANT = 1  # a stored variant of a `hashes` row
    FRAME = 2  # a frame of a stored video (`video_frames`)


class Entry(NamedTuple):
    """One decoded id: its kind, the row it points at (for a VARIANT, the image's
    hash id) and, for a VARIANT, the slot of its kind."""

    kind: EntryKind
    row: int
    slot: int = 0

    @property
    def variant(self) -> str:
        """The stored variant's kind (hashdb/variants.py); only for a VARIANT."""
        return STORED_KINDS[self.slot]


# What the ids of an index mean; an index saved under another meaning is not loaded.
SPACE = (
    "hash=0,variant=1,frame=2;shift=60;slots="
    + hashlib.sha256(",".join(STORED_KINDS).encode()).hexdigest()[:16]
)


def _rows(rows: npt.ArrayLike, limit: int) -> Ids:
    out = np.asarray(rows, dtype=np.int64).ravel()
    if len(out) and (out.min() < 0 or out.max() >= limit):
        raise ValueError(f"row ids must be in [0, {limit})")
    return out


def hashes(hash_ids: npt.ArrayLike) -> Ids:
    """The entry ids of `hashes` rows."""
    return _rows(hash_ids, ROW_LIMIT)


def frames(frame_ids: npt.ArrayLike) -> Ids:
    """The entry ids of `video_frames` rows."""
    return _rows(frame_ids, ROW_LIMIT) | np.int64(EntryKind.FRAME << KIND_SHIFT)


def variants(hash_ids: npt.ArrayLike, slots: npt.ArrayLike) -> Ids:
    """The entry ids of stored variants: their images' hash ids and their slots."""
    images = _rows(hash_ids, IMAGE_LIMIT)
    kinds = np.asarray(slots, dtype=np.int64).ravel()
    if len(kinds) != len(images) or (len(kinds) and (kinds.min() < 0 or kinds.max() > _SLOT_MASK)):
        raise ValueError("one slot in [0, 256) per variant")
    return (images << SLOT_BITS) | kinds | np.int64(EntryKind.VARIANT << KIND_SHIFT)


def variant_slots(hash_ids: npt.ArrayLike) -> Ids:
    """Every entry id a stored variant of `hash_ids` could have (one per kind)."""
    images = _rows(hash_ids, IMAGE_LIMIT)
    n = len(STORED_KINDS)
    return variants(np.repeat(images, n), np.tile(np.arange(n), len(images)))


def kinds_of(ids: Ids) -> npt.NDArray[np.int64]:
    """The EntryKind value of each id."""
    return np.asarray(ids, dtype=np.int64) >> KIND_SHIFT


def rows_of(ids: Ids) -> Ids:
    """The row each id points at: a hash id, a frame id or (VARIANT) the image's id."""
    ids = np.asarray(ids, dtype=np.int64)
    row = ids & _ROW_MASK
    return np.where(kinds_of(ids) == EntryKind.VARIANT, row >> SLOT_BITS, row)


def slots_of(ids: Ids) -> npt.NDArray[np.int64]:
    """The slot of each id (meaningful for VARIANT entries only)."""
    return np.asarray(ids, dtype=np.int64) & _SLOT_MASK


def valid(ids: Ids) -> npt.NDArray[np.bool_]:
    """Which ids belong to this space (a known kind; a VARIANT with a known slot)."""
    ids = np.asarray(ids, dtype=np.int64)
    kind = kinds_of(ids)
    known = (ids >= 0) & (kind <= max(EntryKind))
    slotted = (kind != EntryKind.VARIANT) | (slots_of(ids) < len(STORED_KINDS))
    return np.asarray(known & slotted, dtype=np.bool_)


def decode(entry_id: int) -> Entry:
    """One id, unpacked; ValueError for an id outside the space."""
    ids = np.array([entry_id], dtype=np.int64)
    if not valid(ids)[0]:
        raise ValueError(f"{entry_id} is not an index entry id")
    kind = EntryKind(int(kinds_of(ids)[0]))
    slot = int(slots_of(ids)[0]) if kind is EntryKind.VARIANT else 0
    return Entry(kind, int(rows_of(ids)[0]), slot)


def slot_of(kind: str) -> int | None:
    """The slot of a stored variant kind; None for one no longer stored (not indexed)."""
    return SLOTS.get(kind)
