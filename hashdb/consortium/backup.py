"""Backing up the consortium's database and restoring it, checked end to end.

A backup is a new directory:

    manifest.json        what the backup is, and a checksum of every other file
    database.sqlite3     (SQLite) or database.pgdump (PostgreSQL, pg_dump custom format)
    snapshot/<signal>/   the index snapshots, if the snapshot directory had them

The manifest (`FORMAT`, version `VERSION`) names the hashdb version that wrote it,
the backend, the schema revision, the feed epoch, the change-log head, the audit
head (entry number and hash), the rows of every table, when it was made, and the
size and SHA-256 of every file. Everything it says about the database is read in
the same snapshot as the dump (hashdb/store/backup.py), while the service runs.
The index snapshots are copied *before* the dump, so the change-log position they
reflect is one the dump has reached, and a restored server replays from there (a
snapshot torn by a concurrent save fails its own checksums and is rebuilt).
Backing up writes nothing to the database, so it is not audited: an entry made
after the dump's instant would not be in it.

`restore` refuses, with nothing touched (Conflict or InvalidInput, exit 2): a
database that already has hashdb tables, a file whose size or SHA-256 differs from
the manifest, a missing or unreadable manifest, a backup of the other backend, and
a backup whose schema is newer than this code. After loading the dump it checks
the rows of every table and both heads against the manifest and the audit chain,
puts the index snapshots back (replacing the snapshot directory's per-signal
snapshots, so none from another history survives), and starts a new feed epoch
(`feed.new_epoch`, audited as `feed.epoch` by the acting admin): the restored
database reuses change-log numbers the lost history had used, so followers whose
cursor belongs to it must resync from zero, and serving workers reload. A backup
on an older schema than this code is loaded and checked, and the restore stops
there, naming `hashdb migrate`: the audit check and the new epoch need this
code's schema, and only `hashdb migrate` changes it. So does a restored database
without the admin to act as (`--as`, default its first enabled admin), naming the
commands that remain.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.core import Consortium
from hashdb.consortium.schema import check
from hashdb.errors import Conflict, Forbidden, InvalidInput, NotFound, StorageUnavailable
from hashdb.index.snapshot import reading as snapshots_read
from hashdb.matching.live import hamming_signals
from hashdb.settings import Settings
from hashdb.store import SchemaState, known_revisions
from hashdb.store import backup as copying

FORMAT = "hashdb-backup"
VERSION = 1
MANIFEST = "manifest.json"
SNAPSHOTS = "snapshot"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict[str, Any]


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    manifest: dict[str, Any]
    audit_checked: int  # entries of the audit chain verified (0 when not yet checked)
    epoch: str | None  # the new feed epoch (None when the schema must be migrated first)
    snapshots: tuple[str, ...]  # index snapshots put back
    next_step: str | None  # what the operator must still do, if anything

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "backend": self.manifest["backend"],
            "schema_revision": self.manifest["schema_revision"],
            "previous_epoch": self.manifest["feed_epoch"],
            "epoch": self.epoch,
            "audit_checked": self.audit_checked,
            "counts": self.manifest["counts"],
            "snapshots": list(self.snapshots),
            "next_step": self.next_step,
        }


def _hashdb_version() -> str:
    try:
        return version("hashdb")
    except PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _file_entry(root: Path, path: Path) -> dict[str, Any]:
    return {
        "path": path.relative_to(root).as_posix(),
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


# -- backup ------------------------------------------------------------------------------


def backup(settings: Settings, path: Path) -> BackupResult:
    """Write a backup of the configured database (and its index snapshots) into the
    new directory `path` (an existing empty directory is accepted)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise Conflict(f"{path} already exists and is not an empty directory", path=str(path))
    url = settings.resolved_database_url()
    backend = copying.backend_of(url)
    report = check(settings)
    if report.state not in (SchemaState.CURRENT, SchemaState.BEHIND):
        raise Conflict(f"nothing to back up at {report.database}: {report.advice}")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        snapshots = _copy_snapshots(settings.snapshot_dir, path / SNAPSHOTS)
        dump_file, facts = copying.dump(url, path)
        files = [dump_file, *sorted(p for p in (path / SNAPSHOTS).rglob("*") if p.is_file())]
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "hashdb_version": _hashdb_version(),
            "backend": backend,
            "schema_revision": list(facts.schema_revision),
            "feed_epoch": facts.feed_epoch,
            "change_head": facts.change_head,
            "audit_head": {"seq": facts.audit_head[0], "hash": facts.audit_head[1]},
            "counts": facts.counts,
            "snapshots": list(snapshots),
            "created_at": datetime.now(UTC).isoformat(),
            "files": [_file_entry(path, f) for f in files],
        }
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return BackupResult(path, manifest)


