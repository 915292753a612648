"""Lookup (every role): drop an image or a video, or paste hashes, and see matches.

A lookup is the API's `/v1/match/media` (or `/v1/match`) made from a page: it
answers through the same use case (`Consortium.matching`), so it finds what the
API finds and costs what the API costs. Each lookup first takes a request from the
user's key's rate limit (`Matching.admit`, as the API's door does), before the
upload is hashed; the use case then prices it, charges the key's index-work budget
and counts the matches for the member's reports. A refusal (429 past a limit, 413
above the per-request budget) is shown on the page with its status, and the
seconds to wait in `Retry-After`.

An image is hashed and probed as the API probes it (`api.uploads.lookup_probes`:
PDQ, pHash, MD5, SHA-256 and the content region, so a letterboxed copy matches;
with the box ticked, the 8 rotations and flips too). A video is hashed at every
frame (`EVERY_FRAME`, the query rate: see `ingest.video`) and matched frame by
frame against stored videos, which gives the matched time ranges on both sides;
its digests are matched too. Both are hashed in the media sandbox, as every upload
(`ingest.sandbox`). Pasted hashes are one per line, `TYPE:HEX` or bare
64-digit hex for PDQ, or `keypoints:BASE64`, a keypoint set as the API and the CLI
take it (`hashdb hash` prints it). The upload is read into memory, hashed and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, render_template, request
from werkzeug.datastructures import FileStorage

from api.console.session import EVERYONE, page, user
from api.context import ApiContext, context
from api.uploads import lookup_probes, probed_image
from api.video import hash_query, video_query
from hashdb.consortium import Actor, Query, QueryResult, VideoMatch, keypoints
from hashdb.errors import HashdbError, InvalidInput, OutsideFailure, RateLimited
from hashdb.signals import MD5, PDQ, SHA256, Matching, get_signal_type
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
    viewable: set[int] = field(default_factory=set)  # matched ids the user may open

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
            if signal.matching is Matching.LOCAL:  # a keypoint set, base64 as the API takes it
                out.append(keypoints.query(keypoints.read(value.strip(), field="hashes")))
                continue
            out.append(Query(signal, signal.parse(value.strip(), field="hashes")))
        except InvalidInput as exc:
            raise InvalidInput(f"line {n}: {exc.message}", field="hashes") from None
    return out


def _lookup_video(ctx: ApiContext, who: Actor, data: bytes, name: str) -> Outcome:
    # The same request-time limits as POST /v1/match/media.
    video = hash_query(ctx, data)
    query = video_query(video)
    digests = [Query(MD5, video.md5), Query(SHA256, video.sha256)]
    answer = ctx.db.matching.answer(who, digests, [query])
    outcome = Outcome(source=f"video {name}", video=video)
    (outcome.videos,) = answer.videos
    outcome.results = answer.results
    if not video.complete:
        outcome.notes.append(f"Only part of the video was hashed ({video.ended_by.value}).")
    if not query.frames:
        outcome.notes.append("No frame had enough detail to match (all below quality 50).")
    return outcome


def _lookup_upload(ctx: ApiContext, who: Actor, upload: FileStorage, dihedral: bool) -> Outcome:
    data = upload.read()
    name = upload.filename or "upload"
    if not data:
        raise InvalidInput("the uploaded file is empty", field="file")
    if is_video(data):
        return _lookup_video(ctx, who, data, name)
    probed = probed_image(ctx, data, lookup_probes(dihedral))
    h = probed.hashes
    outcome = Outcome(source=f"image {name} ({h.width}x{h.height})")
    outcome.results = ctx.db.matching.match(who, probed.queries())
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
def run() -> tuple[str, int, dict[str, str]]:
    ctx = context()
    pasted = request.form.get("hashes", "")
    upload = request.files.get("file")
    try:
        who = user().actor()
        if not ctx.loader.ready:
            raise OutsideFailure("the indexes are still loading; try again in a moment")
        ctx.db.members.admit(who)
        if upload is not None and upload.filename:
            outcome = _lookup_upload(ctx, who, upload, dihedral=bool(request.form.get("dihedral")))
        elif pasted.strip():
            queries = parse_pasted(pasted)
            outcome = Outcome(
                source=f"{len(queries)} pasted hash{'es' if len(queries) != 1 else ''}"
            )
            outcome.results = ctx.db.matching.match(who, queries)
        else:
            raise InvalidInput("choose a file or paste at least one hash", field="file")
    except HashdbError as exc:
        page_ = render_template(
            "console_lookup.html", outcome=None, pasted=pasted, error=exc.message
        )
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        return page_, exc.http_status, headers
    records = [m.record for r in outcome.results for m in r.matches]
    records += [v.record for v in outcome.videos]
    outcome.viewable = {r.id for r in records if ctx.db.hashes.viewable(who, r)}
    page_ = render_template("console_lookup.html", outcome=outcome, pasted=pasted, error=None)
    return page_, 200, {}
