"""The live keyframe index: keypoint sets of stored videos' frames, kept current.

A copy of a video with a large logo burnt into a corner, or regraded, greyed and
boxed into another frame size, drifts past PDQ's threshold frame after frame, and
the query's frame probes (ingest/video_regions.py) only undo the layouts they know.
A frame's keypoint set (hashdb/keypoints/) still finds the picture around the logo
and inside the bars. A stored video keeps the sets of frames a few seconds apart
(`video_keyframes`, hashdb/store/videos.py); a query video carries the sets of its
own frames, more densely (ingest/video.py). A query keyframe verified against a
stored keyframe becomes a frame hit where the video's PDQ frame hits leave the query
unmatched (`as_frame_hits`, called by hashdb/matching/resolve.py), so the vPDQ
scoring of hashdb/video_match.py counts it in its second of each video.

`Keyframes` is a KeypointIndex (hashdb/keypoints/index.py) whose references are
keyframe row ids, with the video and time of each: built from the store at load,
replayed state by state as the Hamming indexes are (a video that stops matching
takes its keyframes out, one that matches and is not held is read and added; a
video's keyframes never change), rebuilt in the background when it outgrows its
search, as the keypoint index of `keypoints` rows is (hashdb/matching/live.py).
It is an index of its own so that a video's many keyframes never crowd a stored
picture out of an image query's candidates.

Every keyframe searched is one more chance for unrelated pictures to agree, as a
probe of an image query is: a keyframe's verdict must clear PROBE_MIN_INLIERS
(hashdb/matching/keypoints.py). Thread safety: the KeypointIndex locks itself;
the owner maps change only under the live indexes' lock, and a search that meets a
keyframe removed meanwhile skips it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hashdb.keypoints.codec import KeypointSet
from hashdb.keypoints.index import KeypointIndex, search_for
from hashdb.matching.keypoints import PROBE_MIN_INLIERS
from hashdb.signals.vpdq import VPDQ
from hashdb.store import HashRecord, Status, StoredKeyframe, VideoStore
from hashdb.video_match import FrameHit

_NO_CODES = np.empty((0, 32), np.uint8)


@dataclass(frozen=True)
class KeyframeHit:
    """A query keyframe that verified against a stored video's keyframe."""

    hash_id: int  # the stored video
    at: float  # the stored keyframe's time in its video
    query_at: float  # the query keyframe's time in the query
    inliers: int


class Keyframes:
    """Keyframe sets of matchable videos in one keypoint index."""

    def __init__(self, index: KeypointIndex) -> None:
        self.index = index
        self._owner: dict[int, tuple[int, float]] = {}  # keyframe id -> (video, time)
        self._of_video: dict[int, list[int]] = {}  # video -> its keyframe ids

    def __len__(self) -> int:
        """Keyframes held."""
        return len(self._owner)

    def holds(self, hash_id: int) -> bool:
        return hash_id in self._of_video

    def add(self, keyframes: Iterable[StoredKeyframe]) -> None:
        for k in keyframes:
            self.add_set(k, KeypointSet.from_bytes(k.data))

    def add_set(self, keyframe: StoredKeyframe, kps: KeypointSet) -> None:
        """Add one keyframe, its set already decoded (a keyframe held is left)."""
        if keyframe.id in self._owner:
            return
        self.index.add(keyframe.id, kps)
        self._owner[keyframe.id] = (keyframe.hash_id, keyframe.timestamp)
        self._of_video.setdefault(keyframe.hash_id, []).append(keyframe.id)

    def remove(self, hash_id: int) -> None:
        """Take out every keyframe of a video."""
        for keyframe_id in self._of_video.pop(hash_id, []):
            self.index.remove(keyframe_id)
            self._owner.pop(keyframe_id, None)

    def search(self, sets: Iterable[tuple[float, KeypointSet]]) -> list[KeyframeHit]:
        """The stored keyframes that each query keyframe ((time, set) pairs) verifies
        against with at least PROBE_MIN_INLIERS inliers."""
        hits = []
        for query_at, kps in sets:
            for found in self.index.match([kps]):
                verdict = found.verdict
                owner = self._owner.get(found.reference)
                if verdict.matched and verdict.inliers >= PROBE_MIN_INLIERS and owner is not None:
                    hits.append(KeyframeHit(owner[0], owner[1], query_at, verdict.inliers))
        return hits


