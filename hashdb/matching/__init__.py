"""Matching: answer a batch of queries from in-memory indexes kept current.

    queries.py   what is asked and answered: Query (with its probes), Match (with
                 `via`: which probe and which stored variant found it), results
    live.py      the live indexes: built or restored from a snapshot, replayed
                 from the change log (state-based, idempotent)
    rows.py      the row cache that hydrates matches, evicted by replay
    resolve.py   index hits back to hashes: stored variants and video frames are
                 reported as their image and their video
    matcher.py   `Matcher`, which ties them together

Index ids are typed entries (hashdb/index/entries.py): a hash, a stored variant of
an image (hashdb/variants.py), a frame of a stored video.
"""

from hashdb.matching.matcher import Matcher
from hashdb.matching.queries import Match, Probe, Query, QueryResult, Via, VideoMatch
from hashdb.matching.rows import RECORD_CACHE

__all__ = [
    "RECORD_CACHE",
    "Match",
    "Matcher",
    "Probe",
    "Query",
    "QueryResult",
    "Via",
    "VideoMatch",
]
