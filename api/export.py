"""The export feed: the change log as additions, updates and tombstones, with a cursor.

Members that match locally follow this feed (`hashdb sync --from URL --key KEY`)
instead of downloading the list again and again: `GET /v1/export?since=<cursor>`
answers the entries after the cursor, one JSON object per line
(`hashdb.consortium.export.FeedEntry`); the last entry's `seq` is the next cursor
and an empty answer means the follower is up to date. The cursor and whether the
page was full are also in the `X-Hashdb-Cursor` and `X-Hashdb-More` headers.
Pending hashes are never exported: a local copy holds vetted hashes only. Hashes
past their expiry are retired before the page is read, so followers get their
tombstones. `format=csv` is the same page as CSV; `format=threatexchange` is a
snapshot of the live PDQ hashes as a python-threatexchange signal file.
"""

from __future__ import annotations

from flask import Blueprint, Response

from api import schemas_workflow as w
from api.auth import requires
from api.context import context
from api.openapi import Raw, document
from api.request_id import actor
from api.web import query_args
from hashdb.consortium import Role, export
from hashdb.consortium.export import FeedFormat

bp = Blueprint("export", __name__)

TAG = "export"
MEDIA_TYPES = {
    FeedFormat.JSONL: "application/x-ndjson",
    FeedFormat.CSV: "text/csv",
    FeedFormat.THREATEXCHANGE: "text/plain",
}


@bp.get("/v1/export")
@document(
    "The export feed",
    tag=TAG,
    description="Entries after the cursor `since`: `add` and `update` carry the hash "
    "(id, signal_type, value, quality, labels, status, updated_at, expires_at); `delete` "
    "(a tombstone) only id, signal_type and status. Apply add/update as upsert by id and "
    "delete as removal; resume with `since` = the last entry's `seq` until a page is empty.",
    query=w.ExportQuery,
    responses={
        200: (
            Raw("application/x-ndjson"),
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
        return Response(body, mimetype=MEDIA_TYPES[fmt])
    page = db.feed.page(actor(), args.since, args.limit)
    response = Response("".join(export.render(page.entries, fmt)), mimetype=MEDIA_TYPES[fmt])
    response.headers["X-Hashdb-Cursor"] = str(page.cursor)
    response.headers["X-Hashdb-More"] = "true" if page.more else "false"
    return response