def _copy_snapshots(source: Path | None, target: Path) -> tuple[str, ...]:
    copied: list[str] = []
    if source is None or not source.is_dir():
        return ()
    with snapshots_read(source):  # no save replaces one while it is copied
        for signal in hamming_signals():
            folder = source / signal.name
            if folder.is_dir():
                shutil.copytree(folder, target / signal.name)
                copied.append(signal.name)
    return tuple(copied)


# -- restore -----------------------------------------------------------------------------


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# What each field of a manifest must be, checked before any of it is used.
_SHAPE: dict[str, Callable[[Any], bool]] = {
    "backend": lambda v: v in copying.DUMP_NAMES,
    "schema_revision": _strings,
    "feed_epoch": lambda v: v is None or isinstance(v, str),
    "change_head": _count,
    "audit_head": lambda v: (
        isinstance(v, dict) and _count(v.get("seq")) and isinstance(v.get("hash"), str)
    ),
    "counts": lambda v: isinstance(v, dict) and all(_count(n) for n in v.values()),
    "snapshots": _strings,
    "files": lambda v: isinstance(v, list),
}


def read_manifest(path: Path) -> dict[str, Any]:
    """The backup's manifest, after checking its form and every file's size and
    SHA-256: InvalidInput naming the first fault."""
    where = path / MANIFEST
    if not path.is_dir():
        raise InvalidInput(f"{path} is not a directory holding a hashdb backup", field="path")
    if not where.is_file():
        raise InvalidInput(f"no {MANIFEST} in {path}: not a hashdb backup", field="path")
    try:
        manifest = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{where} cannot be read: {exc}", field="path") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{where} is not a hashdb backup manifest", field="path")
    if manifest.get("version") != VERSION:
        raise InvalidInput(
            f"{where} has backup format version {manifest.get('version')!r}; this hashdb "
            f"reads version {VERSION}",
            field="path",
        )
    wrong = [name for name, ok in _SHAPE.items() if name not in manifest or not ok(manifest[name])]
    if wrong:
        raise InvalidInput(
            f"{where} lacks, or has malformed, {', '.join(wrong)}: not a backup this hashdb "
            "wrote, or an edited one",
            field="path",
        )
    root = path.resolve()
    for item in manifest["files"]:
        _check_file(root, item)
    return manifest


def _check_file(root: Path, item: Any) -> None:
    if not isinstance(item, dict) or not {"path", "bytes", "sha256"} <= item.keys():
        raise InvalidInput(f"a file entry of the manifest is malformed: {item!r}", field="path")
    name = str(item["path"])
    file = (root / name).resolve()
    if not file.is_relative_to(root) or file == root:
        raise InvalidInput(f"the manifest names a file outside the backup: {name}", field="path")
    if not file.is_file():
        raise InvalidInput(f"the backup's file {name} is missing", field="path")
    if file.stat().st_size != item["bytes"] or _sha256(file) != item["sha256"]:
        raise InvalidInput(
            f"the backup's file {name} does not match its checksum in {MANIFEST}: "
            "it was changed or damaged since the backup",
            field="path",
        )


def _dump_file(manifest: dict[str, Any], backend: str) -> str:
    name = copying.DUMP_NAMES[backend]
    if name not in {str(item["path"]) for item in manifest["files"]}:
        raise InvalidInput(f"the manifest does not list the database dump {name}", field="path")
    return name


