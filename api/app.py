"""The application factory: `create_app(settings)` wires one running API.

Nothing happens at import time. `create_app` opens the database (unless handed a
`Consortium`), registers one blueprint per audience (health, matching, contributing,
vetting, labels and incidents, feedback, export, reports, audit, imports,
administration; HMA 2.0's paths too when `HASHDB_HMA_COMPAT` is on, `api/hma.py`),
renders every error through `api.errors`, logs every request (`api.logs`), applies
X-Forwarded-* only from HASHDB_TRUSTED_PROXIES (`api.proxies`), builds the OpenAPI
document from the routes (failing at start if a route is undocumented), and starts
loading the indexes in a background thread: the app answers at once, `/readyz` is
503 until the indexes are in memory. Uploads are decoded and hashed in the media
sandbox's child processes (`ingest.sandbox`), never in the worker; its first child
starts in the background too.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from werkzeug.routing import IntegerConverter, Map

from api import (
    admin,
    audit,
    auth,
    console,
    contributing,
    errors,
    export,
    feedback,
    health,
    hma,
    imports,
    labels,
    logs,
    matching,
    openapi,
    proxies,
    reports,
    request_id,
    vetting,
)
from api.context import EXTENSION, ApiContext
from api.import_runner import ImportRunner
from api.keycache import KeyCache
from api.loader import IndexLoader
from api.metrics import Metrics
from hashdb.consortium import Consortium
from hashdb.settings import Settings
from ingest.sandbox import Sandbox

log = logging.getLogger(__name__)


class IdConverter(IntegerConverter):
    """`<id:name>`: a positive 64-bit database id; anything else is a 404."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=2**63 - 1)


def create_app(settings: Settings, hashdb: Consortium | None = None) -> Flask:
    """A ready-to-serve Flask app over `hashdb` (opened from `settings` if None)."""
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters["id"] = IdConverter
    app.url_map.strict_slashes = False

    db = hashdb or Consortium.open(settings)
    db.listen_for_changes()  # the heads are read when notified, not per request
    metrics = Metrics()
    ctx = ApiContext(
        settings=settings,
        db=db,
        keys=KeyCache(db.members),
        metrics=metrics,
        loader=IndexLoader(db.matching, on_ready=lambda: _loaded(ctx)),
        owns_db=hashdb is None,
        imports=ImportRunner(db),
        media=Sandbox(settings.media_workers, wait_seconds=settings.media_wait_seconds),
    )
    app.extensions[EXTENSION] = ctx

    for blueprint in (
        health.bp,
        matching.bp,
        contributing.bp,
        vetting.bp,
        labels.bp,
        feedback.bp,
        export.bp,
        reports.bp,
        audit.bp,
        imports.bp,
        admin.bp,
    ):
        app.register_blueprint(blueprint)
    if settings.hma_compat:
        app.register_blueprint(hma.bp)  # HMA 2.0's paths and shapes (api/hma.py)
    errors.register(app)
    request_id.register(app)
    logs.register(app)  # the access log (api/logs.py)
    app.wsgi_app = proxies.wrap(app.wsgi_app, settings.trusted_networks)  # type: ignore[method-assign,assignment]
    auth.register(app)  # the RateLimit fields of the caller's key
    _measure(app, metrics)
    ctx.openapi = openapi.build(app, settings)
    console.register(app)  # HTML pages for people; not part of the JSON API document
    ctx.loader.start()
    return app


def _loaded(ctx: ApiContext) -> None:
    ctx.metrics.ready.set(1)
    ctx.metrics.set_index_sizes(ctx.db.matching.index_sizes())
    ctx.metrics.set_index_bytes(ctx.db.operations.index_bytes())


def _measure(app: Flask, metrics: Metrics) -> None:
    """Count and time every request, labelled by endpoint (not by raw path)."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        started = g.get("started")
        seconds = time.perf_counter() - started if isinstance(started, float) else None
        metrics.note_request(
            request.endpoint or "unmatched", request.method, response.status_code, seconds
        )
        return response
