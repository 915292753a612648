"""A request id for every request, so an audit entry can be traced to its log lines.

A caller (or the load balancer in front) may send `X-Request-Id`; a value of 1-64
letters, digits, `.`, `_` or `-` is kept, anything else is replaced by a fresh
random id (the rule is the consortium layer's, `hashdb.consortium.actor.request_id`,
and an `Actor` refuses anything else), so a client cannot write arbitrary text into
the audit log through it. The id is echoed in the response's `X-Request-Id` header
and stored with every audit entry the request writes, from the API (`actor()`) and
from the console alike.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from api.auth import principal
from hashdb.consortium import Actor
from hashdb.consortium.actor import request_id

HEADER = "X-Request-Id"


def current() -> str:
    """The id of the request being handled."""
    found = g.get("request_id")
    if not isinstance(found, str):
        found = request_id(request.headers.get(HEADER))
        g.request_id = found
    return found


def actor() -> Actor:
    """The caller of the current request as the workflow's acting `Actor` (inside a
    `requires` view): member, key id and request id, for the audit log."""
    return Actor.of(principal(), current())


def register(app: Flask) -> None:
    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers[HEADER] = current()
        return response
