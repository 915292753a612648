"""`hashdb settings`: show the effective settings, or the table for the README.

The effective settings are printed as JSON with or without `--json` (they always
were); `--markdown` prints the table instead, and cannot be combined with `--json`
(exit 2).
"""

from __future__ import annotations

import click

from hashdb.cli.common import OUTPUT, Output, emit_json
from hashdb.errors import InvalidInput
from hashdb.settings import load_settings, settings_markdown


@click.command()
@click.option("--markdown", is_flag=True, help="Print the documentation table instead.")
@OUTPUT
def settings(markdown: bool, out: Output) -> None:
    """Print every setting with its effective value (from HASHDB_* variables), as JSON."""
    if markdown and out.as_json:
        raise InvalidInput("--markdown and --json cannot be combined", field="--markdown")
    if markdown:
        if not out.quiet:
            click.echo(settings_markdown(), nl=False)
        return
    effective = load_settings().model_dump(mode="json")
    if out.as_json or not out.quiet:
        emit_json(effective)
