"""What a running API holds for its lifetime, reachable from any request.

One `ApiContext` per Flask app, kept in `app.extensions`, so two apps in one
process (tests) never share a database or a metrics registry, and
views take what they need from it instead of from module globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from api.import_runner import ImportRunner
from api.keycache import KeyCache
from api.loader import IndexLoader
from api.metrics import Metrics
from hashdb.consortium import Consortium
from hashdb.settings import Settings
from ingest.sandbox import Sandbox

EXTENSION = "hashdb"


@dataclass
class ApiContext:
    settings: Settings
    db: Consortium
    keys: KeyCache
    metrics: Metrics
    loader: IndexLoader
    owns_db: bool  # close the database with the app (it was opened by create_app)
    imports: ImportRunner
    media: Sandbox  # decodes and hashes uploads: the API worker never does
    openapi: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.loader.stop()
        self.media.close()
        if self.owns_db:
            self.db.close()


def context(app: Flask | None = None) -> ApiContext:
    """The context of `app`, or of the app handling the current request."""
    found = (app or current_app).extensions[EXTENSION]
    assert isinstance(found, ApiContext)
    return found
