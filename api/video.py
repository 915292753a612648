"""Videos over HTTP: hashing uploads within a request's budget, and shaping matches.

A query video is hashed at every frame (`ingest.video.EVERY_FRAME`) and stored
videos at 1 frame per second: two copies sampled once a second line up only when
their cuts do, while every reference frame has an exact counterpart among a
query's frames (see `hashdb.video_match`, "Sampling phase"). Hashing every frame
is 14-25x real time per core, so an upload is hashed under tight limits
(HASHDB_VIDEO_MAX_SECONDS of work, HASHDB_VIDEO_MAX_FRAMES frames): a query cut
short is matched on what was hashed, and says so (`complete: false`); a
contribution cut short is refused (422), since a truncated reference would look
complete to everyone who matches against it. Long reference videos belong in a
bulk import.

A vpdq query in `POST /v1/match` carries the frames itself as vPDQ text; its
frames of quality below 50 are left out, as vPDQ does, and a query left with
none is answered `low_quality`.
"""

from __future__ import annotations

from dataclasses import dataclass

from api import schemas as s
from hashdb.errors import InvalidInput, MediaError
from hashdb.matching import VideoMatch
from hashdb.settings import Settings
from hashdb.signals import MD5, SHA256
from hashdb.signals.vpdq import Frame, frames_digest, parse_frames
from hashdb.video_match import TimeRange, VideoThresholds
from ingest.video import (
    EVERY_FRAME,
    MIN_QUALITY,
    EndReason,
    VideoHashes,
    VideoLimits,
    hash_video,
)

REFERENCE_RATE = 1.0  # frames per second stored for a contributed video


def limits(settings: Settings) -> VideoLimits:
    return VideoLimits(
        max_seconds_of_work=settings.video_max_seconds, max_frames=settings.video_max_frames
    )


def hash_query(settings: Settings, data: bytes) -> VideoHashes:
    """Every frame of an uploaded query video, within the request's limits."""
    return hash_video(data, frames_per_second=EVERY_FRAME, limits=limits(settings))


def hash_reference(settings: Settings, data: bytes) -> VideoHashes:
    """An uploaded video to store, at 1 frame per second; MediaError if a limit cut
    it short (damage is reported in `ended_by`, as the import does)."""
    v = hash_video(data, frames_per_second=REFERENCE_RATE, limits=limits(settings))
    if v.ended_by not in (EndReason.COMPLETE, EndReason.DAMAGED):
        raise MediaError(
            f"the video is too long to hash within a request (stopped by {v.ended_by.value} "
            f"after {v.duration:.0f} s of video); contribute it through a bulk import",
            ended_by=v.ended_by.value,
        )
    return v


@dataclass(frozen=True)
class VideoQuery:
    """A vpdq query of a `POST /v1/match` batch."""

    frames: tuple[Frame, ...]  # quality >= 50 only
    digest: bytes  # SHA-256 of the canonical list of the frames as sent
    threshold: int | None
    thresholds: VideoThresholds


def video_query(settings: Settings, item: s.MatchQuery, index: int) -> VideoQuery:
    if item.dihedral:
        raise InvalidInput("dihedral applies to pdq only", field="dihedral", index=index)
    if item.quality is not None:
        raise InvalidInput("a vpdq query carries a quality per frame", field="quality", index=index)
    sent = parse_frames(item.value, "value", index)
    if len(sent) > settings.video_max_frames:
        raise InvalidInput(
            f"{len(sent)} frames in one vpdq query; at most {settings.video_max_frames}",
            field="value",
            index=index,
            maximum=settings.video_max_frames,
        )
    if item.threshold is not None and item.threshold > settings.max_threshold_pdq:
        raise InvalidInput(
            f"pdq threshold {item.threshold} is above the maximum {settings.max_threshold_pdq}",
            field="threshold",
            index=index,
            maximum=settings.max_threshold_pdq,
        )
    return VideoQuery(
        frames=tuple(f for f in sent if f.quality >= MIN_QUALITY),
        digest=frames_digest(sent),
        threshold=item.threshold,
        thresholds=VideoThresholds(
            min_query_share=item.min_query_share or 0.0,
            min_reference_share=item.min_reference_share or 0.0,
        ),
    )


def video_hashes(v: VideoHashes) -> s.VideoHashes:
    return s.VideoHashes(
        md5=MD5.format(v.md5),
        sha256=SHA256.format(v.sha256),
        duration=v.duration,
        fps=v.fps,
        width=v.width,
        height=v.height,
        frames_per_second=v.frames_per_second,
        frames=len(v.frames),
        low_quality_frames=v.low_quality_frames,
        complete=v.complete,
        ended_by=v.ended_by.value,
    )


def _ranges(ranges: tuple[TimeRange, ...]) -> list[s.TimeRange]:
    return [s.TimeRange(start=r.start, end=r.end) for r in ranges]


def video_match(m: VideoMatch) -> s.VideoMatchOut:
    score = m.score
    return s.VideoMatchOut(
        id=m.record.id,
        labels=list(m.record.labels),
        status=m.record.status.value,
        added_at=m.record.created_at,
        query_share=score.query_share,
        reference_share=score.reference_share,
        query_ranges=_ranges(score.query_ranges),
        reference_ranges=_ranges(score.reference_ranges),
        offset=score.offset,
        aligned_query_share=score.aligned_query_share,
    )
