"""`hashdb labels ...`: the label taxonomy contributions must use."""

from __future__ import annotations

import click

from hashdb.cli.common import acting_member, emit_json, open_db
from hashdb.consortium import Actor
from hashdb.consortium import labels as taxonomy


@click.group()
def labels() -> None:
    """List and manage the label taxonomy."""


@labels.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_labels(as_json: bool) -> None:
    """Every label, with whether it takes a value and what it means."""
    db = open_db()
    try:
        found = taxonomy.all_labels(db.store.engine)
    finally:
        db.close()
    if as_json:
        emit_json(
            [
                {
                    "name": label.name,
                    "value": label.value_kind.value,
                    "description": label.description,
                    "deprecated": label.deprecated_at is not None,
                }
                for label in found
            ]
        )
        return
    for label in found:
        mark = " (deprecated)" if label.deprecated_at else ""
        click.echo(f"{label.name:<24} {label.value_kind.value:<9} {label.description}{mark}")


@labels.command("add")
@click.argument("name")
@click.option("--description", required=True)
@click.option(
    "--value",
    "value_kind",
    type=click.Choice([k.value for k in taxonomy.ValueKind]),
    default="none",
    show_default=True,
    help="Whether the label takes a `:value` suffix.",
)
@click.option("--as", "as_member", help="Admin to act as (default: the first admin).")
def add_label(name: str, description: str, value_kind: str, as_member: str | None) -> None:
    """Add label NAME to the taxonomy."""
    db = open_db()
    try:
        actor = Actor(acting_member(db, as_member))
        taxonomy.add(db.store.engine, actor, name, description, taxonomy.ValueKind(value_kind))
    finally:
        db.close()
    click.echo(f"label {name} added")
