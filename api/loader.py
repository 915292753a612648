"""Loading the indexes in the background, so the process answers at once.

A worker starts serving `/healthz` immediately; `/readyz` and the match endpoints
answer 503 until the indexes are built from the database (`Consortium.matching`
has the load, the sizes and the row cache; the loader only runs them on its own
thread). Before that build the loader runs every numba kernel a request can reach
once on tiny inputs (`warm_kernels`), so the compilation, or the load from numba's
disk cache, is paid before the worker says it is ready rather than by its first
request. If the database is unreachable at start the load is retried every few
seconds rather than killing the worker: a load balancer keeps it out of rotation
meanwhile.
Once ready, the loader fills the row cache matches are hydrated from
(`Matching.warm_records`), so that matches are answered without reading their
rows from the database. A serving process then settles its heap (`settle_heap`,
which `hashdb serve` and `api.wsgi` ask for with `when_warm`): what the worker
holds for its life (the app, the indexes' bookkeeping, the cached rows) is moved
out of the garbage collector's reach, and the collector runs less often. A
request allocates many short-lived objects (a 1,000-hash batch tens of
thousands), each allocation counting towards a collection; a full collection
walks every tracked object of the process, the cached rows included, and so
lands on whichever request triggered it (docs/measurements.md, "Collector").
Rows cached later stay young and collectable; objects that die by reference
count, frozen or not, are freed as ever.

The kernels are compiled with `cache=True`: numba keeps them in `__pycache__`
beside the code, or, where that is not writable, in the user's cache directory,
or in `NUMBA_CACHE_DIR` when that is set (numba reads it at import, so it must be
in the environment before the service starts). A cold cache costs tens of seconds
of compilation per process; `make install` fills it once.

`preload` is the pre-fork half, for a server's master (`hashdb serve`): it imports
every module a worker's app runs and loads the kernels, so that those pages are
the master's, shared copy-on-write by every worker it forks instead of copied into
each. It opens no database connection, builds no index and leaves no thread of its
own running (a process forked from one with live threads cannot rely on their
locks or pools); the database, the indexes and this loader's thread are each
worker's, after the fork. The BLAS libraries NumPy, SciPy and OpenCV bundle start
their thread servers when imported, but shut them down around a fork themselves
(pthread_atfork) and restart them on first use in the child; numba's kernels are
not threaded (no `parallel=True`), so a compiled dispatcher is simply inherited.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from hashdb.consortium.matching import Matching, warm_index_kernels

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0

#: The collector's thresholds once settled (`gc.set_threshold`): the young generation
#: is collected after this many net allocations instead of CPython's 700, the older
#: ones after 20 collections of the one below instead of 10.
COLLECT_THRESHOLDS = (5_000, 20, 20)


@functools.cache
def warm_kernels() -> None:
    """Once per process (compiled kernels stay compiled), run every numba kernel a
    request can reach, on tiny inputs: the index's (`warm_index_kernels`: its three
    search plans and its build at the width of each Hamming signal type), and the
    video frame hasher on a contiguous and a strided luma plane (the two layouts
    decoding yields)."""
    from ingest.video_pdq import pdq_from_luma

    warm_index_kernels()
    plane = np.random.default_rng(0).integers(0, 256, (96, 160), dtype=np.uint8)
    pdq_from_luma(plane, limited_range=True)
    pdq_from_luma(plane[:, 16:144], limited_range=False)


THREADS_EXIT_SECONDS = 5.0


def preload(*, freeze: bool = True) -> None:
    """In a server's master, before it forks: import what a worker's app imports and
    load every numba kernel (`warm_kernels`), without opening a database connection,
    loading the indexes or leaving a thread running (threads the warm-up started, such
    as a tiny index's build pool, are waited for; one still alive after
    THREADS_EXIT_SECONDS is a RuntimeError naming it). With `freeze`, the objects
    made so far are then moved out of the garbage collector's reach (`gc.freeze`),
    so that a collection in a worker does not write to, and so copy, the pages they
    share with the master."""
    import api.app
    import api.serving
    import api.wsgi  # noqa: F401  (each import is the point: its pages are shared)

    before = set(threading.enumerate())
    warm_kernels()
    deadline = time.monotonic() + THREADS_EXIT_SECONDS
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in threading.enumerate() if t.is_alive() and t not in before]
    if left:
        raise RuntimeError(f"preloading left threads running in the master: {left}")
    if freeze:
        gc.collect()
        gc.freeze()


def settle_heap() -> None:
    """Freeze what the process holds now (after one collection) and raise the
    collector's thresholds (COLLECT_THRESHOLDS); see the module docstring."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECT_THRESHOLDS)


class IndexLoader:
    def __init__(self, matching: Matching, on_ready: Callable[[], None]) -> None:
        self._matching = matching
        self._on_ready = on_ready
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hashdb-index-loader", daemon=True)
        self._lock = threading.Lock()
        self._warm = False  # the row cache has been filled (or failed to be)
        self._after_warm: list[Callable[[], None]] = []

    @property
    def ready(self) -> bool:
        return self._matching.ready

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

    def when_warm(self, action: Callable[[], None]) -> None:
        """Run `action` once the indexes are loaded and the row cache filled: at once
        if they are, else on the loader's thread when they are."""
        with self._lock:
            if not self._warm:
                self._after_warm.append(action)
                return
        action()

    def _run(self) -> None:
        try:
            warm_kernels()
        except Exception:  # a kernel that cannot compile fails its requests instead
            log.exception("warming the numba kernels failed")
        while not self._stop.is_set():
            try:
                self._matching.load()
            except Exception:
                log.exception("loading the indexes failed; retrying in %.0fs", RETRY_SECONDS)
                self._stop.wait(RETRY_SECONDS)
                continue
            log.info(
                "indexes loaded: %s; keypoint sets: %d",
                self._matching.index_sizes(),
                self._matching.keypoint_sets(),
            )
            self._on_ready()
            break
        if not self.ready:
            return  # stopped before the indexes loaded
        try:
            cached = self._matching.warm_records()
        except Exception:  # the cache fills on misses instead
            log.exception("warming the row cache failed")
        else:
            log.info("row cache holds %d rows", cached)
        with self._lock:
            self._warm, actions = True, self._after_warm
        for action in actions:
            action()
