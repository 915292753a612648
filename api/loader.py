"""Loading the indexes in the background, so the process answers at once.

A worker starts serving `/healthz` immediately; `/readyz` and the match endpoints
answer 503 until the matcher has built its indexes from the database. If the
database is unreachable at start the load is retried every few seconds rather
than killing the worker: a load balancer keeps it out of rotation meanwhile.
Once ready, the loader fills the matcher's row cache (`Matcher.warm_records`),
so that matches are answered without reading their rows from the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hashdb.matching import Matcher

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


class IndexLoader:
    def __init__(self, matcher: Matcher, on_ready: Callable[[], None]) -> None:
        self._matcher = matcher
        self._on_ready = on_ready
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hashdb-index-loader", daemon=True)

    @property
    def ready(self) -> bool:
        return self._matcher.ready

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def wait(self, timeout: float) -> bool:
        """Block until loaded (tests and tools); True if ready in time."""
        self._thread.join(timeout)
        return self.ready

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._matcher.load()
            except Exception:
                log.exception("loading the indexes failed; retrying in %.0fs", RETRY_SECONDS)
                self._stop.wait(RETRY_SECONDS)
                continue
            log.info("indexes loaded: %s", self._matcher.sizes())
            self._on_ready()
            break
        if not self.ready:
            return  # stopped before the indexes loaded
        try:
            cached = self._matcher.warm_records()
        except Exception:  # the cache fills on misses instead
            log.exception("warming the row cache failed")
        else:
            log.info("row cache holds %d rows", cached)
