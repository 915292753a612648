"""The media sandbox: a hostile upload costs its own request, never the worker.

Unit tests drive `ingest.sandbox.Sandbox` with real child processes and jobs that
misbehave on purpose (abort, allocate past the memory limit, spin past the CPU
limit, sleep past the wall limit, raise typed errors); after each, the same pool
still answers. End-to-end tests send hostile files to a real `hashdb serve`
(gunicorn, 2 workers): a 16-bit RGBA PNG of 10000 x 10000 (under a megabyte,
compressed) and an MPEG-TS clip concatenated with itself (timestamps restart, which
made FFmpeg abort inside the worker before the sandbox), while another member's
ordinary match runs; the hostile ones get a JSON 4xx, the ordinary one its 200,
and gunicorn keeps the same workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from api_server import Server, start_server
from hostile_media import png_16bit_bomb, ts_clip
from media_factory import detailed_image, jpeg

from hashdb.errors import InvalidInput, MediaError, OutsideFailure, UnsupportedMedia
from hashdb.store import Role, Store
from ingest.decode import DEFAULT_MAX_DECODED_BYTES, admit, decode
from ingest.sandbox import JobLimits, Sandbox, image_hashes

LIMITS = JobLimits(memory_mib=128, cpu_seconds=1.0, wall_seconds=20.0)


# ---- jobs (top-level: the child imports them by name) ----


def echo(data: bytes, times: int = 1) -> bytes:
    return data * times


def pid(data: bytes) -> int:
    return os.getpid()


def abort(data: bytes) -> None:
    os.abort()


def allocate(data: bytes, mib: int) -> int:
    return len(bytearray(mib * 1024 * 1024))


def spin(data: bytes) -> None:
    while True:
        pass


def sleep(data: bytes) -> None:
    time.sleep(60)


def refuse(data: bytes) -> None:
    raise InvalidInput("no good", field="file", index=3, extra="kept")


def fail(data: bytes) -> None:
    raise KeyError("a bug")


@pytest.fixture(scope="module")
def pool() -> Iterator[Sandbox]:
    sandbox = Sandbox(2, wait_seconds=30)
    yield sandbox
    sandbox.close()


def still_serves(pool: Sandbox) -> None:
    assert pool.run(LIMITS, "test", echo, b"ab", times=2) == b"abab"


# ---- the pool ----


def test_a_job_runs_in_a_child_and_its_result_comes_back(pool: Sandbox) -> None:
    assert pool.run(LIMITS, "test", pid, b"") != os.getpid()
    big = bytes(range(256)) * 40_000  # 10 MB over the pipe, both ways
    assert pool.run(LIMITS, "test", echo, big) == big


def test_an_abort_costs_only_its_job_and_is_logged_with_the_tag_and_digest(
    pool: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ingest.sandbox")
    with pytest.raises(MediaError, match=r"^the decoder crashed on this file \(SIGABRT\)$"):
        pool.run(LIMITS, "request r-42", abort, b"hostile")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "request r-42" in record.getMessage()
    assert hashlib.sha256(b"hostile").hexdigest() in record.getMessage()
    still_serves(pool)


def test_memory_past_the_limit_is_a_media_error_and_the_child_is_replaced(pool: Sandbox) -> None:
    assert pool.run(LIMITS, "test", allocate, b"", 32) == 32 * 1024 * 1024
    with pytest.raises(MediaError, match=r"^exceeded the media memory limit of 128 MiB$"):
        pool.run(LIMITS, "test", allocate, b"", 512)
    still_serves(pool)


def test_cpu_past_the_limit_kills_the_job(pool: Sandbox) -> None:
    with pytest.raises(MediaError, match=r"^exceeded the CPU limit of 1 s$"):
        pool.run(LIMITS, "test", spin, b"")
    still_serves(pool)


def test_wall_time_past_the_limit_kills_the_job(pool: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(MediaError, match=r"^took longer than 0.5 s$"):
        pool.run(JobLimits(128, 10.0, 0.5), "test", sleep, b"")
    assert time.monotonic() - started < 5
    still_serves(pool)


def test_a_typed_error_comes_back_as_the_same_error(pool: Sandbox) -> None:
    with pytest.raises(InvalidInput) as raised:
        pool.run(LIMITS, "test", refuse, b"")
    error = raised.value
    assert (error.message, error.field, error.index) == ("no good", "file", 3)
    assert error.details == {"field": "file", "index": 3, "extra": "kept"}
    with pytest.raises(UnsupportedMedia, match="not an image"):
        pool.run(LIMITS, "test", image_hashes, b"plain text")
    still_serves(pool)


def test_a_bug_in_a_job_is_a_runtime_error_with_the_childs_traceback(pool: Sandbox) -> None:
    with pytest.raises(RuntimeError, match="KeyError: 'a bug'"):
        pool.run(LIMITS, "test", fail, b"")
    still_serves(pool)


def niceness(data: bytes) -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def test_a_job_can_run_at_a_lower_priority_and_the_next_does_not(pool: Sandbox) -> None:
    normal = pool.run(LIMITS, "test", niceness, b"")
    lower = JobLimits(128, 1.0, 20.0, nice=5)
    assert pool.run(lower, "test", niceness, b"") == min(19, normal + 5)
    assert pool.run(LIMITS, "test", niceness, b"") == normal


def test_a_child_is_reused_then_recycled_after_its_jobs() -> None:
    sandbox = Sandbox(1, wait_seconds=30, recycle_jobs=2)
    try:
        first, second, third = (sandbox.run(LIMITS, "test", pid, b"") for _ in range(3))
    finally:
        sandbox.close()
    assert first == second != third


def test_a_child_that_died_while_idle_is_replaced_not_blamed_on_the_next_file() -> None:
    sandbox = Sandbox(1, wait_seconds=30)
    try:
        idle = sandbox.run(LIMITS, "test", pid, b"")
        os.kill(idle, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{idle}/stat").exists():
            if Path(f"/proc/{idle}/stat").read_text().split()[2] == "Z":
                break
            time.sleep(0.01)
        assert sandbox.run(LIMITS, "test", echo, b"ok") == b"ok"
        assert sandbox.run(LIMITS, "test", pid, b"") != idle
    finally:
        sandbox.close()


def test_a_caller_waits_for_a_free_child_for_so_long_then_gets_503() -> None:
    sandbox = Sandbox(1, wait_seconds=0.3)
    try:
        with ThreadPoolExecutor(1) as running:
            busy = running.submit(sandbox.run, JobLimits(128, 10.0, 3.0), "test", sleep, b"")
            time.sleep(0.5)  # let it borrow the only child
            with pytest.raises(OutsideFailure, match="busy"):
                sandbox.run(LIMITS, "test", echo, b"")
            with pytest.raises(MediaError, match="took longer"):
                busy.result()
        assert sandbox.run(LIMITS, "test", echo, b"ok") == b"ok"
    finally:
        sandbox.close()
    with pytest.raises(OutsideFailure, match="shut down"):
        sandbox.run(LIMITS, "test", echo, b"")


PARENT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from ingest.sandbox import JobLimits, Sandbox
import test_sandbox
if __name__ == "__main__":
    sandbox = Sandbox(1, wait_seconds=60)
    print(sandbox.run(test_sandbox.LIMITS, "test", test_sandbox.pid, b""), flush=True)
    os.kill(os.getpid(), 9)
"""


