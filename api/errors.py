"""Every error the API answers goes through `render`: one JSON shape, always.

    {"error": {"code": "invalid_input", "message": "...", "details": {...}}}

Three sources feed it: hashdb's own errors (`HashdbError`, which carry their HTTP
status), werkzeug's HTTP exceptions (404 for an unknown path, 405, 413 when the
body exceeds `HASHDB_MAX_UPLOAD_BYTES`), and anything unexpected, which is logged
with its traceback and answered as a bare 500: the body never carries internals.
A database that cannot be reached is a 503 `storage_unavailable`, not a 500, and so
is a worker whose connection pool stayed exhausted for HASHDB_DB_POOL_TIMEOUT
seconds (SQLAlchemy's `TimeoutError`; details `reason: pool_exhausted`): both with
Retry-After.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, json
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from hashdb.errors import HashdbError, RateLimited, StorageUnavailable, Unauthenticated

log = logging.getLogger(__name__)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def render(exc: Exception) -> Response:
    """The JSON response for any exception raised while handling a request."""
    if isinstance(exc, OperationalError | InterfaceError):
        log.error("database unavailable: %s", exc)
        exc = StorageUnavailable("the database cannot be reached; try again shortly")
    elif isinstance(exc, PoolTimeout):
        log.warning("database connection pool exhausted: %s", exc)
        exc = StorageUnavailable(
            "every database connection of this worker is busy; try again shortly",
            reason="pool_exhausted",
        )
    if isinstance(exc, HashdbError):
        response = error_response(exc.http_status, exc.code, exc.message, exc.details)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        elif isinstance(exc, Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="hashdb"'
        elif exc.http_status == 503:
            response.headers["Retry-After"] = "5"
        return response
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        response = error_response(status, _snake(type(exc).__name__), exc.description or "")
        if status == 413:
            response = error_response(
                413, "payload_too_large", "request body exceeds the configured upload limit"
            )
        for name, value in exc.get_headers():
            if name.lower() not in {"content-type", "content-length"}:
                response.headers[name] = value
        return response
    log.exception("unexpected error while handling a request", exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def register(app: Flask) -> None:
    app.register_error_handler(Exception, render)