def restore(
    settings: Settings, path: Path, *, operator: str | None = None, request_id: str | None = None
) -> RestoreResult:
    """Restore the backup at `path` into the configured, empty database (see the
    module docstring); `operator` names the admin the new feed epoch is recorded
    under (default: the first enabled admin of the restored database)."""
    manifest = read_manifest(path)
    url = settings.resolved_database_url()
    backend = copying.backend_of(url)
    if manifest["backend"] != backend:
        raise InvalidInput(
            f"the backup is of a {manifest['backend']} database and HASHDB_DATABASE_URL is "
            f"{backend}: restore it into a {manifest['backend']} database",
            field="path",
        )
    dump_name = _dump_file(manifest, backend)
    report = check(settings)
    known_head = set(report.head)
    backup_revision = set(manifest["schema_revision"])
    if not copying.is_empty(url):
        raise Conflict(
            f"{report.database} already holds a hashdb database: restore only into an "
            "empty database (create a new one, or drop this one first)",
            database=report.database,
        )
    if backup_revision != known_head and not _known(backup_revision):
        raise Conflict(
            f"the backup's schema revision {', '.join(sorted(backup_revision)) or 'none'} is "
            "newer than this hashdb knows: restore it with the hashdb version that made it "
            f"({manifest.get('hashdb_version', 'unknown')}) or newer"
        )
    copying.load(url, path / dump_name)
    _compare(copying.facts(url), manifest)
    snapshots = _restore_snapshots(path / SNAPSHOTS, settings.snapshot_dir, manifest)
    if backup_revision != known_head:
        return RestoreResult(
            path,
            manifest,
            0,
            None,
            snapshots,
            "the restored schema is older than this hashdb: run `hashdb migrate`, then "
            "`hashdb audit verify` and `hashdb feed-epoch --new 'restored from backup'`",
        )
    db = Consortium.open(settings)
    try:
        try:
            actor = Actor(db.members.operator(operator), request_id=request_id)
            require_admin(actor, "check a restored database")
        except (NotFound, Forbidden) as exc:
            return RestoreResult(
                path,
                manifest,
                0,
                None,
                snapshots,
                f"{exc.message}: a new feed epoch needs an admin of the restored database; "
                "run `hashdb init` (it creates one if there is none), then `hashdb audit "
                "verify` and `hashdb feed-epoch --new 'restored from backup'`",
            )
        chain = db.audit.verify(actor)
        if not chain.ok:
            raise StorageUnavailable(
                f"the restored audit chain does not verify at entry {chain.broken_seq}: "
                f"{chain.reason}"
            )
        epoch = db.feed.new_epoch(
            actor, f"restored from the backup of {manifest.get('created_at', 'unknown')}"
        )
    finally:
        db.close()
    return RestoreResult(path, manifest, chain.checked, epoch, snapshots, None)


def _known(revisions: set[str]) -> bool:
    return revisions <= known_revisions()


def _compare(found: copying.Facts, manifest: dict[str, Any]) -> None:
    """StorageUnavailable unless the restored database holds what the manifest says."""
    expected = {str(k): int(v) for k, v in manifest["counts"].items()}
    if found.counts != expected:
        differ = sorted(
            name
            for name in expected.keys() | found.counts.keys()
            if expected.get(name) != found.counts.get(name)
        )
        raise StorageUnavailable(
            f"the restored database's row counts differ from the manifest in: {', '.join(differ)}"
        )
    audit_head = manifest["audit_head"]
    if found.audit_head != (int(audit_head["seq"]), str(audit_head["hash"])):
        raise StorageUnavailable("the restored audit head differs from the manifest's")
    if found.change_head != int(manifest["change_head"]):
        raise StorageUnavailable("the restored change-log head differs from the manifest's")


def _restore_snapshots(
    source: Path, target: Path | None, manifest: dict[str, Any]
) -> tuple[str, ...]:
    """Replace the snapshot directory's per-signal snapshots with the backup's (or
    remove them, when the backup has none: they belong to another history)."""
    if target is None:
        return ()
    restored: list[str] = []
    held = set(manifest.get("snapshots", []))
    for signal in hamming_signals():
        folder = target / signal.name
        if folder.exists():
            shutil.rmtree(folder)
        if signal.name in held and (source / signal.name).is_dir():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source / signal.name, folder)
            restored.append(signal.name)
    return tuple(restored)
