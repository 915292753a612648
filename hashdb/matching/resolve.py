"""Hit resolution: index entries back to the hashes a match reports.

An index hit is a typed entry (hashdb/index/entries.py). A HASH entry is that
hash. A stored VARIANT is reported as its image, and only within its kind's
STORED_THRESHOLDS (hashdb/variants.py), whatever the probe's own threshold let
through; `Via` names the probe searched and the variant hit. A video FRAME is
reported as its video, with the frame's time (`Match.frame_at`); a video query
groups its frame hits per stored video, with the hits of its keyframes on stored
keyframes (hashdb/matching/keyframes.py), and scores them (hashdb/video_match.py).
Rows come from the row cache; a hash that is not matchable at this moment (its
status, its expiry) is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from hashdb.index import SearchHits, entries
from hashdb.index.entries import EntryKind
from hashdb.matching.keyframes import KeyframeHit, as_frame_hits
from hashdb.matching.queries import Match, Query, QueryResult, Via, VideoMatch
from hashdb.matching.rows import RowCache
from hashdb.signals.vpdq import Frame
from hashdb.store import HashRecord, HashStore, Status, VideoStore
from hashdb.variants import STORED_KINDS, STORED_THRESHOLDS
from hashdb.video_match import VideoThresholds, group_hits, rank_candidates

# The hits of one query: per probe searched, the entry ids and distances it found and
# the probe's name (None for the query as given).
Hits = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], str | None]]

# Entry kinds as plain ints for the per-hit loop (an enum member lookup per hit
# showed in profiles of batches of 1,000).
_FRAME, _VARIANT = int(EntryKind.FRAME), int(EntryKind.VARIANT)


class Resolver:
    """Turns index hits into matches of live hashes."""

    def __init__(
        self,
        hashes: HashStore,
        videos: VideoStore | None,
        rows: RowCache,
        statuses: frozenset[Status],
    ) -> None:
        self._hashes = hashes
        self._videos = videos
        self._rows = rows
        self._statuses = statuses

    def live(self, record: HashRecord, at: datetime) -> bool:
        return record.status in self._statuses and not record.expired(at)

    def results(self, queries: Sequence[Query], raw: list[Hits]) -> list[QueryResult]:
        """Each query's matches, best (closest) per hash, closest first."""
        # Every hit of every query in one flat run, in query order and, within a
        # query, in the order its probes were searched (which decides ties), so the
        # entry ids are decoded by a few array operations for the whole batch.
        parts = [(q, hit) for q, hits in enumerate(raw) for hit in hits if len(hit[0])]
        if not parts:
            return [QueryResult(q, []) for q in queries]
        ids = np.concatenate([hit[0] for _, hit in parts])
        sizes = [len(hit[0]) for _, hit in parts]
        kinds, rows, slots = entries.kinds_of(ids), entries.rows_of(ids), entries.slots_of(ids)
        frames = np.unique(rows[kinds == _FRAME]).tolist()
        owners = self._videos.frame_owners(frames) if frames and self._videos else {}
        wanted = set(np.unique(rows[kinds != _FRAME]).tolist())
        wanted |= {video for video, _ in owners.values()}
        records = self._rows.get(wanted) if wanted else {}
        at = datetime.now(UTC)
        # Per query, the closest hit of each live hash: (distance, hash id, probe,
        # stored variant, frame time); Match objects are made for these alone.
        best: list[dict[int, tuple[int, int, str | None, str | None, float | None]]] = [
            {} for _ in queries
        ]
        found = zip(
            np.repeat([q for q, _ in parts], sizes).tolist(),
            [probe for (_, (_, _, probe)), n in zip(parts, sizes, strict=True) for _ in range(n)],
            kinds.tolist(),
            rows.tolist(),
            slots.tolist(),
            np.concatenate([hit[1] for _, hit in parts]).tolist(),
            strict=True,
        )
        for q, probe, kind, row, slot, distance in found:
            hash_id, stored, frame_at = row, None, None
            if kind == _FRAME:
                if row not in owners:
                    continue
                hash_id, frame_at = owners[row]
            elif kind == _VARIANT:
                stored = STORED_KINDS[slot]
                if distance > STORED_THRESHOLDS[stored]:
                    continue
            seen = best[q].get(hash_id)
            if seen is None or distance < seen[0]:
                best[q][hash_id] = (distance, hash_id, probe, stored, frame_at)
        results = []
        for query, by_hash in zip(queries, best, strict=True):
            matches = []
            # Closest first, ties by hash id (the tuples' first two fields).
            for distance, hash_id, probe, stored, frame_at in sorted(by_hash.values()):
                record = records.get(hash_id)
                if record is None or not self.live(record, at):
                    continue
                matches.append(Match(record, distance, Via.of(probe, stored), frame_at))
            results.append(QueryResult(query, matches))
        return results

    def videos(
        self,
        frames: Sequence[Frame],
        found: list[SearchHits],
        thresholds: VideoThresholds,
        interval: float,
        keyframe_hits: Sequence[KeyframeHit] = (),
        keyframe_distance: int = 0,
    ) -> list[VideoMatch]:
        """The stored videos that a query video's frame hits (`found`, one per query
        frame) and keyframe hits add up to, scored by vPDQ's two shares, best first.
        Keyframe hits count where the frame hits leave the query unmatched, at
        `keyframe_distance` (hashdb/matching/keyframes.py, `as_frame_hits`)."""
        if self._videos is None:
            return []
        per_frame = []
        for hit in found:
            is_frame = entries.kinds_of(hit.ids) == EntryKind.FRAME
            per_frame.append(
                SearchHits(entries.rows_of(hit.ids[is_frame]), hit.distances[is_frame])
            )
        owners = self._videos.frame_owners({r for hit in per_frame for r in hit.ids.tolist()})
        candidates = {video for video, _ in owners.values()} | {h.hash_id for h in keyframe_hits}
        infos = self._videos.info(candidates)
        records = self._hashes.get_many(infos)
        live = {i for i, r in records.items() if r.status in self._statuses}

        def stored_videos_only(hit: SearchHits) -> SearchHits:
            keep = np.array(
                [owners.get(r, (0, 0.0))[0] in live for r in hit.ids.tolist()], dtype=bool
            )
            return SearchHits(hit.ids[keep], hit.distances[keep])

        def locate(frame_row: int) -> tuple[int, int]:
            video = owners[frame_row][0]
            return video, infos[video].position(frame_row)

        query_times = [f.timestamp for f in frames]
        grouped = group_hits([stored_videos_only(hit) for hit in per_frame], locate)
        stored_times = {v: [f.timestamp for f in infos[v].frames] for v in live}
        extra = as_frame_hits(
            keyframe_hits,
            query_times,
            stored_times,
            grouped,
            distance=keyframe_distance,
            interval=interval,
        )
        for video, more in extra.items():
            grouped.setdefault(video, []).extend(more)
        ranked = rank_candidates(query_times, grouped, stored_times, thresholds, interval=interval)
        return [VideoMatch(records[video], score) for video, score in ranked]
