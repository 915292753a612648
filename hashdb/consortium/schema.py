"""The database schema's state, and the one use case that changes it.

Only `hashdb migrate` (and `hashdb init`, which calls the same `migrate`) changes the
schema. Everything else opens the database without migrating: `Consortium.open`,
every API worker and every replica refuse a schema that is not exactly this code's
(StorageUnavailable naming the command to run), and `hashdb serve` checks it in
its master before forking any worker (`require_current`), so a deployment of many
replicas never races several Alembic runs against one database, and an upgrade
happens when an operator runs it, after a backup.

`check` answers for scripts (`hashdb migrate --check`) with one of three outcomes,
`Verdict.CURRENT` (nothing to do), `Verdict.BEHIND` (run `hashdb migrate`; an empty
database counts, since migrating creates it) and `Verdict.REFUSED` (ahead of this
code, or hashdb tables without a revision: migrating cannot fix it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from sqlalchemy.engine import make_url

from hashdb.errors import Conflict
from hashdb.settings import Settings
from hashdb.store import SchemaState, SchemaStatus, schema_status, upgrade


class Verdict(IntEnum):
    """What `hashdb migrate --check` exits with."""

    CURRENT = 0
    BEHIND = 1
    REFUSED = 2


@dataclass(frozen=True)
class SchemaReport:
    """The schema of one database against this code's migrations."""

    database: str  # the URL, password hidden
    state: str  # a SchemaState value
    found: tuple[str, ...]  # revisions recorded in the database
    head: tuple[str, ...]  # this code's head revisions

    @property
    def verdict(self) -> Verdict:
        if self.state == SchemaState.CURRENT:
            return Verdict.CURRENT
        if self.state in (SchemaState.BEHIND, SchemaState.EMPTY):
            return Verdict.BEHIND
        return Verdict.REFUSED

    @property
    def advice(self) -> str:
        """What to do about it, naming the command."""
        found, head = ", ".join(self.found) or "none", ", ".join(self.head)
        match self.state:
            case SchemaState.CURRENT:
                return f"the schema is current (revision {head})"
            case SchemaState.EMPTY:
                return (
                    f"the database has no hashdb schema (this hashdb needs {head}): "
                    "run `hashdb init`"
                )
            case SchemaState.BEHIND:
                return (
                    f"the schema is behind (revision {found}, this hashdb needs {head}): "
                    "run `hashdb migrate` (after `hashdb backup`)"
                )
            case SchemaState.AHEAD:
                return (
                    f"the schema is ahead of this hashdb (revision {found}, newest known "
                    f"{head}): upgrade hashdb, or point HASHDB_DATABASE_URL at the right database"
                )
            case _:
                return (
                    "the database has hashdb tables but no schema revision: it was not set "
                    "up by `hashdb init` and cannot be migrated safely"
                )

    def to_json(self) -> dict[str, object]:
        return {
            "database": self.database,
            "state": self.state,
            "found": list(self.found),
            "head": list(self.head),
            "advice": self.advice,
        }


@dataclass(frozen=True)
class Migration:
    """What `migrate` did: the schema before and after."""

    before: SchemaReport
    after: SchemaReport

    @property
    def changed(self) -> bool:
        return self.before.found != self.after.found


def _report(url: str, status: SchemaStatus) -> SchemaReport:
    shown = make_url(url).render_as_string(hide_password=True)
    return SchemaReport(shown, status.state.value, status.found, status.head)


def check(settings: Settings) -> SchemaReport:
    """The schema's state, changing nothing."""
    url = settings.resolved_database_url()
    return _report(url, schema_status(url))


def migrate(settings: Settings) -> Migration:
    """Bring the schema to this code's head (Alembic upgrade). A schema that is ahead
    or unversioned is Conflict (exit 2), untouched; a database that cannot be reached,
    or a role that may not create tables, is StorageUnavailable (exit 3)."""
    report = check(settings)
    if report.verdict is Verdict.REFUSED:
        raise Conflict(f"{report.database}: {report.advice}", schema=report.state)
    url = settings.resolved_database_url()
    before, after = upgrade(url)
    return Migration(_report(url, before), _report(url, after))


def require_current(settings: Settings) -> SchemaReport:
    """Conflict (exit 2) naming the command to run unless the schema is current: what
    `hashdb serve` checks before it starts any worker."""
    report = check(settings)
    if report.verdict is not Verdict.CURRENT:
        raise Conflict(f"not serving {report.database}: {report.advice}", schema=report.state)
    return report
