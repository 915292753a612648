"""Videos over HTTP: hashing uploads within a request's budget, and shaping matches.

A query video is hashed at every frame (`ingest.video.EVERY_FRAME`) and stored
videos at 1 frame per second: two copies sampled once a second line up only when
their cuts do, while every reference frame has an exact counterpart among a
query's frames (see `hashdb.video_match`, "Sampling phase"). Hashing every frame
is several times slower than sampling (docs/measurements.md, "Video decoding
speed"), so an upload is hashed under tight limits
(HASHDB_VIDEO_MAX_SECONDS of work, HASHDB_VIDEO_MAX_FRAMES frames): a query cut
short is matched on what was hashed, and says so (`complete: false`); a
contribution cut short is refused (422), since a truncated reference would look
complete to everyone who matches against it. Long reference videos belong in a
bulk import. Hashing runs in the media sandbox (`ingest.sandbox`), whose CPU and
wall-clock limits for videos (HASHDB_MEDIA_VIDEO_*) sit above the hashing budget:
hashing stops itself first, and the sandbox only stops what would not.
`hashdb add` and `hashdb match` hash a video in their own process, at the same
rates and under the same `limits`, and store one only if `complete_reference`.

A query video's frames are searched with its frame probes: where it has bars, each
frame again without them; where it has a static logo in a corner, each frame with
the logo painted over (ingest/video_regions.py). Each probe counts in its frame's
second, so a copy with bars added, or made SD and grey with bars, matches its
reference; a reference hashed with bars of its own is not yet matched by a copy
without them (that would need probes stored with the reference).

A vpdq query in `POST /v1/match` carries the frames itself as vPDQ text; its
frames of quality below 50 are left out, as vPDQ does, and a query left with
none is answered `low_quality`.
"""

from __future__ import annotations

from dataclasses import dataclass

from api import schemas as s
from api.context import ApiContext
from api.uploads import in_sandbox
from hashdb.budget import check_threshold
from hashdb.consortium import VideoMatch, VideoQuery
from hashdb.errors import InvalidInput, MediaError
from hashdb.settings import Settings
from hashdb.signals import MD5, PDQ, SHA256
from hashdb.signals.vpdq import frames_digest, parse_frames
from hashdb.video_match import TimeRange, VideoThresholds
from ingest.records import video_frames, video_probes
from ingest.sandbox import JobLimits
from ingest.video import (
    EVERY_FRAME,
    MIN_QUALITY,
    QUERY_KEYFRAMES,
    REFERENCE_KEYFRAMES,
    EndReason,
    Keyframing,
    VideoHashes,
    VideoLimits,
    hash_video,
)
from ingest.video_regions import ProbeSet

REFERENCE_RATE = 1.0  # frames per second stored for a contributed video
# Video jobs run this much nicer than image jobs: they take seconds of CPU, and an
# image match waiting behind them would take seconds instead of a fraction of one.
VIDEO_NICE = 10
# Hashing stops itself, keeping what it sampled, at this share of the sandbox's
# wall-clock limit, so a slow video gives a partial result rather than a 422.
_WORK_SHARE = 0.8


def limits(settings: Settings) -> VideoLimits:
    """How much hashing one video may do, for a request or a CLI command."""
    work = min(settings.video_max_seconds, _WORK_SHARE * settings.media_video_wall_seconds)
    return VideoLimits(max_seconds_of_work=work, max_frames=settings.video_max_frames)


def job_limits(settings: Settings) -> JobLimits:
    """What hashing one uploaded video may use of its sandbox process."""
    return JobLimits(
        memory_mib=settings.media_memory_mib,
        cpu_seconds=settings.media_video_cpu_seconds,
        wall_seconds=settings.media_video_wall_seconds,
        nice=VIDEO_NICE,
    )


def _hash(
    ctx: ApiContext,
    data: bytes,
    rate: float,
    keyframes: Keyframing,
    probes: ProbeSet = ProbeSet.NONE,
) -> VideoHashes:
    s = ctx.settings
    return in_sandbox(
        ctx,
        job_limits(s),
        hash_video,
        data,
        frames_per_second=rate,
        limits=limits(s),
        probes=probes,
        keyframes=keyframes,
    )


def hash_query(ctx: ApiContext, data: bytes) -> VideoHashes:
    """Every frame of an uploaded query video, its frame probes (bars cut off, a
    static logo painted over: ingest/video_regions.py) and its keyframes, within the
    request's limits (in the media sandbox, as every upload)."""
    return _hash(ctx, data, EVERY_FRAME, QUERY_KEYFRAMES, ProbeSet.QUERY)


def hash_reference(ctx: ApiContext, data: bytes) -> VideoHashes:
    """An uploaded video to store, at 1 frame per second with its keyframes;
    MediaError if a limit cut it short (see `complete_reference`)."""
    return complete_reference(_hash(ctx, data, REFERENCE_RATE, REFERENCE_KEYFRAMES))


def complete_reference(v: VideoHashes) -> VideoHashes:
    """`v` if it may be stored: hashed to its end (damage is reported in `ended_by`,
    as the import does), else MediaError, since a truncated reference would look
    complete to everyone who matches against it. The CLI, which hashes in its own
    process under the same `limits`, holds its videos to this too."""
    if v.ended_by not in (EndReason.COMPLETE, EndReason.DAMAGED):
        raise MediaError(
            f"the video is too long to hash within a request (stopped by {v.ended_by.value} "
            f"after {v.duration:.0f} s of video); contribute it through a bulk import",
            ended_by=v.ended_by.value,
        )
    return v


def video_query(
    v: VideoHashes, threshold: int | None = None, thresholds: VideoThresholds | None = None
) -> VideoQuery:
    """A hashed query video as the matching use case takes it."""
    return VideoQuery(
        video_frames(v),
        threshold,
        thresholds or VideoThresholds(),
        video_probes(v),
        tuple((k.timestamp, k.keypoints) for k in v.keyframes),
    )


@dataclass(frozen=True)
class VpdqQuery:
    """A vpdq query of a `POST /v1/match` batch: the video query, and the digest that
    names it in the answer."""

    query: VideoQuery  # frames of quality >= 50 only
    digest: bytes  # SHA-256 of the canonical list of the frames as sent


def vpdq_query(settings: Settings, item: s.MatchQuery, index: int) -> VpdqQuery:
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
    check_threshold(settings, PDQ, item.threshold, "threshold", index)  # frames are PDQ
    query = VideoQuery(
        frames=tuple(f for f in sent if f.quality >= MIN_QUALITY),
        threshold=item.threshold,
        thresholds=VideoThresholds(
            min_query_share=item.min_query_share or 0.0,
            min_reference_share=item.min_reference_share or 0.0,
        ),
    )
    return VpdqQuery(query, frames_digest(sent))


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
        keyframes=len(v.keyframes),
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
