"""`hashdb audit ...`: check the audit chain, print a checkpoint to publish, list entries.

`verify` exits 0 when the chain checks out, 1 when it does not (a finding, named on
stderr), and 2 for a malformed checkpoint or one that cannot be checked with the
configured key (a user error, through the CLI's one exit-code map). Each command
acts as an admin (`--as`, default the first enabled admin), through the
consortium's `Audit`, which signs and checks checkpoints with HASHDB_AUDIT_KEY.
"""

from __future__ import annotations

import sys

import click

from hashdb.cli.common import AS_ADMIN, OUTPUT, Output, acting, open_db
from hashdb.consortium.audit import Checkpoint

# Exit code when the chain does not verify: a finding, not a usage error.
EXIT_BROKEN = 1


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("head")
@AS_ADMIN
@OUTPUT
def head(as_member: str | None, out: Output) -> None:
    """Print the newest entry as a checkpoint line to publish (signed with
    HASHDB_AUDIT_KEY when set); check the log against it later with
    `hashdb audit verify --head`."""
    db = open_db()
    try:
        checkpoint = db.audit.checkpoint(acting(db, as_member))
    finally:
        db.close()
    out.result(
        {
            "checkpoint": str(checkpoint),
            "seq": checkpoint.seq,
            "hash": checkpoint.hash,
            "signed": checkpoint.signature is not None,
        },
        [str(checkpoint)],
    )


@audit.command("verify")
@click.option(
    "--head",
    "published",
    metavar="CHECKPOINT",
    help="A checkpoint printed earlier by `hashdb audit head`: the log must still reach "
    "it with the same hash (catches a rewritten log and a cut tail).",
)
@AS_ADMIN
@OUTPUT
def verify(published: str | None, as_member: str | None, out: Output) -> None:
    """Recompute the hash chain; exit 1 naming the first entry that fails (on stderr,
    even with --quiet; with --json in the result: ok, checked, broken_seq, reason)."""
    against = Checkpoint.parse(published) if published is not None else None
    db = open_db()
    try:
        actor = acting(db, as_member)
        check = db.audit.verify(actor, against=against)
        head = db.audit.head(actor)
    finally:
        db.close()
    result = {
        "ok": check.ok,
        "checked": check.checked,
        "broken_seq": check.broken_seq,
        "reason": check.reason,
        "head": {"seq": head[0], "hash": head[1]},
        "checkpoint_seq": None if against is None else against.seq,
    }
    if not check.ok:
        if out.as_json:
            out.result(result)
        elif check.broken_seq is None:
            out.error(f"audit checkpoint refused: {check.reason}")
        else:
            out.error(f"audit chain broken at entry {check.broken_seq}: {check.reason}")
        sys.exit(EXIT_BROKEN)
    versus = f", matches checkpoint {against.seq}" if against is not None else ""
    out.result(
        result, [f"audit chain intact: {check.checked} entries, head {head[0]} {head[1]}{versus}"]
    )


@audit.command("list")
@click.option("--after", default=0, show_default=True, help="Entries after this number.")
@click.option("--limit", default=100, show_default=True)
@AS_ADMIN
@OUTPUT
def list_entries(after: int, limit: int, as_member: str | None, out: Output) -> None:
    """List audit entries, oldest first."""
    db = open_db()
    try:
        entries = db.audit.read(acting(db, as_member), after=after, limit=limit)
    finally:
        db.close()
    out.result(
        [e.__dict__ for e in entries],
        [
            f"{e.seq:>6}  {e.at.isoformat()}  "
            f"{'service' if e.actor_id is None else f'member {e.actor_id}':<12} "
            f"{e.action:<20} {e.target}"
            for e in entries
        ],
    )
