"""Lookup (every role): drop an image or a video, or paste hashes, and see matches.

An image is hashed as the API's `/v1/match/media` hashes it (PDQ, pHash, MD5,
SHA-256, optionally the 8 rotations and flips) and each hash is matched; the
matches count for the member's reports, as API matches do. A video is hashed at
every frame (`EVERY_FRAME`, the query rate: see `ingest.video`) and matched frame
by frame against stored videos, which gives the matched time ranges on both sides;
its digests are matched too. Both are hashed in the media sandbox, as every upload
(`ingest.sandbox`). Pasted hashes are one per line, `TYPE:HEX` or bare
64-digit hex for PDQ. The upload is read into memory, hashed and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, render_template, request
from werkzeug.datastructures import FileStorage

from api.console.session import EVERYONE, page, user
from api.context import ApiContext, context
from api.uploads import image_hashes
from api.video import hash_query
from hashdb.consortium import Query, QueryResult, VideoMatch
from hashdb.errors import HashdbError, InvalidInput, OutsideFailure
from hashdb.signals import MD5, PDQ, SHA256, Matching, get_signal_type
from ingest.records import queries as image_queries
from ingest.records import video_frames
from ingest.video import VideoHashes, is_video

MAX_PASTED = 1000

bp = Blueprint("lookup", __name__)


@dataclass
class Outcome:
    """What one lookup found, for the template."""

    source: str  # what was looked up, in words
    results: list[QueryResult] = field(default_factory=list)
    videos: list[VideoMatch] = field(default_factory=list)
    video: VideoHashes | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def match_count(self) -> int:
        return sum(len(r.matches) for r in self.results) + len(self.videos)


def parse_pasted(text: str) -> list[Query]:
    """One query per non-empty line; InvalidInput naming the first bad line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_PASTED:
        raise InvalidInput(f"{len(lines)} hashes pasted; at most {MAX_PASTED}", field="hashes")
    out = []
    for n, line in enumerate(lines, start=1):
        name, sep, value = line.partition(":")
        signal = get_signal_type(name.strip().lower(), field="hashes") if sep else PDQ
        if not sep:
            value = line
        if signal.matching is Matching.VIDEO:
            raise InvalidInput(f"line {n}: upload the video itself to match it", field="hashes")
        try:
            out.append(Query(signal, signal.parse(value.strip(), field="hashes")))
        except InvalidInput as exc:
            raise InvalidInput(f"line {n}: {exc.message}", field="hashes") from None
    return out


def _lookup_video(ctx: ApiContext, data: bytes, name: str) -> Outcome:
    # The same request-time limits and match counting as POST /v1/match/media.
    video = hash_query(ctx, data)
    frames = video_frames(video)
    outcome = Outcome(source=f"video {name}", video=video)
    outcome.videos = ctx.db.matching.match_video(frames, member=user().member)
    outcome.results = ctx.db.matching.match(
        [Query(MD5, video.md5), Query(SHA256, video.sha256)], member=user().member
    )
    if not video.complete:
        outcome.notes.append(f"Only part of the video was hashed ({video.ended_by.value}).")
    if not frames:
        outcome.notes.append("No frame had enough detail to match (all below quality 50).")
    return outcome


def _lookup_upload(ctx: ApiContext, upload: FileStorage, dihedral: bool) -> Outcome:
    data = upload.read()
    name = upload.filename or "upload"
    if not data:
        raise InvalidInput("the uploaded file is empty", field="file")
    if is_video(data):
        return _lookup_video(ctx, data, name)
    h = image_hashes(ctx, data, dihedral=dihedral)
    outcome = Outcome(source=f"image {name} ({h.width}x{h.height})")
    outcome.results = ctx.db.matching.match(image_queries(h), member=user().member)
    if outcome.results and outcome.results[0].low_quality:
        outcome.notes.append(
            f"PDQ quality {h.pdq_quality} is below 50: too featureless to match perceptually; "
            "only exact copies (MD5, SHA-256) can match."
        )
    return outcome


@bp.get("/lookup")
@page(EVERYONE)
def form() -> str:
    return render_template("console_lookup.html", outcome=None, pasted="", error=None)


@bp.post("/lookup")
@page(EVERYONE)
def run() -> tuple[str, int]:
    ctx = context()
    pasted = request.form.get("hashes", "")
    upload = request.files.get("file")
    try:
        if not ctx.loader.ready:
            raise OutsideFailure("the indexes are still loading; try again in a moment")
        if upload is not None and upload.filename:
            outcome = _lookup_upload(ctx, upload, dihedral=bool(request.form.get("dihedral")))
        elif pasted.strip():
            queries = parse_pasted(pasted)
            outcome = Outcome(
                source=f"{len(queries)} pasted hash{'es' if len(queries) != 1 else ''}"
            )
            outcome.results = ctx.db.matching.match(queries, member=user().member)
        else:
            raise InvalidInput("choose a file or paste at least one hash", field="file")
    except HashdbError as exc:
        page_ = render_template(
            "console_lookup.html", outcome=None, pasted=pasted, error=exc.message
        )
        return page_, exc.http_status
    return render_template("console_lookup.html", outcome=outcome, pasted=pasted, error=None), 200
