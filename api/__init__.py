"""The HTTP API: a thin Flask skin over `hashdb` (and `ingest` for uploads).

`create_app(settings)` builds the application; `api.wsgi` is the entry point for
gunicorn; `hashdb serve` runs it. Nothing happens at import time.
"""

from api.app import create_app

__all__ = ["create_app"]
