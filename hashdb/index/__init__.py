"""Hamming indexes: exact radius search over binary codes.

`make_index(bits)` returns the implementation hashdb uses in production;
`BruteForceIndex` is the oracle every implementation is tested against. See
`base.py` for the interface.
"""

from __future__ import annotations

from hashdb.index.base import Codes, HammingIndex, Ids, SearchHits, check_codes
from hashdb.index.flat import FlatIndex
from hashdb.index.oracle import BruteForceIndex, hamming


def make_index(bits: int) -> HammingIndex:
    return FlatIndex(bits)


__all__ = [
    "BruteForceIndex",
    "Codes",
    "FlatIndex",
    "HammingIndex",
    "Ids",
    "SearchHits",
    "check_codes",
    "hamming",
    "make_index",
]
