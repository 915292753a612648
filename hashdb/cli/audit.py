"""`hashdb audit ...`: check the audit chain, list entries."""

from __future__ import annotations

import sys

import click

from hashdb.cli.common import acting_member, emit_json, open_db
from hashdb.workflow import audit as audit_log
from hashdb.workflow.actor import Actor

# Exit code when the chain does not verify: a finding, not a usage error.
EXIT_BROKEN = 1


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
def verify() -> None:
    """Recompute the hash chain; exit 1 naming the first entry that fails."""
    db = open_db()
    try:
        check = audit_log.verify(db.store.engine)
        head = audit_log.head(db.store.engine)
    finally:
        db.close()
    if not check.ok:
        click.echo(f"audit chain broken at entry {check.broken_seq}: {check.reason}", err=True)
        sys.exit(EXIT_BROKEN)
    click.echo(f"audit chain intact: {check.checked} entries, head {head[0]} {head[1]}")


@audit.command("list")
@click.option("--after", default=0, show_default=True, help="Entries after this number.")
@click.option("--limit", default=100, show_default=True)
@click.option("--as", "as_member", help="Member to act as (default: the first admin).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_entries(after: int, limit: int, as_member: str | None, as_json: bool) -> None:
    """List audit entries, oldest first."""
    db = open_db()
    try:
        entries = audit_log.read(
            db.store.engine, Actor(acting_member(db, as_member)), after=after, limit=limit
        )
    finally:
        db.close()
    if as_json:
        emit_json([e.__dict__ for e in entries])
        return
    for e in entries:
        who = "service" if e.actor_id is None else f"member {e.actor_id}"
        click.echo(f"{e.seq:>6}  {e.at.isoformat()}  {who:<12} {e.action:<20} {e.target}")
