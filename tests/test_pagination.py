"""Every list endpoint pages one way: the export feed's (hashdb/consortium/paging.py).

`cursor` and `limit` in the query (the old `after_id`, `after` and `since` still
read as `cursor`, never together with it); the items, `cursor` and `more` in the
body, the same two in X-Hashdb-Cursor / X-Hashdb-More, and a Link rel="next"
while `more`. The cursor is a key that only grows, so a reader paging while rows
are added sees every row that existed when it started, once, in order.

Each listing is walked on both backends with limit 1 and 2, by following the
Link header, and compared with the whole list read in one page.
"""

from __future__ import annotations

import itertools
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from api.context import context
from hashdb.client import Client
from hashdb.consortium import Actor

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]

LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')
_values = itertools.count(1)


@dataclass(frozen=True)
class Listing:
    path: str  # with the filters it keeps across pages
    role: str  # who reads it
    field: str  # where the items are in the body
    key: str | None  # the item field the cursor follows; None: a position (labels)


def md5() -> dict[str, Any]:
    return {"signal_type": "md5", "value": f"{next(_values):032x}", "labels": []}


def ok(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 200, response.json
    body = response.json
    assert isinstance(body, dict)
    return body


def with_query(path: str, **params: object) -> str:
    return f"{path}{'&' if '?' in path else '?'}{urllib.parse.urlencode(params)}"


def seed(api: Api) -> dict[str, Listing]:
    """At least three items in every list, and the listings to read them."""
    mine = api.add(md5(), md5(), md5(), md5())
    api.add(md5(), role="admin")  # someone else's: never in the member's list
    moved = mine[3]
    assert api.post("/v1/hashes/approve", {"ids": [moved]}, "admin").status_code == 200
    retire = {"ids": [moved], "reason": "a test"}
    assert api.post("/v1/hashes/retire", retire, "admin").status_code == 200
    (live,) = api.add(md5(), role="admin")
    for kind in ("agree", "agree", "agree"):
        given = api.post(f"/v1/hashes/{live}/feedback", {"kind": kind}, "member")
        assert given.status_code == 201, given.json
    for i in range(2):
        member = {"name": f"paged-{i}", "role": "member"}
        assert api.post("/v1/members", member, "admin").status_code == 201
        label = {"name": f"paged_{i}", "description": "A label for paging."}
        assert api.post("/v1/labels", label, "admin").status_code == 201
    for i in range(3):
        assert api.post("/v1/incidents", {"name": f"incident {i}"}, "admin").status_code == 201
    db = context(api.app).db
    ops = Actor(api.store.members.by_name("test-ops"))
    for i in range(3):
        db.imports.start(ops, f"/collections/paged-{i}", [], [])
    return {
        "hashes": Listing("/v1/hashes", "member", "hashes", "id"),
        "pending": Listing("/v1/hashes?status=pending", "member", "hashes", "id"),
        "review": Listing("/v1/review?status=pending", "admin", "hashes", "id"),
        "members": Listing("/v1/members", "admin", "members", "id"),
        "labels": Listing("/v1/labels", "member", "labels", None),
        "incidents": Listing("/v1/incidents", "admin", "incidents", "id"),
        "feedback": Listing(f"/v1/hashes/{live}/feedback", "admin", "feedback", "id"),
        "history": Listing(f"/v1/hashes/{moved}/history", "admin", "transitions", "id"),
        "imports": Listing("/v1/imports", "ops", "imports", "id"),
        "audit": Listing("/v1/audit", "admin", "entries", "seq"),
    }


def whole(api: Api, listing: Listing) -> list[dict[str, Any]]:
    body = ok(api.get(with_query(listing.path, limit=1000), listing.role))
    assert body["more"] is False
    items: list[dict[str, Any]] = body[listing.field]
    return items


def walk(api: Api, listing: Listing, limit: int) -> Iterator[dict[str, Any]]:
    """Each page's body, from the first on, by following the Link header; checks
    what every page must hold on the way."""
    url = with_query(listing.path, limit=limit)
    cursor = 0
    while True:
        response = api.get(url, listing.role)
        body = ok(response)
        assert len(body[listing.field]) <= limit
        assert response.headers["X-Hashdb-Cursor"] == str(body["cursor"])
        assert response.headers["X-Hashdb-More"] == ("true" if body["more"] else "false")
        assert body["cursor"] >= cursor
        if body[listing.field] and listing.key is not None:
            assert body["cursor"] == body[listing.field][-1][listing.key]
        yield body
        if not body["more"]:
            assert "Link" not in response.headers
            return
        link = LINK.match(response.headers["Link"])
        assert link is not None, response.headers["Link"]
        url = link["url"]
        sent = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        kept = urllib.parse.parse_qs(urllib.parse.urlsplit(listing.path).query)
        assert sent == {**kept, "cursor": [str(body["cursor"])], "limit": [str(limit)]}
        assert body["cursor"] > cursor, "more, but the cursor did not move"
        cursor = body["cursor"]


LISTINGS = [
    "hashes",
    "pending",
    "review",
    "members",
    "labels",
    "incidents",
    "feedback",
    "history",
    "imports",
    "audit",
]


@pytest.fixture
def listings(api: Api) -> dict[str, Listing]:
    return seed(api)


@pytest.mark.parametrize("limit", [1, 2])
def test_every_list_pages_through_each_item_once_in_order(
    api: Api, listings: dict[str, Listing], limit: int
) -> None:
    for name in LISTINGS:
        listing = listings[name]
        everything = whole(api, listing)
        assert len(everything) >= 3, name
        pages = list(walk(api, listing, limit))
        read = [item for page in pages for item in page[listing.field]]
        assert read == everything, name
        assert all(page[listing.field] for page in pages), f"{name}: `more` led to an empty page"
        assert len(pages) >= len(everything) // limit, name
        if listing.key is not None:
            keys = [item[listing.key] for item in read]
            assert keys == sorted(set(keys)), f"{name}: keys must strictly increase"
        last = pages[-1]
        past = ok(api.get(with_query(listing.path, cursor=last["cursor"]), listing.role))
        assert (past[listing.field], past["cursor"], past["more"]) == ([], last["cursor"], False)


def test_a_page_says_more_exactly_when_items_follow(api: Api, listings: dict[str, Listing]) -> None:
    listing = listings["incidents"]
    everything = whole(api, listing)
    exact = ok(api.get(with_query(listing.path, limit=len(everything)), listing.role))
    assert (exact["more"], exact["cursor"]) == (False, everything[-1]["id"])
    short = ok(api.get(with_query(listing.path, limit=len(everything) - 1), listing.role))
    assert (short["more"], short["cursor"]) == (True, everything[-2]["id"])


# ---- the old parameter names ------------------------------------------------------

ALIASES = [
    ("/v1/hashes", "member", "after_id", "hashes"),
    ("/v1/review", "admin", "after_id", "hashes"),
    ("/v1/audit", "admin", "after", "entries"),
    ("/v1/export?format=json", "member", "since", "entries"),
]


@pytest.mark.parametrize(("path", "role", "alias", "field"), ALIASES)
def test_an_old_parameter_name_still_reads_as_the_cursor(
    api: Api, listings: dict[str, Listing], path: str, role: str, alias: str, field: str
) -> None:
    api.post("/v1/hashes/approve", {"ids": [api.add(md5())[0]]}, "admin")  # one to export
    first = ok(api.get(with_query(path, limit=1), role))
    by_cursor = ok(api.get(with_query(path, cursor=first["cursor"], limit=1), role))
    by_alias = ok(api.get(with_query(path, **{alias: first["cursor"]}, limit=1), role))
    assert by_alias[field] == by_cursor[field]
    assert (by_alias["cursor"], by_alias["more"]) == (by_cursor["cursor"], by_cursor["more"])


@pytest.mark.parametrize(("path", "role", "alias", "field"), ALIASES)
def test_the_old_name_and_cursor_together_are_refused(
    api: Api, path: str, role: str, alias: str, field: str
) -> None:
    refused(api.get(with_query(path, **{alias: 0}, cursor=0), role), alias)


def test_the_link_keeps_the_filters_and_drops_the_old_name(
    api: Api, listings: dict[str, Listing]
) -> None:
    response = api.get("/v1/review?status=pending&after_id=0&limit=1", "admin")
    link = LINK.match(response.headers["Link"])
    assert link is not None
    sent = urllib.parse.parse_qs(urllib.parse.urlsplit(link["url"]).query)
    assert sent == {"status": ["pending"], "cursor": [str(ok(response)["cursor"])], "limit": ["1"]}


# ---- bad values -------------------------------------------------------------------


def refused(response: TestResponse, field: str) -> None:
    assert response.status_code == 400, response.data
    assert response.mimetype == "application/json"
    error = response.json["error"]  # type: ignore[index]
    assert error["code"] == "invalid_input"
    assert error["details"]["field"] == field


BAD = [
    ("cursor", "-1"),
    ("cursor", str(2**63)),
    ("cursor", "abc"),
    ("cursor", "1.5"),
    ("cursor", ""),
    ("limit", "0"),
    ("limit", "-3"),
    ("limit", "1001"),
    ("limit", str(10**30)),
    ("limit", "many"),
]


@pytest.mark.parametrize(("param", "value"), BAD)
def test_a_bad_cursor_or_limit_is_a_400_naming_it(
    api: Api, listings: dict[str, Listing], param: str, value: str
) -> None:
    for name in LISTINGS:
        listing = listings[name]
        refused(api.get(with_query(listing.path, **{param: value}), listing.role), param)


# ---- the document -----------------------------------------------------------------

LIST_ROUTES = [
    "/v1/hashes",
    "/v1/review",
    "/v1/members",
    "/v1/labels",
    "/v1/incidents",
    "/v1/hashes/{hash_id}/feedback",
    "/v1/hashes/{hash_id}/history",
    "/v1/imports",
    "/v1/audit",
]


def test_the_openapi_document_describes_the_paging_of_every_list(api: Api) -> None:
    doc = api.client.get("/openapi.json").json
    assert doc is not None
    schemas = doc["components"]["schemas"]
    for path in LIST_ROUTES:
        op = doc["paths"][path]["get"]
        params = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
        assert params["cursor"]["schema"]["minimum"] == 0, path
        assert params["limit"]["schema"]["maximum"] >= params["limit"]["schema"]["minimum"] == 1
        assert all(p.get("deprecated") for n, p in params.items() if n in ("after_id", "after"))
        answer = op["responses"]["200"]
        assert set(answer["headers"]) == {"X-Hashdb-Cursor", "X-Hashdb-More", "Link"}, path
        name = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert {"cursor", "more"} <= set(schemas[name]["required"]), path


# ---- paging while rows are added --------------------------------------------------


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    limit=st.integers(1, 4),
    inserts=st.lists(st.integers(0, 3), min_size=1, max_size=6),
    listing=st.sampled_from(["hashes", "incidents"]),
)
def test_rows_added_between_page_reads_never_repeat_or_hide_older_ones(
    api: Api, limit: int, inserts: list[int], listing: str
) -> None:
    def add_hash() -> None:
        api.add(md5())

    def open_incident() -> None:
        assert api.post("/v1/incidents", {"name": "new"}, "admin").status_code == 201

    add: dict[str, tuple[Listing, Callable[[], None]]] = {
        "hashes": (Listing("/v1/hashes", "member", "hashes", "id"), add_hash),
        "incidents": (Listing("/v1/incidents", "admin", "incidents", "id"), open_incident),
    }
    target, insert = add[listing]
    for _ in range(3):
        insert()
    before = [item["id"] for item in whole(api, target)]
    read: list[int] = []
    pages = walk(api, target, limit)
    for body, new in zip(pages, itertools.chain(inserts, itertools.repeat(0)), strict=False):
        read += [item["id"] for item in body[target.field]]
        for _ in range(new):
            insert()
    assert len(read) == len(set(read)), "an item was read twice"
    assert read == sorted(read)
    assert [i for i in read if i <= before[-1]] == before, "an older item was missed"


# ---- the client -------------------------------------------------------------------


def test_the_client_reads_a_whole_list_across_pages(api: Api, listings: dict[str, Listing]) -> None:
    transport = httpx.WSGITransport(app=api.app)
    with Client("http://hashdb.test", api.keys["member"], transport=transport) as client:
        mine = [h.id for h in client.hashes(limit=1)]
        assert mine == [h["id"] for h in whole(api, listings["hashes"])]
        pending = [h.id for h in client.hashes("pending", limit=2)]
        assert pending == [h["id"] for h in whole(api, listings["pending"])]
        names = [label.name for label in client.labels(limit=2)]
        assert names == [label["name"] for label in whole(api, listings["labels"])]
