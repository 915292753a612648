"""The public blueprint: liveness, readiness, metrics and the API's own description.

None of these need a key: a load balancer, Prometheus and a developer reading the
docs must reach them. `/healthz` says the process answers (liveness: it touches
nothing else). `/readyz` is 503 until the indexes are loaded, and 503 whenever the
database does not answer within `PROBE_TIMEOUT` seconds or its schema is not this
code's (the one error body, `storage_unavailable`, saying why), so no traffic
reaches a worker that would answer 503 to every request. The database check opens
a fresh connection with a deadline, outside the pool (`hashdb.store.probe`). Bind
the service to a private address (the default is 127.0.0.1) if the metrics should
not be public.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, current_app, json

from api import schemas as s
from api.context import context
from api.openapi import Raw, document
from api.web import reply
from hashdb.errors import StorageUnavailable

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

TAG = "service"


@bp.get("/healthz")
@document("Liveness", tag=TAG, responses={200: s.Health})
def healthz() -> Response:
    return reply(s.Health(status="ok"))


@bp.get("/readyz")
@document(
    "Readiness",
    tag=TAG,
    description="200 once the indexes are loaded and the database answers; 503 (same "
    "body) while the indexes load; 503 with the error body, saying why, when the database "
    "does not answer in time or is not migrated.",
    responses={200: s.Readiness, 503: s.Readiness},
)
def readyz() -> Response:
    ctx = context()
    ctx.db.check_ready()  # StorageUnavailable: rendered as a 503 saying why
    matching = ctx.db.matching
    ready = ctx.loader.ready
    body = s.Readiness(ready=ready, index_sizes=matching.index_sizes(), cursor=matching.cursor)
    return reply(body, 200 if ready else 503)


@bp.get("/metrics")
@document(
    "Prometheus metrics",
    tag=TAG,
    description="Requests, latencies, match queries and hits, index sizes, index memory, "
    "snapshot age, import jobs by state and followers' feed lag; summed over the gunicorn "
    "workers.",
    responses={200: Raw("text/plain")},
)
def metrics() -> Response:
    ctx = context()
    m = ctx.metrics
    try:
        m.observe(ctx.db.operations)
    except StorageUnavailable as exc:  # the rest still helps to see why: answer it
        log.warning("metrics without the import-job counts: %s", exc.message)
    return Response(m.render(), mimetype=None, content_type=m.content_type)


@bp.get("/openapi.json")
@document(
    "This API's OpenAPI document",
    tag=TAG,
    responses={200: Raw("application/json", {"type": "object"})},
)
def openapi() -> Response:
    return Response(json.dumps(context().openapi), mimetype="application/json")


@bp.get("/docs")
@document("Human-readable API documentation", tag=TAG, responses={200: Raw("text/html")})
def docs() -> Response:
    page = (Path(current_app.root_path) / "static" / "docs.html").read_text(encoding="utf-8")
    return Response(page, mimetype="text/html")
