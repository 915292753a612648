"""/metrics for operators: index memory, snapshot age, import jobs by state, and the
feed lag of followers that report their cursor."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from api.context import context
from hashdb.store.imports import ImportStore

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(api: Api) -> Samples:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    found: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def pdq(seed: int) -> dict[str, object]:
    return {"signal_type": "pdq", "value": f"{random.Random(seed).getrandbits(256):064x}"}


def test_index_memory_is_reported_per_signal_type_as_the_index_counts_it(api: Api) -> None:
    api.add(*(pdq(i) for i in range(300)), role="admin")
    api.match(pdq(0))  # replays the additions into the index
    found = scrape(api)
    held = context(api.app).db.matcher.nbytes()
    assert set(held) == {"pdq", "phash", "keypoints", "vpdq"}  # vpdq: videos' keyframes
    for name, size in held.items():
        assert found[("hashdb_index_bytes", (("signal_type", name),))] == size
    assert held["pdq"] > 0 and held["phash"] > 0


def test_snapshot_age_is_absent_for_built_indexes_and_counts_from_the_save(
    make_api: MakeApi, tmp_path: Path
) -> None:
    built = make_api()  # no snapshot directory: built from the database
    assert not [k for k in scrape(built) if k[0] == "hashdb_snapshot_age_seconds"]

    snapshots = tmp_path / "snapshots"
    make_api(snapshot_dir=snapshots)  # builds, then saves a snapshot
    hour_ago = time.time() - 3600
    for manifest in snapshots.glob("*/manifest.json"):
        os.utime(manifest, (hour_ago, hour_ago))
    restored = make_api(snapshot_dir=snapshots)  # loads that snapshot
    age = scrape(restored)[("hashdb_snapshot_age_seconds", (("signal_type", "pdq"),))]
    assert 3600 <= age < 3600 + 120


def test_import_jobs_are_counted_by_state(api: Api) -> None:
    zero = scrape(api)
    assert zero[("hashdb_import_jobs", (("state", "queued"),))] == 0
    assert zero[("hashdb_import_jobs", (("state", "running"),))] == 0
    member = next(m for m in api.store.members.all() if m.name == "test-ops")
    with api.store.engine.begin() as conn:
        for i in range(3):
            ImportStore.create_in(conn, member.id, f"/imports/q{i}", [])
        ImportStore.create_in(conn, member.id, "/imports/r", [], holder="worker-1")
    counted = scrape(api)
    assert counted[("hashdb_import_jobs", (("state", "queued"),))] == 3
    assert counted[("hashdb_import_jobs", (("state", "running"),))] == 1
    assert not [k for k in counted if k == ("hashdb_import_jobs", (("state", "done"),))]


def test_a_follower_reporting_its_cursor_shows_its_lag_behind_the_head(api: Api) -> None:
    api.add(*(pdq(100 + i) for i in range(5)), role="admin")
    headers = {**api.auth(), "X-Hashdb-Follower-Cursor": "2"}
    page = api.client.get("/v1/export?since=2&format=json", headers=headers)
    assert page.status_code == 200
    head = int(page.headers["X-Hashdb-Head"])
    lag = ("hashdb_feed_lag", (("member", "test-member"),))
    assert scrape(api)[lag] == head - 2
    headers["X-Hashdb-Follower-Cursor"] = str(head)
    assert api.client.get(f"/v1/export?since={head}", headers=headers).status_code == 200
    assert scrape(api)[lag] == 0


def test_a_follower_that_reports_nothing_has_no_lag(api: Api) -> None:
    assert api.get("/v1/export?since=0").status_code == 200
    assert not [k for k in scrape(api) if k[0] == "hashdb_feed_lag"]


def test_a_malformed_follower_cursor_is_a_400_naming_the_header(api: Api) -> None:
    for bad in ("-1", "abc", "1.5", "9" * 40):
        headers = {**api.auth(), "X-Hashdb-Follower-Cursor": bad}
        response = api.client.get("/v1/export?since=0", headers=headers)
        assert response.status_code == 400, bad
        error = response.json["error"]  # type: ignore[index]
        assert error["details"]["field"] == "X-Hashdb-Follower-Cursor"
