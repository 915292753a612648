"""`hashdb backup` and `hashdb restore`: the restore drill, and every refusal.

The drill, on both backends: a consortium is populated (members and keys, images
with stored variants, a video, a digest, an approval, a retirement, feedback, and
the audit entries they leave), backed up, then changed (one more image added, one
retired). A follower syncs those changes from a live feed server. The backup is
restored into a fresh, empty database: the audit chain verifies, every table holds
the manifest's rows, matching finds exactly the backed-up active set (the later
add gone, the later retirement undone), the feed epoch is new, and the follower,
now fed by the restored database, resyncs from zero and holds what it exports.

Refusals exit 2 with a message and touch nothing: a database that is not empty, a
file whose checksum fails, a missing manifest, the other backend, an existing
non-empty PATH. A backup of a schema older than the code restores and says to run
`hashdb migrate`.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from feed_server import FeedServer
from schema_revisions import at_revision, previous_revision
from sqlalchemy import select
from sqlalchemy.engine import make_url

from hashdb.cli import main
from hashdb.client import Client
from hashdb.consortium import Actor, Consortium
from hashdb.consortium.feedback import Kind
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import MD5, PDQ
from hashdb.signals.vpdq import Frame
from hashdb.store import NewHash, NewVideo, Role, SchemaState, Status, Store, schema_status
from hashdb.store.backup import facts, is_empty
from hashdb.store.hashes import NewVariant
from hashdb.store.schema import hashes

LABELS = ("attack_footage",)


def pdq(seed: int) -> bytes:
    return random.Random(seed).randbytes(32)


def image(seed: int) -> NewHash:
    """A contributed image's PDQ row with three stored variants, as uploads make them."""
    variants = tuple(NewVariant(f"crop90_{k}_0", pdq(seed * 1000 + k), 80) for k in range(3))
    return NewHash(PDQ.name, pdq(seed), LABELS, 90, variants=variants)


def video(seed: int) -> NewVideo:
    frames = tuple(Frame(i, float(i), pdq(seed * 100 + i), 90) for i in range(4))
    return NewVideo(frames, 4.0, 1.0, 64, 64, labels=LABELS)


def cli(url: str, *args: str, **env: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"HASHDB_DATABASE_URL": url, **env})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def backend(url: str) -> str:
    return make_url(url).get_backend_name()


def matched(db: Consortium, values: dict[str, bytes]) -> set[str]:
    """Which of the named PDQ values match something in `db`."""
    results = db.matching.match(None, [Query(PDQ, v) for v in values.values()])
    return {name for name, r in zip(values, results, strict=True) if r.matches}


def held(local: Consortium) -> set[tuple[str, str]]:
    """The follower's active rows: (signal type, hex value)."""
    with local.store.engine.connect() as conn:
        rows = conn.execute(
            select(hashes.c.signal_type, hashes.c.value).where(
                hashes.c.status == Status.ACTIVE.value
            )
        ).all()
    return {(str(t), bytes(v).hex()) for t, v in rows}


def exported(db: Consortium, reader: Actor) -> set[tuple[str, str]]:
    return {(e.signal_type, e.value or "") for e in db.feed.snapshot(reader)}


@dataclass
class Central:
    db: Consortium
    admin: Actor
    member: Actor
    reader_key: str
    ids: dict[str, int]


def populate(store: Store) -> Central:
    """Members, keys, contributions (images with variants, a video, a digest), an
    approval, a retirement and feedback: each leaves its audit entry."""
    db = Consortium(Settings(sync_interval=0.0), store)
    admin = Actor(store.members.create("Consortium", Role.ADMIN)[0])
    member = Actor(store.members.create("Platform A", Role.MEMBER)[0])
    reader_key = store.members.create("Platform B", Role.MEMBER)[1].secret
    one, two = db.contributions.add(admin, [image(1), image(2)])
    (pending,) = db.contributions.add(member, [image(4)])
    db.vetting.approve(admin, [pending.id])
    (gone,) = db.contributions.add(admin, [image(6)])
    db.vetting.retire(admin, [gone.id], "contributed in error")
    clip = db.contributions.add_video(
        admin, video(5), [NewHash(MD5.name, random.Random(5).randbytes(16), LABELS)]
    )[0]
    db.feedback.give(member, one.id, Kind.AGREE)
    ids = {"one": one.id, "two": two.id, "four": pending.id, "six": gone.id, "clip": clip.id}
    return Central(db, admin, member, reader_key, ids)


