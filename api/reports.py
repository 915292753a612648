"""The reports blueprint: the transparency report, as JSON, CSV or Markdown.

`GET /v1/reports/transparency?from=...&to=...` reports the period [from, to):
consortium-wide for an admin (or any one member's figures with `member_id`), and
a member's own figures for a member; a member asking for another member's is
refused (403). What each figure means is in `hashdb.consortium.reports`. The
format is `?format=` if given, else the best of the Accept header (`text/csv`,
`text/markdown`), else JSON.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from api import schemas_workflow as w
from api.auth import requires
from api.context import context
from api.openapi import Raw, document
from api.request_id import actor
from api.web import query_args, reply
from hashdb.consortium import Role, reports

bp = Blueprint("reports", __name__)

TAG = "reports"
_ACCEPTED = {"application/json": "json", "text/csv": "csv", "text/markdown": "markdown"}


def _format(asked: str | None) -> str:
    if asked is not None:
        return asked
    best = request.accept_mimetypes.best_match(list(_ACCEPTED), default="application/json")
    return _ACCEPTED.get(best or "application/json", "json")


@bp.get("/v1/reports/transparency")
@document(
    "The transparency report",
    tag=TAG,
    description="Holdings, status moves, matches, feedback, outcomes (takedown rate, "
    "time from upload to removal) and crisis incidents of the period [from, to). A "
    "member gets its own figures only.",
    query=w.ReportQuery,
    responses={200: (w.Transparency, Raw("text/csv"), Raw("text/markdown"))},
)
@requires(Role.MEMBER)
def transparency() -> Response:
    args = query_args(w.ReportQuery)
    report = context().db.reports.transparency(actor(), args.from_, args.to, args.member_id)
    fmt = _format(args.format)
    if fmt == "csv":
        return Response(reports.render_csv(report), mimetype="text/csv")
    if fmt == "markdown":
        return Response(reports.render_markdown(report), mimetype="text/markdown")
    return reply(w.Transparency.model_validate(reports.to_dict(report)))
