"""What every CLI command shares: opening the database, who it acts as, printing results.

A command acts as a member (`--as NAME`, or the first enabled admin): the use cases
check that member's role, and the audit log records it with a request id of the
form `cli-<32 hex digits>`, so an entry made from the command line says so.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import click

from hashdb.consortium import Actor, Consortium
from hashdb.settings import load_settings

T = TypeVar("T")

# Exit code when some items of a batch failed (each is reported) and the rest succeeded.
EXIT_PARTIAL = 1

# Batches longer than this show a progress bar on stderr.
PROGRESS_FROM = 20

# The option of the commands that manage the consortium (members, keys, audit).
AS_ADMIN = click.option(
    "--as", "as_member", help="Admin member to act as (default: the first enabled admin)."
)


def open_db() -> Consortium:
    return Consortium.open(load_settings())


def acting(db: Consortium, name: str | None) -> Actor:
    """Who a command acts as: the member named, or the first enabled admin (NotFound,
    exit 2, if there is none), with a request id of this run (`cli-<hex>`)."""
    return Actor(db.members.operator(name), request_id=f"cli-{uuid.uuid4().hex}")


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
