"""The `hashdb` command: a thin click skin over the library.

Errors become exit codes here and nowhere else: 0 success, 1 some inputs of a
batch failed (each reported), 2 user error (bad input, unknown member, ...),
3 outside failure (database unreachable). The CLI is the composition root of the
project: it is the one place in `hashdb` allowed to reach up into `ingest` (to
hash files) and `api` (to serve), and it does so inside the commands, never at
import time.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from hashdb.errors import HashdbError


class _Group(click.Group):
    """Renders every HashdbError as one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HashdbError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group)
@click.version_option(package_name="hashdb")
def main() -> None:
    """hashdb: a perceptual-hash sharing service for a consortium of platforms.

    Settings come from HASHDB_* environment variables (see `hashdb settings`).
    """


def _register() -> None:
    from hashdb.cli import database, hashing, imports, members, serve, settings_cmd

    main.add_command(database.init)
    main.add_command(database.add)
    main.add_command(database.match)
    main.add_command(hashing.hash_files)
    main.add_command(imports.import_collection)
    main.add_command(members.members)
    main.add_command(settings_cmd.settings)
    main.add_command(serve.serve)
    from hashdb.cli import audit, labels, remote, report, sync

    main.add_command(audit.audit)
    main.add_command(labels.labels)
    main.add_command(report.report)
    main.add_command(sync.sync)
    main.add_command(sync.feed_epoch)
    main.add_command(remote.remote)
    from hashdb.cli import worker

    main.add_command(worker.worker)
    from hashdb.cli import backup

    main.add_command(backup.migrate)
    main.add_command(backup.backup)
    main.add_command(backup.restore)


_register()
