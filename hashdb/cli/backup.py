"""`hashdb migrate`, `hashdb backup` and `hashdb restore`: the database's lifecycle.

A thin skin over `hashdb.consortium.schema` (the only code that changes the schema)
and `hashdb.consortium.backup` (what a backup holds and how a restore is checked).
`migrate --check` exits with the schema's verdict for scripts: 0 current, 1 behind
(run `hashdb migrate`), 2 ahead or unversioned (migrating cannot fix it).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import click

from hashdb.cli.common import OUTPUT, Output
from hashdb.consortium import backup as backups
from hashdb.consortium import schema
from hashdb.settings import load_settings


def _revisions(found: tuple[str, ...]) -> str:
    return ", ".join(found) or "none"


@click.command()
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing; exit 0 if the schema is current, 1 if behind, 2 if ahead or unversioned.",
)
@OUTPUT
def migrate(check: bool, out: Output) -> None:
    """Upgrade the database's schema to this hashdb's (Alembic), the only command that
    changes it. Back up first (`hashdb backup`)."""
    settings = load_settings()
    if check:
        report = schema.check(settings)
        out.result(report.to_json() | {"verdict": report.verdict.name.lower()}, [report.advice])
        sys.exit(int(report.verdict))
    done = schema.migrate(settings)
    before, after = done.before, done.after
    out.result(
        {"database": after.database, "from": list(before.found), "to": list(after.found)},
        [
            f"migrated {after.database}: {_revisions(before.found)} -> {_revisions(after.found)}"
            if done.changed
            else f"{after.database} is already current ({_revisions(after.found)})"
        ],
    )


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@OUTPUT
def backup(path: Path, out: Output) -> None:
    """Back up the database (and the index snapshots) into the new directory PATH,
    with a manifest of what it holds; safe while the service runs."""
    made = backups.backup(load_settings(), path)
    manifest = made.manifest
    out.result(
        manifest,
        lambda: [
            f"backed up to {made.path}: {manifest['backend']}, schema "
            f"{_revisions(tuple(manifest['schema_revision']))}, change log at "
            f"{manifest['change_head']}, audit at {manifest['audit_head']['seq']}",
            *(
                f"  {f['path']}  {f['bytes']} bytes  sha256 {f['sha256']}"
                for f in manifest["files"]
            ),
        ],
    )


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--as",
    "as_member",
    help="Admin of the restored database the new feed epoch is recorded under "
    "(default: its first enabled admin).",
)
@OUTPUT
def restore(path: Path, as_member: str | None, out: Output) -> None:
    """Restore the backup at PATH into the configured database, which must be empty;
    then check it and start a new feed epoch, so followers resync."""
    done = backups.restore(
        load_settings(), path, operator=as_member, request_id=f"cli-{uuid.uuid4().hex}"
    )

    def text() -> list[str]:
        lines = [
            f"restored {done.path}: audit chain checked ({done.audit_checked} entries), "
            "row counts match the manifest"
            if done.next_step is None
            else f"restored {done.path}: row counts match the manifest"
        ]
        if done.snapshots:
            lines.append(f"index snapshots restored: {', '.join(done.snapshots)}")
        if done.epoch is not None:
            lines.append(f"new feed epoch {done.epoch}: followers resync from zero")
        if done.next_step is not None:
            lines.append(f"next: {done.next_step}")
        return lines

    out.result(done.to_json(), text)
