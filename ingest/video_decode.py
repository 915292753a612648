"""Decode the sampled frames of a video, and as few others as possible (PyAV).

Why PyAV (FFmpeg's libraries) rather than OpenCV: OpenCV's `grab()` still decodes
every frame (it only skips the colour conversion), so decoding every frame caps
its speed before any hashing (docs/measurements.md, "Video decoding speed"). PyAV
exposes the packets and the decoder's skip setting, so we decode in two passes over
the file:

1. Index: read the packets, without decoding, for timestamps and keyframe flags,
   and plan (`ingest.video_plan`): which frames to sample, which packets to decode.
   The packets read are kept (up to `_KEEP_PACKET_BYTES`) so that pass 2 replays
   them instead of seeking back and reading the file again.
2. Decode: packets outside the plan are never sent to the decoder; inside it,
   FFmpeg skips non-reference frames (`skip_frame = NONREF`, safe by definition:
   nothing is predicted from them) except the sampled frames themselves.

Opening a file runs FFmpeg's probe (`avformat_find_stream_info`), which decodes the
first frame(s) of each stream with a decoder of its own, up to 7 for H.264 to
guess the reorder depth, which costs a few milliseconds at 720p for pixels we
decode again. Where the container declares its streams in its header (MP4, MOV,
Matroska, WebM, AVI) the probe is told to skip every frame, and the reorder depth
it would have guessed is measured from the packet index instead
(`DecodePlan.reorder_depth`, at least as large as the decoder needs) and given to
our decoder before its first packet; a decoder that learns the depth as it goes
(H.264 without VUI reorder info) could otherwise drop early frames. The fallback
for packets without timestamps opens the file again with the full probe.

Nearly all the CPU left is FFmpeg decoding the frames the sampled ones need;
decoding is FFmpeg's and exact, and the rest is small (the breakdown:
docs/measurements.md, "Video decoding speed"). Skipping the deblocking filter
(`skip_loop_filter`) would cut decoding noticeably, but it applies to every frame
(PyAV sets it only when the decoder opens), and the drift it causes approached the
match threshold from Meta's vPDQ when hashing every frame: rejected.

Decoding runs on one thread. Throughput comes from hashing many files at once
(one process per core); and a per-packet `skip_frame` is only exact when the
decoder is not pipelining frames over threads.

Both passes read packets through `_packets`, which shifts the timestamps of a
stream that restarts them (`cat a.ts b.ts`) so that each segment follows the one
before (`ingest.video_plan.Timeline`): the plan, the decoder and the sampled
frames all see one timeline, and a size change at a segment boundary is the
decoder's business (each frame is checked against `max_frame_pixels`). The
reorder depth given to the decoder never exceeds 16, above which FFmpeg aborts.

Frames are handed over as their 8-bit luma plane, a view into FFmpeg's buffer (no
copy) for YUV and grey formats, computed from RGB for the rest. Rotation metadata
is not applied, as in Meta's vPDQ reference, so hashes stay comparable with it.
Packets without timestamps (rare: some raw or broken streams) fall back to
decoding every frame.
"""

from __future__ import annotations

import io
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import av
import av.container
import av.stream
import av.video.frame
import av.video.stream
import numpy as np
import numpy.typing as npt

from hashdb.errors import InvalidInput, MediaError, UnsupportedMedia
from ingest.video_limits import EndReason, VideoLimits
from ingest.video_pdq import luma_from_rgb
from ingest.video_plan import MAX_REORDER_DEPTH, DecodePlan, Timeline, interval_at, plan_decoding
from ingest.video_sniff import is_video

T = TypeVar("T")

VideoStream = av.video.stream.VideoStream
VideoFrame = av.video.frame.VideoFrame

