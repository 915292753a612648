"""One hash: its value and labels, its history, feedback and matches; retiring it.

The page follows the layer's visibility rules, as `GET /v1/hashes/<id>` does
(`Consortium.hashes.get`): a member sees its own hashes in any status and other
members' only while the export feed shows them; any other id is a 404 page, as an
unknown one is. Admins see everything: who contributed it, every status change
with actor and reason, all feedback, match counts. Other roles see the hash itself
and their own feedback only (`Consortium.feedback.for_hash`).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.console import charts
from api.console.common import hex_of, member_names
from api.console.session import ADMIN, EVERYONE, page, user
from api.console.visual import bit_grid
from api.context import context
from hashdb.consortium import MATCHABLE
from hashdb.errors import Conflict, InvalidInput, NotFound

bp = Blueprint("hashes", __name__)


@bp.get("/hashes/<id:hash_id>")
@page(EVERYONE)
def detail(hash_id: int) -> str:
    ctx = context()
    who = user()
    actor = who.actor()
    record = ctx.db.hashes.get(actor, hash_id)
    video = ctx.db.hashes.videos(actor, [hash_id]).get(hash_id)
    picture = (
        bit_grid("pdq", video.frames[0].pdq, size=128, label="first frame's PDQ bits")
        if video and video.frames
        else bit_grid(record.signal_type, record.value, size=128)
    )
    history = ctx.db.vetting.history(actor, hash_id) if who.is_admin else []
    total, used = ctx.db.reports.hash_activity(actor, hash_id) if who.is_admin else (0, None)
    chart = (
        charts.daily_bars(
            f"Matches of hash #{hash_id} per day",
            used.days,
            [charts.Series("matches", used.matches)],
        )
        if used is not None
        else None
    )
    return render_template(
        "console_hash.html",
        record=record,
        value=hex_of(record),
        video=video,
        picture=picture,
        history=history,
        feedback=ctx.db.feedback.for_hash(actor, hash_id),
        names=member_names(ctx),
        match_total=total,
        chart=chart,
        retirable=who.is_admin and record.status in MATCHABLE,
    )


@bp.post("/hashes/<id:hash_id>/retire")
@page(ADMIN)
def retire(hash_id: int) -> Response:
    try:
        context().db.vetting.retire(user().actor(), [hash_id], request.form.get("reason") or "")
        flash(f"Hash #{hash_id} retired: it no longer matches.", "info")
    except (InvalidInput, Conflict, NotFound) as exc:
        flash(exc.message, "error")
    return redirect(url_for(".detail", hash_id=hash_id))
