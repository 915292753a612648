"""Hamming indexes: exact radius search over binary codes.

`make_index(bits)` returns the implementation hashdb uses in production: `MIHIndex`
(multi-index hashing, `mih.py`) for bit lengths that are a multiple of 64 (PDQ 256,
pHash 64), else `FlatIndex` (a FAISS scan). `BruteForceIndex` is the oracle every
implementation is tested against. The interface (`base.py`)::

    index = make_index(bits=256)
    index.add(ids, codes)        # int64 (n,), uint8 (n, bits // 8); an id present is replaced
    index.remove(ids)            # absent ids are ignored; effective for the next search
    hits = index.search(queries, threshold)   # one SearchHits (ids, distances) per row,
                                              # every code within threshold (inclusive)
    index.compact()              # MIHIndex: fold buffered changes in now (after bulk loads)

Snapshots (`snapshot.py`): `save_snapshot(index, directory, cursor)` and
`load_snapshot(directory, bits) -> (index, cursor) | None`. What an id means (a hash,
a stored variant, a video frame) is one typed id space (`entries.py`).
"""

from __future__ import annotations

from hashdb.index import entries
from hashdb.index.base import Codes, HammingIndex, Ids, SearchHits, check_codes
from hashdb.index.flat import FlatIndex
from hashdb.index.mih import MIHIndex
from hashdb.index.oracle import BruteForceIndex, hamming
from hashdb.index.snapshot import load_snapshot, save_snapshot


def make_index(bits: int) -> HammingIndex:
    """The fastest exact index for `bits`-bit codes (see the module docstring)."""
    if bits > 0 and bits % 64 == 0:
        return MIHIndex(bits)
    return FlatIndex(bits)


__all__ = [
    "BruteForceIndex",
    "Codes",
    "FlatIndex",
    "HammingIndex",
    "Ids",
    "MIHIndex",
    "SearchHits",
    "check_codes",
    "entries",
    "hamming",
    "load_snapshot",
    "make_index",
    "save_snapshot",
]
