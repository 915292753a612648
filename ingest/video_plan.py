"""Which frames to sample, and which packets must be decoded to get them.

Pure arithmetic over the packet index (timestamps and keyframe flags in decode
order), kept apart from FFmpeg so it can be tested on made-up streams.

Sampling: the frame kept for interval k is the first frame whose timestamp lies
in [k / rate, (k + 1) / rate), timestamps counted from the earliest frame. On a
30 fps video at 1 per second that is frames 0, 30, 60, ..., as in vPDQ.

Decoding: a target frame needs the keyframe that starts its group of pictures and
the packets from there to its own, in decode order. The keyframe is the last one
at or before the target *in time*, so that the leading B-frames of an open group
(shown before their keyframe, decoded after it) get the previous group as
reference. Everything outside those ranges is never sent to the decoder; inside
them, packets other than the targets may be decoded with FFmpeg's `NONREF` skip.

Reorder depth: how many frames a decoder must hold back to emit frames in
presentation order, the largest (decode position - presentation rank) over the
frames; 2 for x264's B-pyramid. FFmpeg's probe guesses it by decoding a few
frames; `ingest.video_decode` skips that decode and passes this number instead.
FFmpeg aborts the process when told more than 16 (`MAX_DELAYED_PIC_COUNT`, also
the most H.264 and HEVC allow), so a larger measure is cut to 16 and the plan
says DAMAGED: no valid stream needs more, and frames shown that far out of
decode order cannot all come out in order.

Timeline: a stream's decode timestamps (dts) increase, packet after packet. Where
they go back, the timestamps restarted: `cat a.ts b.ts` (what a careless
re-muxer produces), a spliced broadcast, a wrapped 33-bit MPEG-TS clock. Those
frames are real, so rather than refuse the file, `Timeline` starts a new segment
there and shifts its timestamps to begin where the previous segment's frames
ended; every timestamp the plan and the decoder see is shifted. Forward jumps
are left as they are: they only make the video longer, which `max_duration`
bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ingest.video_limits import EndReason, VideoLimits

# FFmpeg's MAX_DELAYED_PIC_COUNT: a decoder told to hold back more frames aborts.
MAX_REORDER_DEPTH = 16


class Timeline:
    """Shifts packet timestamps so that decode order never goes back in time.

    Feed it every packet in decode order (`shift`); it answers the offset to add
    to that packet's pts and dts: 0 in the first segment, and in each later one
    the offset that starts the segment's first packet at the end of the frames
    seen so far (and its dts after the last dts).
    """

    def __init__(self) -> None:
        self.segments = 1
        self._offset = 0
        self._last_dts: int | None = None  # as read, before shifting
        self._step = 1  # the latest increase of dts: one frame, usually
        self._end: int | None = None  # the latest shifted end of a frame

    def shift(self, pts: int, dts: int | None, duration: int) -> int:
        """The offset for a packet; `dts` None (not stored) keeps the current one."""
        last = self._last_dts
        if dts is not None and last is not None:
            if dts < last:
                after_frames = (self._end if self._end is not None else 0) - pts
                self._offset = max(after_frames, last + self._offset + self._step - dts)
                self.segments += 1
            elif dts > last:
                self._step = dts - last
        if dts is not None:
            self._last_dts = dts
        end = pts + self._offset + (duration if duration > 0 else self._step)
        self._end = end if self._end is None else max(self._end, end)
        return self._offset


@dataclass(frozen=True)
class DecodePlan:
    """The plan, keyed by presentation timestamp (pts): robust to where a rewind lands."""

    frame_pts: npt.NDArray[np.int64]  # every frame's pts, sorted: index = frame number
    decode_pts: npt.NDArray[np.int64]  # sorted pts of the packets to send to the decoder
    target_pts: npt.NDArray[np.int64]  # sorted pts of the frames to sample (decoded in full)
    start_pts: int  # the earliest pts, time zero
    reorder_depth: int  # frames a decoder must hold back: max(decode pos - display rank)
    first_pts: int  # pts of the first packet in decode order (checks a rewind)
    duration: float  # seconds from the earliest frame's start to the last one's end
    ended_by: EndReason

    def frame_number(self, pts: int) -> int:
        return int(np.searchsorted(self.frame_pts, pts))


# Absorbs float error at exact interval boundaries (frame 30 of 30 fps is 1.0 s).
_BOUNDARY_EPSILON = 1e-6


def interval_of(seconds: npt.NDArray[np.float64], rate: float) -> npt.NDArray[np.int64]:
    """The sampling interval k of each timestamp (seconds from the first frame)."""
    return np.floor(seconds * rate + _BOUNDARY_EPSILON).astype(np.int64)


def interval_at(seconds: float, rate: float) -> int:
    """`interval_of` for one timestamp (same float64 arithmetic, without numpy)."""
    return math.floor(seconds * rate + _BOUNDARY_EPSILON)


def plan_decoding(
    pts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    keys: npt.NDArray[np.bool_],
    *,
    time_base: float,
    rate: float,
    limits: VideoLimits,
    ended_by: EndReason = EndReason.COMPLETE,
    declared_frames: int = 0,
) -> DecodePlan:
    """Plan sampling at `rate` frames per second from packets in decode order.

    `pts`/`ends` are each packet's presentation start and end in `time_base` units,
    `keys` its keyframe flag; `ended_by` is how the index pass ended, and
    `declared_frames` the frame count the container's index claims (0: unknown).
    """
    if len(pts) == 0:
        raise ValueError("no packets to plan")
    start = int(pts.min())
    order = np.argsort(pts, kind="stable")  # presentation rank -> decode position
    seconds = (pts[order] - start).astype(np.float64) * time_base
    intervals = interval_of(seconds, rate)
    opens_interval = np.ones(len(pts), dtype=np.bool_)
    opens_interval[1:] = intervals[1:] != intervals[:-1]
    within = seconds < limits.max_duration
    chosen = np.flatnonzero(opens_interval & within)
    if ended_by is EndReason.COMPLETE and not within.all():
        ended_by = EndReason.MAX_DURATION
    if len(chosen) > limits.max_frames:
        chosen = chosen[: limits.max_frames]
        ended_by = EndReason.MAX_FRAMES
    if ended_by is EndReason.COMPLETE and declared_frames > len(pts):
        ended_by = EndReason.DAMAGED  # the container's index promised frames the data lacks
    # A frame of presentation rank r decoded at position p must wait p - r frames.
    reorder_depth = max(0, int((order - np.arange(len(order))).max()))
    if reorder_depth > MAX_REORDER_DEPTH:
        reorder_depth = MAX_REORDER_DEPTH
        if ended_by is EndReason.COMPLETE:
            ended_by = EndReason.DAMAGED

    targets = order[chosen]  # decode positions
    starts = _range_starts(pts, keys, targets)
    coverage = np.zeros(len(pts) + 1, dtype=np.int64)
    np.add.at(coverage, starts, 1)
    np.add.at(coverage, targets + 1, -1)
    decode = np.cumsum(coverage[:-1]) > 0
    end = max(int(ends.max()), int(pts.max()))
    return DecodePlan(
        frame_pts=pts[order],
        decode_pts=np.sort(pts[decode]),
        target_pts=np.sort(pts[targets]),
        start_pts=start,
        reorder_depth=reorder_depth,
        first_pts=int(pts[0]),
        duration=(end - start) * time_base,
        ended_by=ended_by,
    )


def _range_starts(
    pts: npt.NDArray[np.int64], keys: npt.NDArray[np.bool_], targets: npt.NDArray[np.intp]
) -> npt.NDArray[np.intp]:
    """Decode position of the last keyframe at or before each target in time."""
    key_positions = np.flatnonzero(keys)
    if len(key_positions) == 0 or key_positions[0] != 0:
        key_positions = np.concatenate([np.zeros(1, dtype=np.intp), key_positions])
    by_time = key_positions[np.argsort(pts[key_positions], kind="stable")]
    slot = np.searchsorted(pts[by_time], pts[targets], side="right") - 1
    starts = by_time[np.maximum(slot, 0)]
    return np.minimum(starts, targets)
