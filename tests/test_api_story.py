"""The consortium workflow end to end over HTTP, against the real server, on both databases.

A member contributes a hash and it is pending; an admin approves it; another
member matches it and reports removing the content 20 minutes after upload; a
third member disputes it (HASHDB_DISPUTE_THRESHOLD=1, so one member suffices);
the admin retires it with DELETE; the export feed carries its tombstone; a local
copy synced from the server's feed (`hashdb.consortium.sync.pull` over HTTP) stops
matching it; and the transparency report for the period shows every one of
those numbers, as JSON and as CSV. The audit log holds each write with the key
and the request id that made it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import Server, start_server

from hashdb.client import Client as MemberClient
from hashdb.consortium import Actor
from hashdb.consortium.core import Consortium
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import Role, Store

pytestmark = pytest.mark.slow

CODE = "f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22"


@dataclass
class Client:
    """One member's view of the server: its key on a shared session."""

    url: str
    key: str
    session: requests.Session

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return self.session.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def matches(self) -> list[int]:
        body = self.ok(
            "POST", "/v1/match", json={"queries": [{"signal_type": "pdq", "value": CODE}]}
        )
        return [m["id"] for m in body["results"][0]["matches"]]


@pytest.fixture
def keys(db_url: str) -> Iterator[dict[str, str]]:
    store = Store.open(db_url, migrate_schema=False)
    yield {
        name: store.members.create(name, role)[1].secret
        for name, role in (
            ("Consortium", Role.ADMIN),
            ("Platform A", Role.MEMBER),
            ("Platform B", Role.MEMBER),
            ("Platform C", Role.MEMBER),
        )
    }
    store.close()


@pytest.fixture
def server(db_url: str, tmp_path: Path, keys: dict[str, str]) -> Iterator[Server]:
    started = start_server(db_url, tmp_path, sync_interval=0, dispute_threshold=1)
    yield started
    started.stop()


@pytest.fixture
def local(tmp_path: Path, migrated: Callable[[str], str]) -> Iterator[Consortium]:
    """A small platform's own hashdb, following the server's feed."""
    copy = Store.open(migrated(f"sqlite:///{tmp_path / 'local.sqlite3'}"))
    copy.members.create("Local admin", Role.ADMIN)  # who runs the sync
    db = Consortium(Settings(sync_interval=0), copy)
    yield db
    db.close()


def local_matches(local: Consortium) -> int:
    local.matcher.refresh()
    return len(local.matching.match(None, [Query(PDQ, bytes.fromhex(CODE))])[0].matches)


