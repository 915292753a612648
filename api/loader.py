"""Loading the indexes in the background, so the process answers at once.

A worker starts serving `/healthz` immediately; `/readyz` and the match endpoints
answer 503 until the matcher has built its indexes from the database. Before that
build the loader runs every numba kernel a request can reach once on tiny inputs
(`warm_kernels`), so the compilation, or the load from numba's disk cache, is paid
before the worker says it is ready rather than by its first request. If the
database is unreachable at start the load is retried every few seconds rather
than killing the worker: a load balancer keeps it out of rotation meanwhile.
Once ready, the loader fills the matcher's row cache (`Matcher.warm_records`),
so that matches are answered without reading their rows from the database.

The kernels are compiled with `cache=True`: numba keeps them in `__pycache__`
beside the code, or, where that is not writable, in the user's cache directory,
or in `NUMBA_CACHE_DIR` when that is set (numba reads it at import, so it must be
in the environment before the service starts). A cold cache costs tens of seconds
of compilation per process; `make install` fills it once.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

import numpy as np

from hashdb.index import MIHIndex
from hashdb.index.layout import Plan
from hashdb.matching import Matcher
from hashdb.signals import SIGNAL_TYPES, Matching

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


# Rows of the tiny indexes the kernels are warmed on: enough for the tables to hold
# entries, few enough that warming costs only the compilation.
_WARM_ROWS = 64


@functools.cache
def warm_kernels() -> None:
    """Once per process (compiled kernels stay compiled), run every numba kernel a
    request can reach, on tiny inputs: the index's three search plans (probe, join,
    scan) and its build at the width of each Hamming signal type, and the video frame
    hasher on a contiguous and a strided luma plane (the two layouts decoding yields)."""
    from ingest.video_pdq import pdq_from_luma

    rng = np.random.default_rng(0)
    widths = sorted({s.bits for s in SIGNAL_TYPES.values() if s.matching is Matching.HAMMING})
    for bits in widths:
        codes = rng.integers(0, 256, (_WARM_ROWS, bits // 8), dtype=np.uint8)
        for how in Plan:
            index = MIHIndex(bits, threads=1, background=False, plan=how)
            index.add(np.arange(1, _WARM_ROWS + 1, dtype=np.int64), codes)
            index.compact()
            index.add(np.array([_WARM_ROWS + 1], dtype=np.int64), codes[:1])  # a buffered row
            index.search(codes[:2], bits // 8)
    plane = rng.integers(0, 256, (96, 160), dtype=np.uint8)
    pdq_from_luma(plane, limited_range=True)
    pdq_from_luma(plane[:, 16:144], limited_range=False)


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
        try:
            warm_kernels()
        except Exception:  # a kernel that cannot compile fails its requests instead
            log.exception("warming the numba kernels failed")
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
