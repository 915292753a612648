"""Where import hashing runs: a local process pool, or a Dask `distributed` cluster.

Both look the same to the import: `submit(fn, *args)` returns a future, and
`completed(futures)` yields them as they finish. Hashing is CPU-bound and holds the
GIL in parts (Pillow, the PDQ binding), so local work uses processes (spawned, not
forked: forking a process that holds OpenCV or FAISS threads is unsafe). With a
scheduler address the work goes to that Dask cluster instead; its workers must see
the same file paths (shared storage), and only the coordinator writes to the
database.

A local worker exits when the process that started it dies: it waits on its task
queue, whose write end it holds itself, so a killed `hashdb import` (SIGKILL, the
OOM killer) would otherwise leave its workers waiting for ever.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from types import TracebackType
from typing import Any, Protocol

from hashdb.errors import OutsideFailure


class Pool(Protocol):
    workers: int

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def completed(self, futures: Iterable[Any]) -> Iterator[Any]: ...

    def close(self) -> None: ...


def _exit_with_parent() -> None:
    """Worker initializer: a thread that ends the worker when its parent dies."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class LocalPool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._executor.submit(fn, *args)

    def completed(self, futures: Iterable[Future[Any]]) -> Iterator[Future[Any]]:
        return as_completed(list(futures))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class DaskPool:
    def __init__(self, scheduler: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise OutsideFailure(
                "HASHDB_DASK_SCHEDULER is set but Dask is not installed: pip install 'hashdb[dask]'"
            ) from None
        try:
            self._client = Client(scheduler, timeout=10)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise OutsideFailure(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        self.workers = max(1, sum(self._client.nthreads().values()))  # type: ignore[no-untyped-call]

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._client.submit(fn, *args, pure=False)

    def completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        from distributed import as_completed as dask_completed

        return iter(dask_completed(list(futures)))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class PoolContext:
    """`with open_pool(...) as pool:` closes the pool however the block ends."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def __enter__(self) -> Pool:
        return self.pool

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.pool.close()


def open_pool(workers: int, scheduler: str | None = None) -> PoolContext:
    if scheduler:
        return PoolContext(DaskPool(scheduler))
    return PoolContext(LocalPool(max(1, workers)))