def test_the_whole_story_over_http(server: Server, keys: dict[str, str], local: Consortium) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    with requests.Session() as session:
        admin, contributor, matcher, disputer = (
            Client(server.url, keys[name], session)
            for name in ("Consortium", "Platform A", "Platform B", "Platform C")
        )

        # A member contributes: the hash is pending, and the member cannot approve it.
        body = contributor.ok(
            "POST",
            "/v1/hashes",
            201,
            json={
                "hashes": [
                    {
                        "signal_type": "pdq",
                        "value": CODE,
                        "labels": ["attack_footage"],
                        "reference": "case 7",
                        "quality": 92,
                    }
                ]
            },
        )
        hash_id = body["hashes"][0]["id"]
        assert contributor.ok("GET", f"/v1/hashes/{hash_id}")["status"] == "pending"
        refused = contributor.call("POST", "/v1/hashes/approve", json={"ids": [hash_id]})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"

        # An admin finds it in the review queue and approves it.
        queue = admin.ok("GET", "/v1/review")
        assert [h["id"] for h in queue["hashes"]] == [hash_id]
        approved = admin.ok(
            "POST", "/v1/hashes/approve", json={"ids": [hash_id], "reason": "verified footage"}
        )
        assert approved["hashes"][0]["status"] == "active"
        assert admin.ok("GET", "/v1/review")["hashes"] == []

        # A local copy syncs from the feed and matches it.
        feed = MemberClient(server.url, keys["Platform B"])
        assert local.sync.pull(Actor(local.members.operator()), feed, server.url).live == 1
        assert local_matches(local) == 1

        # Another member matches it, and reports removal 20 minutes after upload.
        assert matcher.matches() == [hash_id]
        uploaded = datetime.now(UTC) - timedelta(minutes=30)
        outcome = matcher.ok(
            "POST",
            f"/v1/hashes/{hash_id}/outcomes",
            201,
            json={
                "action": "removed",
                "uploaded_at": uploaded.isoformat(),
                "matched_at": (uploaded + timedelta(minutes=2)).isoformat(),
                "actioned_at": (uploaded + timedelta(minutes=20)).isoformat(),
            },
        )
        assert outcome["time_to_action_seconds"] == 1200.0

        # A third member disputes it: one member is the configured threshold.
        given = disputer.ok(
            "POST",
            f"/v1/hashes/{hash_id}/feedback",
            201,
            json={"kind": "disagree", "reason": "not_terrorist_content"},
        )
        assert (given["disputed"], given["disagreeing_members"]) == (True, 1)
        disputes = admin.ok("GET", "/v1/review?status=disputed")
        assert [h["id"] for h in disputes["hashes"]] == [hash_id]

        # The admin retires it; it stops matching at once, and the history says why.
        retired = admin.ok("DELETE", f"/v1/hashes/{hash_id}?reason=news footage")
        assert retired["status"] == "retired"
        assert matcher.matches() == []
        history = admin.ok("GET", f"/v1/hashes/{hash_id}/history")["transitions"]
        assert [(t["from_status"], t["to_status"]) for t in history] == [
            (None, "pending"),
            ("pending", "active"),
            ("active", "disputed"),
            ("disputed", "retired"),
        ]
        assert history[-1]["reason"] == "news footage"

        # The export feed ends with its tombstone.
        response = matcher.call("GET", "/v1/export?since=0")
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        last = response.text.splitlines()[-1]
        assert '"op":"delete"' in last and f'"id":{hash_id},' in last
        assert f'"value":"{CODE}"' in last and '"status":"retired"' in last

        # The synced local copy stops matching it.
        assert local.sync.pull(Actor(local.members.operator()), feed, server.url).retired == 1
        assert local_matches(local) == 0
        up_to_date = local.sync.pull(Actor(local.members.operator()), feed, server.url)
        feed.close()
        assert up_to_date.entries == 0

        # The transparency report for the period shows every one of those numbers.
        period = {
            "from": start.isoformat(),
            "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }
        report = admin.ok("GET", "/v1/reports/transparency", params=period)
        assert report["member_id"] is None
        assert report["hashes"] == {
            "by_type": {"pdq": 1},
            "by_label": {"attack_footage": 1},
            "by_status": {"retired": 1},
            "by_contributor": {"Platform A": 1},
        }
        assert report["changes"] == {
            "added": 1,
            "approved": 1,
            "rejected": 0,
            "retired": 1,
            "disputed": 1,
        }
        assert report["disputes"] == {"kept": 0, "retired": 1}
        assert report["matches"] == {
            "total": 1,
            "by_label": {"attack_footage": 1},
            "by_member": {"Platform B": 1},
        }
        assert report["feedback"] == {
            "by_kind": {"disagree": 1},
            "disagreement_by_reason": {"not_terrorist_content": 1},
        }
        assert report["outcomes"] == {
            "by_action": {"removed": 1},
            "takedown_rate": 1.0,
            "time_to_action": {
                "removals": 1,
                "median_seconds": 1200.0,
                "p90_seconds": 1200.0,
                "within_one_hour": 1.0,
            },
        }
        as_csv = admin.call(
            "GET", "/v1/reports/transparency", params=period, headers={"Accept": "text/csv"}
        )
        assert as_csv.headers["Content-Type"].startswith("text/csv")
        rows = {
            (r["section"], r["key"]): r["value"] for r in csv.DictReader(io.StringIO(as_csv.text))
        }
        assert rows[("outcomes", "takedown_rate")] == "1.0"
        assert rows[("matches.by_member", "Platform B")] == "1"

        # Each member sees its own figures only.
        own = matcher.ok("GET", "/v1/reports/transparency", params=period)
        assert own["matches"]["total"] == 1 and own["matches"]["by_member"] == {}
        assert own["audit_head"] is None
        contributor_id = approved["hashes"][0]["contributor_id"]
        theirs = matcher.call(
            "GET", "/v1/reports/transparency", params={**period, "member_id": contributor_id}
        )
        assert theirs.status_code == 403

        # Every write is in the audit log with the key and request id that made it.
        log = admin.ok("GET", "/v1/audit")
        actions = [e["action"] for e in log["entries"]]
        for action in (
            "hashes.contribute",
            "hash.approve",
            "outcome.report",
            "feedback.give",
            "hash.dispute",
            "hash.retire",
        ):
            assert action in actions, action
        assert all(e["key_id"] and e["request_id"] for e in log["entries"])
        assert report["audit_head"]["seq"] == log["head"]["seq"]
        assert admin.ok("GET", "/v1/audit/verify")["ok"] is True
