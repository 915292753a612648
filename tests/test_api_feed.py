"""The export feed over HTTP: where a reader stands travels with every page.

Every answer carries the cursor of the last change-log entry read, whether more
follow, the epoch and the head, as headers (any format) and, with `format=json`,
in the body; filters by label and signal type are checked like every parameter.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from api.keycache import KeyCache
from hashdb.consortium import Principal
from hashdb.store import Member, Role

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]


def pdq(seed: int, labels: list[str] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"signal_type": "pdq", "value": random.Random(seed).randbytes(32).hex()}
    if labels is not None:
        item["labels"] = labels
    return item


def test_a_json_page_says_where_the_reader_stands_in_body_and_headers(api: Api) -> None:
    api.add(pdq(1), pdq(2), pdq(3), role="admin")
    first = api.get("/v1/export?since=0&limit=2&format=json")
    assert first.mimetype == "application/json"
    body = first.json
    assert body is not None
    assert (len(body["entries"]), body["cursor"], body["more"]) == (2, 2, True)
    assert body["head"] == 3 and len(body["epoch"]) == 36
    assert first.headers["X-Hashdb-Cursor"] == "2"
    assert first.headers["X-Hashdb-More"] == "true"
    assert first.headers["X-Hashdb-Epoch"] == body["epoch"]
    assert first.headers["X-Hashdb-Head"] == "3"
    rest = api.get("/v1/export?since=2&limit=2").headers
    assert (rest["X-Hashdb-Cursor"], rest["X-Hashdb-More"]) == ("3", "false")
    te = api.get("/v1/export?format=threatexchange")
    assert te.headers["X-Hashdb-Epoch"] == body["epoch"]


def test_filters_select_entries_and_the_cursor_passes_over_the_rest(api: Api) -> None:
    api.add(pdq(1, ["manifesto"]), role="admin")
    api.add({"signal_type": "md5", "value": "00" * 16}, role="admin")
    page = api.get("/v1/export?since=0&format=json&signal_type=md5").json
    assert page is not None
    assert [e["signal_type"] for e in page["entries"]] == ["md5"]
    assert (page["cursor"], page["more"]) == (2, False)
    labelled = api.get("/v1/export?format=json&label=manifesto&label=attack_footage").json
    assert labelled is not None
    ops = sorted((e["signal_type"], e["op"]) for e in labelled["entries"])
    assert ops == [("md5", "delete"), ("pdq", "add")]
    for query, field in [
        ("signal_type=sha1", "signal_type"),
        ("label=no_such_label", "label"),
        ("format=yaml", "format"),
    ]:
        response = api.get(f"/v1/export?{query}")
        assert response.status_code == 400, query
        assert json.loads(response.get_data())["error"]["details"]["field"] == field


class _Members:
    def __init__(self) -> None:
        self.lookups = 0

    def authenticate(self, secret: str) -> Principal:
        self.lookups += 1
        member = Member(1, "m", Role.MEMBER, False, datetime.now(UTC), None)
        return Principal(member, 1, None)


def test_the_key_cache_is_emptied_when_the_auth_log_goes_backwards() -> None:
    members = _Members()
    cache = KeyCache(members)
    cache.principal("hdb_x", 5)
    cache.principal("hdb_x", 5)
    assert members.lookups == 1
    cache.principal("hdb_x", 3)  # a restored database: its log is shorter
    assert members.lookups == 2
    cache.principal("hdb_x", 3)
    assert members.lookups == 2
    cache.clear()
    cache.principal("hdb_x", 3)
    assert members.lookups == 3


def test_a_worker_that_sees_the_change_log_go_backwards_reloads_and_forgets_keys(
    api: Api,
) -> None:
    """The database is restored from a backup taken before a hash and a key were
    added: the worker must neither match the hash nor accept the key."""
    (kept,) = api.add(pdq(1), role="admin")
    _, late = api.store.members.create("Joined after the backup", Role.MEMBER)
    (lost,) = api.add(pdq(2), role="admin")
    headers = {"Authorization": f"Bearer {late.secret}"}
    assert api.client.get("/v1/export", headers=headers).status_code == 200  # cached now
    assert [len(r["matches"]) for r in api.match(pdq(1), pdq(2))] == [1, 1]
    with api.store.engine.begin() as conn:
        conn.execute(text("DELETE FROM changes WHERE hash_id = :i"), {"i": lost})
        for table in ("hash_transitions", "hash_variants", "match_counts"):
            conn.execute(text(f"DELETE FROM {table} WHERE hash_id = :i"), {"i": lost})
        conn.execute(text("DELETE FROM hashes WHERE id = :i"), {"i": lost})
        conn.execute(text("DELETE FROM api_keys WHERE id = :i"), {"i": late.key.id})
    assert [len(r["matches"]) for r in api.match(pdq(1), pdq(2))] == [1, 0]
    assert api.client.get("/v1/export", headers=headers).status_code == 401
    assert kept


def test_an_uploaded_images_feed_entry_carries_its_stored_variants(
    api: Api, low_detail_photo: bytes
) -> None:
    uploaded = api.upload("/v1/media", low_detail_photo, role="admin", labels=["manifesto"])
    assert uploaded.status_code == 201, uploaded.json
    pdq_id = uploaded.json["added"][0]["id"]  # type: ignore[index]
    body = api.get("/v1/export?format=json&limit=100").json
    assert body is not None
    entries = {e["id"]: e for e in body["entries"]}
    variants = entries[pdq_id]["variants"]
    assert len(variants) > 50  # the content region, when found, and the crop windows
    assert {v["kind"] for v in variants} >= {"crop90_3_3"}
    assert all(len(v["value"]) == 64 and int(v["value"], 16) >= 0 for v in variants)
    others = [e for i, e in entries.items() if i != pdq_id]
    # pHash, keypoints, MD5, SHA-256
    assert others and all(e["variants"] is None for e in others)
