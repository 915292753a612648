"""Entry point for WSGI servers: `gunicorn 'api.wsgi:create()'`.

A factory rather than a module-level app, so importing this module does nothing;
gunicorn calls it once in each worker, after the fork, so no database connection
or background thread is shared between processes. Settings come from the
`HASHDB_*` environment variables. `hashdb serve` is the usual way to start it.
"""

from __future__ import annotations

import logging

from flask import Flask

from api.app import create_app
from hashdb.settings import Settings, load_settings


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
    )


def create() -> Flask:
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)
