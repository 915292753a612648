"""`hashdb serve`'s pre-fork step (`api.loader.preload`) is safe to fork after.

The master imports what the workers run and loads the numba kernels before it
forks, so those pages are shared; anything else done there would be inherited by
every worker: a database connection (shared sockets or SQLite handles across
processes), a running thread (gone in the child, with its locks possibly held), an
index. These tests run the step in a fresh interpreter, as the master does, and
check that it opened no connection and left no thread, and that a forked child
searches a multi-threaded index with the master's compiled kernels, compiling
nothing itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fresh_interpreter import run_script

NO_CONNECTION_NO_THREAD = """
import gc, json, sqlite3, sys, threading

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

connects = []
event.listen(Pool, "connect", lambda *args: connects.append("pool"))
for module in (sqlite3, sqlite3.dbapi2):
    real = module.connect
    module.connect = lambda *a, real=real, **k: (connects.append("sqlite3"), real(*a, **k))[1]
real_pg = psycopg.Connection.connect
psycopg.Connection.connect = lambda *a, **k: (connects.append("psycopg"), real_pg(*a, **k))[1]

from api.loader import preload, warm_kernels

preload()
frozen = gc.get_freeze_count()
gc.unfreeze()  # gc.get_objects() does not list frozen objects
print(json.dumps({
    "connects": connects,
    "engines": sum(isinstance(o, Engine) for o in gc.get_objects()),
    "threads": [t.name for t in threading.enumerate()],
    "frozen": frozen,
    "app_imported": "api.app" in sys.modules,
    "kernels_warm": warm_kernels.cache_info().currsize,
}))
"""

FORKED_WORKER = """
import json, os

import numpy as np
from numba.core.dispatcher import Dispatcher

from api.loader import preload
from hashdb.index import kernels
from hashdb.index.mih import MIHIndex
from hashdb.index.oracle import BruteForceIndex


def compiled():
    return sum(len(v.overloads) for v in vars(kernels).values() if isinstance(v, Dispatcher))


preload()
before = compiled()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    ids = np.arange(1, 5001, dtype=np.int64)
    queries = codes[:200] ^ (rng.random((200, 32)) < 0.03).astype(np.uint8)
    index = MIHIndex(256, threads=2, background=False)  # a pool, as a worker's index has
    index.add(ids, codes)
    index.compact()
    oracle = BruteForceIndex(256)
    oracle.add(ids, codes)
    found, expected = index.search(queries, 31), oracle.search(queries, 31)
    same = [
        np.array_equal(a.ids, b.ids) and np.array_equal(a.distances, b.distances)
        for a, b in zip(found, expected)
    ]
    result = {
        "compiled_in_child": compiled() - before,
        "agree": all(same) and len(same) == 200,
        "every_query_found_its_source": all(len(hits) > 0 for hits in found),
    }
    with os.fdopen(write, "w") as out:
        json.dump(result, out)
    os._exit(0)
os.close(write)
with os.fdopen(read) as got:
    result = json.load(got)
_, status = os.waitpid(pid, 0)
result["child_exit"] = os.waitstatus_to_exitcode(status)
print(json.dumps(result))
"""


def run_as_master(script: str, tmp_path: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "HASHDB_DATABASE_URL": f"sqlite:///{tmp_path / 'never-opened.sqlite3'}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),  # as `hashdb serve` sets it
    }
    return run_script(script, env=env)


def test_preload_opens_no_database_connection_and_leaves_no_thread(tmp_path: Path) -> None:
    got = run_as_master(NO_CONNECTION_NO_THREAD, tmp_path)
    assert got["app_imported"] is True  # it did its job: the workers' modules ...
    assert got["kernels_warm"] == 1  # ... and kernels are the master's
    assert got["connects"] == []
    assert got["engines"] == 0
    assert not (tmp_path / "never-opened.sqlite3").exists()
    assert got["threads"] == ["MainThread"]
    assert isinstance(got["frozen"], int) and got["frozen"] > 0  # gc.freeze() ran


@pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn forks its workers")
def test_a_forked_worker_searches_with_the_masters_kernels_and_its_own_threads(
    tmp_path: Path,
) -> None:
    got = run_as_master(FORKED_WORKER, tmp_path)
    assert got == {
        "compiled_in_child": 0,
        "agree": True,
        "every_query_found_its_source": True,
        "child_exit": 0,
    }
