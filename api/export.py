"""The export feed: the change log as additions, updates and tombstones, with a cursor.

Members that match locally follow this feed (`hashdb sync --from URL`, the key in
HASHDB_API_KEY) instead of downloading the list again and again: `GET
/v1/export?cursor=<cursor>` (`since`, its older name, is still read)
answers the entries after the cursor (`hashdb.consortium.export.FeedEntry`; the
contract is that module's docstring). Every answer hands back where the reader
stands, in the `X-Hashdb-Cursor`, `X-Hashdb-More`, `X-Hashdb-Epoch` and
`X-Hashdb-Head` headers and, with `format=json`, in the body too: resume with
`cursor=<cursor>` while `more` is true (a page may be empty and still say more),
and resync from 0 when the `epoch` is not the one the cursor was read in. Pending
hashes are never exported: a local copy holds vetted hashes only. A hash past its
expiry is a tombstone whether or not `hashdb worker` has retired it yet (reading
the feed writes nothing). A live image's entry carries its stored variants, so a
follower matches crops of it as central does. `label` (repeatable) and
`signal_type` filter a page without changing how its cursor advances.
`format=jsonl` (the default) is one entry per line, `format=csv` the same as CSV;
`format=threatexchange` is a snapshot of the live PDQ hashes as a
python-threatexchange signal file. A follower that sends the cursor its copy holds
in `X-Hashdb-Follower-Cursor` has its lag (head minus that cursor) shown on
/metrics as `hashdb_feed_lag{member=...}`.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, request
from pydantic import Field

from api import schemas_workflow as w
from api.auth import principal, requires
from api.context import context
from api.openapi import Raw, document
from api.request_id import actor
from api.schemas import Response as Body
from api.web import query_args
from hashdb.consortium import Role, export
from hashdb.consortium.export import FeedFormat, FeedPage
from hashdb.errors import InvalidInput

bp = Blueprint("export", __name__)

# Sent by a follower with the cursor its copy holds; the server keeps the member's
# lag behind the head for /metrics (`hashdb_feed_lag`, api/metrics.py).
FOLLOWER_CURSOR = "X-Hashdb-Follower-Cursor"

TAG = "export"
MEDIA_TYPES = {
    FeedFormat.JSONL: "application/x-ndjson",
    FeedFormat.JSON: "application/json",
    FeedFormat.CSV: "text/csv",
    FeedFormat.THREATEXCHANGE: "text/plain",
}


class FeedVariantOut(Body):
    kind: str = Field(description="Which variant: `content`, or a crop window's name.")
    value: str = Field(description="Hex, of the entry's signal type.")
    quality: int | None


class FeedKeyframeOut(Body):
    at: float = Field(description="The frame's time in the video, seconds.")
    keypoints: str = Field(description="The frame's keypoint set, base64 text.")


class FeedEntryOut(Body):
    seq: int = Field(description="The change-log entry this is the hash's state at.")
    op: str = Field(description="`add`, `update` or `delete` (a tombstone).")
    id: int
    signal_type: str
    status: str
    value: str | None = Field(
        description="Hex; on tombstones too (remove by id or value), except those of "
        "hashes never exported (pending, rejected)."
    )
    quality: int | None
    labels: list[str]
    updated_at: str | None
    expires_at: str | None
    frames: str | None = Field(
        description="A live vpdq entry's frame list, vPDQ text "
        "(`frame_number,quality,pdq_hex,timestamp` lines); null otherwise."
    )
    duration: float | None = Field(description="A live video's duration in seconds.")
    fps: float | None = Field(description="A live video's frame rate.")
    variants: list[FeedVariantOut] | None = Field(
        description="A live image's stored variants (its content region and crop "
        "windows), to store with it so that crops of it match; null otherwise."
    )
    keypoints: str | None = Field(
        default=None,
        description="A live keypoints entry's keypoint set, base64 text (its value is "
        "the set's SHA-256); null otherwise.",
    )
    keyframes: list[FeedKeyframeOut] | None = Field(
        default=None,
        description="A live video's keyframes: the keypoint sets of frames a few seconds "
        "apart, to store with it so that copies with large logos or in other frame sizes "
        "match (empty for a video stored without them); null otherwise.",
    )


class FeedPageOut(Body):
    entries: list[FeedEntryOut]
    cursor: int = Field(
        description="The `seq` of the last change-log entry read (maybe past the last "
        "entry returned): the next page's `cursor`. Also the X-Hashdb-Cursor header."
    )
    more: bool = Field(
        description="Whether entries follow the cursor: read on while true, even after an "
        "empty page. Also the X-Hashdb-More header (`true`/`false`)."
    )
    epoch: str = Field(
        description="The id of this database's history (a UUID): a cursor read in another "
        "epoch means nothing here; resync from 0. Also the X-Hashdb-Epoch header."
    )
    head: int = Field(
        description="The change log's newest `seq`: a cursor past it belongs to another "
        "history; resync from 0. Also the X-Hashdb-Head header."
    )


def _follower_cursor() -> int | None:
    """The cursor a follower says its copy holds (`X-Hashdb-Follower-Cursor`), for
    its lag on /metrics; None if not sent."""
    sent = request.headers.get(FOLLOWER_CURSOR)
    if sent is None:
        return None
    if not sent.isascii() or not sent.isdigit() or len(sent) > 19:
        raise InvalidInput(
            f"{FOLLOWER_CURSOR} must be the feed cursor your copy holds (a whole number from 0)",
            field=FOLLOWER_CURSOR,
        )
    return int(sent)


def _headers(response: Response, page: FeedPage) -> Response:
    response.headers["X-Hashdb-Cursor"] = str(page.cursor)
    response.headers["X-Hashdb-More"] = "true" if page.more else "false"
    response.headers["X-Hashdb-Epoch"] = page.epoch
    response.headers["X-Hashdb-Head"] = str(page.head)
    return response


@bp.get("/v1/export")
@document(
    "The export feed",
    tag=TAG,
    description="Entries after `cursor`: `add` and `update` carry the hash "
    "(id, signal_type, value, quality, labels, status, updated_at, expires_at; a video "
    "also frames, duration, fps; an image its stored variants; a keypoints hash its set); "
    "`delete` (a tombstone) "
    "id, signal_type, status and value "
    "(null if never exported). "
    "Apply add/update as upsert by id and delete as removal by id (or by value, when the "
    "last id holding it goes). Every answer carries the headers X-Hashdb-Cursor (resume "
    "with `cursor` = it, never with the last entry's seq), X-Hashdb-More (`true`: read on, "
    "even if this page was empty), X-Hashdb-Epoch (the database's history: when it "
    "differs from the epoch your cursor was read in, forget the copy and resync from 0) "
    "and X-Hashdb-Head (the change log's newest seq: a cursor above it also means "
    "resync); `format=json` carries them in the body as well. A follower may send the "
    "cursor its copy holds in `X-Hashdb-Follower-Cursor` (a whole number): the server "
    "then reports its lag behind the head on /metrics (`hashdb_feed_lag`).",
    query=w.ExportQuery,
    responses={
        200: (
            Raw("application/x-ndjson"),
            FeedPageOut,
            Raw("text/csv"),
            Raw("text/plain"),
        )
    },
)
@requires(Role.MEMBER)
def feed() -> Response:
    args = query_args(w.ExportQuery)
    fmt = FeedFormat(args.format)
    db = context().db
    if fmt is FeedFormat.THREATEXCHANGE:
        body = "".join(export.render(db.feed.snapshot(actor()), fmt))
        response = Response(body, mimetype=MEDIA_TYPES[fmt])
        response.headers["X-Hashdb-Epoch"] = db.feed.epoch(actor())
        return response
    where = db.feed.filter(args.signal_type, args.label)
    reported = _follower_cursor()
    page = db.feed.page(actor(), args.position, args.limit, where)
    if reported is not None:
        context().metrics.note_follower(principal().member.name, page.head - reported)
    if fmt is FeedFormat.JSON:
        text = json.dumps(page.to_json(), separators=(",", ":"))
    else:
        text = "".join(export.render(page.entries, fmt))
    return _headers(Response(text, mimetype=MEDIA_TYPES[fmt]), page)
