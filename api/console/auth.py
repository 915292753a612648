"""Logging in with an API key, and out.

A failed login answers 401 with the same words for an unknown, revoked or expired
key, as the API does, so the form tells an attacker nothing about which keys exist.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.console import csrf
from api.console.session import current, log_in, log_out, safe_next
from api.context import context
from hashdb.errors import Unauthenticated

bp = Blueprint("auth", __name__)


def landing() -> str:
    """The first page the logged-in user may open."""
    who = current()
    if who is None:
        return url_for("console.auth.login")
    return url_for(who.pages()[0].endpoint)


@bp.get("/")
def home() -> Response:
    return redirect(landing())


@bp.get("/login")
def login() -> str | Response:
    if current() is not None:
        return redirect(landing())
    return render_template("console_login.html", next=safe_next(request.args.get("next")))


@bp.post("/login")
def login_submit() -> tuple[str, int] | Response:
    secret = (request.form.get("key") or "").strip()
    target = safe_next(request.form.get("next"))
    try:
        principal = context().db.members.authenticate(secret)
    except Unauthenticated:
        message = "That key is not valid: unknown, revoked or expired."
        if not secret:
            message = "Enter your API key."
        return render_template("console_login.html", next=target, error=message), 401
    log_in(principal)
    csrf.renew()
    flash(f"Logged in as {principal.member.name} ({principal.member.role.value}).", "info")
    return redirect(target or landing())


@bp.post("/logout")
def logout() -> Response:
    log_out()
    flash("Logged out.", "info")
    return redirect(url_for("console.auth.login"))