QUERIES = {
    "one": pdq(1),
    "one-crop": pdq(1000),  # a stored variant of image 1
    "two": pdq(2),
    "four": pdq(4),
    "six": pdq(6),
    "seven": pdq(7),
    "clip-frame": pdq(501),
}


@pytest.fixture
def central(store: Store) -> Central:
    return populate(store)


def test_the_restore_drill(
    central: Central,
    db_url: str,
    tmp_path: Path,
    new_database: Callable[[str], str],
    migrated: Callable[[str], str],
) -> None:
    db, admin = central.db, central.admin
    original_epoch = db.feed.epoch(admin)
    folder = tmp_path / "backup"
    code, output = cli(db_url, "backup", str(folder), "--json")
    assert code == 0, output
    manifest = json.loads(output)
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert manifest["backend"] == backend(db_url)
    assert manifest["schema_revision"] == list(schema_status(db_url).head)
    assert manifest["audit_head"]["seq"] == db.audit.head(admin)[0] > 0
    assert manifest["feed_epoch"] == original_epoch
    assert manifest["counts"]["hashes"] == 6  # four images, the video and its digest
    assert manifest["counts"]["hash_variants"] == 12 and manifest["counts"]["video_frames"] == 4
    assert [f["path"] for f in manifest["files"]] == [
        "database.sqlite3" if backend(db_url) == "sqlite" else "database.pgdump"
    ]
    assert matched(db, QUERIES) == {"one", "one-crop", "two", "four", "clip-frame"}

    # Changes after the backup, synced by a follower from a live feed server.
    db.contributions.add(admin, [image(7)])
    db.vetting.retire(admin, [central.ids["two"]], "retired after the backup")
    local_store = Store.open(migrated(f"sqlite:///{tmp_path / 'follower.sqlite3'}"))
    local_store.members.create("Local admin", Role.ADMIN)
    local = Consortium(Settings(sync_interval=0.0), local_store)
    operator = Actor(local.members.operator())
    target = new_database(backend(db_url))
    with FeedServer(db.store) as feed, Client(feed.url, central.reader_key) as source:
        local.sync.pull(operator, source, feed.url, limit=3)
        assert (PDQ.name, pdq(7).hex()) in held(local)
        assert (PDQ.name, pdq(2).hex()) not in held(local)

        code, output = cli(target, "restore", str(folder), "--json")
        assert code == 0, output
        restored_json = json.loads(output)
        listed = {f["path"] for f in manifest["files"]}
        assert {p.name for p in folder.iterdir()} == listed | {"manifest.json"}  # nothing stray
        restored = Consortium.open(Settings(database_url=target, sync_interval=0.0))
        try:
            assert restored_json["audit_checked"] == manifest["audit_head"]["seq"]
            assert restored_json["epoch"] == restored.feed.epoch(admin) != original_epoch
            assert restored_json["next_step"] is None
            check = restored.audit.verify(admin)
            assert check.ok and check.checked == manifest["audit_head"]["seq"] + 1  # feed.epoch
            (last,) = restored.audit.read(admin, after=check.checked - 1)
            assert last.action == "feed.epoch"
            counts = facts(target).counts
            assert counts.pop("audit_log") == manifest["counts"]["audit_log"] + 1
            assert counts == {k: v for k, v in manifest["counts"].items() if k != "audit_log"}
            assert matched(restored, QUERIES) == {"one", "one-crop", "two", "four", "clip-frame"}

            feed.db = restored  # central now serves the restored database
            result = local.sync.pull(operator, source, feed.url, limit=3)
            assert result.resyncs == 1
            assert held(local) == exported(restored, admin)
            assert (PDQ.name, pdq(7).hex()) not in held(local)
            assert (PDQ.name, pdq(2).hex()) in held(local)
            assert matched(local, QUERIES) == {"one", "one-crop", "two", "four", "clip-frame"}
        finally:
            restored.close()
            local.close()


