"""One hash: its value and labels, its history, feedback and matches; retiring it.

Admins see everything: who contributed it, every status change with actor and
reason, all feedback, match counts. Other roles see the hash itself and their own
feedback only, as the API shows them (`hashdb.consortium.feedback.for_hash`).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.console import charts, figures
from api.console.common import hex_of, member_names
from api.console.session import ADMIN, EVERYONE, page, user
from api.console.visual import bit_grid
from api.context import context
from hashdb.consortium import MATCHABLE, feedback, vetting
from hashdb.errors import Conflict, InvalidInput, NotFound

bp = Blueprint("hashes", __name__)


@bp.get("/hashes/<id:hash_id>")
@page(EVERYONE)
def detail(hash_id: int) -> str:
    ctx = context()
    engine, who = ctx.db.store.engine, user()
    ctx.db.tally.flush()
    record = ctx.db.store.hashes.get(hash_id)
    video = ctx.db.store.videos.info([hash_id]).get(hash_id)
    picture = (
        bit_grid("pdq", video.frames[0].pdq, size=128, label="first frame's PDQ bits")
        if video and video.frames
        else bit_grid(record.signal_type, record.value, size=128)
    )
    history = vetting.history(engine, hash_id) if who.is_admin else []
    total, used = figures.match_days(engine, hash_id) if who.is_admin else (0, None)
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
        feedback=feedback.for_hash(engine, who.actor(), hash_id),
        names=member_names(ctx),
        match_total=total,
        chart=chart,
        retirable=who.is_admin and record.status in MATCHABLE,
    )


@bp.post("/hashes/<id:hash_id>/retire")
@page(ADMIN)
def retire(hash_id: int) -> Response:
    try:
        vetting.retire(
            context().db.store.engine, user().actor(), [hash_id], request.form.get("reason") or ""
        )
        flash(f"Hash #{hash_id} retired: it no longer matches.", "info")
    except (InvalidInput, Conflict, NotFound) as exc:
        flash(exc.message, "error")
    return redirect(url_for(".detail", hash_id=hash_id))
