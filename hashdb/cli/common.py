"""What every CLI command shares: opening the database, printing results."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import click

from hashdb.consortium import Consortium, Member, Role
from hashdb.settings import load_settings

T = TypeVar("T")

# Exit code when some items of a batch failed (each is reported) and the rest succeeded.
EXIT_PARTIAL = 1

# Batches longer than this show a progress bar on stderr.
PROGRESS_FROM = 20


def open_db() -> Consortium:
    return Consortium.open(load_settings())


def acting_member(db: Consortium, name: str | None) -> Member:
    """The member a command acts as: the one named, or the first admin."""
    if name:
        return db.store.members.by_name(name)
    admins = [m for m in db.store.members.all() if m.role is Role.ADMIN and not m.disabled_at]
    if not admins:
        raise click.UsageError("no admin member exists; run `hashdb init` first")
    return admins[0]


def progress(items: list[T], label: str, enabled: bool) -> Iterator[T]:
    if not enabled or len(items) < PROGRESS_FROM:
        yield from items
        return
    with click.progressbar(items, label=label, file=sys.stderr, show_pos=True) as bar:
        yield from bar


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def any_failed(rows: Iterable[dict[str, Any]]) -> bool:
    return any("error" in r for r in rows)
