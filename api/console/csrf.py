"""CSRF protection for every console form: a per-session token, checked on each POST.

The token is 32 random bytes kept in the signed session cookie and written into
every form as the hidden field `csrf_token` (or sent by script as the header
`X-CSRF-Token`). A POST whose token is missing or differs is refused with 400
before the view runs, so a page on another site cannot make a logged-in admin's
browser approve, revoke or retire anything. The login form carries one too (the
session exists before login), which stops a forged login into an attacker's
account. Login replaces the token, so one seen before login is useless after.
The session cookie is also `SameSite=Lax`; the token is the defence that does not
depend on the browser. Written here in a few lines: Flask-WTF would bring form
classes that the console does not otherwise need.
"""

from __future__ import annotations

import hmac
import secrets

from flask import request, session
from werkzeug.exceptions import BadRequest

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
_SESSION_KEY = "csrf"


class CsrfRefused(BadRequest):
    description = (
        "This form could not be accepted: its security token (CSRF) is missing or does "
        "not match your session. This happens when a page was open for a long time, or "
        "after logging in elsewhere. Reload the page and submit again."
    )


def token() -> str:
    """The session's token, made on first use (for templates: `csrf_token()`)."""
    current = session.get(_SESSION_KEY)
    if not isinstance(current, str):
        current = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = current
    return current


def renew() -> None:
    session[_SESSION_KEY] = secrets.token_urlsafe(32)


def check() -> None:
    """Refuse a state-changing request without the session's token."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    expected = session.get(_SESSION_KEY)
    sent = request.form.get(FIELD) or request.headers.get(HEADER) or ""
    if not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        raise CsrfRefused()