def as_frame_hits(
    hits: Iterable[KeyframeHit],
    query_times: Sequence[float],
    stored_times: Mapping[int, Sequence[float]],
    frame_hits: Mapping[int, Sequence[FrameHit]],
    *,
    distance: int,
    interval: float,
) -> dict[int, list[FrameHit]]:
    """Keyframe hits as frame hits (hashdb/video_match.py), per stored video, to be
    scored with its frame hits `frame_hits`: between the query frame nearest in time
    to the query keyframe (`query_times`, ascending) and the stored frame nearest to
    the stored keyframe (`stored_times` per video), at `distance` (the frames'
    threshold, so a PDQ hit on the same stored frame is the closer one).

    Keyframes fill in what the frames miss: a keyframe finds the scene, and a scene
    may fill many seconds of a video, so its hit says less about where in the video
    the query is than a frame hit does. Only a query keyframe whose time no frame hit
    of that video covers (within half an `interval`) counts, with the stored keyframe
    it verified best against; so a copy the frames find keeps the shares, ranges and
    offset they give, and one they miss (a large logo, other bars) is found where its
    frames are not."""
    covered = {
        video: sorted(query_times[h.query_frame] for h in found)
        for video, found in frame_hits.items()
    }
    best: dict[tuple[int, float], KeyframeHit] = {}
    for h in hits:
        held = best.get((h.hash_id, h.query_at))
        if held is None or h.inliers > held.inliers:
            best[(h.hash_id, h.query_at)] = h
    out: dict[int, list[FrameHit]] = {}
    for (video, query_at), h in sorted(best.items()):
        times = stored_times.get(video, ())
        if not times or not query_times or _near(covered.get(video, []), query_at, interval / 2):
            continue
        query, stored = _nearest(query_times, query_at), _nearest(times, h.at)
        out.setdefault(video, []).append(FrameHit(query, stored, distance))
    return out


def _near(times: Sequence[float], at: float, within: float) -> bool:
    """Whether `times` (ascending) holds a time within `within` of `at`."""
    return bool(times) and abs(times[_nearest(times, at)] - at) <= within


def _nearest(times: Sequence[float], at: float) -> int:
    """Position in `times` (ascending, not empty) of the time closest to `at`."""
    right = bisect.bisect_left(times, at)
    if right == 0:
        return 0
    if right == len(times) or at - times[right - 1] <= times[right] - at:
        return right - 1
    return right


def empty() -> Keyframes:
    """An empty index, until the first load."""
    return Keyframes(KeypointIndex(search_for(_NO_CODES)))


def build(videos: VideoStore, statuses: frozenset[Status]) -> Keyframes:
    """An index of every keyframe of a matchable video in the store."""
    stored = [k for part in videos.iter_keyframes(statuses) for k in part]
    sets = [KeypointSet.from_bytes(k.data) for k in stored]
    codes = np.concatenate([s.descriptors for s in sets if len(s)] or [_NO_CODES])
    out = Keyframes(KeypointIndex(search_for(codes), trained_for=len(codes)))
    for k, kps in zip(stored, sets, strict=True):
        out.add_set(k, kps)
    return out


def apply(
    keyframes: Keyframes,
    videos: VideoStore,
    records: Iterable[HashRecord],
    gone: Iterable[int],
    statuses: frozenset[Status],
) -> None:
    """Bring `keyframes` in line with the store for changed rows: `records` (as read
    now) and `gone` (ids no longer in the database)."""
    mine = [r for r in records if r.signal_type == VPDQ.name]
    for hash_id in [*gone, *(r.id for r in mine if r.status not in statuses)]:
        keyframes.remove(hash_id)
    wanted = [r.id for r in mine if r.status in statuses and not keyframes.holds(r.id)]
    if wanted:
        for part in videos.iter_keyframes(hash_ids=wanted):
            keyframes.add(part)