def test_backup_and_restore_carry_the_index_snapshots(
    central: Central, db_url: str, tmp_path: Path, new_database: Callable[[str], str]
) -> None:
    snapshots = tmp_path / "snapshots"
    served = Consortium(Settings(snapshot_dir=snapshots), central.db.store)
    served.matching.load()  # builds the indexes and saves their snapshot
    assert (snapshots / "pdq").is_dir()
    folder = tmp_path / "backup"
    env = {"HASHDB_SNAPSHOT_DIR": str(snapshots)}
    code, output = cli(db_url, "backup", str(folder), "--json", **env)
    assert code == 0, output
    listed = {f["path"] for f in json.loads(output)["files"]}
    assert any(p.startswith("snapshot/pdq/") for p in listed)
    elsewhere = tmp_path / "restored-snapshots"
    (elsewhere / "pdq").mkdir(parents=True)
    (elsewhere / "pdq" / "stale").write_text("another history's snapshot")
    target = new_database(backend(db_url))
    code, output = cli(target, "restore", str(folder), "--json", HASHDB_SNAPSHOT_DIR=str(elsewhere))
    assert code == 0, output
    assert "pdq" in json.loads(output)["snapshots"]
    assert not (elsewhere / "pdq" / "stale").exists()
    assert {p.name for p in (elsewhere / "pdq").iterdir()} == {
        p.name for p in (snapshots / "pdq").iterdir()
    }
    restored = Consortium.open(Settings(database_url=target, snapshot_dir=elsewhere))
    try:
        restored.matching.load()
        assert matched(restored, QUERIES) == {"one", "one-crop", "two", "four", "clip-frame"}
    finally:
        restored.close()


# ---- refusals ------------------------------------------------------------------------


@pytest.fixture
def backed_up(central: Central, db_url: str, tmp_path: Path) -> Path:
    folder = tmp_path / "backup"
    code, output = cli(db_url, "backup", str(folder))
    assert code == 0, output
    return folder


def test_restore_refuses_a_database_that_is_not_empty(backed_up: Path, db_url: str) -> None:
    before = facts(db_url)
    code, output = cli(db_url, "restore", str(backed_up))
    assert code == 2 and "already holds a hashdb database" in output
    assert "restore only into an empty database" in output
    assert facts(db_url) == before


def test_restore_refuses_a_file_that_fails_its_checksum(
    backed_up: Path, db_url: str, new_database: Callable[[str], str]
) -> None:
    (dump,) = (p for p in backed_up.iterdir() if p.name.startswith("database."))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    target = new_database(backend(db_url))
    code, output = cli(target, "restore", str(backed_up))
    assert code == 2, output
    assert f"{dump.name} does not match its checksum" in output
    assert is_empty(target)


def test_restore_refuses_a_folder_without_a_manifest_or_with_a_malformed_one(
    backed_up: Path, db_url: str, new_database: Callable[[str], str]
) -> None:
    manifest = backed_up / "manifest.json"
    good = json.loads(manifest.read_text())
    target = new_database(backend(db_url))
    for edit in ({"counts": "many"}, {"audit_head": {"seq": -1, "hash": "x"}}, {"files": 3}):
        manifest.write_text(json.dumps(good | edit))
        code, output = cli(target, "restore", str(backed_up))
        assert code == 2 and f"malformed, {next(iter(edit))}" in output, output
    manifest.write_text("[]")
    code, output = cli(target, "restore", str(backed_up))
    assert code == 2 and "is not a hashdb backup manifest" in output
    manifest.unlink()
    code, output = cli(target, "restore", str(backed_up))
    assert code == 2 and "no manifest.json" in output and "not a hashdb backup" in output
    assert is_empty(target)


def test_backup_refuses_a_path_that_exists_and_is_not_empty(
    backed_up: Path, db_url: str, tmp_path: Path
) -> None:
    before = sorted(p.name for p in backed_up.iterdir())
    code, output = cli(db_url, "backup", str(backed_up))
    assert code == 2 and "already exists and is not an empty directory" in output
    assert sorted(p.name for p in backed_up.iterdir()) == before
    file = tmp_path / "a-file"
    file.write_text("x")
    assert cli(db_url, "backup", str(file))[0] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(db_url, "backup", str(empty))[0] == 0  # an empty folder is accepted


