"""Members and their keys (admins): create, rotate, revoke, disable.

A new key's secret exists only in the answer to the request that made it (the
database keeps its digest), so the page showing it is rendered directly by that
POST, marked `Cache-Control: no-store`, and never redirected to or stored in the
session. Rotation issues a new key and lets the member's other live keys expire
after an overlap, so its systems can switch without downtime; revocation takes
effect on the key's next request, console sessions opened with it included.

Every change goes through the consortium's `Members` with the logged-in admin as
the actor, so it is checked and audited exactly as the API's and the CLI's are.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.console.session import ADMIN, page, user
from api.context import context
from hashdb.consortium import Member, NewKey, Role, now
from hashdb.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

bp = Blueprint("members", __name__)

# Choices offered when issuing a key: how long the member's other keys live on.
OVERLAPS: dict[str, timedelta | None] = {
    "keep": None,
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
}


def _new_key_page(member: Member, new: NewKey, created: bool) -> Response:
    response = make_response(
        render_template("console_new_key.html", member=member, new=new, created=created), 201
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/members")
@page(ADMIN)
def index() -> str:
    return render_template(
        "console_members.html", members=context().db.members.all(user().actor()), roles=list(Role)
    )


@bp.post("/members")
@page(ADMIN)
def create() -> Response:
    try:
        role = Role.parse(request.form.get("role", ""))
        member, new = context().db.members.create(
            user().actor(),
            request.form.get("name", ""),
            role,
            trusted=bool(request.form.get("trusted")),
        )
    except (InvalidInput, Conflict) as exc:
        flash(exc.message, "error")
        return redirect(url_for(".index"))
    log.info(
        "member %d (%s) created in the console by %s", member.id, member.name, user().member.name
    )
    return _new_key_page(member, new, created=True)


@bp.get("/members/<id:member_id>")
@page(ADMIN)
def detail(member_id: int) -> str:
    members, actor = context().db.members, user().actor()
    return render_template(
        "console_member.html",
        member=members.get(actor, member_id),
        keys=members.keys(actor, member_id),
        overlaps=list(OVERLAPS),
        at=now(),
        own_key=user().key_id,
    )


@bp.post("/members/<id:member_id>/keys")
@page(ADMIN)
def issue(member_id: int) -> Response:
    choice = request.form.get("overlap", "keep")
    if choice not in OVERLAPS:
        flash("Choose how long the other keys stay valid.", "error")
        return redirect(url_for(".detail", member_id=member_id))
    members, actor = context().db.members, user().actor()
    new = members.issue_key(actor, member_id, overlap=OVERLAPS[choice])
    log.info("key %d issued to member %d by %s", new.key.id, member_id, user().member.name)
    return _new_key_page(members.get(actor, member_id), new, created=False)


@bp.post("/members/<id:member_id>/keys/<id:key_id>/revoke")
@page(ADMIN)
def revoke(member_id: int, key_id: int) -> Response:
    try:
        key = context().db.members.revoke_key(user().actor(), member_id, key_id)
        flash(f"Key {key.prefix}… revoked: it stops working on its next request.", "info")
        log.info("key %d of member %d revoked by %s", key_id, member_id, user().member.name)
    except (NotFound, Conflict) as exc:
        flash(exc.message, "error")
    return redirect(url_for(".detail", member_id=member_id))


@bp.post("/members/<id:member_id>/disable")
@page(ADMIN)
def disable(member_id: int) -> Response:
    if member_id == user().member.id:
        flash("You cannot disable the member you are logged in as.", "error")
    else:
        try:
            member = context().db.members.disable(user().actor(), member_id)
        except (NotFound, Conflict) as exc:
            flash(exc.message, "error")
        else:
            flash(f"{member.name} disabled: every key of it is revoked.", "info")
            log.info("member %d disabled by %s", member_id, user().member.name)
    return redirect(url_for(".detail", member_id=member_id))
