"""`hashdb labels ...`: the label taxonomy contributions must use.

Through the layer (`Consortium.labels`): listing needs no role, adding one is for
admins (Forbidden otherwise, exit code 2), and an unknown label in a contribution
is refused the same way from every door (InvalidInput, exit code 2).
"""

from __future__ import annotations

import click

from hashdb.cli.common import AS_ADMIN, OUTPUT, Output, acting, open_db
from hashdb.consortium.labels import ValueKind


@click.group()
def labels() -> None:
    """List and manage the label taxonomy."""


@labels.command("list")
@OUTPUT
def list_labels(out: Output) -> None:
    """Every label, with whether it takes a value and what it means."""
    db = open_db()
    try:
        found = db.labels.all()
    finally:
        db.close()
    out.result(
        [
            {
                "name": label.name,
                "value": label.value_kind.value,
                "description": label.description,
                "deprecated": label.deprecated_at is not None,
            }
            for label in found
        ],
        [
            f"{label.name:<24} {label.value_kind.value:<9} {label.description}"
            f"{' (deprecated)' if label.deprecated_at else ''}"
            for label in found
        ],
    )


@labels.command("add")
@click.argument("name")
@click.option("--description", required=True)
@click.option(
    "--value",
    "value_kind",
    type=click.Choice([k.value for k in ValueKind]),
    default="none",
    show_default=True,
    help="Whether the label takes a `:value` suffix.",
)
@AS_ADMIN
@OUTPUT
def add_label(
    name: str, description: str, value_kind: str, as_member: str | None, out: Output
) -> None:
    """Add label NAME to the taxonomy."""
    db = open_db()
    try:
        db.labels.add(acting(db, as_member), name, description, ValueKind(value_kind))
    finally:
        db.close()
    out.result(
        {"name": name, "value": value_kind, "description": description}, [f"label {name} added"]
    )