@pytest.mark.postgres
def test_restore_refuses_a_backup_of_the_other_backend(
    tmp_path: Path, new_database: Callable[[str], str], migrated: Callable[[str], str]
) -> None:
    source = migrated(new_database("sqlite"))
    folder = tmp_path / "backup"
    assert cli(source, "backup", str(folder))[0] == 0
    target = new_database("postgresql")
    code, output = cli(target, "restore", str(folder))
    assert code == 2, output
    assert "the backup is of a sqlite database" in output and "postgresql" in output
    assert is_empty(target)


@pytest.mark.postgres
def test_a_missing_pg_dump_is_named(
    tmp_path: Path,
    new_database: Callable[[str], str],
    migrated: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = migrated(new_database("postgresql"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    code, output = cli(url, "backup", str(tmp_path / "backup"))
    assert code == 3 and "pg_dump not found on PATH" in output
    assert not (tmp_path / "backup").exists()


@pytest.mark.postgres
def test_the_password_goes_to_the_client_tools_in_their_environment_only(
    tmp_path: Path, new_database: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "s3cret-never-shown"  # the test server trusts local connections: any works
    source = make_url(new_database("postgresql")).set(password=password)
    target = make_url(new_database("postgresql")).set(password=password)
    calls: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def recording_run(args: list[str], **kwargs: Any) -> Any:
        calls.append((list(args), dict(kwargs["env"])))
        return real_run(args, **kwargs)

    monkeypatch.setattr("hashdb.store.backup.subprocess.run", recording_run)
    shown = {"source": source.render_as_string(hide_password=False)}
    shown["target"] = target.render_as_string(hide_password=False)
    folder = tmp_path / "backup"
    assert cli(shown["source"], "init")[0] == 0
    done = [cli(shown["source"], "backup", str(folder), "--json")]
    done.append(cli(shown["target"], "restore", str(folder)))
    assert [code for code, _ in done] == [0, 0], done
    assert [Path(args[0]).name for args, _ in calls] == ["pg_dump", "pg_restore"]
    for args, env in calls:
        assert env["PGPASSWORD"] == password
        assert not any(password in arg for arg in args)
    assert not any(password in output for _, output in done)
    assert password not in (folder / "manifest.json").read_text()


# ---- a backup of an older schema ---------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_backup(
    request: pytest.FixtureRequest, tmp_path: Path, new_database: Callable[[str], str]
) -> Iterator[tuple[str, Path]]:
    old = at_revision(new_database(request.param), previous_revision())
    folder = tmp_path / "old-backup"
    code, output = cli(old, "backup", str(folder), "--json")
    assert code == 0, output
    assert json.loads(output)["schema_revision"] == [previous_revision()]
    yield request.param, folder


def test_a_backup_of_an_older_schema_restores_and_names_hashdb_migrate(
    old_backup: tuple[str, Path], new_database: Callable[[str], str]
) -> None:
    kind, folder = old_backup
    target = new_database(kind)
    code, output = cli(target, "restore", str(folder))
    assert code == 0, output
    assert "run `hashdb migrate`" in output and "hashdb feed-epoch --new" in output
    assert schema_status(target).state is SchemaState.BEHIND
    assert cli(target, "migrate")[0] == 0
    assert schema_status(target).state is SchemaState.CURRENT


def test_a_restore_without_an_admin_to_act_as_names_the_steps_left(
    tmp_path: Path, new_database: Callable[[str], str], migrated: Callable[[str], str]
) -> None:
    source = migrated(new_database("sqlite"))  # migrated, never initialised: no admin
    folder = tmp_path / "backup"
    assert cli(source, "backup", str(folder))[0] == 0
    target = new_database("sqlite")
    code, output = cli(target, "restore", str(folder), "--json")
    assert code == 0, output
    done = json.loads(output)
    assert done["epoch"] is None
    assert "no enabled admin" in done["next_step"]
    assert "hashdb feed-epoch --new" in done["next_step"]
    assert cli(target, "init")[0] == 0 and cli(target, "feed-epoch", "--new", "restored")[0] == 0
