"""The transparency report for a chosen period, on screen and as CSV.

The period is whole UTC days, `from` to `to` inclusive (the report's own period is
[from 00:00, day after `to` 00:00)). Admins get the consortium's figures or any
one member's; other roles their own (`Reports.transparency` in
`hashdb.consortium.reports` enforces it). The CSV is the report's own
`render_csv`, one row per figure.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, Response, render_template, request

from api.console.common import parse_id
from api.console.session import EVERYONE, page, user
from api.context import context
from hashdb.consortium import now, reports
from hashdb.errors import InvalidInput

bp = Blueprint("reports", __name__)

DEFAULT_DAYS = 30


def _day(name: str, default: date) -> date:
    text = request.args.get(name, "").strip()
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD)", field=name) from None


def _period() -> tuple[date, date, int | None]:
    today = now().date()
    first = _day("from", today - timedelta(days=DEFAULT_DAYS - 1))
    last = _day("to", today)
    member = request.args.get("member", "")
    member_id = parse_id(member) if member else None
    if member and member_id is None:
        raise InvalidInput(f"{member!r} is not a member id", field="member")
    return first, last, member_id


def _report(first: date, last: date, member_id: int | None) -> reports.TransparencyReport:
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return context().db.reports.transparency(user().actor(), start, end, member_id)


def _sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """The CSV's rows grouped by section: the page shows exactly what the file holds."""
    out: dict[str, list[tuple[str, str]]] = {}
    for section, key, value in list(csv.reader(io.StringIO(text)))[1:]:
        out.setdefault(section or "report", []).append((key, value))
    return out


@bp.get("/reports")
@page(EVERYONE)
def show() -> tuple[str, int]:
    who = user()
    first, last, member_id = date.today(), date.today(), None
    sections: dict[str, list[tuple[str, str]]] | None = None
    error = None
    try:
        first, last, member_id = _period()
        sections = _sections(reports.render_csv(_report(first, last, member_id)))
    except InvalidInput as exc:
        error = exc.message
    members = context().db.members.all(who.actor()) if who.is_admin else []
    return render_template(
        "console_reports.html",
        first=first,
        last=last,
        member_id=member_id,
        members=members,
        sections=sections,
        error=error,
    ), 400 if error else 200


@bp.get("/reports.csv")
@page(EVERYONE)
def download() -> Response:
    first, last, member_id = _period()
    body = reports.render_csv(_report(first, last, member_id))
    scope = (
        "consortium"
        if member_id is None and user().is_admin
        else f"member-{member_id or user().member.id}"
    )
    name = f"transparency-{scope}-{first.isoformat()}-to-{last.isoformat()}.csv"
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