def test_children_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, str(script), here], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -9, done.stderr
    child = int(done.stdout)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists()


# ---- hostile files ----


def png_rows(width: int, height: int, bit_depth: int, colour_type: int, row: bytes) -> bytes:
    """A PNG whose every row is `row` (filter byte first), deflated cheaply: one row
    compressed with a full flush repeats as is (the stream restarts)."""
    packer = zlib.compressobj(9)
    first = packer.compress(row) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(row) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush()[:-4]  # the final block, without the checksum of two rows
    checksum = 1
    for _ in range(height):
        checksum = zlib.adler32(row, checksum)
    body = first + again * (height - 1) + end + struct.pack(">I", checksum)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    return png_16bit_bomb()


def test_the_png_bomb_is_small_and_refused_from_its_header_quickly(png_bomb: bytes) -> None:
    assert len(png_bomb) < 1_000_000
    started = time.perf_counter()
    with pytest.raises(MediaError, match="HASHDB_MAX_DECODED_BYTES") as raised:
        decode(png_bomb, max_pixels=10**9)
    assert time.perf_counter() - started < 0.1
    assert raised.value.details["decoded_bytes"] == 10_000 * 10_000 * 4
    assert raised.value.details["max_decoded_bytes"] == DEFAULT_MAX_DECODED_BYTES


def test_a_48_megapixel_picture_is_within_the_default_decoded_budget() -> None:
    picture = png_rows(8000, 6000, 8, 2, b"\x00" + b"\x80" * 8000 * 3)  # RGB
    admit(picture, max_pixels=10**8, max_decoded_bytes=DEFAULT_MAX_DECODED_BYTES)
    with pytest.raises(MediaError, match="more than the limit of 100000000"):
        admit(picture, max_pixels=10**8, max_decoded_bytes=100_000_000)


# ---- a real server ----


def worker_pids(server: Server) -> set[int]:
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(p) for p in children}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, migrated: Callable[[str], str]
) -> Iterator[tuple[Server, str]]:
    folder = tmp_path_factory.mktemp("served")
    url = migrated(f"sqlite:///{folder / 'hashdb.sqlite3'}")
    server = start_server(url, folder, workers=2, threads=4)
    store = Store.open(url, migrate_schema=False)
    secret = store.members.create("sandbox-e2e", Role.MEMBER)[1].secret
    store.close()
    yield server, secret
    server.stop()


def upload(server: Server, secret: str, data: bytes, name: str) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/match/media",
        files={"file": (name, data)},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=60,
    )


@pytest.mark.slow
def test_hostile_uploads_get_a_json_answer_while_a_normal_match_goes_through(
    served: tuple[Server, str], png_bomb: bytes
) -> None:
    server, secret = served
    before = worker_pids(server)
    assert len(before) == 2
    clip = ts_clip()
    normal = jpeg(detailed_image(11, 1000))
    go = threading.Event()

    def ordinary() -> requests.Response:
        go.set()
        return upload(server, secret, normal, "photo.jpg")

    with ThreadPoolExecutor(4) as clients:
        member = clients.submit(ordinary)
        go.wait()
        bombs = [clients.submit(upload, server, secret, png_bomb, "bomb.png") for _ in range(2)]
        twice = clients.submit(upload, server, secret, clip + clip, "twice.ts")
        assert member.result().status_code == 200, member.result().text
        for bomb in bombs:
            response = bomb.result()
            assert response.status_code == 422, response.text
            assert "HASHDB_MAX_DECODED_BYTES" in response.json()["error"]["message"]
        # FFmpeg aborted on this file before its timestamps were handled: either
        # way it is answered, in JSON, and costs no worker.
        response = twice.result()
        assert response.status_code in (200, 422), response.text
        assert response.json()
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert worker_pids(server) == before
    assert "Traceback" not in server.output()
