"""Console errors as HTML pages, not the API's JSON: the reader is a person.

Registered on the console blueprint, these handlers take precedence over the
app's JSON handler for console routes only. hashdb's own errors keep their HTTP
status and message; unexpected ones are logged and shown as a bare 500.
"""

from __future__ import annotations

import logging

from flask import Blueprint, render_template
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from hashdb.errors import HashdbError

log = logging.getLogger(__name__)


def _page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template(
        "console_error.html", status=status, title=title, message=message
    ), status


def render(exc: Exception) -> tuple[str, int]:
    if isinstance(exc, HashdbError):
        return _page(exc.http_status, exc.code.replace("_", " ").capitalize(), exc.message)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return _page(status, exc.name, exc.description or "")
    if isinstance(exc, OperationalError | InterfaceError):
        log.error("database unavailable: %s", exc)
        return _page(
            503, "Database unavailable", "The database cannot be reached; try again shortly."
        )
    log.exception("unexpected error in the console", exc_info=exc)
    return _page(500, "Internal error", "Something went wrong on our side; it has been logged.")


def register(bp: Blueprint) -> None:
    bp.register_error_handler(Exception, render)
