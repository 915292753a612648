"""`hashdb sync`: keep this hashdb in step with a central one, through its export feed.

Syncing is an admin's use case (`consortium.sync`), audited page by page: the
command acts as the first admin (`hashdb init` creates one), or the one named
with `--as`. The central's member key comes from `HASHDB_API_KEY` or the file
`HASHDB_API_KEY_FILE` names (hashdb/client.py), never from the command line
(there is no `--key` option). The feed's contract
(cursor, more, epoch) is in hashdb/consortium/export.py; how it is followed, in
hashdb/consortium/sync.py.
"""

from __future__ import annotations

from dataclasses import asdict

import click

from hashdb.cli.common import AS_ADMIN, OUTPUT, Output, acting, open_db
from hashdb.client import Client, api_key
from hashdb.consortium import sync as feed_sync
from hashdb.consortium.export import MAX_LIMIT


@click.command()
@click.option("--from", "url", required=True, help="Base URL of the central hashdb.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=feed_sync.DEFAULT_PAGE,
    show_default=True,
    help="Page size.",
)
@click.option("--max-pages", type=int, help="Stop after this many pages (default: all).")
@AS_ADMIN
@OUTPUT
def sync(url: str, limit: int, max_pages: int | None, as_member: str | None, out: Output) -> None:
    """Pull the central export feed from where the last sync stopped, and apply it.

    Each page is applied with its cursor in one transaction: an interrupted sync
    resumes where it stopped. It reads on while the central says there is more.
    If the central's feed epoch changed (its database was restored or a standby
    promoted), the local copy is forgotten and replayed from the start. Run it
    from cron (or a loop) to stay current.

    The member key for the central comes from HASHDB_API_KEY, or from the file
    HASHDB_API_KEY_FILE names.
    """
    central = Client(url, api_key())
    db = open_db()
    try:
        actor = acting(db, as_member)
        result = db.sync.pull(actor, central, url, limit=limit, max_pages=max_pages)
    finally:
        db.close()
        central.close()
    if result.resyncs:
        out.say(
            "the central's history changed (a restored database): the local copy was "
            "forgotten and replayed from the start"
        )
    out.result(
        asdict(result),
        [
            f"synced {result.entries} changes in {result.pages} pages; cursor {result.cursor}; "
            f"{result.live} live, {result.retired} retired, {result.skipped} skipped"
        ],
    )


@click.command("feed-epoch")
@click.option(
    "--new",
    "reason",
    metavar="REASON",
    help="Start a new epoch (after restoring the database from a backup or promoting a "
    "standby), saying why: every follower then resyncs from the start.",
)
@AS_ADMIN
@OUTPUT
def feed_epoch(reason: str | None, as_member: str | None, out: Output) -> None:
    """Show this database's feed epoch (the id of its history), or start a new one.

    Feed cursors are sequence numbers of the change log, which a restored backup
    or a promoted standby reuses for other changes: start a new epoch right after
    such a restore, so that followers notice and replay the feed from the start.
    """
    db = open_db()
    try:
        actor = acting(db, as_member)
        epoch = db.feed.new_epoch(actor, reason) if reason else db.feed.epoch(actor)
    finally:
        db.close()
    out.result({"epoch": epoch, "new": bool(reason)}, [epoch])
