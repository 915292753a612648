"""`hashdb settings`: show the effective settings, or the table for the README."""

from __future__ import annotations

import click

from hashdb.cli.common import emit_json
from hashdb.settings import load_settings, settings_markdown


@click.command()
@click.option("--markdown", is_flag=True, help="Print the documentation table instead.")
def settings(markdown: bool) -> None:
    """Print every setting with its effective value (from HASHDB_* variables)."""
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    emit_json(load_settings().model_dump(mode="json"))
