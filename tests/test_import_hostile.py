"""Hostile imports: an archive or folder cannot reach past its bounds, nor crash the import.

Archives are unpacked within HASHDB_IMPORT_MAX_* (bytes actually written, ratio to
the archive's size, members, folder depth) into a work folder that is removed
whatever happens; names and member kinds that could land outside are refused;
encrypted, unreadable or corrupt archives are 4xx. Links in a folder are followed
only while they stay inside the import root: the outside file is never opened
(proved with a FIFO whose writer would be released by any reader). A malformed
manifest is refused before a job exists, so the next start is not blocked.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from media_factory import write_image
from worker_fixtures import run_queued

from api.context import context
from hashdb.cli import main
from hashdb.errors import HashdbError, InvalidInput, MediaError, UnsupportedMedia
from hashdb.signals import SHA256
from hashdb.store import FileState, Role, Store
from ingest.manifest import read_manifest
from ingest.sources import ArchiveLimits, unpack, work_folder

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

MiB = 1 << 20
LIMITS = ArchiveLimits(max_bytes=4 * MiB, max_ratio=1e6, max_entries=50, max_depth=6)
ZEROS = 6 * MiB  # compresses to a few KiB


# ---- hostile archives, built byte by byte --------------------------------------------


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def zip_bomb() -> bytes:
    return zip_bytes({"bomb.bin": bytes(ZEROS)})


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tf:  # type: ignore[call-overload]
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return bytes(out.getvalue())


def tar_link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _patch_headers(data: bytes, local_at: int, central_at: int, value: bytes) -> bytes:
    """Write `value` at the given offsets of every local and central header."""
    out = bytearray(data)
    for signature, at in ((b"PK\x03\x04", local_at), (b"PK\x01\x02", central_at)):
        start = out.find(signature)
        while start >= 0:
            out[start + at : start + at + len(value)] = value
            start = out.find(signature, start + 4)
    return bytes(out)


def encrypted_zip() -> bytes:
    """zipfile cannot write encryption: set flag bit 0 (encrypted) in every header."""
    plain = zip_bytes({"a.png": b"x" * 100}, zipfile.ZIP_STORED)
    return _patch_headers(plain, 6, 8, b"\x01\x00")


def unknown_method_zip() -> bytes:
    """Compression method 99 (AES, as WinZip writes it)."""
    plain = zip_bytes({"a.png": b"x" * 100}, zipfile.ZIP_STORED)
    return _patch_headers(plain, 8, 10, (99).to_bytes(2, "little"))


def bad_crc_zip() -> bytes:
    plain = zip_bytes({"a.png": b"A" * 100}, zipfile.ZIP_STORED)
    return plain.replace(b"A" * 100, b"A" * 99 + b"B")


def corrupt_deflate_zip() -> bytes:
    data = zip_bytes({"a.png": os.urandom(2000) + bytes(2000)})
    start = data.find(b"a.png") + len("a.png")  # the member's compressed bytes follow
    return data[: start + 10] + bytes(reversed(data[start + 10 : start + 60])) + data[start + 60 :]


def duplicate_names_zip() -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns, and writes it anyway
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("a.png", b"first")
            zf.writestr("a.png", b"second")
    return out.getvalue()


def zip_symlink() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        info = zipfile.ZipInfo("link.png")
        info.create_system = 3
        info.external_attr = (0o120777 << 16) | 0
        zf.writestr(info, "/etc/passwd")
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def assert_refused(
    archive: Path, error: type[HashdbError], match: str, limits: ArchiveLimits = LIMITS
) -> None:
    into = archive.parent / "unpacked"
    with pytest.raises(error, match=match):
        unpack(archive, into, limits)
    assert not into.exists()  # whatever it wrote is gone


# ---- unpacking: limits ----------------------------------------------------------------


def test_a_zip_bomb_stops_at_the_byte_limit_and_leaves_nothing(tmp_path: Path) -> None:
    archive = write(tmp_path / "bomb.zip", zip_bomb())
    assert archive.stat().st_size < ZEROS // 100
    assert_refused(archive, MediaError, "HASHDB_IMPORT_MAX_UNPACKED_BYTES")


def test_a_tar_bomb_stops_at_the_byte_limit_and_leaves_nothing(tmp_path: Path) -> None:
    for mode, name in (("w:gz", "bomb.tar.gz"), ("w:bz2", "bomb.tar"), ("w:xz", "bomb.tgz")):
        archive = write(tmp_path / name, tar_bytes([("bomb.bin", bytes(ZEROS))], mode))
        assert_refused(archive, MediaError, "HASHDB_IMPORT_MAX_UNPACKED_BYTES")


def test_the_compression_ratio_is_bounded_below_the_byte_limit(tmp_path: Path) -> None:
    generous = ArchiveLimits(max_bytes=1 << 40, max_ratio=50.0, max_entries=50, max_depth=6)
    for name, data in (
        ("bomb.zip", zip_bomb()),
        ("bomb.tgz", tar_bytes([("bomb.bin", bytes(ZEROS))])),
    ):
        archive = write(tmp_path / name, data)
        assert_refused(archive, MediaError, "HASHDB_IMPORT_MAX_COMPRESSION_RATIO", generous)


def test_member_count_and_depth_are_bounded(tmp_path: Path) -> None:
    many = {f"{n}.png": b"x" for n in range(LIMITS.max_entries + 1)}
    assert_refused(write(tmp_path / "many.zip", zip_bytes(many)), MediaError, "MAX_ENTRIES")
    as_tar = [(name, data) for name, data in many.items()]
    assert_refused(write(tmp_path / "many.tar", tar_bytes(as_tar, "w")), MediaError, "MAX_ENTRIES")
    deep = "/".join(["d"] * LIMITS.max_depth) + "/a.png"
    assert_refused(write(tmp_path / "deep.zip", zip_bytes({deep: b"x"})), InvalidInput, "DEPTH")


def test_an_archive_within_its_limits_unpacks_in_full(tmp_path: Path) -> None:
    members = {"a.png": b"a" * 1000, "sub/dir/b.png": os.urandom(3000)}
    for name, data in (
        ("ok.zip", zip_bytes(members)),
        ("ok.tgz", tar_bytes(list(members.items()))),
        ("ok.tar", tar_bytes(list(members.items()), "w:xz")),
    ):
        folder = unpack(write(tmp_path / name, data), tmp_path / name.replace(".", "-"), LIMITS)
        assert {p: (folder / p).read_bytes() for p in members} == members


# ---- unpacking: names and kinds -------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../escape.png", "a/../../escape.png", "/tmp/escape.png", "..\\escape.png"]
)
def test_zip_slip_and_tar_slip_are_refused(tmp_path: Path, name: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    zipped = write(work / "slip.zip", zip_bytes({"ok.png": b"x", name: b"x"}))
    assert_refused(zipped, InvalidInput, "outside the import folder")
    tarred = write(work / "slip.tgz", tar_bytes([("ok.png", b"x"), (name, b"x")]))
    assert_refused(tarred, InvalidInput, "outside the import folder")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["slip.tgz", "slip.zip", "work"]


def test_a_nul_in_a_member_name_is_refused(tmp_path: Path) -> None:
    data = zip_bytes({"a.pngXsecret": b"x"}).replace(b"a.pngXsecret", b"a.png\x00secret")
    assert_refused(write(tmp_path / "nul.zip", data), InvalidInput, "NUL")


def test_tar_links_to_outside_are_never_extracted(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside.png", b"outside")
    for n, link in enumerate(
        [
            tar_link("soft.png", str(outside), tarfile.SYMTYPE),
            tar_link("soft.png", "../outside.png", tarfile.SYMTYPE),
            tar_link("hard.png", str(outside), tarfile.LNKTYPE),
            tar_link("hard.png", "../outside.png", tarfile.LNKTYPE),
        ]
    ):
        archive = write(tmp_path / f"links{n}.tgz", tar_bytes([("ok.png", b"x"), link]))
        assert_refused(archive, InvalidInput, "is a link")
    assert outside.read_bytes() == b"outside"


def test_tar_devices_and_fifos_and_zip_symlinks_are_refused(tmp_path: Path) -> None:
    for n, kind in enumerate((tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE)):
        special = tarfile.TarInfo("special.png")
        special.type = kind
        archive = write(tmp_path / f"special{n}.tar", tar_bytes([special], "w"))
        assert_refused(archive, InvalidInput, "only files and folders")
    assert_refused(write(tmp_path / "link.zip", zip_symlink()), InvalidInput, "is a link")


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (encrypted_zip, UnsupportedMedia, "encrypted"),
        (unknown_method_zip, UnsupportedMedia, "compression method 99"),
        (bad_crc_zip, MediaError, "CRC"),
        (corrupt_deflate_zip, MediaError, "cannot unpack"),
        (duplicate_names_zip, InvalidInput, "appears twice"),
        (lambda: zip_bytes({"a" * 300 + ".png": b"x"}), InvalidInput, "name too long"),
        (lambda: zip_bomb()[:-30], MediaError, "cannot unpack"),
        (lambda: b"PK\x03\x04 not really a zip", MediaError, "cannot unpack"),
    ],
)
def test_unusual_zips_are_refused_with_a_reason(
    tmp_path: Path, make: Callable[[], bytes], error: type[HashdbError], match: str
) -> None:
    assert_refused(write(tmp_path / "odd.zip", make()), error, match)


def test_a_corrupt_tar_is_refused(tmp_path: Path) -> None:
    good = tar_bytes([("a.png", os.urandom(5000))])
    for n, data in enumerate((good[:-200], good[:100] + bytes(500) + good[600:], b"garbage")):
        assert_refused(write(tmp_path / f"bad{n}.tgz", data), MediaError, "cannot unpack")


def test_work_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    mine = work_folder(tmp_path)
    dead = mine.parent / mine.name.replace(f"-{os.getpid()}-", "-999999999-")
    dead.mkdir()
    (dead / "left.png").write_bytes(b"x")
    foreign = mine.parent / "other_host-1-abc"
    foreign.mkdir()
    again = work_folder(tmp_path)
    assert sorted(p.name for p in mine.parent.iterdir()) == sorted(
        [mine.name, again.name, foreign.name]
    )


# ---- manifests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"path\nimages/a.png\x00.png\n", "line 2: a NUL"),
        (b"path\nimages/\xff.png\n", "UTF-8"),
        (b'path,notes\nimages/a.png,"' + b"x" * 200_000 + b'"\n', "line 2: field larger"),
        (b"path,labels\nimages/a.png,x,unexpected\n", "line 2: more fields"),
        (b"path,path\nimages/a.png,b.png\n", "columns twice"),
        (b'path\n"images/a.png\n', "line 2"),
    ],
)
def test_a_malformed_manifest_is_invalid_input(tmp_path: Path, data: bytes, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        read_manifest(write(tmp_path / "m.csv", data))


# ---- links in a folder ----------------------------------------------------------------


@pytest.fixture
def fifo_outside(tmp_path: Path) -> Iterator[tuple[Path, threading.Event]]:
    """A FIFO outside every import root, and an event set if anyone ever opens it."""
    fifo = tmp_path / "outside" / "secret.png"
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        with fifo.open("wb"):  # blocks until a reader opens the FIFO
            opened.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield fifo, opened
    if not opened.is_set():  # release the writer
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    thread.join(5)


def collection_with_links(root: Path, outside: Path, fifo: Path) -> Path:
    """`root/collection`: an image, a link to it, and links leading out of `root`."""
    folder = root / "collection"
    write_image(folder / "0.png", seed=0)
    (folder / "same.png").symlink_to("0.png")
    secret = write_image(outside / "image.png", seed=1)
    (folder / "outside.png").symlink_to(secret)
    (folder / "fifo.png").symlink_to(fifo)
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "up.png").symlink_to(Path("..") / ".." / "outside" / "image.png")
    return folder


# Links that lead out of the collection. A link to a FIFO is not listed as a file
# (it is not one); a manifest can still name it, and then it must not be opened.
LEAVING = {"outside.png", "passwd.png", "up.png"}
NAMED = [*sorted(LEAVING), "fifo.png", "0.png", "same.png"]


def manifest_naming(path: Path, names: list[str]) -> Path:
    return write(path, ("path\n" + "".join(f"{n}\n" for n in names)).encode())


def _sha256_of(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


# ---- over HTTP ------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def api(make_api: MakeApi, root: Path, tmp_path: Path) -> Api:
    return make_api(
        import_root=root,
        import_workers=1,
        data_dir=tmp_path / "data",
        import_max_unpacked_bytes=4 * MiB,
        import_max_compression_ratio=1e6,  # the byte limit is the one under test here
    )


def wait_done(api: Api, job_id: int) -> dict[str, object]:
    """Run a worker over the queue (the API only queues), then the job: done."""
    run_queued(context(api.app).settings)
    body: dict[str, object] = api.get(f"/v1/imports/{job_id}", "ops").json  # type: ignore[assignment]
    assert body["status"] == "done", body
    return body


def work_left(tmp_path: Path) -> list[str]:
    parent = tmp_path / "data" / "imports"
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


HOSTILE: list[tuple[str, Callable[[], bytes], int, str | None]] = [
    ("bomb.zip", zip_bomb, 422, "HASHDB_IMPORT_MAX_UNPACKED_BYTES"),
    ("bomb.tar.gz", lambda: tar_bytes([("b.bin", bytes(ZEROS))]), 422, "MAX_UNPACKED_BYTES"),
    ("slip.zip", lambda: zip_bytes({"../x.png": b"x"}), 400, None),
    ("slip.tgz", lambda: tar_bytes([("/x.png", b"x")]), 400, None),
    ("link.tgz", lambda: tar_bytes([tar_link("l.png", "/etc/passwd", tarfile.SYMTYPE)]), 400, None),
    ("encrypted.zip", encrypted_zip, 415, None),
    ("method.zip", unknown_method_zip, 415, None),
    ("crc.zip", bad_crc_zip, 422, None),
    ("deflate.zip", corrupt_deflate_zip, 422, None),
    ("twice.zip", duplicate_names_zip, 400, None),
]


@pytest.mark.slow
def test_a_hostile_archive_over_http_is_4xx_quickly_and_leaves_nothing(
    api: Api, root: Path, tmp_path: Path
) -> None:
    for name, make, status, setting in HOSTILE:
        write(root / name, make())
        started = time.monotonic()
        response = api.post("/v1/imports", {"path": name}, "ops")
        assert response.status_code == status, (name, response.json)
        assert time.monotonic() - started < 10, name
        error = response.json["error"]  # type: ignore[index]
        if setting is not None:
            assert setting in error["message"] and setting in error["details"]["setting"]
        assert work_left(tmp_path) == [], name
    assert api.store.imports.recent() == []
    assert not (root.parent / "x.png").exists() and not Path("/x.png").exists()


@pytest.mark.slow
def test_links_out_of_the_import_root_are_failed_over_http(
    api: Api, root: Path, tmp_path: Path, fifo_outside: tuple[Path, threading.Event]
) -> None:
    fifo, opened = fifo_outside
    collection_with_links(root, tmp_path / "outside", fifo)
    manifest_naming(root / "m.csv", NAMED)
    started = api.post("/v1/imports", {"path": "collection", "manifest": "m.csv"}, "ops")
    assert started.status_code == 202, started.json
    done = wait_done(api, started.json["id"])  # type: ignore[index]
    errors = {e["path"]: e["error"] for e in done["errors"]}  # type: ignore[attr-defined]
    assert set(errors) == LEAVING | {"fifo.png"}
    assert all("outside the import root" in reason for reason in errors.values())
    assert (done["done"], done["duplicates"]) == (1, 1)
    assert not opened.is_set()
    secret = _sha256_of(tmp_path / "outside" / "image.png")
    assert api.store.hashes.find_exact(SHA256.name, [secret]) == {}


@pytest.mark.slow
def test_a_manifest_with_a_nul_is_400_and_a_good_one_is_accepted_at_once(
    api: Api, root: Path, tmp_path: Path
) -> None:
    """No job is left behind to block the retry; the archive's work folders (the
    API's, to check and plan it, and the worker's) are removed once the import is
    done."""
    image = write_image(tmp_path / "0.png", seed=0).read_bytes()
    write(root / "collection.zip", zip_bytes({"in/0.png": image, "in/1.png": b"not listed"}))
    write(root / "good.csv", b"path\nin/0.png\n")
    for bad in (b"path\nin/0.png\x00\n", b"path\nin/\xff\xfe.png\n", b"path,x\nin/0.png,1\n"):
        write(root / "bad.csv", bad)
        body = {"path": "collection.zip", "manifest": "bad.csv"}
        refused = api.post("/v1/imports", body, "ops")
        assert refused.status_code == 400, refused.json
        assert refused.json["error"]["details"]["field"] == "manifest"  # type: ignore[index]
    assert api.store.imports.recent() == []
    body = {"path": "collection.zip", "manifest": "good.csv"}
    accepted = api.post("/v1/imports", body, "ops")
    assert accepted.status_code == 202, accepted.json
    done = wait_done(api, accepted.json["id"])  # type: ignore[index]
    assert (done["total"], done["done"]) == (1, 1)
    assert work_left(tmp_path) == []


# ---- on the command line --------------------------------------------------------------


@pytest.mark.slow
def test_the_cli_refuses_a_bomb_with_exit_2_naming_the_setting(
    db_url: str, store: Store, tmp_path: Path
) -> None:
    store.members.create("admin", Role.ADMIN)
    archive = write(tmp_path / "bomb.zip", zip_bomb())
    env = {
        "HASHDB_DATABASE_URL": db_url,
        "HASHDB_DATA_DIR": str(tmp_path / "data"),
        "HASHDB_IMPORT_MAX_UNPACKED_BYTES": str(MiB),
    }
    result = CliRunner().invoke(main, ["import", str(archive)], env=env)
    assert result.exit_code == 2, result.output
    assert "HASHDB_IMPORT_MAX_UNPACKED_BYTES" in result.output
    assert work_left(tmp_path) == []
    assert store.imports.recent() == []


@pytest.mark.slow
def test_the_cli_reads_nothing_outside_the_folder_given(
    db_url: str, store: Store, tmp_path: Path, fifo_outside: tuple[Path, threading.Event]
) -> None:
    store.members.create("admin", Role.ADMIN)
    fifo, opened = fifo_outside
    folder = collection_with_links(tmp_path / "root", tmp_path / "outside", fifo)
    env = {"HASHDB_DATABASE_URL": db_url, "HASHDB_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(main, ["import", str(folder), "--workers", "1", "--json"], env=env)
    assert result.exit_code == 1, result.output  # some files failed
    [job] = store.imports.recent()
    failed = {f.path for f in store.imports.files(job.id, FileState.FAILED)}
    assert failed == LEAVING
    assert not opened.is_set()
