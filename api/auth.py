"""Who is calling, and may they: bearer keys, roles and the per-key rate limit.

Every `/v1` view is wrapped in `requires(...)` with the roles it admits; `admin`
is admitted everywhere. Each request first reads the heads of the hash and auth
change logs (one round trip, `Members.heads`): the worker's key cache
(api/keycache.py) is emptied if the auth log moved, and a view that matches hands
them on (`heads()`) so the matcher replays hash changes it has not seen. So a
revoked key, a deleted hash or a vetting decision takes effect on the very next
request in every worker and on every server, and a request with a known key costs
that one read, not a key lookup. A change-log head below what the indexes reflect
means the database is another history (restored from a backup, a promoted
standby): once a second read confirms it, the indexes are rebuilt and the key
cache emptied.

Order of checks: 401 (no key, unknown, revoked or expired), then 403 (role), then
429 (rate limit), so a caller is told the most fundamental problem first.

Every answer to a request that got as far as the rate limit (its 200s, its 4xx, its
429s) describes the key's request bucket in the three header fields of the IETF
draft "RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-headers,
the `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` form):

    RateLimit-Limit      the bucket's size, HASHDB_RATE_LIMIT_BURST requests
    RateLimit-Remaining  whole requests left after this one
    RateLimit-Reset      whole seconds until the bucket is full again (0: full);
                         it refills at HASHDB_RATE_LIMIT_PER_MINUTE a minute

A 429 also says `Retry-After` (api/errors.py): seconds until the next request is
let through. The limiter reads the bucket in the same locked step that takes the
token (`Members.admit` returns it); `requires` stores it on `flask.g`
and one `after_request` hook (`register`) writes the fields. With the limit off
(HASHDB_RATE_LIMIT_PER_MINUTE=0) nothing is counted and no fields are sent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Flask, Response, g, request

from api.context import context
from hashdb.consortium import Heads, OutOfRequests, Principal, Quota, Role
from hashdb.errors import Forbidden, Unauthenticated

P = ParamSpec("P")
R = TypeVar("R")

ROLES_ATTR = "hashdb_roles"


def bearer_secret(header: str | None) -> str:
    if not header:
        raise Unauthenticated("missing Authorization header; send `Authorization: Bearer <key>`")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("Authorization header must be `Bearer <key>`")
    return secret.strip()


def heads() -> Heads:
    """The log heads read at the start of the current request (inside a `requires`
    view): matching catches up to them, so that it sees every change committed
    before the request began, without reading them again."""
    found = g.get("heads")
    if not isinstance(found, Heads):
        raise RuntimeError("heads() called outside an authenticated view")
    return found


def principal() -> Principal:
    """The caller of the current request (inside a `requires` view)."""
    found = g.get("principal")
    if not isinstance(found, Principal):
        raise RuntimeError("principal() called outside an authenticated view")
    return found


def requires(*roles: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Admit callers with a valid key whose role is one of `roles` (or admin)."""
    allowed = frozenset(roles) | {Role.ADMIN}

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            ctx = context()
            secret = bearer_secret(request.headers.get("Authorization"))
            g.heads = heads = ctx.db.members.heads()
            if ctx.db.matching.other_history(heads) and ctx.db.matching.catch_up(heads):
                ctx.keys.clear()  # a restored database: another history, other keys
            who = ctx.keys.principal(secret, heads.auth)
            g.principal = who
            if who.member.role not in allowed:
                names = ", ".join(sorted(r.value for r in allowed))
                raise Forbidden(
                    f"role {who.member.role.value!r} may not call this endpoint (allowed: {names})",
                    role=who.member.role.value,
                )
            try:
                g.rate_limit = ctx.db.members.admit(who)
            except OutOfRequests as refused:
                g.rate_limit = refused.quota
                raise
            return view(*args, **kwargs)

        setattr(wrapper, ROLES_ATTR, allowed)
        return wrapper

    return decorate


def allowed_roles(view: Callable[..., object]) -> frozenset[Role] | None:
    """The roles a view admits, or None for a public view."""
    roles = getattr(view, ROLES_ATTR, None)
    return roles if isinstance(roles, frozenset) else None


def register(app: Flask) -> None:
    """Write the RateLimit fields of the request's key bucket, where it was counted."""

    @app.after_request
    def _rate_limit_fields(response: Response) -> Response:
        quota = g.get("rate_limit")
        if isinstance(quota, Quota):
            response.headers["RateLimit-Limit"] = str(quota.limit)
            response.headers["RateLimit-Remaining"] = str(quota.remaining)
            response.headers["RateLimit-Reset"] = str(quota.reset)
        return response
