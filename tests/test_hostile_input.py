"""Hostile uploads against the real server: never a 5xx, never a dead worker.

One `hashdb serve` (gunicorn, 2 workers x 4 threads, SQLite) runs for the whole
module. Every item of the hostile corpus (`hostile_media.corpus()`: restarted
timestamps, a resolution switch, decompression bombs, a 10,000-frame GIF, cut
files of every supported type, files that are not what their name says, absurd
container headers) is sent to `POST /v1/match/media` and to `POST /v1/media`
(contribution), and so are mutations of small valid files drawn by hypothesis
(byte flips, truncations, duplicated chunks, insertions). After each upload:

- the answer is a success (the file was acceptable) or a 4xx with the one JSON
  error body (`code`, `message`, `details`); never a 5xx;
- `/healthz` answers within `HEALTH_WITHIN` seconds;
- the gunicorn workers are the ones the server started with (none was killed),
  found as the server process's children in /proc.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from api_server import Server, member_key, start_server
from hostile_media import Item, corpus, mp4_clip, ts_clip, valid_images
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

ENDPOINTS = ("/v1/match/media", "/v1/media")
HEALTH_WITHIN = 5.0  # seconds for /healthz, right after a hostile upload
UPLOAD_WITHIN = 120.0  # seconds for one upload's answer, whatever it is


@dataclass(frozen=True)
class Api:
    server: Server
    key: str
    workers: frozenset[int]  # gunicorn worker pids at start

    def upload(self, endpoint: str, filename: str, data: bytes) -> requests.Response:
        return requests.post(
            self.server.url + endpoint,
            files={"file": (filename, data)},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=UPLOAD_WITHIN,
        )


def worker_pids(server: Server) -> frozenset[int]:
    """The gunicorn workers: the server process's children (not their own children)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        if int(text[text.rindex(")") + 2 :].split()[1]) == server.process.pid:
            children.add(int(stat.parent.name))
    return frozenset(children)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, migrated: Callable[[str], str]) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("hostile")
    url = migrated(f"sqlite:///{folder / 'hashdb.sqlite3'}")
    key = member_key(url, "hostile-uploader")
    server = start_server(
        url, folder, workers=2, threads=4, rate_limit_per_minute=0, max_upload_bytes=4 << 20
    )
    try:
        workers = worker_pids(server)
        assert len(workers) == 2, server.output()
        yield Api(server, key, workers)
    finally:
        server.stop()


def check_survives(api: Api, endpoint: str, filename: str, data: bytes) -> None:
    """Upload, then assert the answer's shape, the server's health and its workers."""
    response = api.upload(endpoint, filename, data)
    where = f"{endpoint} {filename} ({len(data)} bytes)"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        assert response.status_code < 500
        body = response.json()
        assert set(body["error"]) == {"code", "message", "details"}, where
    else:
        assert response.status_code in (200, 201), where
    health = requests.get(api.server.url + "/healthz", timeout=HEALTH_WITHIN)
    assert health.status_code == 200, where
    assert health.elapsed.total_seconds() < HEALTH_WITHIN, where
    assert worker_pids(api.server) == api.workers, f"{where}: a worker died\n{api.server.output()}"


@pytest.fixture(scope="session")
def hostile_corpus() -> dict[str, Item]:
    return {item.name: item for item in corpus()}


# The names, for test ids; the bytes come from the session fixture.
CORPUS_NAMES = [
    "ts-restarted-timestamps",
    "ts-resolution-switch",
    "mkv-absurd-duration-and-size",
    "png-16bit-bomb",
    "png-ztxt-bomb",
    "png-iccp-bomb",
    "gif-10000-frames",
    *(
        f"truncated-{suffix}-1/{share}"
        for suffix in ("jpg", "png", "gif", "webp", "bmp", "tiff", "mp4", "ts")
        for share in (2, 4)
    ),
    "pdf-named-jpg",
    "elf-named-jpg",
    "text-named-jpg",
]


def test_the_corpus_names_every_item(hostile_corpus: dict[str, Item]) -> None:
    assert sorted(hostile_corpus) == sorted(CORPUS_NAMES)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_a_hostile_upload_is_answered_without_harm(
    api: Api, hostile_corpus: dict[str, Item], name: str, endpoint: str
) -> None:
    item = hostile_corpus[name]
    check_survives(api, endpoint, item.filename, item.data)


def test_restarted_timestamps_match_as_the_whole_video(
    api: Api, hostile_corpus: dict[str, Item]
) -> None:
    """The careless re-mux is hashed end to end: 4 s of video, every frame, complete."""
    item = hostile_corpus["ts-restarted-timestamps"]
    response = api.upload("/v1/match/media", item.filename, item.data)
    assert response.status_code == 200, response.text
    hashes = response.json()["hashes"]
    assert hashes["complete"] is True, hashes
    assert hashes["duration"] == pytest.approx(4.0, abs=0.05)


# --- fuzzing: small valid files, mutated ------------------------------------------------


@pytest.fixture(scope="session")
def originals() -> dict[str, bytes]:
    """Small valid files, by suffix: one of each image format and two videos."""
    return {**valid_images(), "mp4": mp4_clip(frames=10), "ts": ts_clip(seconds=1)}


# A mutation is (kind, where, size, byte), positions as fractions of the length.
Mutation = tuple[str, float, int, int]
mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "duplicate", "insert"]),
        st.floats(0, 1, exclude_max=True),
        st.integers(1, 512),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, changes: list[Mutation]) -> bytes:
    out = bytearray(data)
    for kind, where, size, value in changes:
        at = int(where * len(out))
        if kind == "flip":  # xor `size` bytes from `at` with `value` (at least one bit)
            for k in range(at, min(at + size, len(out))):
                out[k] ^= value or 1
        elif kind == "truncate":
            del out[max(at, 1) :]
        elif kind == "duplicate":  # the `size` bytes at `at`, twice
            out[at:at] = out[at : at + size]
        else:
            out[at:at] = bytes([value]) * size
    return bytes(out)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    suffix=st.sampled_from(["jpg", "png", "gif", "webp", "bmp", "tiff", "mp4", "ts"]),
    changes=mutations,
    endpoint=st.sampled_from(ENDPOINTS),
)
def test_mutated_files_are_answered_without_harm(
    api: Api, originals: dict[str, bytes], suffix: str, changes: list[Mutation], endpoint: str
) -> None:
    check_survives(api, endpoint, f"fuzzed.{suffix}", mutate(originals[suffix], changes))


def test_the_originals_are_accepted(api: Api, originals: dict[str, bytes]) -> None:
    """The fuzz seeds themselves hash: the mutations are what the server refuses."""
    for suffix, data in originals.items():
        response = api.upload("/v1/match/media", f"original.{suffix}", data)
        assert response.status_code == 200, f"{suffix}: {response.text[:300]}"
