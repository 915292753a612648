"""Hash a video the vPDQ way: PDQ of frames sampled at a fixed rate, plus digests.

    hashes = hash_video_file(path)                 # or hash_video(data)
    hashes.frames          # FrameHash(index, timestamp, pdq, quality), quality >= 50
    hashes.ended_by        # EndReason.COMPLETE unless a limit or damage cut it short
    hash_video_file(path, frames_per_second=EVERY_FRAME, probes=ProbeSet.QUERY)  # a query
    hashes.probes          # FrameProbe: frames hashed again without bars / logos

The model is Meta's vPDQ (facebook/ThreatExchange, `vpdq/README.md`): a video is
the sequence of PDQ hashes of its frames taken at a fixed interval, each kept with
its frame number, timestamp and quality. Matching then works frame by frame in
the PDQ index (see `hashdb.video_match` for the scores).

Sampling keeps the first frame of each 1 / rate seconds (`ingest.video_plan`).
The default, 1 per second as in vPDQ's README, is fine enough that a clip of a
few seconds still yields several frames and coarse enough that an hour of video
is 3,600 hashes in the index: the rate for stored (reference) videos. Queries
should use `EVERY_FRAME`, since two copies sampled once a second only line up
when their cuts do (`hashdb.video_match`, "Sampling phase").

Frames whose PDQ quality is below 50 (`hashdb.signals.PDQ.min_quality`: flat
colour, fades, black frames) are left out of `frames`, as vPDQ's quality filter
does before comparing, and only counted in `low_quality_frames`, so a mostly black
video does not match every other mostly black video.

A stream whose timestamps restart part-way (`cat a.ts b.ts`, a splice) is hashed
segment after segment, each segment's timestamps continuing where the previous
one's ended (`ingest.video_plan.Timeline`); frame numbers and timestamps run on
across the restart, and a change of frame size there is followed frame by frame.

Probes (`probes=ProbeSet.QUERY` for queries, `ProbeSet.REFERENCE` for the
stored side): a copy with bars added around the picture (letterbox, pillarbox,
borders, an SD copy of an HD reference) or a logo burnt into a corner drifts past
the threshold frame after frame; each sampled frame is then also hashed inside
the bars and with static corner overlays painted over (`ingest.video_regions`,
which says which probe may meet which stored hash). Probes carry their frame's number and time, so a
matcher searches them with the frames and counts their hits in their frame's
interval; they are never part of the stored vPDQ frame list, which stays
comparable with Meta's vPDQ.

Keyframes (`keyframes=REFERENCE_KEYFRAMES` for a video to store, `QUERY_KEYFRAMES`
for a query): the keypoint set (ingest/keypoints.py) of a sampled frame every few
seconds, which finds the picture around a large logo and inside bars where the
frame's PDQ has drifted past its threshold (hashdb/matching/keyframes.py). A long
video keeps at most `most` of them: past it, every other one is dropped and the
spacing doubles, so the sets stay spread over the whole video and describing them
costs at most about twice `most` sets. A frame with fewer keypoints than a
`keypoints` row needs (24, hashdb/signals/keypoints.py: flat colour, a fade) gives
none.

Decoding lives in `ingest.video_decode` (with its plan in `ingest.video_plan`),
the per-file budget in `ingest.video_limits`, the per-frame PDQ in
`ingest.video_pdq`, the container sniffing behind `is_video` in
`ingest.video_sniff`. Speed (x real time per core, at 1 frame per second and at
every frame; decoding is most of it): docs/measurements.md, "Video decoding
speed", re-measured by `benchmarks.video`. Errors: UnsupportedMedia (415) for
data that is not a video or has no video stream, MediaError (422) for a damaged
video or one with no decodable frame, InvalidInput for a bad sampling rate.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hashdb.consortium import MAX_KEYFRAMES
from hashdb.keypoints.codec import KeypointSet
from hashdb.signals import KEYPOINTS, PDQ
from ingest.keypoints import DEFAULT_LIMIT, QUERY_LIMIT, keypoints
from ingest.video_decode import LumaFrame, sample_frames
from ingest.video_limits import EndReason, VideoLimits
from ingest.video_pdq import pdq_buffer, pdq_from_buffer
from ingest.video_regions import ProbeCollector, ProbeKind, ProbeSet
from ingest.video_sniff import is_video

__all__ = [
    "EVERY_FRAME",
    "MIN_QUALITY",
    "QUERY_KEYFRAMES",
    "REFERENCE_KEYFRAMES",
    "EndReason",
    "FrameHash",
    "FrameKeypoints",
    "FrameProbe",
    "Keyframing",
    "ProbeKind",
    "ProbeSet",
    "VideoHashes",
    "VideoLimits",
    "hash_video",
    "hash_video_file",
    "is_video",
]

MIN_QUALITY = PDQ.min_quality if PDQ.min_quality is not None else 50
# A sampling rate that keeps every frame (one interval per millisecond): for
# queries, so that each reference frame (hashed at 1 per second) has an exact
# counterpart whatever the cut. Mind VideoLimits.max_frames: 20,000 frames are
# 11 minutes at 30 fps.
EVERY_FRAME = 1000.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FrameHash:
    index: int  # frame number in presentation order, from 0 (vPDQ's frame_number)
    timestamp: float  # seconds from the first frame
    pdq: bytes  # 32 raw bytes, the reference's hex order
    quality: int  # 0-100; always >= MIN_QUALITY in VideoHashes.frames


@dataclass(frozen=True)
class FrameProbe(FrameHash):
    """A frame hashed again with a layout edit undone (`ingest.video_regions`): its
    picture without the bars around it, or with a static logo painted over."""

    kind: ProbeKind
    variant: str  # for ProbeKind.CORNER: which standard corner (video_regions.CORNERS)


@dataclass(frozen=True)
class FrameKeypoints:
    """A keyframe: the keypoint set of a sampled frame, and the frame's time."""

    timestamp: float
    keypoints: KeypointSet


