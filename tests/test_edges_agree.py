"""Every edge applies the same rules: one use case, offered by the API, the console,
the CLI or bulk import, leaves the same rows, change-log entries and audit entries,
and refuses the same input the same way, whichever edge it came through.

Each case runs through every edge that offers it, over one database per backend,
and compares what the database holds afterwards.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from media_factory import letterboxed
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import func, select

from api.app import create_app
from api.console import register
from api.context import context
from hashdb.cli import main
from hashdb.settings import Settings
from hashdb.store import Role, Store
from hashdb.store.schema import audit_log, changes, hashes, import_jobs, members

SECRET = "test-console-secret-key-0123456789abcdef"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_FLASH = re.compile(r'class="flash[^"]*"[^>]*>(.*?)<', re.S)
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass
class Outcome:
    """What an edge answered: whether it did it, and the message when it refused."""

    ok: bool
    message: str = ""
    status: int = 0  # HTTP status or CLI exit code


@dataclass
class Edges:
    """The API (test client), the console (test client, logged in as the admin) and
    the CLI (CliRunner), all over one database."""

    store: Store
    api: FlaskClient
    console: FlaskClient
    admin_key: str
    cli_env: dict[str, str]
    runner: CliRunner = field(default_factory=CliRunner)

    def http(self, method: str, path: str, **kwargs: Any) -> Outcome:
        headers = {"Authorization": f"Bearer {self.admin_key}", **kwargs.pop("headers", {})}
        response = self.api.open(path, method=method, headers=headers, **kwargs)
        body = response.get_json(silent=True) or {}
        message = body.get("error", {}).get("message", "") if response.status_code >= 400 else ""
        return Outcome(response.status_code < 400, message, response.status_code)

    def form(self, path: str, data: dict[str, str], **kwargs: Any) -> Outcome:
        token = _TOKEN.search(self.console.get("/console/lookup").text)
        assert token, "no CSRF token on the console page"
        response = self.console.post(
            path, data={"csrf_token": token.group(1), **data}, follow_redirects=True, **kwargs
        )
        flashed = " ".join(m.strip() for m in _FLASH.findall(response.text))
        refused = response.status_code >= 400 or 'class="flash error' in response.text
        return Outcome(not refused, flashed, response.status_code)

    def cli(self, *args: str) -> Outcome:
        result = self.runner.invoke(main, list(args), env=self.cli_env)
        return Outcome(result.exit_code == 0, result.output, result.exit_code)

    # what the database holds

    def audit_after(self, seq: int) -> list[Any]:
        with self.store.engine.connect() as conn:
            return list(
                conn.execute(
                    select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq)
                ).mappings()
            )

    def audit_head(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(audit_log.c.seq), 0))).scalar())

    def count(self, table: Any) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar())

    def member_id(self, name: str) -> int:
        return self.store.members.by_name(name).id


@pytest.fixture
def edges(db_url: str, tmp_path: Path) -> Iterator[Edges]:
    settings = Settings(
        database_url=db_url,
        sync_interval=0.0,
        data_dir=tmp_path,
        secret_key=SecretStr(SECRET),
        import_root=tmp_path,
    )
    app = create_app(settings)
    register(app)
    ctx = context(app)
    assert ctx.loader.wait(30), "indexes did not load"
    store = Store.open(db_url)
    admin_key = store.members.create("edge-admin", Role.ADMIN)[1].secret
    console = app.test_client()
    token = _TOKEN.search(console.get("/console/login").text)
    assert token
    console.post("/console/login", data={"key": admin_key, "csrf_token": token.group(1)})
    env = {
        "HASHDB_DATABASE_URL": db_url,
        "HASHDB_DATA_DIR": str(tmp_path),
        "HASHDB_IMPORT_ROOT": str(tmp_path),
    }
    yield Edges(store, app.test_client(), console, admin_key, env)
    store.close()
    ctx.close()


# ---- members and keys ---------------------------------------------------------------

CREATE: dict[str, Callable[[Edges, str], Outcome]] = {
    "api": lambda e, name: e.http("POST", "/v1/members", json={"name": name, "role": "member"}),
    "console": lambda e, name: e.form("/console/members", {"name": name, "role": "member"}),
    "cli": lambda e, name: e.cli("members", "add", name, "--role", "member"),
}


@pytest.mark.parametrize("edge", list(CREATE))
def test_creating_a_member_is_one_audited_change_from_every_edge(edges: Edges, edge: str) -> None:
    before = edges.audit_head()
    assert CREATE[edge](edges, "Platform Z").ok
    member_id = edges.member_id("Platform Z")
    (entry,) = edges.audit_after(before)
    assert (entry["action"], entry["target"]) == ("member.create", f"member:{member_id}")
    assert entry["actor_id"] == edges.member_id("edge-admin")
    assert entry["details"]["role"] == "member"
    assert entry["request_id"] and VALID_REQUEST_ID.fullmatch(entry["request_id"])


@pytest.mark.parametrize("edge", list(CREATE))
def test_a_duplicate_member_name_is_refused_alike_and_changes_nothing(
    edges: Edges, edge: str
) -> None:
    assert CREATE["api"](edges, "Platform Y").ok
    before, rows = edges.audit_head(), edges.count(members)
    refused = CREATE[edge](edges, "Platform Y")
    assert not refused.ok
    assert "already" in refused.message
    assert refused.status in {409, 2} or (edge == "console" and refused.status == 200)
    assert (edges.audit_head(), edges.count(members)) == (before, rows)


DISABLE: dict[str, Callable[[Edges, str], Outcome]] = {
    "console": lambda e, name: e.form(f"/console/members/{e.member_id(name)}/disable", {}),
    "cli": lambda e, name: e.cli("members", "revoke", name),
}


@pytest.mark.parametrize("edge", list(DISABLE))
def test_disabling_a_member_is_audited_from_every_edge(edges: Edges, edge: str) -> None:
    assert CREATE["api"](edges, "Platform X").ok
    before = edges.audit_head()
    assert DISABLE[edge](edges, "Platform X").ok
    assert edges.store.members.by_name("Platform X").disabled_at is not None
    (entry,) = edges.audit_after(before)
    assert entry["target"] == f"member:{edges.member_id('Platform X')}"
    assert entry["action"] == "member.disable"


def _first_key(edges: Edges, name: str) -> tuple[int, int]:
    member_id = edges.member_id(name)
    (key,) = edges.store.members.keys(member_id)
    return member_id, key.id


KEY_ACTIONS: dict[str, dict[str, Callable[[Edges, int, int], Outcome]]] = {
    "key.issue": {
        "api": lambda e, m, k: e.http("POST", f"/v1/members/{m}/keys", json={}),
        "console": lambda e, m, k: e.form(f"/console/members/{m}/keys", {"overlap": "keep"}),
    },
    "key.revoke": {
        "api": lambda e, m, k: e.http("DELETE", f"/v1/members/{m}/keys/{k}"),
        "console": lambda e, m, k: e.form(f"/console/members/{m}/keys/{k}/revoke", {}),
    },
}


@pytest.mark.parametrize(
    ("action", "edge"), [(a, e) for a, by_edge in KEY_ACTIONS.items() for e in by_edge]
)
def test_issuing_and_revoking_keys_are_audited_alike(edges: Edges, action: str, edge: str) -> None:
    assert CREATE["api"](edges, "Platform W").ok
    member_id, key_id = _first_key(edges, "Platform W")
    before = edges.audit_head()
    assert KEY_ACTIONS[action][edge](edges, member_id, key_id).ok
    (entry,) = edges.audit_after(before)
    assert (entry["action"], entry["target"]) == (action, f"member:{member_id}")
    keys = edges.store.members.keys(member_id)
    if action == "key.revoke":
        assert entry["details"]["key_id"] == key_id
        assert keys[0].revoked_at is not None
    else:
        assert len(keys) == 2


# ---- request ids in the audit log ---------------------------------------------------


@pytest.mark.parametrize("sent", ["x" * 150, "id with spaces", "<script>alert(1)</script>"])
@pytest.mark.parametrize("edge", ["api", "console"])
def test_a_hostile_request_id_never_reaches_the_audit_log(
    edges: Edges, edge: str, sent: str
) -> None:
    before = edges.audit_head()
    headers = {"X-Request-Id": sent}
    if edge == "api":
        body = {"name": "Platform V", "role": "member"}
        done = edges.http("POST", "/v1/members", json=body, headers=headers)
    else:
        done = edges.form(
            "/console/members", {"name": "Platform V", "role": "member"}, headers=headers
        )
    assert done.ok and done.status < 500
    (entry,) = edges.audit_after(before)
    assert entry["request_id"] != sent
    assert VALID_REQUEST_ID.fullmatch(entry["request_id"])


# ---- contributions: the label taxonomy ----------------------------------------------


@pytest.fixture
def picture_dir(tmp_path: Path, bridge_picture: Image.Image) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    bridge_picture.save(folder / "bridge.jpg", quality=90)
    return folder


def _upload(path: Path) -> dict[str, Any]:
    return {"file": (io.BytesIO(path.read_bytes()), path.name)}


UNKNOWN_LABEL: dict[str, Callable[[Edges, Path], Outcome]] = {
    "api hashes": lambda e, d: e.http(
        "POST",
        "/v1/hashes",
        json={"hashes": [{"signal_type": "md5", "value": "0" * 32, "labels": ["no_such_label"]}]},
    ),
    "api media": lambda e, d: e.http(
        "POST",
        "/v1/media",
        data={**_upload(d / "bridge.jpg"), "labels": "no_such_label"},
        content_type="multipart/form-data",
    ),
    "cli add": lambda e, d: e.cli("add", str(d / "bridge.jpg"), "--label", "no_such_label"),
    "cli import": lambda e, d: e.cli("import", str(d), "--label", "no_such_label"),
    "api import": lambda e, d: e.http(
        "POST", "/v1/imports", json={"path": d.name, "labels": ["no_such_label"]}
    ),
}


@pytest.mark.parametrize("edge", list(UNKNOWN_LABEL))
def test_an_unknown_label_is_refused_by_every_edge_and_stores_nothing(
    edges: Edges, picture_dir: Path, edge: str
) -> None:
    before = edges.audit_head()
    refused = UNKNOWN_LABEL[edge](edges, picture_dir)
    assert not refused.ok
    assert refused.status in {400, 2}
    assert "no_such_label" in refused.message
    assert edges.count(hashes) == 0
    assert edges.count(changes) == 0
    assert edges.count(import_jobs) == 0
    assert edges.audit_head() == before


# ---- lookups ------------------------------------------------------------------------


def _pdq_matches(edges: Edges, edge: str, query: Path) -> set[tuple[int, str | None]]:
    """(stored id, how it was found) of each PDQ match `edge` answers for `query`."""
    if edge == "api":
        response = edges.api.post(
            "/v1/match/media",
            data=_upload(query),
            headers={"Authorization": f"Bearer {edges.admin_key}"},
            content_type="multipart/form-data",
        )
        assert response.status_code == 200, response.get_json()
        (pdq,) = [r for r in response.get_json()["results"] if r["signal_type"] == "pdq"]
        return {(m["id"], m["variant"]) for m in pdq["matches"]}
    if edge == "console":
        token = _TOKEN.search(edges.console.get("/console/lookup").text)
        assert token
        response = edges.console.post(
            "/console/lookup",
            data={"csrf_token": token.group(1), **_upload(query)},
            content_type="multipart/form-data",
        )
        assert response.status_code == 200
        rows = [r for r in response.text.split('<tr class="match">')[1:] if ">pdq</span>" in r]
        found = set()
        for row in rows:
            match_id = re.search(r">#(\d+)</a>", row)
            how = re.search(r">as ([\w:+]+)", row)
            assert match_id
            found.add((int(match_id.group(1)), how.group(1) if how else None))
        return found
    done = edges.cli("match", str(query), "--json")
    assert done.ok, done.message
    (row,) = json.loads(done.message)
    return {(m["id"], m["variant"]) for m in row["matches"] if m["signal_type"] == "pdq"}


@pytest.mark.parametrize("edge", ["api", "console", "cli"])
def test_a_letterboxed_copy_is_found_alike_through_every_edge(
    edges: Edges, picture_dir: Path, bridge_picture: Image.Image, edge: str
) -> None:
    """Every edge probes an upload the same way: the content region inside the bars
    matches the stored picture, and the answer says so."""
    added = edges.cli("add", str(picture_dir / "bridge.jpg"), "--json")
    assert added.ok, added.message
    (row,) = json.loads(added.message)
    pdq_id = next(a["id"] for a in row["added"] if a["signal_type"] == "pdq")
    query = picture_dir.parent / "letterboxed.png"
    letterboxed(bridge_picture).save(query)
    assert _pdq_matches(edges, edge, query) == {(pdq_id, "content")}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_console_lookups_spend_the_same_rate_budget_as_the_api(db_url: str, tmp_path: Path) -> None:
    settings = Settings(
        database_url=db_url,
        sync_interval=0.0,
        data_dir=tmp_path,
        secret_key=SecretStr(SECRET),
        rate_limit_per_minute=60,
        rate_limit_burst=3,
    )
    app = create_app(settings)
    register(app)
    ctx = context(app)
    try:
        assert ctx.loader.wait(30)
        store = Store.open(db_url)
        key = store.members.create("busy-member", Role.MEMBER)[1].secret
        store.close()
        console = app.test_client()
        token = _TOKEN.search(console.get("/console/login").text)
        assert token
        console.post("/console/login", data={"key": key, "csrf_token": token.group(1)})
        answers = []
        for _ in range(6):
            token = _TOKEN.search(console.get("/console/lookup").text)
            assert token
            answers.append(
                console.post(
                    "/console/lookup", data={"csrf_token": token.group(1), "hashes": "0" * 64}
                )
            )
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429, 429]
        refused = answers[-1]
        assert 'class="flash error"' in refused.text and "rate limit" in refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        api_answer = app.test_client().post(
            "/v1/match",
            json={"queries": [{"signal_type": "pdq", "value": "0" * 64}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert api_answer.status_code == 429
    finally:
        ctx.close()
