"""Log lines of a serving process: text for a terminal, JSON for a log collector.

`configure(settings)` puts one handler on the root logger, formatted as
HASHDB_LOG_FORMAT says; gunicorn's loggers get the same formatter
(`hashdb.cli.serve` hands gunicorn `GunicornLogger`), so a process writes one
format. With `json` every record is one object on one line:

    {"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "logger": "hashdb.access",
     "message": "...", "request_id": "...", "exc_info": "Traceback ..."}

`request_id` is there when the record was written while a request was handled (the
id `api.request_id` assigned and echoed), `exc_info` when an exception was logged.

`register(app)` writes the access log: one record per answered request on the
`hashdb.access` logger, with method, path, status, duration in milliseconds,
response bytes, request id, the member id once the key was authenticated, and the
remote address (the proxy's client when the peer is a trusted proxy,
`api.proxies`). The path is logged without its query string, a path segment
shaped like an API key (`hdb_` and more, hashdb.store.members) is replaced by
`[redacted]` (a caller who put its key in a URL), and no header is logged at all,
so keys, tokens and Authorization values never reach a log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from hashdb.consortium import Principal
from hashdb.settings import LogFormat, Settings

ACCESS = "hashdb.access"
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
# The access record's fields, in the order they are written.
# An API key's shape (hashdb/store/members.py: `hdb_` + 43 URL-safe characters);
# any path segment starting so is not logged.
KEY_SEGMENT = re.compile(r"(?<=/)hdb_[^/]*")
ACCESS_FIELDS = (
    "method",
    "path",
    "status",
    "duration_ms",
    "bytes",
    "request_id",
    "member_id",
    "remote_addr",
)


def _request_id() -> str | None:
    if not has_request_context():
        return None
    from api.request_id import current

    return current()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        request_id = access["request_id"] if isinstance(access, dict) else _request_id()
        if request_id is not None:
            out["request_id"] = request_id
        if isinstance(access, dict):
            out.update(access)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        return json.dumps(out, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The readable line, with ` [request_id]` appended inside a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        access = getattr(record, "access", None)
        request_id = access["request_id"] if isinstance(access, dict) else _request_id()
        if request_id is None or isinstance(access, dict):
            return line  # an access line carries its id among its fields
        head, newline, rest = line.partition("\n")  # keep a traceback below the line
        return f"{head} [request_id={request_id}]{newline}{rest}"


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt is LogFormat.JSON else TextFormatter()


def configure(settings: Settings) -> None:
    """Log every record of the process to stderr in HASHDB_LOG_FORMAT at
    HASHDB_LOG_LEVEL (replacing the root logger's handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # The access log is information by nature: it is written unless the level is
    # set above info on purpose.
    logging.getLogger(ACCESS).setLevel(settings.log_level.upper())


def register(app: Flask) -> None:
    """Write one access record per request answered by `app`."""
    log = logging.getLogger(ACCESS)

    @app.before_request
    def _start() -> None:
        g.access_started = time.perf_counter()

    @app.after_request
    def _access(response: Response) -> Response:
        if not log.isEnabledFor(logging.INFO):
            return response
        from api.request_id import current

        started = g.get("access_started")
        elapsed = time.perf_counter() - started if isinstance(started, float) else 0.0
        who = g.get("principal")
        member = who.member.id if isinstance(who, Principal) else None
        fields: dict[str, Any] = {
            "method": request.method,
            "path": KEY_SEGMENT.sub("[redacted]", request.path),  # never the query string
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 3),
            "bytes": response.calculate_content_length(),
            "request_id": current(),
            "member_id": member,
            "remote_addr": request.remote_addr,
        }
        shown = " ".join(f"{name}={fields[name]}" for name in ACCESS_FIELDS)
        log.info("%s", shown, extra={"access": fields})
        return response
