"""The review queue (admins): pending contributions and open disputes.

Pending hashes are shown oldest first with a picture of the hash (the console
keeps no media; see `visual`), labels, contributor and the existing hashes they
would match, and are approved or rejected one by one or in bulk. A rejection
needs a reason; so does resolving a dispute (keep the hash, or retire it). The
moves themselves are the layer's (`Consortium.vetting`), which also writes the
history and the audit log.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from api.console.common import form_ids, hex_of, member_names, parse_id, similar
from api.console.session import ADMIN, page, user
from api.console.visual import bit_grid
from api.context import context
from hashdb.consortium import HashRecord, Status
from hashdb.consortium.vetting import Resolution
from hashdb.errors import Conflict, InvalidInput, NotFound

bp = Blueprint("review", __name__)

QUEUE_PAGE = 100


def _thumbnails(records: list[HashRecord]) -> dict[int, Markup]:
    """A bit picture per hash: its own bits, or a video's first frame."""
    videos = context().db.hashes.videos(
        user().actor(), [r.id for r in records if r.signal_type == "vpdq"]
    )
    out: dict[int, Markup] = {}
    for r in records:
        if r.id in videos and videos[r.id].frames:
            out[r.id] = bit_grid("pdq", videos[r.id].frames[0].pdq, label=f"first frame of #{r.id}")
        else:
            out[r.id] = bit_grid(r.signal_type, r.value, label=f"bits of hash #{r.id}")
    return out


@bp.get("/review")
@page(ADMIN)
def queue() -> str:
    ctx = context()
    after = request.args.get("after", "0")
    found = ctx.db.hashes.queue(
        user().actor(), Status.PENDING, after=parse_id(after) or 0, limit=QUEUE_PAGE
    )
    records = found.items
    return render_template(
        "console_review.html",
        records=records,
        names=member_names(ctx),
        similar=similar(ctx, records),
        thumbs=_thumbnails(records),
        hex_of=hex_of,
        more=found.more,
    )


@bp.post("/review")
@page(ADMIN)
def decide() -> Response:
    """`act` is `approve` or `reject` for the ticked ids, or `approve:<id>` /
    `reject:<id>` for one row's button."""
    act, _, one = (request.form.get("act") or "").partition(":")
    reason = request.form.get("reason") or None
    try:
        single = parse_id(one) if one else None
        if one and single is None:
            raise InvalidInput(f"{one!r} is not a hash id", field="act")
        ids = [single] if single is not None else form_ids()
        if not ids:
            raise InvalidInput("tick at least one hash first", field="ids")
        db, actor = context().db, user().actor()
        if act == "approve":
            done = db.vetting.approve(actor, ids, reason)
        elif act == "reject":
            done = db.vetting.reject(actor, ids, reason or "")
        else:
            raise InvalidInput("choose approve or reject", field="act")
        verb = "Approved" if act == "approve" else "Rejected"
        listed = ", ".join(f"#{r.id}" for r in done)
        flash(f"{verb} {len(done)} hash{'es' if len(done) != 1 else ''}: {listed}.", "info")
    except (InvalidInput, Conflict, NotFound) as exc:
        flash(exc.message, "error")
    return redirect(url_for(".queue"))


@bp.get("/disputes")
@page(ADMIN)
def disputes() -> str:
    ctx = context()
    actor = user().actor()
    records = ctx.db.hashes.queue(actor, Status.DISPUTED, limit=QUEUE_PAGE).items
    return render_template(
        "console_disputes.html",
        records=records,
        feedback={r.id: ctx.db.feedback.for_hash(actor, r.id) for r in records},
        names=member_names(ctx),
        thumbs=_thumbnails(records),
        hex_of=hex_of,
    )


@bp.post("/disputes/<id:hash_id>")
@page(ADMIN)
def resolve(hash_id: int) -> Response:
    choice = request.form.get("resolution", "")
    try:
        resolution = Resolution(choice)
    except ValueError:
        flash("Choose whether to keep or retire the hash.", "error")
        return redirect(url_for(".disputes"))
    try:
        record = context().db.vetting.resolve_dispute(
            user().actor(), hash_id, resolution, request.form.get("reason") or ""
        )
        flash(f"Dispute on hash #{record.id} resolved: {record.status.value}.", "info")
    except (InvalidInput, Conflict, NotFound) as exc:
        flash(f"Hash #{hash_id}: {exc.message}", "error")
    return redirect(url_for(".disputes"))
