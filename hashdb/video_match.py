"""Scoring video matches from frame matches: vPDQ's two shares, time ranges, offset.

The model is Meta's vPDQ (facebook/ThreatExchange, `vpdq/README.md`, "Comparison
(Matching) Algorithm"): a video is a bag of frame PDQ hashes, frames of quality
below 50 are left out, and two videos are compared by two percentages, how much
of the query matched and how much of the compared video matched. Here the frame
pairs come from the PDQ index (every query frame searched at the PDQ threshold),
so scoring is pure arithmetic over those hits, no I/O:

    hits = group_hits(index.search(query_codes, 31), locate)   # per candidate video
    score = score_video(query_times, reference_times[video], hits[video])
    if meets(score, VideoThresholds(min_query_share=..., min_reference_share=...)): ...

Definitions. Frames are positions in each video's list of matchable frames (the
ones of quality >= 50, as `ingest.video` returns them); a *hit* is a (query
frame, reference frame) pair within the PDQ threshold. Shares count *intervals*,
not frames: each video's timeline is cut into `interval`-second slots (default
1 s, the rate references are hashed at) and a slot is matched when any of its
frames is. With one frame per interval on both sides, as vPDQ samples, a slot is
a frame and these are exactly vPDQ's two percentages, as fractions. Counting
slots keeps the shares meaning "share of the video's seconds" when the query is
sampled more densely than the references (see below).

- `query_share`: matched query slots / query slots (vPDQ's "query match
  percentage"). A clip cut from the reference scores near 1.
- `reference_share`: matched reference slots / reference slots (vPDQ's
  "compared match percentage"). A compilation containing the reference scores
  near 1.
- `query_ranges`, `reference_ranges`: runs of consecutive matched slots, each
  from the first matched frame's timestamp to the last's (a lone frame gives a
  zero-length range). An unmatched slot breaks a run; an empty one (only
  low-quality frames there) does not.
- `offset`: reference time minus query time where the two line up, in seconds.
  Every hit proposes its time difference (for each reference frame, only its
  hits at the smallest distance: in a slow shot a dense query matches several
  neighbouring frames, and the closest hash is the best-aligned one); each query
  slot has one vote, split over its hits; the window `offset_tolerance` wide
  (default 1 s) holding most votes wins, and the offset is the weighted median
  inside it. A clip cut from
  the reference at 5 s has offset +5; a compilation where the reference starts
  at 40 s has offset -40. Repetitive footage (a static shot, a loop) votes for
  several offsets and the window keeps the one most of the query agrees on.
  `aligned_query_share` is the share of query slots with a hit inside it: well
  below `query_share` means scattered matches (shared logos, title cards)
  rather than one continuous copy.

Sampling phase. Two copies of a video sampled once a second line up only if
their sampling instants do: a clip cut at 5.27 s is sampled 0.27 s (8 frames)
away from every reference frame. On the sample videos (handheld footage) PDQ
drifts a median of 20 bits between neighbouring frames and 64 bits four frames
apart, so at 1 frame per second on both sides such a clip matched 10 % of its
slots; with the query hashed at every frame (references still at 1 per second)
every reference frame has an exact counterpart and the clip matched 100 %, with
the offset to the frame. So: hash references at 1 frame per second, queries at
every frame (`ingest.video.EVERY_FRAME`), and score with `interval` = the
references' sampling interval.

Probes. A query's rows may be more than its frames: `ingest.video_regions`
hashes each frame again inside bars added around the picture and with a static
logo painted over, each probe with its frame's timestamp. Scored as frames, a
probe's hit counts in its frame's slot, so the shares stay shares of seconds
(several rows matching in one slot count once) and the offset is unchanged. A
row may only be paired with a stored row of the same variant (the caller's
search decides that: frames and content probes meet stored frames; a painted
standard corner meets the same corner painted in a stored corner set).

Thresholds (`VideoThresholds`): a candidate is reported when both shares reach
their minimum (vPDQ's rule). vPDQ's README gives P_c = 80 % on the compared video
and P_q = 0 % on the query as an example, which finds a reference inside a longer
upload (a compilation) but misses a 15-second clip of a 5-minute reference
(reference share 5 %). The defaults here are 0 and 0: every video with a
matching frame is reported with its shares and ranges, as the image path
reports every PDQ match, and a request raises either minimum to narrow it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from hashdb.errors import InvalidInput
from hashdb.index import SearchHits

K = TypeVar("K")

DEFAULT_INTERVAL = 1.0  # seconds: references are hashed at 1 frame per second
DEFAULT_OFFSET_TOLERANCE = 1.0  # seconds: one such interval


@dataclass(frozen=True)
class FrameHit:
    query_frame: int  # position in the query's matchable frames
    reference_frame: int  # position in the reference's matchable frames
    distance: int  # PDQ Hamming distance


@dataclass(frozen=True)
class TimeRange:
    start: float  # seconds
    end: float  # seconds, >= start

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class VideoScore:
    query_share: float  # in [0, 1]
    reference_share: float  # in [0, 1]
    query_matched: int  # query slots (intervals) with at least one hit
    reference_matched: int  # reference slots with at least one hit
    query_ranges: tuple[TimeRange, ...]  # where in the query the matches are
    reference_ranges: tuple[TimeRange, ...]  # where in the reference
    offset: float | None  # reference time - query time; None without hits
    aligned_query_share: float  # share of query slots with a hit in the offset's window


@dataclass(frozen=True)
class VideoThresholds:
    """Per-request minimums; a candidate must reach both (vPDQ's rule)."""

    min_query_share: float = 0.0
    min_reference_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("min_query_share", "min_reference_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInput(f"{name} must be between 0 and 1", field=name)


def meets(score: VideoScore, thresholds: VideoThresholds) -> bool:
    """Whether a scored candidate is reported under these thresholds."""
    return (
        score.query_matched > 0
        and score.query_share >= thresholds.min_query_share
        and score.reference_share >= thresholds.min_reference_share
    )


def score_video(
    query_times: Sequence[float],
    reference_times: Sequence[float],
    hits: Iterable[FrameHit],
    *,
    interval: float = DEFAULT_INTERVAL,
    offset_tolerance: float = DEFAULT_OFFSET_TOLERANCE,
) -> VideoScore:
    """Score one candidate reference video against the query (see module docstring)."""
    if not interval > 0:
        raise ValueError("interval must be positive")
    if not offset_tolerance >= 0:
        raise ValueError("offset_tolerance must be >= 0")
    query, reference = _Side.of(query_times, interval), _Side.of(reference_times, interval)
    rows = [(h.query_frame, h.reference_frame, h.distance) for h in hits]
    q, r, distance = np.array(rows, dtype=np.int64).reshape(-1, 3).T
    query.check(q, "query")
    reference.check(r, "reference")
    q_slots, r_slots = query.matched_slots(q), reference.matched_slots(r)
    differences = reference.times[r] - query.times[q]
    closest = _closest_per_reference(r, distance, len(reference.times))
    window = _offset_window(query.slot[q][closest], differences[closest], offset_tolerance)
    offset, aligned_slots = None, 0
    if window is not None:
        offset, low, high = window
        inside = (differences >= low - 1e-9) & (differences <= high + 1e-9)
        aligned_slots = len(np.unique(query.slot[q][inside]))
    return VideoScore(
        query_share=_share(q_slots),
        reference_share=_share(r_slots),
        query_matched=int(q_slots.sum()),
        reference_matched=int(r_slots.sum()),
        query_ranges=query.ranges(q),
        reference_ranges=reference.ranges(r),
        offset=offset,
        aligned_query_share=aligned_slots / len(q_slots) if len(q_slots) else 0.0,
    )


def group_hits(
    per_query_frame: Sequence[SearchHits], locate: Callable[[int], tuple[K, int]]
) -> dict[K, list[FrameHit]]:
    """Index results (one SearchHits per query frame, in frame order) per candidate video.

    `locate` maps an index id to (video, frame position in that video's matchable
    frames): however the caller numbers frame hashes in the index.
    """
    grouped: dict[K, list[FrameHit]] = {}
    for query_frame, found in enumerate(per_query_frame):
        for hash_id, distance in zip(found.ids.tolist(), found.distances.tolist(), strict=True):
            video, reference_frame = locate(hash_id)
            grouped.setdefault(video, []).append(FrameHit(query_frame, reference_frame, distance))
    return grouped


def rank_candidates(
    query_times: Sequence[float],
    hits_by_video: Mapping[K, Sequence[FrameHit]],
    reference_times: Mapping[K, Sequence[float]],
    thresholds: VideoThresholds = VideoThresholds(),
    *,
    interval: float = DEFAULT_INTERVAL,
    offset_tolerance: float = DEFAULT_OFFSET_TOLERANCE,
) -> list[tuple[K, VideoScore]]:
    """Score every candidate, keep those meeting the thresholds, best first.

    Best: the larger of the two shares, then the smaller (a full copy before a clip).
    """
    scored = [
        (
            video,
            score_video(
                query_times,
                reference_times[video],
                hits,
                interval=interval,
                offset_tolerance=offset_tolerance,
            ),
        )
        for video, hits in hits_by_video.items()
    ]
    kept = [(video, score) for video, score in scored if meets(score, thresholds)]
    return sorted(kept, key=lambda item: _rank_key(item[1]), reverse=True)


def _rank_key(score: VideoScore) -> tuple[float, float]:
    shares = (score.query_share, score.reference_share)
    return max(shares), min(shares)


@dataclass(frozen=True)
class _Side:
    """One video's matchable frames, grouped into sampling intervals ("slots")."""

    times: npt.NDArray[np.float64]  # per frame
    slot: npt.NDArray[np.int64]  # per frame: its slot, numbering the occupied intervals

    @staticmethod
    def of(times: Sequence[float], interval: float) -> _Side:
        seconds = np.asarray(times, dtype=np.float64).reshape(-1)
        # The epsilon absorbs float error at exact boundaries (frame 30 of 30 fps is 1.0 s).
        intervals = np.floor(seconds / interval + 1e-6).astype(np.int64)
        _, slot = np.unique(intervals, return_inverse=True)
        return _Side(seconds, slot.reshape(-1).astype(np.int64))

    @property
    def slots(self) -> int:
        return int(self.slot.max()) + 1 if len(self.slot) else 0

    def check(self, frames: npt.NDArray[np.int64], side: str) -> None:
        if len(frames) and (frames.min() < 0 or frames.max() >= len(self.times)):
            raise ValueError(f"a hit names a {side} frame that is not in {side}_times")

    def matched_slots(self, frames: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        matched = np.zeros(self.slots, dtype=np.bool_)
        matched[self.slot[frames]] = True
        return matched

    def ranges(self, frames: npt.NDArray[np.int64]) -> tuple[TimeRange, ...]:
        """Runs of consecutive matched slots, from their first to last matched frame."""
        first = np.full(self.slots, np.inf)
        last = np.full(self.slots, -np.inf)
        np.minimum.at(first, self.slot[frames], self.times[frames])
        np.maximum.at(last, self.slot[frames], self.times[frames])
        matched = np.isfinite(first).astype(np.int8)
        edges = np.diff(np.concatenate([[0], matched, [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        return tuple(
            TimeRange(float(first[a]), float(last[b])) for a, b in zip(starts, stops, strict=True)
        )


def _share(matched: npt.NDArray[np.bool_]) -> float:
    return float(matched.mean()) if len(matched) else 0.0


def _closest_per_reference(
    reference_frames: npt.NDArray[np.int64], distances: npt.NDArray[np.int64], frames: int
) -> npt.NDArray[np.bool_]:
    """The hits at their reference frame's smallest distance: its best-aligned query frames.

    With a densely sampled query, a slow shot matches several neighbouring query
    frames; the nearest hash is most likely the very same frame.
    """
    smallest = np.full(frames, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, reference_frames, distances)
    return np.asarray(distances == smallest[reference_frames], dtype=np.bool_)


def _offset_window(
    query_slots: npt.NDArray[np.int64], differences: npt.NDArray[np.float64], tolerance: float
) -> tuple[float, float, float] | None:
    """The best-supported time difference, and the window it was chosen in."""
    if len(differences) == 0:
        return None
    # One vote per query slot, split evenly over its hits.
    _, inverse, counts = np.unique(query_slots, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse.reshape(-1)]
    order = np.argsort(differences, kind="stable")
    d, w = differences[order], weights[order]
    # Window [d[i], d[i] + tolerance] for each i: its total weight via prefix sums.
    prefix = np.concatenate([[0.0], np.cumsum(w)])
    ends = np.searchsorted(d, d + tolerance, side="right")
    support = prefix[ends] - prefix[np.arange(len(d))]
    # Ties go to the earliest window (keeps the result shift-invariant); the epsilon
    # keeps float noise in the sums from deciding.
    best = int(np.flatnonzero(support >= support.max() - 1e-9)[0])
    inside = slice(best, int(ends[best]))
    return _weighted_median(d[inside], w[inside]), float(d[best]), float(d[best]) + tolerance


def _weighted_median(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    """Lower weighted median of sorted values."""
    cumulative = np.cumsum(weights)
    return float(values[int(np.searchsorted(cumulative, cumulative[-1] / 2.0))])
