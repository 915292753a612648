"""Who is logged in to the console, re-checked on every request, and which pages
each role may open.

Logging in takes an API key (the same keys the API uses; there are no passwords to
manage) and opens a session in the database (`console_sessions`, through
`Members.open_session`); the signed cookie carries only that session's random
token, never the key. Every console request reloads the session, its key and its
member from the database (`Members.session`): logging out (the row is deleted), a key revoked or
expired, or a member disabled ends the session on its very next request, in every
worker and on every server, so a cookie copied before a logout is worthless after.

`PAGES` is the one table of which role sees which page: the navigation is drawn
from it and `page(...)` enforces it, so a link is never shown for a page that
would refuse its reader.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, request, session, url_for
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Response

from api import request_id
from api.context import context
from hashdb.consortium import Actor, Member, Principal, Role

P = ParamSpec("P")
R = TypeVar("R")

EVERYONE = frozenset(Role)
ADMIN = frozenset({Role.ADMIN})
STAFF = frozenset({Role.ADMIN, Role.OPS})

ENDED = (
    "Your session has ended: you logged out, it expired, or the key it was opened "
    "with is revoked or expired."
)


@dataclass(frozen=True)
class Page:
    endpoint: str
    title: str
    roles: frozenset[Role]


# Navigation order. The hash detail page (any role) is reached from the others.
PAGES: tuple[Page, ...] = (
    Page("console.dashboard.show", "Dashboard", STAFF),
    Page("console.review.queue", "Review queue", ADMIN),
    Page("console.review.disputes", "Disputes", ADMIN),
    Page("console.lookup.form", "Lookup", EVERYONE),
    Page("console.imports.jobs", "Imports", STAFF),
    Page("console.members.index", "Members", ADMIN),
    Page("console.reports.show", "Reports", EVERYONE),
)


@dataclass(frozen=True)
class User:
    member: Member
    key_id: int

    def actor(self) -> Actor:
        """The user as the acting `Actor`, with the request's id (a valid one sent as
        `X-Request-Id`, else a fresh one: never the raw header)."""
        return Actor.of(Principal(self.member, self.key_id), request_id.current())

    @property
    def is_admin(self) -> bool:
        return self.member.role is Role.ADMIN

    def pages(self) -> list[Page]:
        return [p for p in PAGES if self.member.role in p.roles]


class PageForbidden(Forbidden):
    pass


_SESSION_ID = "sid"


def log_in(principal: Principal) -> None:
    log_out()  # a fresh session: nothing from before the login carries over
    session.permanent = True
    lifetime = current_app.permanent_session_lifetime
    session[_SESSION_ID] = context().db.members.open_session(principal, lifetime)
    g.user = User(principal.member, principal.key_id)


def log_out() -> None:
    token = session.get(_SESSION_ID)
    if isinstance(token, str):
        context().db.members.close_session(token)
    session.clear()
    g.user = None


def load_user() -> None:
    """Before each console request: `g.user` from the session, if still valid."""
    g.user = None
    token = session.get(_SESSION_ID)
    if not isinstance(token, str):
        return
    live = context().db.members.session(token)
    if live is None:
        session.clear()
        flash(ENDED, "error")
        return
    g.user = User(live.member, live.key_id)


def current() -> User | None:
    found = g.get("user")
    return found if isinstance(found, User) else None


def user() -> User:
    """The logged-in user (inside a `page` view)."""
    found = current()
    if found is None:
        raise RuntimeError("user() outside a logged-in console view")
    return found


def safe_next(target: str | None) -> str | None:
    """A same-site path to return to after login, or None (no open redirects)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/console") or "\\" in target:
        return None
    return target


def page(roles: frozenset[Role]) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Admit logged-in users whose role is in `roles`; others go to the login page
    (not logged in) or get a 403 page naming their role."""

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            who = current()
            if who is None:
                target = request.full_path.rstrip("?") if request.method == "GET" else None
                return redirect(url_for("console.auth.login", next=target))
            if who.member.role not in roles:
                names = ", ".join(sorted(r.value for r in roles))
                raise PageForbidden(
                    f"This page is for {names}; you are logged in as "
                    f"{who.member.name} ({who.member.role.value})."
                )
            return view(*args, **kwargs)

        return wrapper

    return decorate
