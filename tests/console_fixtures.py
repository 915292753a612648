"""Fixtures for the console tests (a pytest plugin: `pytest_plugins = ["console_fixtures"]`).

Two ways in:

- `console`: a Flask test client over a real database on each backend (`db_url`),
  with a key per role; fast, for routes, roles and CSRF.
- `console_server` + `browser`: a real server on 127.0.0.1 (a free port, a fresh
  SQLite file, this very module run as a script), and one headless Chromium for the
  whole session, driven by Playwright. Chromium is Debian's (`/usr/bin/chromium`,
  or `HASHDB_CHROMIUM`), never a downloaded build; if it or Playwright is missing
  the browser tests fail, saying how to install them (`scripts/ensure-chromium`).

Screenshots (1280x800) go to `screenshots/` at the repository root (git-ignored).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from pydantic import SecretStr

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize
    from werkzeug.test import TestResponse

    from hashdb.consortium.core import Consortium

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("HASHDB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
SECRET = "test-console-secret-key-0123456789abcdef"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


# ---- test client --------------------------------------------------------------------


@dataclass
class Console:
    """A console test client with a key per role, over one database."""

    app: Flask
    client: FlaskClient
    db: Consortium
    keys: dict[str, str] = field(default_factory=dict)  # role -> secret

    def token(self) -> str:
        found = _TOKEN.search(self.client.get("/console/login").text)
        assert found, "no CSRF token on the login page"
        return found.group(1)

    def login(self, role_or_key: str) -> TestResponse:
        secret = self.keys.get(role_or_key, role_or_key)
        return self.client.post("/console/login", data={"key": secret, "csrf_token": self.token()})

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> TestResponse:
        """POST with the session's CSRF token (read from a page, as a browser would)."""
        page = self.client.get("/console/lookup").text
        found = _TOKEN.search(page)
        assert found
        return self.client.post(path, data={"csrf_token": found.group(1), **(data or {})}, **kwargs)


@pytest.fixture
def console(db_url: str, tmp_path: Path) -> Iterator[Console]:
    from api.app import create_app
    from api.console import register
    from api.context import context
    from hashdb.settings import Settings
    from hashdb.store import Role

    settings = Settings(
        database_url=db_url, sync_interval=0.0, data_dir=tmp_path, secret_key=SecretStr(SECRET)
    )
    app = create_app(settings)
    register(app)
    ctx = context(app)
    assert ctx.loader.wait(30), "indexes did not load"
    made = Console(app, app.test_client(), ctx.db)
    for role in Role:
        made.keys[role.value] = ctx.db.store.members.create(f"test-{role.value}", role)[1].secret
    yield made
    ctx.close()


# ---- a real server ------------------------------------------------------------------


@dataclass
class ConsoleServer:
    url: str
    database_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    keys: dict[str, str] = field(default_factory=dict)  # member name -> secret

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def open_db(self) -> Consortium:
        """The same database, opened in the test process (to seed and to check)."""
        from hashdb.consortium.core import Consortium
        from hashdb.settings import Settings

        return Consortium.open(Settings(database_url=self.database_url, sync_interval=0.0))


def _serve() -> None:
    """Run as a script: the app with its console, on 127.0.0.1:PORT (argv[1])."""
    from werkzeug.serving import make_server

    from api.app import create_app
    from api.console import register
    from hashdb.settings import load_settings

    app = create_app(load_settings())
    register(app)
    server = make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True)
    server.serve_forever()


@pytest.fixture(scope="session")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, migrated: Callable[[str], str]
) -> Iterator[ConsoleServer]:
    from api_server import free_port

    from hashdb.store import Role, Store

    data_dir = tmp_path_factory.mktemp("console")
    database_url = migrated(f"sqlite:///{data_dir / 'hashdb.sqlite3'}")
    store = Store.open(database_url)
    keys = {}
    for name, role in [
        ("Consortium admin", Role.ADMIN),
        ("Platform A", Role.MEMBER),
        ("Platform B", Role.MEMBER),
        ("Ops team", Role.OPS),
    ]:
        keys[name] = store.members.create(name, role)[1].secret
    store.close()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHDB_")}
    env |= {
        "HASHDB_DATABASE_URL": database_url,
        "HASHDB_DATA_DIR": str(data_dir),
        "HASHDB_SYNC_INTERVAL": "0",
        "HASHDB_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    server = ConsoleServer(f"http://127.0.0.1:{port}", database_url, data_dir, process, log, keys)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"console server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{server.url}/readyz", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"console server not ready after 60 s:\n{log.read_text()}")
        time.sleep(0.1)
    yield server
    server.stop()


# ---- the browser --------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Debian Chromium for the session; fails (never skips) without it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the Python package `playwright` is not installed: run `make install` "
            "(it is a dev extra); never `playwright install`, the tests use Debian's Chromium"
        )
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run `scripts/ensure-chromium` (apt-get "
            "install chromium) or point HASHDB_CHROMIUM at a Chromium binary"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


OpenPage = Callable[[], "Page"]


@pytest.fixture
def open_page(browser: Browser, console_server: ConsoleServer) -> Iterator[OpenPage]:
    """`open_page()`: a fresh page with cookies of its own, on the server, 1280x800."""
    contexts: list[BrowserContext] = []

    def make() -> Page:
        context = browser.new_context(viewport=VIEWPORT, base_url=console_server.url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


if __name__ == "__main__":
    _serve()
