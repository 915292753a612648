"""`hashdb report`: the transparency report for a period, as Markdown, CSV or JSON.

`--json` prints the JSON rendering (the same as `--format json`).

Who may see which figures is the consortium's rule (`Reports.transparency`): an
admin any member's or the whole consortium's, any other member its own only.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from hashdb.cli.common import OUTPUT, Output, acting, open_db
from hashdb.consortium import reports
from hashdb.errors import InvalidInput

RENDERERS = {
    "md": reports.render_markdown,
    "csv": reports.render_csv,
    "json": reports.render_json,
}


def parse_time(text: str, field: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is read as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"--{field}: expected a date or time like 2024-05-01 or 2024-05-01T12:00+00:00",
            field=field,
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@click.command()
@click.option("--from", "start", required=True, help="Start of the period (ISO 8601, UTC).")
@click.option("--to", "end", required=True, help="End of the period, exclusive.")
@click.option(
    "--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="md", show_default=True
)
@click.option("--member", help="Only this member's figures (default: the whole consortium).")
@click.option("--as", "as_member", help="Member to act as (default: the first admin).")
@OUTPUT
def report(
    start: str, end: str, fmt: str, member: str | None, as_member: str | None, out: Output
) -> None:
    """Print the transparency report for the period [FROM, TO)."""
    db = open_db()
    try:
        actor = acting(db, as_member)
        result = db.reports.transparency(
            actor, parse_time(start, "from"), parse_time(end, "to"), member_name=member
        )
    finally:
        db.close()
    if out.as_json:
        fmt = "json"
    elif out.quiet:
        return
    click.echo(RENDERERS[fmt](result), nl=False)
