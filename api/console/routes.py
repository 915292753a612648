"""Wiring: the `console` blueprint with a child per page family, its hooks, and
the session settings it needs from the app."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Flask, request
from werkzeug.wrappers import Response

from api.console import (
    auth,
    csrf,
    dashboard,
    errors,
    hashes,
    imports,
    lookup,
    members,
    reports,
    review,
)
from api.console.common import refuse_control_characters
from api.console.secret import LazySessions
from api.console.session import current, load_user
from api.context import context

SESSION_HOURS = 8
# Everything the pages use comes from this server; inline SVG needs no source.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
for child in (
    auth.bp,
    dashboard.bp,
    review.bp,
    lookup.bp,
    hashes.bp,
    imports.bp,
    members.bp,
    reports.bp,
):
    bp.register_blueprint(child)
errors.register(bp)


@bp.before_request
def _guard() -> None:
    if request.endpoint == "console.static":
        return
    csrf.check()  # first: a session that is about to end still had its token
    refuse_control_characters()
    load_user()


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "console.static":
        response.headers.setdefault("Cache-Control", "no-cache, private")
    return response


@bp.app_template_global()
def csrf_token() -> str:
    return csrf.token()


@bp.context_processor
def _who() -> dict[str, object]:
    who = current()
    return {"user": who, "nav": who.pages() if who else []}


def mount(app: Flask) -> None:
    if bp.name in app.blueprints:
        return
    app.session_interface = LazySessions(context(app).settings)
    app.config.update(
        SESSION_COOKIE_NAME="hashdb_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    app.register_blueprint(bp)
