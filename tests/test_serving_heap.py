"""A serving process settles its heap once its indexes and row cache are loaded.

Every request allocates short-lived objects, and every allocation counts towards a
garbage collection; a full collection walks every tracked object of the process,
which for a serving worker means its whole row cache. So a serving app
(`api.wsgi.create`, and `hashdb serve`'s workers) freezes what it holds once warm
and raises the collector's thresholds (`api.loader.settle_heap`), while an app
made by `create_app` alone (tests, tools) leaves the process's collector as it
was. Each case runs in a fresh interpreter, as a worker does, so this test
process's own collector is not touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fresh_interpreter import run_script

from api.loader import COLLECT_THRESHOLDS

REPORT = """
import gc, json, sys
from api.context import context
from hashdb.store import NewHash, Role, Store

store = Store.open(sys.argv[1])
member, _ = store.members.create("heap", Role.MEMBER)
store.hashes.add(member.id, [NewHash("pdq", bytes([i]) * 32) for i in range(50)])
store.close()
before = gc.get_threshold()
if sys.argv[2] == "serving":
    from api.wsgi import create
    app = create()
else:
    from api.app import create_app
    from hashdb.settings import load_settings
    app = create_app(load_settings())
loader = context(app).loader
assert loader.wait(60), "the indexes did not load"
ran = []
loader.when_warm(lambda: ran.append("at once"))  # already warm: runs here and now
print(json.dumps({
    "before": before,
    "threshold": gc.get_threshold(),
    "frozen": gc.get_freeze_count(),
    "ran": ran,
}))
context(app).close()
"""


def report(url: str, how: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHDB_")}
    env.update(HASHDB_DATABASE_URL=url, HASHDB_LOG_LEVEL="warning")
    return run_script(REPORT, url, how, env=env)


def test_a_serving_app_freezes_what_it_holds_once_warm(
    tmp_path: Path, migrated: Callable[[str], str]
) -> None:
    url = migrated(f"sqlite:///{tmp_path / 'hashdb.sqlite3'}")
    seen = report(url, "serving")
    assert seen["threshold"] == list(COLLECT_THRESHOLDS)
    assert seen["threshold"] != seen["before"]
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000
    assert seen["ran"] == ["at once"]


def test_an_app_made_for_tests_and_tools_leaves_the_collector_alone(
    tmp_path: Path, migrated: Callable[[str], str]
) -> None:
    url = migrated(f"sqlite:///{tmp_path / 'hashdb.sqlite3'}")
    seen = report(url, "plain")
    assert seen["threshold"] == seen["before"]
    assert seen["frozen"] == 0
    assert seen["ran"] == ["at once"]
