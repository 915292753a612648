"""The service describes itself: OpenAPI document, docs page, health and metrics."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from flask import Flask

from api.openapi import build
from hashdb.settings import Settings

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]


def test_every_registered_route_is_in_the_openapi_document(api: Api) -> None:
    doc = api.client.get("/openapi.json").json
    assert doc is not None
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    for rule in api.app.url_map.iter_rules():
        if rule.rule.startswith("/console"):
            continue  # the web console: HTML for people, not part of the JSON API
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented


def test_an_undocumented_route_fails_the_build() -> None:
    app = Flask(__name__, static_folder=None)
    app.add_url_rule("/secret", "secret", lambda: "")
    with pytest.raises(LookupError, match="/secret"):
        build(app, Settings())


def test_the_document_says_who_may_call_each_operation(api: Api) -> None:
    doc = api.client.get("/openapi.json").json
    assert doc is not None
    match = doc["paths"]["/v1/match"]["post"]
    assert match["security"] == [{"bearer": []}]
    assert "Roles: admin, member." in match["description"]
    assert {"400", "401", "403", "413", "429", "503"} <= set(match["responses"])
    retire = doc["paths"]["/v1/hashes/{hash_id}"]["delete"]
    assert "Roles: admin." in retire["description"]
    assert "security" not in doc["paths"]["/healthz"]["get"]


def test_every_schema_reference_resolves(api: Api) -> None:
    text = api.client.get("/openapi.json").get_data(as_text=True)
    doc = api.client.get("/openapi.json").json
    assert doc is not None
    schemas = doc["components"]["schemas"]
    for ref in set(text.split('"$ref": "')[1:]):
        name = ref.split('"')[0].rsplit("/", 1)[-1]
        assert name in schemas, name


def test_the_docs_page_is_self_contained_html(api: Api) -> None:
    response = api.client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'fetch("openapi.json")' in page
    assert "http://" not in page and "https://" not in page  # no CDN


def test_health_and_readiness(api: Api) -> None:
    assert api.client.get("/healthz").json == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"ready": True, "index_sizes": {"pdq": 0, "phash": 0}, "cursor": 0}


def test_metrics_count_requests_queries_matches_and_index_sizes(api: Api) -> None:
    value = "ab" * 32
    api.add({"signal_type": "pdq", "value": value})
    api.match({"signal_type": "pdq", "value": value}, {"signal_type": "pdq", "value": "00" * 32})
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    for line in (
        'hashdb_http_requests_total{endpoint="matching.match",method="POST",status="200"} 1.0',
        'hashdb_match_queries_total{signal_type="pdq"} 2.0',
        'hashdb_matches_total{signal_type="pdq"} 1.0',
        'hashdb_index_size{signal_type="pdq"} 1.0',
        "hashdb_ready 1.0",
    ):
        assert line in text, line
    assert 'hashdb_http_request_duration_seconds_count{endpoint="matching.match"} 1.0' in text
