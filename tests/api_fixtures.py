"""Fixtures for the API tests (a pytest plugin: `pytest_plugins = ["api_fixtures"]`).

`api` is a Flask test client over a real database on each backend (through
`db_url`), with three keys (admin, member, ops) and the indexes loaded.
`make_api(**settings)` builds more with other settings (a tiny rate limit, a tiny
upload limit). Images come from ../shared/testdata or are made here with Pillow.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.test import TestResponse

from api.app import create_app
from api.context import context
from hashdb.settings import Settings
from hashdb.store import Role, Store


@dataclass
class Api:
    """A test client with keys for each role, over one database."""

    app: Flask
    client: FlaskClient
    store: Store
    keys: dict[str, str] = field(default_factory=dict)  # role name -> secret

    def auth(self, role: str = "member") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def post(self, path: str, body: Any, role: str = "member") -> TestResponse:
        return self.client.post(path, json=body, headers=self.auth(role))

    def get(self, path: str, role: str = "member") -> TestResponse:
        return self.client.get(path, headers=self.auth(role))

    def delete(self, path: str, role: str = "admin") -> TestResponse:
        return self.client.delete(path, headers=self.auth(role))

    def upload(
        self, path: str, image: bytes, role: str = "member", **fields: str | list[str]
    ) -> TestResponse:
        data: dict[str, Any] = {"file": (io.BytesIO(image), "upload.jpg"), **fields}
        return self.client.post(
            path, data=data, headers=self.auth(role), content_type="multipart/form-data"
        )

    def match(self, *queries: dict[str, Any], role: str = "member") -> list[dict[str, Any]]:
        response = self.post("/v1/match", {"queries": list(queries)}, role)
        assert response.status_code == 200, response.json
        results: list[dict[str, Any]] = response.json["results"]  # type: ignore[index]
        return results

    def add(self, *hashes: dict[str, Any], role: str = "member") -> list[int]:
        response = self.post("/v1/hashes", {"hashes": list(hashes)}, role)
        assert response.status_code == 201, response.json
        return [h["id"] for h in response.json["hashes"]]  # type: ignore[index]


MakeApi = Callable[..., Api]


@pytest.fixture
def make_api(db_url: str) -> Iterator[MakeApi]:
    """Build test APIs over the test database; settings may be overridden."""
    made: list[Flask] = []

    def make(**overrides: Any) -> Api:
        values: dict[str, Any] = {"database_url": db_url, "sync_interval": 0.0}
        settings = Settings(**(values | overrides))
        app = create_app(settings)
        made.append(app)
        ctx = context(app)
        assert ctx.loader.wait(30), "indexes did not load"
        members = ctx.db.store.members
        api = Api(app, app.test_client(), ctx.db.store)
        existing = {m.name: m for m in members.all()}
        for role in Role:
            name = f"test-{role.value}"
            if name in existing:
                api.keys[role.value] = members.issue_key(existing[name].id).secret
            else:
                api.keys[role.value] = members.create(name, role)[1].secret
        return api

    yield make
    for app in made:
        context(app).close()


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api()


# ---- images -----------------------------------------------------------------------


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="session")
def photo(testdata: Path) -> bytes:
    """A 256x256 photo with plenty of detail (PDQ quality 100)."""
    return (testdata / "pdq" / "bridge-mods" / "square-256x256.jpg").read_bytes()


@pytest.fixture(scope="session")
def low_detail_photo(low_detail_picture: Image.Image) -> bytes:
    """A JPEG of `low_detail_picture`: few keypoints, so its upload stores crop windows."""
    buf = io.BytesIO()
    low_detail_picture.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def photo_small(testdata: Path) -> bytes:
    """The same photo shrunk to 128x128: a near-duplicate of `photo`."""
    return (testdata / "pdq" / "bridge-mods" / "square-128x128.jpg").read_bytes()


@pytest.fixture(scope="session")
def photo_rotated(photo: bytes) -> bytes:
    """`photo` turned by 90 degrees: a different PDQ hash, the same picture."""
    return png(Image.open(io.BytesIO(photo)).transpose(Image.Transpose.ROTATE_90))


@pytest.fixture(scope="session")
def other_photo(testdata: Path) -> bytes:
    """An unrelated photo."""
    path = testdata / "pdq" / "reference" / "labelme-subset"
    return sorted(path.glob("*.jpg"))[0].read_bytes()


@pytest.fixture(scope="session")
def flat_image() -> bytes:
    """A single-colour image: PDQ quality 0, too featureless to match on."""
    return png(Image.new("RGB", (64, 64), (200, 30, 30)))


@pytest.fixture(scope="session")
def bomb() -> bytes:
    """A tiny PNG whose header declares 30,000 x 30,000 pixels (a decompression bomb)."""
    width = height = 30_000

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    body = zlib.compress(b"\x00" * (width + 1) * 4)  # a few rows; the rest never comes
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
