"""Entry point for WSGI servers: `gunicorn 'api.wsgi:create()'`.

A factory rather than a module-level app, so importing this module does nothing;
gunicorn calls it once in each worker, after the fork, so no database connection
or background thread is shared between processes. Settings come from the
`HASHDB_*` environment variables. `hashdb serve` is the usual way to start it.
"""

from __future__ import annotations

from flask import Flask

from api import logs
from api.app import create_app
from api.context import context
from api.loader import settle_heap
from hashdb.settings import Settings, load_settings


def configure_logging(settings: Settings) -> None:
    """HASHDB_LOG_FORMAT and HASHDB_LOG_LEVEL for the whole process (`api.logs`)."""
    logs.configure(settings)


def create() -> Flask:
    settings = load_settings()
    configure_logging(settings)
    app = create_app(settings)
    context(app).loader.when_warm(settle_heap)  # a serving process's heap (api.loader)
    return app