@dataclass(frozen=True)
class Keyframing:
    """Which sampled frames get a keypoint set: one every `every` seconds, at most
    `most` per video (see the module docstring), each of at most `limit` keypoints."""

    every: float
    most: int
    limit: int


# Measured on benchmarks/video_quality.py (docs/measurements.md, "Video keyframes"):
# a stored video every 2 s (its sets are what it costs in the index), a query every
# half second, so that one of its keyframes falls near each stored one.
REFERENCE_KEYFRAMES = Keyframing(every=2.0, most=MAX_KEYFRAMES, limit=DEFAULT_LIMIT)
QUERY_KEYFRAMES = Keyframing(every=0.5, most=60, limit=QUERY_LIMIT)
_MIN_KEYPOINTS = KEYPOINTS.min_quality or 0


class _Keyframes:
    """Collects keyframes while frames are sampled (see Keyframing)."""

    def __init__(self, plan: Keyframing) -> None:
        self._plan = plan
        self._every = plan.every
        self._due = 0.0
        self.found: list[FrameKeypoints] = []

    def offer(self, timestamp: float, luma: npt.NDArray[np.uint8]) -> None:
        if timestamp + 1e-6 < self._due:
            return
        self._due = timestamp + self._every
        kps = keypoints(luma, limit=self._plan.limit)
        if len(kps) < _MIN_KEYPOINTS:
            return
        self.found.append(FrameKeypoints(timestamp, kps))
        if len(self.found) >= self._plan.most:
            self.found = self.found[::2]
            self._every *= 2
            self._due = self.found[-1].timestamp + self._every


@dataclass(frozen=True)
class VideoHashes:
    md5: bytes
    sha256: bytes
    duration: float  # seconds of video the packets cover (not the header's claim)
    fps: float  # average frame rate of the stream
    width: int
    height: int
    frames_per_second: float  # the sampling rate used
    frames: tuple[FrameHash, ...]  # sampled frames of quality >= MIN_QUALITY, in time order
    low_quality_frames: int  # sampled frames left out for quality < MIN_QUALITY
    ended_by: EndReason  # COMPLETE, or the limit / damage that cut sampling short
    # Probes of the sampled frames, quality >= MIN_QUALITY, in time order; empty unless
    # asked for (`probes=`). Never part of the vPDQ frame list.
    probes: tuple[FrameProbe, ...] = ()
    # Keypoint sets of frames a few seconds apart, in time order; empty unless asked
    # for (`keyframes=`).
    keyframes: tuple[FrameKeypoints, ...] = ()

    @property
    def complete(self) -> bool:
        return self.ended_by is EndReason.COMPLETE

    @property
    def sampled_frames(self) -> int:
        return len(self.frames) + self.low_quality_frames


