"""The dashboard (admins and ops): what the list holds, how it is used, how fresh.

Holdings by type, label and status; matches and feedback per day as server-drawn
SVG charts (with the same figures in tables); how many disputes and pending
contributions wait; and this process's index sizes and how far behind the change
log it is. The figures, and who may see them, are the consortium's
(`hashdb.consortium.reports`); this page only draws them.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from api.console import charts
from api.console.session import STAFF, page, user
from api.context import context
from hashdb.consortium.reports import DAYS

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
@page(STAFF)
def show() -> str:
    ctx = context()
    who = user().actor()
    held = ctx.db.reports.holdings(who)
    used = ctx.db.reports.activity(who)  # this worker's latest matches in the chart too
    fresh = ctx.db.reports.freshness(who, ctx.loader.ready)
    matches_chart = charts.daily_bars(
        f"Matches per day, last {DAYS} days",
        used.days,
        [charts.Series("matches", used.matches)],
    )
    feedback_chart = charts.daily_bars(
        f"Feedback per day by kind, last {DAYS} days",
        used.days,
        [charts.Series(kind.replace("_", " "), values) for kind, values in used.feedback.items()],
    )
    return render_template(
        "console_dashboard.html",
        held=held,
        used=used,
        fresh=fresh,
        matches_chart=matches_chart,
        feedback_chart=feedback_chart,
    )
