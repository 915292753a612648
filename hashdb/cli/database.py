"""`hashdb init`, `hashdb add` and `hashdb match`: the database from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from hashdb.budget import check_threshold
from hashdb.cli.common import EXIT_PARTIAL, acting_member, any_failed, emit_json, open_db, progress
from hashdb.cli.inputs import BadArg, HashArg, expand
from hashdb.consortium import Consortium, Member, NewHash, Query, QueryResult
from hashdb.errors import HashdbError, InvalidInput
from hashdb.signals import PDQ, SIGNAL_TYPES
from hashdb.signals.pdq_dihedral import dihedral_variants


@click.command()
@click.option("--admin-name", default="admin", show_default=True, help="Name of the first admin.")
def init(admin_name: str) -> None:
    """Create or upgrade the database; create a first admin and print its key once."""
    db = open_db()
    try:
        new_key = db.store.members.ensure_first_admin(admin_name)
        url = make_url(db.settings.resolved_database_url())
        click.echo(f"database ready: {url.render_as_string(hide_password=True)}")
        if new_key is None:
            click.echo("an admin member already exists; no new key issued")
        else:
            click.echo(f"first admin key (shown once, keep it safe): {new_key.secret}")
    finally:
        db.close()


def _file_error(path: Path, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, HashdbError):
        return {"input": str(path), "error": exc.message, "code": exc.code}
    return {"input": str(path), "error": f"cannot read: {exc}", "code": "io_error"}


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--label", "labels", multiple=True, help="Label for every hash added (repeatable).")
@click.option("--reference", help="Free-text source reference (default: the file name).")
@click.option("--as", "as_member", help="Member to add as (default: the first admin).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def add(
    inputs: tuple[str, ...],
    labels: tuple[str, ...],
    reference: str | None,
    as_member: str | None,
    as_json: bool,
) -> None:
    """Add image files, folders or hashes (TYPE:HEX) to the database, active at once."""
    from ingest.records import image_contributions, usable_perceptual

    db = open_db()
    try:
        member = acting_member(db, as_member)
        rows: list[dict[str, Any]] = []
        for item in progress(list(expand(inputs)), "adding", not as_json):
            if isinstance(item, BadArg):
                rows.append({"input": item.text, "error": item.message})
                continue
            if isinstance(item, HashArg):
                new = [NewHash(item.signal_type.name, item.value, labels, None, reference)]
                rows.append(_added(db, member, item.text, new))
                continue
            try:
                h, items = image_contributions(item.read_bytes(), labels, reference or item.name)
            except (HashdbError, OSError) as exc:
                rows.append(_file_error(item, exc))
                continue
            row = _added(db, member, str(item), items)
            if not usable_perceptual(h):
                row["warning"] = f"pdq quality {h.pdq_quality} < 50: only digests added"
            rows.append(row)
        _print_added(rows, as_json)
    finally:
        db.close()
    if any_failed(rows):
        sys.exit(EXIT_PARTIAL)


def _added(db: Consortium, member: Member, name: str, items: list[NewHash]) -> dict[str, Any]:
    try:
        results = db.contributions.add(member, items)
    except InvalidInput as exc:
        return {"input": name, "error": exc.message}
    return {
        "input": name,
        "added": [
            {"signal_type": i.signal_type, "id": r.id, "new": r.created}
            for i, r in zip(items, results, strict=True)
        ],
    }


def _print_added(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        if "error" in row:
            click.echo(f"{row['input']}: error: {row['error']}", err=True)
            continue
        parts = [
            f"{a['signal_type']}#{a['id']}{'' if a['new'] else ' (already)'}" for a in row["added"]
        ]
        click.echo(f"{row['input']}: " + ", ".join(parts))
        if "warning" in row:
            click.echo(f"  warning: {row['warning']}", err=True)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--threshold", type=click.IntRange(0, 128), help="PDQ distance threshold (default 31)."
)
@click.option("--dihedral", is_flag=True, help="Also try the 8 rotations/flips of each image.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def match(inputs: tuple[str, ...], threshold: int | None, dihedral: bool, as_json: bool) -> None:
    """Match image files, folders or hashes (TYPE:HEX) against the database."""
    from ingest.image import hash_image_file
    from ingest.records import queries

    db = open_db()
    try:
        check_threshold(db.settings, PDQ, threshold, "--threshold")
        rows: list[dict[str, Any]] = []
        for item in progress(list(expand(inputs)), "matching", not as_json):
            if isinstance(item, BadArg):
                rows.append({"input": item.text, "error": item.message})
                continue
            if isinstance(item, HashArg):
                is_pdq = item.signal_type is PDQ
                variants = dihedral_variants(item.value) if is_pdq and dihedral else ()
                qs = [
                    Query(
                        item.signal_type, item.value, threshold if is_pdq else None, None, variants
                    )
                ]
                rows.append(_matched(item.text, db.matching.match(qs)))
                continue
            try:
                h = hash_image_file(item, dihedral=dihedral)
            except (HashdbError, OSError) as exc:
                rows.append(_file_error(item, exc))
                continue
            rows.append(_matched(str(item), db.matching.match(queries(h, pdq_threshold=threshold))))
        _print_matched(rows, as_json)
    finally:
        db.close()
    if any_failed(rows):
        sys.exit(EXIT_PARTIAL)


def _matched(name: str, results: list[QueryResult]) -> dict[str, Any]:
    matches = []
    for result in results:
        for m in result.matches:
            signal = SIGNAL_TYPES[m.record.signal_type]
            matches.append(
                {
                    "id": m.record.id,
                    "signal_type": signal.name,
                    "value": signal.format(m.record.value),
                    "distance": m.distance,
                    "variant": m.variant,
                    "labels": list(m.record.labels),
                    "reference": m.record.reference,
                }
            )
    low = [r.query.signal_type.name for r in results if r.low_quality]
    row: dict[str, Any] = {"input": name, "matches": matches}
    if low:
        row["low_quality"] = low
    return row


def _print_matched(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        if "error" in row:
            click.echo(f"{row['input']}: error: {row['error']}", err=True)
            continue
        note = " (low quality: perceptual hashes not matched)" if row.get("low_quality") else ""
        click.echo(f"{row['input']}: {len(row['matches'])} match(es){note}")
        for m in row["matches"]:
            how = f" via {m['variant']}" if m["variant"] else ""
            labels = ",".join(m["labels"]) or "-"
            click.echo(
                f"  {m['signal_type']}#{m['id']} distance {m['distance']}{how} labels {labels}"
                f" ({m['reference'] or 'no reference'})"
            )