def hash_video_file(
    path: Path,
    *,
    frames_per_second: float = 1.0,
    limits: VideoLimits = VideoLimits(),  # noqa: B008 - frozen, safe to share
    probes: ProbeSet = ProbeSet.NONE,
    keyframes: Keyframing | None = None,
) -> VideoHashes:
    """Hash the video at `path`; the limits bound the work whatever the file claims.
    `probes`: which probes to compute beside the frames (`VideoHashes.probes`);
    `keyframes`: which frames to describe by keypoints (`VideoHashes.keyframes`)."""
    started = time.monotonic()
    with path.open("rb") as file:
        digests = _digests(iter(lambda: file.read(_CHUNK), b""))
    return _hash(path, digests, frames_per_second, limits, started, probes, keyframes)


def hash_video(
    data: bytes,
    *,
    frames_per_second: float = 1.0,
    limits: VideoLimits = VideoLimits(),  # noqa: B008 - frozen, safe to share
    probes: ProbeSet = ProbeSet.NONE,
    keyframes: Keyframing | None = None,
) -> VideoHashes:
    """Hash a video held in memory (an upload); no temporary file is written."""
    started = time.monotonic()
    return _hash(data, _digests([data]), frames_per_second, limits, started, probes, keyframes)


def _digests(chunks: Iterable[bytes]) -> tuple[bytes, bytes]:
    """MD5 and SHA-256 of the bytes, read once."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    for chunk in chunks:
        md5.update(chunk)
        sha256.update(chunk)
    return md5.digest(), sha256.digest()


def _hash(
    source: Path | bytes,
    digests: tuple[bytes, bytes],
    rate: float,
    limits: VideoLimits,
    started: float,
    probes: ProbeSet,
    keyframing: Keyframing | None,
) -> VideoHashes:
    collector = ProbeCollector(probes) if probes is not ProbeSet.NONE else None
    keyframes = _Keyframes(keyframing) if keyframing is not None else None

    def hash_frame(frame: LumaFrame) -> FrameHash:
        if keyframes is not None:
            keyframes.offer(frame.timestamp, frame.luma)
        grey = pdq_buffer(frame.luma, limited_range=frame.limited_range)
        if collector is not None:
            collector.add(frame.index, frame.timestamp, frame.luma, frame.limited_range, grey)
        if grey is None:  # too small to hash: the reference's all-zero hash, quality 0
            return FrameHash(frame.index, frame.timestamp, bytes(32), 0)
        result = pdq_from_buffer(grey)
        return FrameHash(frame.index, frame.timestamp, result.hash, result.quality)

    sampling = sample_frames(
        source, hash_frame, frames_per_second=rate, limits=limits, started=started
    )
    frames = tuple(f for f in sampling.results if f.quality >= MIN_QUALITY)
    found = collector.probes() if collector is not None else []
    return VideoHashes(
        md5=digests[0],
        sha256=digests[1],
        duration=sampling.duration,
        fps=sampling.fps,
        width=sampling.width,
        height=sampling.height,
        frames_per_second=rate,
        frames=frames,
        low_quality_frames=len(sampling.results) - len(frames),
        ended_by=sampling.ended_by,
        probes=tuple(
            sorted(
                (
                    FrameProbe(
                        p.index, p.timestamp, p.result.hash, p.result.quality, p.kind, p.variant
                    )
                    for p in found
                    if p.result.quality >= MIN_QUALITY
                ),
                key=lambda p: (p.timestamp, p.index),
            )
        ),
        keyframes=tuple(keyframes.found) if keyframes is not None else (),
    )
