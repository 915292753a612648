"""Property-based: schemathesis drives every operation from /openapi.json.

Whatever it sends (valid or not), the API must never answer 5xx, and every answer
must match the document: a documented status code, the documented content type,
headers and body schema. Runs in-process over a SQLite database, with an admin key
so that every operation is reached, and a bounded number of examples per operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.context import context
from hashdb.settings import Settings
from hashdb.store import Role

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, migrated: Callable[[str], str]
) -> Iterator[Flask]:
    path: Path = tmp_path_factory.mktemp("schemathesis") / "hashdb.sqlite3"
    app = create_app(Settings(database_url=migrated(f"sqlite:///{path}"), max_batch=50))
    assert context(app).loader.wait(30)
    yield app
    context(app).close()


def test_no_operation_answers_5xx_or_breaks_its_documented_schema(app: Flask) -> None:
    # schemathesis's own pytest fixture loader does not run under pytest 9, so each
    # operation gets a hypothesis test of its own here.
    admin = context(app).db.store.members.create("fuzz-admin", Role.ADMIN)[1].secret
    headers = {"Authorization": f"Bearer {admin}"}
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = context(app).openapi["paths"]
    # Every documented operation but /openapi.json itself, which schemathesis skips.
    assert len(operations) == sum(len(methods) for methods in documented.values()) - 1

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def conforms(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        conforms()
