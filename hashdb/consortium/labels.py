"""The label taxonomy: which labels a hash may carry, held in the database.

A label is written `name` or `name:value`. Each taxonomy entry says whether it
takes a value (`value_kind`): `terrorist_entity` takes an optional entity name,
`crisis_incident` requires an incident id, most take none. Contributions must use
known, non-deprecated labels; unknown ones are refused (InvalidInput naming them)
by `check`, which `Contributions` runs for every edge that adds hashes.
Admins add labels and edit or deprecate them; a label is never deleted, because
stored hashes keep naming it.

The defaults below are seeded the first time the taxonomy is read from an empty
table (a fresh database, or one emptied by a test harness), in the transaction that
reads it; seeding inserts only missing names, so concurrent first readers agree.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.paging import DEFAULT_LIMIT, Page, check_page, page_by_position
from hashdb.errors import Conflict, InvalidInput, NotFound
from hashdb.store.clock import now, utc
from hashdb.store.schema import labels

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

INCIDENT_LABEL = "crisis_incident"
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_VALUE_CHARS = 200


class ValueKind(enum.StrEnum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


DEFAULT_LABELS: tuple[tuple[str, ValueKind, str], ...] = (
    (
        "terrorist_entity",
        ValueKind.OPTIONAL,
        "Content produced by or supporting a designated terrorist entity; the value "
        "names the entity (`terrorist_entity:<name>`).",
    ),
    ("attack_footage", ValueKind.NONE, "Footage of a real terrorist attack."),
    ("glorification", ValueKind.NONE, "Glorifies terrorist acts or their perpetrators."),
    (
        "recruitment_instruction",
        ValueKind.NONE,
        "Recruits for, or instructs in, terrorist activity (weapons, tactics).",
    ),
    ("imminent_threat", ValueKind.NONE, "Credible threat of imminent violence."),
    ("manifesto", ValueKind.NONE, "A manifesto of an attacker."),
    (
        INCIDENT_LABEL,
        ValueKind.REQUIRED,
        "Contributed during a crisis incident; the value is the incident id "
        "(`crisis_incident:<id>`). Tagging with an open incident fast-tracks the hash.",
    ),
)


@dataclass(frozen=True)
class Label:
    name: str
    description: str
    value_kind: ValueKind
    created_at: datetime
    deprecated_at: datetime | None


@dataclass(frozen=True)
class LabelRef:
    """One label as written on a hash, split into taxonomy name and value."""

    name: str
    value: str | None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


def _label(row: RowMapping) -> Label:
    return Label(
        name=row["name"],
        description=row["description"],
        value_kind=ValueKind(row["value_kind"]),
        created_at=utc(row["created_at"]),
        deprecated_at=utc(row["deprecated_at"]) if row["deprecated_at"] else None,
    )


def split(text: str) -> LabelRef:
    name, sep, value = text.partition(":")
    return LabelRef(name, value if sep else None)


def seed_defaults(conn: Connection) -> None:
    """Insert the default labels that are missing (no-op for names already there)."""
    at = now()
    rows = [
        {"name": n, "description": d, "value_kind": k.value, "created_at": at}
        for n, k, d in DEFAULT_LABELS
    ]
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(labels).values(rows).on_conflict_do_nothing())
    else:
        conn.execute(sqlite.insert(labels).values(rows).on_conflict_do_nothing())


def taxonomy_in(conn: Connection) -> dict[str, Label]:
    """Every label by name, seeding the defaults into an empty table first."""
    if not conn.execute(select(func.count()).select_from(labels)).scalar_one():
        seed_defaults(conn)
    rows = conn.execute(select(labels).order_by(labels.c.name)).mappings()
    return {r["name"]: _label(r) for r in rows}


def check(
    conn: Connection, items: Sequence[Sequence[str]], field: str = "labels"
) -> list[tuple[LabelRef, ...]]:
    """Parse the labels of each item of a batch against the taxonomy.

    InvalidInput (naming the field, the item's index and every unknown label) for
    an unknown or deprecated label, a value on a label that takes none, a missing
    required value, or a malformed value.
    """
    known = taxonomy_in(conn)
    out: list[tuple[LabelRef, ...]] = []
    for i, texts in enumerate(items):
        refs = tuple(split(t) for t in texts)
        unknown = [str(r) for r in refs if r.name not in known]
        if unknown:
            raise InvalidInput(
                f"unknown label(s): {', '.join(unknown)}", field=field, index=i, unknown=unknown
            )
        for r in refs:
            entry = known[r.name]
            if entry.deprecated_at is not None:
                raise InvalidInput(
                    f"label {r.name} is deprecated", field=field, index=i, unknown=[str(r)]
                )
            if entry.value_kind is ValueKind.NONE and r.value is not None:
                raise InvalidInput(f"label {r.name} takes no value", field=field, index=i)
            if entry.value_kind is ValueKind.REQUIRED and not r.value:
                raise InvalidInput(
                    f"label {r.name} needs a value: {r.name}:<value>", field=field, index=i
                )
            if r.value is not None and not 0 < len(r.value) <= MAX_VALUE_CHARS:
                raise InvalidInput(
                    f"label value must be 1-{MAX_VALUE_CHARS} characters", field=field, index=i
                )
        out.append(refs)
    return out


class Labels:
    """The taxonomy: everyone reads it, admins manage it."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def all(self) -> list[Label]:
        """Every label, by name (deprecated ones too: stored hashes name them)."""
        with self._ctx.store.engine.begin() as conn:  # an empty table is seeded
            return list(taxonomy_in(conn).values())

    def page(self, *, after: int = 0, limit: int = DEFAULT_LIMIT) -> Page[Label]:
        """The taxonomy in creation order (then by name, for the seeded defaults), a
        page at a time; the cursor is a position (the first label is 1). Labels are
        never deleted and a new one is created after all the others, so a position
        keeps naming the same label while labels are added."""
        check_page(after, limit)
        with self._ctx.store.engine.begin() as conn:  # an empty table is seeded
            taxonomy_in(conn)
            rows = conn.execute(
                select(labels).order_by(labels.c.created_at, labels.c.name)
            ).mappings()
            found = [_label(r) for r in rows]
        return page_by_position(found, after, limit)

    def add(self, actor: Actor, name: str, description: str, value_kind: ValueKind) -> Label:
        """A new label (admins only); Conflict if the name exists."""
        require_admin(actor, "manage labels")
        if not NAME.fullmatch(name):
            raise InvalidInput(
                "label name must be 1-64 characters: a-z first, then a-z, 0-9 or _", field="name"
            )
        if not description.strip():
            raise InvalidInput("a label needs a description", field="description")
        with self._ctx.store.engine.begin() as conn:
            if name in taxonomy_in(conn):
                raise Conflict(f"label {name} already exists", field="name")
            conn.execute(
                insert(labels).values(
                    name=name,
                    description=description.strip(),
                    value_kind=value_kind.value,
                    created_at=now(),
                )
            )
            audit.append(
                conn, actor, "label.add", f"label:{name}", {"value_kind": value_kind.value}
            )
            row = conn.execute(select(labels).where(labels.c.name == name)).mappings().one()
            return _label(row)

    def edit(
        self,
        actor: Actor,
        name: str,
        *,
        description: str | None = None,
        deprecated: bool | None = None,
    ) -> Label:
        """Change a label's description, or (un)deprecate it (admins only)."""
        require_admin(actor, "manage labels")
        with self._ctx.store.engine.begin() as conn:
            current = taxonomy_in(conn).get(name)
            if current is None:
                raise NotFound(f"no label {name}")
            values: dict[str, object] = {}
            if description is not None:
                if not description.strip():
                    raise InvalidInput("a label needs a description", field="description")
                values["description"] = description.strip()
            if deprecated is not None:
                values["deprecated_at"] = now() if deprecated else None
            if values:
                conn.execute(update(labels).where(labels.c.name == name).values(**values))
                audit.append(
                    conn,
                    actor,
                    "label.edit",
                    f"label:{name}",
                    {"description": description is not None, "deprecated": deprecated},
                )
            row = conn.execute(select(labels).where(labels.c.name == name)).mappings().one()
            return _label(row)
