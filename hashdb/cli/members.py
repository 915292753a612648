"""`hashdb members ...`: create, list and disable members from the command line.

Each command acts as a member (`--as NAME`, default the first enabled admin) through
the consortium's `Members`, so only an admin may manage members here too, and every
change is in the audit log with that member and the run's `cli-` request id.
"""

from __future__ import annotations

from typing import Any

import click

from hashdb.cli.common import AS_ADMIN, OUTPUT, Output, acting, open_db
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
@AS_ADMIN
@OUTPUT
def add_member(name: str, role: str, trusted: bool, as_member: str | None, out: Output) -> None:
    """Create member NAME and print its API key (shown once; with --json:
    {"id", "name", "role", "trusted", "key"})."""
    db = open_db()
    try:
        member, key = db.members.create(acting(db, as_member), name, Role(role), trusted=trusted)
    finally:
        db.close()
    out.result(
        {
            "id": member.id,
            "name": member.name,
            "role": member.role.value,
            "trusted": member.trusted,
            "key": key.secret,
        },
        [
            f"member {member.name} (id {member.id}, role {member.role.value}) created",
            f"API key (shown once, keep it safe): {key.secret}",
        ],
    )


@members.command("list")
@OUTPUT
@AS_ADMIN
def list_members(as_member: str | None, out: Output) -> None:
    """List members with their roles and live keys."""
    db = open_db()
    try:
        actor = acting(db, as_member)
        rows: list[dict[str, Any]] = []
        for m in db.members.all(actor):
            keys = db.members.keys(actor, m.id)
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
    out.result(
        rows,
        [f"{r['id']:>4}  {r['name']:<30} {r['role']:<7} {_state(r)}" for r in rows],
    )


def _state(row: dict[str, Any]) -> str:
    return "disabled" if row["disabled"] else f"{len(row['keys'])} live key(s)"


@members.command("revoke")
@click.argument("name")
@AS_ADMIN
@OUTPUT
def revoke_member(name: str, as_member: str | None, out: Output) -> None:
    """Disable member NAME: every one of its keys stops working at once."""
    db = open_db()
    try:
        actor = acting(db, as_member)
        member = db.members.by_name(actor, name)
        db.members.disable(actor, member.id)
    finally:
        db.close()
    out.result(
        {"name": name, "id": member.id, "disabled": True},
        [f"member {name} disabled; all its keys revoked"],
    )
