"""`hashdb members ...`: create, list and revoke members from the command line."""

from __future__ import annotations

from typing import Any

import click

from hashdb.cli.common import emit_json, open_db
from hashdb.consortium import Role


@click.group()
def members() -> None:
    """Manage member organisations and their API keys."""


@members.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), default="member", show_default=True
)
@click.option("--trusted", is_flag=True, help="Trusted flagger: contributions skip vetting.")
def add_member(name: str, role: str, trusted: bool) -> None:
    """Create member NAME and print its API key (shown once)."""
    db = open_db()
    try:
        member, key = db.store.members.create(name, Role(role), trusted=trusted)
    finally:
        db.close()
    click.echo(f"member {member.name} (id {member.id}, role {member.role.value}) created")
    click.echo(f"API key (shown once, keep it safe): {key.secret}")


@members.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_members(as_json: bool) -> None:
    """List members with their roles and live keys."""
    db = open_db()
    try:
        rows: list[dict[str, Any]] = []
        for m in db.store.members.all():
            keys = db.store.members.keys(m.id)
            rows.append(
                {
                    "id": m.id,
                    "name": m.name,
                    "role": m.role.value,
                    "trusted": m.trusted,
                    "disabled": m.disabled_at is not None,
                    "keys": [k.prefix for k in keys if k.revoked_at is None],
                }
            )
    finally:
        db.close()
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        state = "disabled" if r["disabled"] else f"{len(r['keys'])} live key(s)"
        click.echo(f"{r['id']:>4}  {r['name']:<30} {r['role']:<7} {state}")


@members.command("revoke")
@click.argument("name")
def revoke_member(name: str) -> None:
    """Disable member NAME: every one of its keys stops working at once."""
    db = open_db()
    try:
        member = db.store.members.by_name(name)
        db.store.members.disable(member.id)
    finally:
        db.close()
    click.echo(f"member {name} disabled; all its keys revoked")
