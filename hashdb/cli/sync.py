"""`hashdb sync`: keep this hashdb in step with a central one, through its export feed.

Syncing is an admin's use case (`consortium.sync`), audited page by page: the
command acts as the first admin (`hashdb init` creates one), or the one named
with `--as`.
"""

from __future__ import annotations

import click

from hashdb.cli.common import AS_ADMIN, acting, open_db
from hashdb.consortium import sync as feed_sync


@click.command()
@click.option("--from", "url", required=True, help="Base URL of the central hashdb.")
@click.option("--key", required=True, help="API key for the central hashdb.")
@click.option("--limit", default=feed_sync.DEFAULT_PAGE, show_default=True, help="Page size.")
@click.option("--max-pages", type=int, help="Stop after this many pages (default: all).")
@AS_ADMIN
def sync(url: str, key: str, limit: int, max_pages: int | None, as_member: str | None) -> None:
    """Pull the central export feed from where the last sync stopped, and apply it.

    Each page is applied with its cursor in one transaction: an interrupted sync
    resumes where it stopped. Run it from cron (or a loop) to stay current.
    """
    db = open_db()
    try:
        actor = acting(db, as_member)
        feed = feed_sync.HttpFeed(url, key)
        result = db.sync.pull(actor, feed, url, limit=limit, max_pages=max_pages)
    finally:
        db.close()
    click.echo(
        f"synced {result.entries} changes in {result.pages} pages; cursor {result.cursor}; "
        f"{result.live} live, {result.retired} retired, {result.skipped} skipped"
    )