# Formats whose first plane is 8-bit luma, and which of those are full range.
_LUMA_PLANE_FORMATS = frozenset(
    {"yuv420p", "yuv422p", "yuv444p", "yuv411p", "yuv440p", "yuv410p", "yuva420p",
     "yuvj420p", "yuvj422p", "yuvj444p", "yuvj411p", "yuvj440p", "nv12", "nv21", "gray"}
)  # fmt: skip
_FULL_RANGE_FORMATS = frozenset(
    {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj411p", "yuvj440p", "gray"}
)
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range YUV
# The index pass reads this far past max_duration: in decode order, B-frames
# arrive after frames shown later than them.
_REORDER_SLACK = 5.0  # seconds
# FFmpeg's probe decodes the first frame(s) of each stream, up to 7 for H.264 to
# guess the reorder depth, for pixels we would decode again. The index pass
# measures that depth from the packets instead (`DecodePlan`).
_PROBE_WITHOUT_DECODING = {"skip_frame": "all"}
# Pass 1 keeps the packets it reads, for pass 2, while they add up to no more than
# this; past it they are dropped and pass 2 reads the file again.
_KEEP_PACKET_BYTES = 32 << 20
# Timestamps beyond this (in time-base units) are garbage, and would overflow the
# plan's int64 arithmetic: such a file is refused as damaged.
_MAX_TIMESTAMP = 1 << 60


@dataclass(frozen=True)
class LumaFrame:
    """One sampled frame; `luma` may point into the decoder's memory: use it at once."""

    index: int  # frame number in presentation order, from 0
    timestamp: float  # seconds from the first frame
    luma: npt.NDArray[np.uint8]  # height x width
    limited_range: bool  # video range (16-235) rather than full range (0-255)


@dataclass(frozen=True)
class Sampling(Generic[T]):
    """What `sample_frames` saw: one visit result per sampled frame, and the stream."""

    results: tuple[T, ...]
    width: int  # of the first sampled frame (the size may change mid-stream)
    height: int
    fps: float  # average frame rate of the stream
    duration: float  # seconds, from the first frame's start to the last one's end
    ended_by: EndReason
    decode_errors: int  # packets the decoder rejected


class _Budget:
    def __init__(self, seconds: float, started: float) -> None:
        self.deadline = started + seconds

    def spent(self) -> bool:
        return time.monotonic() > self.deadline


def sample_frames(
    source: Path | bytes,
    visit: Callable[[LumaFrame], T],
    *,
    frames_per_second: float = 1.0,
    limits: VideoLimits = VideoLimits(),  # noqa: B008 - frozen, safe to share
    started: float | None = None,
) -> Sampling[T]:
    """Call `visit` on each sampled frame of the video, in time order.

    `started` (a `time.monotonic()` reading) lets the caller count its own earlier
    work against the time budget. Raises UnsupportedMedia when the data is not a
    video container or holds no video stream; MediaError when the video is
    damaged beyond opening, has frames over the size limit, or yields no frame.
    """
    if not (math.isfinite(frames_per_second) and frames_per_second > 0):
        raise InvalidInput("frames_per_second must be a positive number", field="frames_per_second")
    budget = _Budget(limits.max_seconds_of_work, time.monotonic() if started is None else started)
    with _open(source, probe_decodes=False) as container:
        stream = _video_stream(container)
        _check_size(stream.codec_context.width, stream.codec_context.height, limits)
        plan, kept = _index(container, stream, frames_per_second, limits, budget)
        decoder = _Decoder(stream, plan, visit, frames_per_second, limits)
        # Pass 2 replays the packets pass 1 kept, or rewinds the same container.
        packets = iter(kept) if plan and kept is not None else _rewind(container, stream, plan)
        if packets is not None:
            decoder.run(packets, budget)
            return decoder.sampling()
    # The rewind did not land on the first packet, or there is no plan: open again,
    # this time letting FFmpeg's probe guess the reorder depth by decoding.
    with _open(source, probe_decodes=True) as container:
        decoder = _Decoder(_video_stream(container), plan, visit, frames_per_second, limits)
        decoder.run(_packets(container, decoder.stream), budget)
    return decoder.sampling()


def _open(source: Path | bytes, *, probe_decodes: bool) -> av.container.InputContainer:
    file: str | io.BytesIO = str(source) if isinstance(source, Path) else io.BytesIO(source)
    # The options reach the probe's own decoders (avformat_find_stream_info), not
    # ours; they apply only where the container declares its streams in its header.
    options = None if probe_decodes else _PROBE_WITHOUT_DECODING
    try:
        return av.open(file, mode="r", options=options, metadata_errors="ignore")
    except av.FFmpegError as exc:
        if is_video(source):
            raise MediaError(f"damaged video file: {exc.strerror}") from None
        raise UnsupportedMedia("not a video file") from None


def _video_stream(container: av.container.InputContainer) -> VideoStream:
    for stream in container.streams.video:
        # Cover art in an audio file is a one-picture "video" stream: not a video.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            stream.thread_type = "NONE"
            stream.thread_count = 1
            return stream
    raise UnsupportedMedia("the file has no video stream")


def _check_size(width: int, height: int, limits: VideoLimits) -> None:
    if width * height > limits.max_frame_pixels:
        raise MediaError(
            f"frames of {width}x{height} exceed the limit of {limits.max_frame_pixels} pixels",
            width=width,
            height=height,
        )


def _packets(
    container: av.container.InputContainer, stream: VideoStream
) -> Iterator[av.Packet[VideoStream]]:
    """The stream's packets that carry data (the demuxer ends with an empty one), their
    timestamps shifted so that decode order never goes back in time (`Timeline`)."""
    timeline = Timeline()
    for packet in container.demux(stream):
        if not packet.size:
            continue
        if packet.pts is not None:
            offset = timeline.shift(packet.pts, packet.dts, packet.duration or 0)
            pts, dts = packet.pts + offset, packet.dts
            dts = None if dts is None else dts + offset
            if abs(pts) > _MAX_TIMESTAMP or abs(dts or 0) > _MAX_TIMESTAMP:
                raise MediaError("damaged video: timestamps out of range")
            if offset:
                packet.pts, packet.dts = pts, dts
        yield packet


def _rewind(
    container: av.container.InputContainer, stream: VideoStream, plan: DecodePlan | None
) -> Iterator[av.Packet[VideoStream]] | None:
    """The packets again from the first, or None if seeking cannot promise that."""
    if plan is None:
        return None
    try:
        container.seek(0)
        packets = _packets(container, stream)
        first = next(packets, None)
    except av.FFmpegError:
        return None
    if first is None or first.pts != plan.first_pts:
        return None
    return itertools.chain([first], packets)


def _index(
    container: av.container.InputContainer,
    stream: VideoStream,
    rate: float,
    limits: VideoLimits,
    budget: _Budget,
) -> tuple[DecodePlan | None, list[av.Packet[VideoStream]] | None]:
    """Pass 1: the decode plan (None when packets lack timestamps) and, when they
    fit in `_KEEP_PACKET_BYTES`, every packet read."""
    if not stream.time_base:
        return None, None
    time_base = float(stream.time_base)
    kept: list[av.Packet[VideoStream]] | None = []
    kept_bytes = 0
    pts: list[int] = []
    ends: list[int] = []
    keys: list[bool] = []
    ended_by = EndReason.COMPLETE
    earliest = 0
    try:
        for packet in _packets(container, stream):
            if packet.pts is None:
                return None, None
            if budget.spent():
                ended_by = EndReason.TIME_BUDGET
                break
            earliest = packet.pts if not pts else min(earliest, packet.pts)
            pts.append(packet.pts)
            ends.append(packet.pts + min(max(packet.duration or 0, 0), _MAX_TIMESTAMP))
            keys.append(packet.is_keyframe)
            if kept is not None:
                kept_bytes += packet.size
                if kept_bytes > _KEEP_PACKET_BYTES:
                    kept = None
                else:
                    kept.append(packet)
            if (packet.pts - earliest) * time_base > limits.max_duration + _REORDER_SLACK:
                ended_by = EndReason.MAX_DURATION
                break
    except av.FFmpegError:
        ended_by = EndReason.DAMAGED
    if not pts:
        raise MediaError("the video stream has no frames", reason=ended_by.value)
    plan = plan_decoding(
        np.array(pts, dtype=np.int64),
        np.array(ends, dtype=np.int64),
        np.array(keys, dtype=np.bool_),
        time_base=time_base,
        rate=rate,
        limits=limits,
        ended_by=ended_by,
        declared_frames=stream.frames,
    )
    return plan, kept


class _Decoder(Generic[T]):
    """Pass 2: feed the planned packets, visit the first frame of each interval."""

    def __init__(
        self,
        stream: VideoStream,
        plan: DecodePlan | None,
        visit: Callable[[LumaFrame], T],
        rate: float,
        limits: VideoLimits,
    ) -> None:
        self.stream = stream
        self._plan = plan
        self._visit = visit
        self._rate = rate
        self._limits = limits
        self._time_base = float(stream.time_base or 0)
        self._start_pts = plan.start_pts if plan else None
        # Python sets: the run loop asks once per packet.
        self._decodes = frozenset(plan.decode_pts.tolist()) if plan else frozenset[int]()
        self._samples = frozenset(plan.target_pts.tolist()) if plan else frozenset[int]()
        self._results: list[T] = []
        self._ended_by = plan.ended_by if plan else EndReason.COMPLETE
        self._errors = 0
        self._last_interval = -1
        self._frames_out = 0
        self._latest = 0.0
        self._size: tuple[int, int] | None = None  # the first sampled frame's
        self._went_back = False  # a frame earlier than one before it (no plan to fix it)

    def run(self, packets: Iterator[av.Packet[VideoStream]], budget: _Budget) -> None:
        codec = self.stream.codec_context
        plan = self._plan
        targets_left = len(plan.target_pts) if plan else -1
        if plan:
            # Without the probe's guess, a decoder that learns the depth as it goes
            # (H.264 lacking VUI reorder info) may drop early frames; tell it first.
            codec.reorder_depth = min(
                max(codec.reorder_depth, plan.reorder_depth), MAX_REORDER_DEPTH
            )
        try:
            for packet in packets:
                if plan and packet.pts is not None:
                    if targets_left == 0:
                        break  # nothing after the last target's packet is needed
                    if packet.pts not in self._decodes:
                        continue
                    sampled = packet.pts in self._samples
                    targets_left -= sampled
                    codec.skip_frame = "DEFAULT" if sampled else "NONREF"
                if budget.spent():
                    self._ended_by = EndReason.TIME_BUDGET
                    return
                try:
                    frames = codec.decode(packet)
                except av.FFmpegError:
                    self._errors += 1
                    continue
                if not self._take(frames):
                    return
            codec.skip_frame = "DEFAULT"
            self._take(codec.decode(None))  # frames the decoder held back for reordering
        except av.FFmpegError:
            self._ended_by = EndReason.DAMAGED

    def sampling(self) -> Sampling[T]:
        if not self._results:
            raise MediaError("no video frame could be decoded", reason=self._ended_by.value)
        ended_by = self._ended_by
        if (self._errors or self._went_back) and ended_by is EndReason.COMPLETE:
            ended_by = EndReason.DAMAGED
        if self._plan:
            duration, frames = self._plan.duration, len(self._plan.frame_pts)
        else:
            duration, frames = self._latest + 1 / _frame_rate(self.stream), self._frames_out
        codec = self.stream.codec_context
        width, height = self._size or (codec.width, codec.height)
        if self.stream.average_rate:
            fps = float(self.stream.average_rate)
        else:
            fps = frames / duration if duration > 0 else 0.0
        return Sampling(
            results=tuple(self._results),
            width=width,
            height=height,
            fps=fps,
            duration=duration,
            ended_by=ended_by,
            decode_errors=self._errors,
        )

    def _take(self, frames: list[VideoFrame]) -> bool:
        """Visit the frames that open a new interval; False once a limit is hit."""
        for frame in frames:
            ordinal = self._frames_out
            self._frames_out += 1
            seconds = self._seconds(frame, ordinal)
            self._latest = max(self._latest, seconds)
            interval = interval_at(seconds, self._rate)
            if interval <= self._last_interval:
                self._went_back |= interval < self._last_interval and not self._plan
                continue
            if seconds >= self._limits.max_duration:
                self._ended_by = EndReason.MAX_DURATION
                return False
            if len(self._results) >= self._limits.max_frames:
                self._ended_by = EndReason.MAX_FRAMES
                return False
            self._last_interval = interval
            _check_size(frame.width, frame.height, self._limits)
            if self._size is None:
                self._size = frame.width, frame.height
            if self._plan and frame.pts is not None:
                ordinal = self._plan.frame_number(frame.pts)
            luma, limited_range = _luma(frame)
            self._results.append(self._visit(LumaFrame(ordinal, seconds, luma, limited_range)))
        return True

    def _seconds(self, frame: VideoFrame, ordinal: int) -> float:
        if frame.pts is None or not self._time_base:
            return ordinal / _frame_rate(self.stream)
        if self._start_pts is None:
            self._start_pts = frame.pts
        return (frame.pts - self._start_pts) * self._time_base


def _luma(frame: VideoFrame) -> tuple[npt.NDArray[np.uint8], bool]:
    """The frame's luma plane, and whether it is video range."""
    name = frame.format.name
    if name in _LUMA_PLANE_FORMATS:
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
        full = name in _FULL_RANGE_FORMATS or frame.color_range == _JPEG_RANGE
        return rows[: frame.height, : frame.width], not full
    rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    return luma_from_rgb(rgb), False


def _frame_rate(stream: VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 30.0
