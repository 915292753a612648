"""The transparency report and the dashboard's figures: what the consortium's
list holds and what it did.

`Reports.transparency(actor, start, end, member_id)` (`consortium.reports`)
computes one report for the period [start, end): consortium-wide for an admin, or
one member's own figures (an admin may ask for any member; a member only for
itself, Forbidden otherwise). This process's match counts not yet written
(`match_counts.Tally`) are written first, so a report includes them.

What each figure means:

- hashes by type, label, status and contributor: the hashes created before `end`,
  with their status now. Labels are counted by taxonomy name
  (`terrorist_entity:<name>` counts as `terrorist_entity`), so entity names and
  incident ids stay out of a published report. For one member: its own hashes.
- added, approved, rejected, retired, disputed, and dispute outcomes (kept or
  retired): status moves in the period, from the vetting history.
- matches (total, by label, by member): from the hourly match counts, in the hours
  that overlap the period. For one member: its own queries' matches.
- feedback by kind and disagreement by reason, given in the period.
- outcomes by action, reported for actions taken in the period; the takedown rate
  is removals / all outcomes; time to action is, for removals, actioned minus
  uploaded (median and 90th percentile, nearest rank, in seconds) plus the share
  removed within one hour of upload (the one-hour rule of EU regulation 2021/784).
- crisis incidents overlapping the period, with the hashes contributed under each.
- the audit chain head (seq and hash) at generation time, for admins: publishing
  it lets anyone holding a later copy check that no entry was cut off.

Renderers: `to_dict` (JSON), `render_csv` (rows of section, key, value) and
`render_markdown`.

The dashboard's figures are for ops teams and admins (`holdings`, `activity`,
`freshness`) and one hash's matches for admins (`hash_activity`). Holdings
(hashes by type, status and label) are counted now, over every hash; labels by
taxonomy name, grouping first by the stored label list so the database does the
heavy counting. Activity (matches, feedback) is per UTC day over
the last `DAYS` days: matches from the hourly match counts, feedback from its
rows. Freshness compares this process's index cursor with the head of the change
log.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, and_, cast, func, or_, select
from sqlalchemy.engine import Connection

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_admin, require_staff
from hashdb.consortium.feedback import Kind
from hashdb.consortium.incidents import aware
from hashdb.consortium.labels import split
from hashdb.consortium.match_counts import bucket_of
from hashdb.consortium.outcomes import Action
from hashdb.errors import Forbidden, InvalidInput
from hashdb.store import Status
from hashdb.store.clock import now, utc
from hashdb.store.schema import (
    changes,
    feedback,
    hash_transitions,
    hashes,
    incidents,
    match_counts,
    members,
    outcomes,
)

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

ONE_HOUR = timedelta(hours=1)
DAYS = 30  # the dashboard's window


@dataclass(frozen=True)
class Durations:
    """Seconds from upload to removal over the removals of the period."""

    count: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None
    within_one_hour: float | None = None  # share of removals within an hour of upload


@dataclass(frozen=True)
class IncidentFigures:
    id: int
    name: str
    started_at: datetime
    ended_at: datetime | None
    hashes: int


@dataclass(frozen=True)
class TransparencyReport:
    start: datetime
    end: datetime
    member_id: int | None  # None: the whole consortium
    generated_at: datetime
    hashes_by_type: dict[str, int] = field(default_factory=dict)
    hashes_by_label: dict[str, int] = field(default_factory=dict)
    hashes_by_status: dict[str, int] = field(default_factory=dict)
    hashes_by_contributor: dict[str, int] = field(default_factory=dict)
    added: int = 0
    approved: int = 0
    rejected: int = 0
    retired: int = 0
    disputed: int = 0
    disputes_kept: int = 0
    disputes_retired: int = 0
    matches: int = 0
    matches_by_label: dict[str, int] = field(default_factory=dict)
    matches_by_member: dict[str, int] = field(default_factory=dict)
    feedback_by_kind: dict[str, int] = field(default_factory=dict)
    disagreement_by_reason: dict[str, int] = field(default_factory=dict)
    outcomes_by_action: dict[str, int] = field(default_factory=dict)
    takedown_rate: float | None = None
    time_to_action: Durations = field(default_factory=Durations)
    incidents: list[IncidentFigures] = field(default_factory=list)
    audit_head: tuple[int, str] | None = None


def _scope(actor: Actor, member_id: int | None) -> int | None:
    if actor.is_admin:
        return member_id
    if member_id is not None and member_id != actor.id:
        raise Forbidden("a member may only see its own figures")
    return actor.id


@dataclass(frozen=True)
class Holdings:
    by_type: dict[str, int]
    by_status: dict[str, int]
    by_label: dict[str, int]
    by_type_status: dict[tuple[str, str], int]

    @property
    def total(self) -> int:
        return sum(self.by_type.values())

    def status(self, status: Status) -> int:
        return self.by_status.get(status.value, 0)


@dataclass(frozen=True)
class Activity:
    days: list[date]
    matches: list[int]
    feedback: dict[str, list[int]] = field(default_factory=dict)  # kind -> per day


@dataclass(frozen=True)
class Freshness:
    loaded: bool
    index_sizes: dict[str, int]
    cursor: int  # change-log position the indexes reflect
    head: int  # newest change-log position
    last_change_at: datetime | None

    @property
    def behind(self) -> int:
        return max(0, self.head - self.cursor)


def day_list(end: date, days: int = DAYS) -> list[date]:
    return [end - timedelta(days=days - 1 - i) for i in range(days)]


class Reports:
    """The transparency report (every member, for its own figures) and the
    dashboard's figures (ops and admins)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def transparency(
        self,
        actor: Actor,
        start: datetime,
        end: datetime,
        member_id: int | None = None,
        *,
        member_name: str | None = None,
    ) -> TransparencyReport:
        """The report for [start, end), of one member if `member_id` or `member_name`
        (NotFound if there is none) is given; see the module docstring for each
        figure and who may see it."""
        if member_name is not None:
            member_id = self._ctx.store.members.by_name(member_name).id
        scope = _scope(actor, member_id)
        start, end = aware(start, "from"), aware(end, "to")
        if end <= start:
            raise InvalidInput("the period must end after it starts", field="to")
        engine = self._ctx.store.engine
        self._ctx.tally.flush()  # this process's matches so far (others write theirs)
        with engine.connect() as conn:
            figures: dict[str, Any] = {}
            figures.update(_holdings(conn, end, scope))
            figures.update(_moves(conn, start, end, scope))
            figures.update(_matches(conn, start, end, scope))
            figures.update(_feedback(conn, start, end, scope))
            figures.update(_outcomes(conn, start, end, scope))
            figures["incidents"] = _incidents(conn, start, end, scope)
        head = audit.head(engine) if actor.is_admin and scope is None else None
        return TransparencyReport(start, end, scope, now(), **figures, audit_head=head)

    def holdings(self, actor: Actor) -> Holdings:
        """Every hash now by type, status and label."""
        require_staff(actor, "see the dashboard")
        labels_text = cast(hashes.c.labels, Text)
        query = select(hashes.c.signal_type, hashes.c.status, labels_text, func.count()).group_by(
            hashes.c.signal_type, hashes.c.status, labels_text
        )
        by_type: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        by_label: Counter[str] = Counter()
        by_type_status: Counter[tuple[str, str]] = Counter()
        with self._ctx.store.engine.connect() as conn:
            for signal_type, status, text, n in conn.execute(query):
                by_type[signal_type] += n
                by_status[status] += n
                by_type_status[(signal_type, status)] += n
                for name in _label_names(text):
                    by_label[name] += n
        return Holdings(
            dict(sorted(by_type.items())),
            {s.value: by_status.get(s.value, 0) for s in Status},
            dict(by_label.most_common()),
            dict(by_type_status),
        )

    def activity(self, actor: Actor, *, today: date | None = None, days: int = DAYS) -> Activity:
        """Matches and feedback per UTC day over the `days` days up to `today`
        (this process's match counts not yet written are written first)."""
        require_staff(actor, "see the dashboard")
        self._ctx.tally.flush()
        last = today or now().date()
        span = day_list(last, days)
        start = datetime.combine(span[0], datetime.min.time()).replace(tzinfo=now().tzinfo)
        position = {d: i for i, d in enumerate(span)}
        per_day = [0] * days
        per_kind = {k.value: [0] * days for k in Kind}
        with self._ctx.store.engine.connect() as conn:
            rows = conn.execute(
                select(match_counts.c.bucket, func.sum(match_counts.c.count))
                .where(match_counts.c.bucket >= start)
                .group_by(match_counts.c.bucket)
            )
            for bucket, n in rows:
                i = position.get(utc(bucket).date())
                if i is not None:
                    per_day[i] += int(n)
            rows = conn.execute(
                select(feedback.c.created_at, feedback.c.kind).where(feedback.c.created_at >= start)
            )
            for at, kind in rows:
                i = position.get(utc(at).date())
                if i is not None and kind in per_kind:
                    per_kind[kind][i] += 1
        return Activity(span, per_day, per_kind)

    def freshness(self, actor: Actor, loaded: bool) -> Freshness:
        """How far this process's indexes are behind the change log; `loaded`: whether
        the caller's loader has finished building them."""
        require_staff(actor, "see the dashboard")
        store, matcher = self._ctx.store, self._ctx.matcher
        with store.engine.connect() as conn:
            last = conn.execute(select(func.max(changes.c.at))).scalar_one_or_none()
        return Freshness(
            loaded=loaded,
            index_sizes=matcher.sizes(),
            cursor=matcher.cursor,
            head=store.changes.head(),
            last_change_at=utc(last) if last else None,
        )

    def hash_activity(
        self, actor: Actor, hash_id: int, *, days: int = DAYS
    ) -> tuple[int, Activity]:
        """All-time matches of one hash, and its matches per day over the last `days`
        (admins only, as the hash's history is; this process's counts written first)."""
        require_admin(actor, "see a hash's matches")
        self._ctx.tally.flush()
        span = day_list(now().date(), days)
        position = {d: i for i, d in enumerate(span)}
        per_day = [0] * days
        total = 0
        with self._ctx.store.engine.connect() as conn:
            rows = conn.execute(
                select(match_counts.c.bucket, func.sum(match_counts.c.count))
                .where(match_counts.c.hash_id == hash_id)
                .group_by(match_counts.c.bucket)
            )
            for bucket, n in rows:
                total += int(n)
                i = position.get(utc(bucket).date())
                if i is not None:
                    per_day[i] += int(n)
        return total, Activity(span, per_day)


def _label_names(text: str | None) -> list[str]:
    names = json.loads(text) if text else []
    return sorted({split(str(n)).name for n in names})


def _holdings(conn: Connection, end: datetime, scope: int | None) -> dict[str, Any]:
    labels_text = cast(hashes.c.labels, Text)
    query = (
        select(
            hashes.c.signal_type,
            hashes.c.status,
            members.c.name,
            labels_text,
            func.count(),
        )
        .join(members, members.c.id == hashes.c.contributor_id)
        .where(hashes.c.created_at < end)
        .group_by(hashes.c.signal_type, hashes.c.status, members.c.name, labels_text)
    )
    if scope is not None:
        query = query.where(hashes.c.contributor_id == scope)
    by_type: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    by_contributor: Counter[str] = Counter()
    by_label: Counter[str] = Counter()
    for signal_type, status, name, text, n in conn.execute(query):
        by_type[signal_type] += n
        by_status[status] += n
        by_contributor[name] += n
        for label in _label_names(text):
            by_label[label] += n
    return {
        "hashes_by_type": dict(sorted(by_type.items())),
        "hashes_by_status": dict(sorted(by_status.items())),
        "hashes_by_contributor": dict(sorted(by_contributor.items())),
        "hashes_by_label": dict(sorted(by_label.items())),
    }


def _moves(conn: Connection, start: datetime, end: datetime, scope: int | None) -> dict[str, int]:
    t = hash_transitions
    query = (
        select(t.c.from_status, t.c.to_status, func.count())
        .where(t.c.at >= start, t.c.at < end)
        .group_by(t.c.from_status, t.c.to_status)
    )
    if scope is not None:
        query = query.join(hashes, hashes.c.id == t.c.hash_id).where(
            hashes.c.contributor_id == scope
        )
    moves = {(f, to): n for f, to, n in conn.execute(query)}

    def count(to: Status, *, source: Status | None = None, created: bool = False) -> int:
        return sum(
            n
            for (f, t_), n in moves.items()
            if t_ == to.value and (f is None) == created and (source is None or f == source.value)
        )

    return {
        "added": sum(n for (f, _), n in moves.items() if f is None),
        "approved": count(Status.ACTIVE, source=Status.PENDING),
        "rejected": count(Status.REJECTED),
        "retired": count(Status.RETIRED),
        "disputed": count(Status.DISPUTED),
        "disputes_kept": count(Status.ACTIVE, source=Status.DISPUTED),
        "disputes_retired": count(Status.RETIRED, source=Status.DISPUTED),
    }


def _matches(conn: Connection, start: datetime, end: datetime, scope: int | None) -> dict[str, Any]:
    labels_text = cast(hashes.c.labels, Text)
    window = and_(match_counts.c.bucket >= bucket_of(start), match_counts.c.bucket < end)
    by_label_query = (
        select(labels_text, func.sum(match_counts.c.count))
        .join(hashes, hashes.c.id == match_counts.c.hash_id)
        .where(window)
        .group_by(labels_text)
    )
    by_member_query = (
        select(members.c.name, func.sum(match_counts.c.count))
        .join(members, members.c.id == match_counts.c.member_id)
        .where(window)
        .group_by(members.c.name)
    )
    if scope is not None:
        by_label_query = by_label_query.where(match_counts.c.member_id == scope)
        by_member_query = by_member_query.where(match_counts.c.member_id == scope)
    by_label: Counter[str] = Counter()
    for text, n in conn.execute(by_label_query):
        for label in _label_names(text) or ["(none)"]:
            by_label[label] += int(n)
    by_member = {name: int(n) for name, n in conn.execute(by_member_query)}
    return {
        "matches": sum(by_member.values()),
        "matches_by_label": dict(sorted(by_label.items())),
        "matches_by_member": dict(sorted(by_member.items())) if scope is None else {},
    }


def _feedback(
    conn: Connection, start: datetime, end: datetime, scope: int | None
) -> dict[str, Any]:
    query = (
        select(feedback.c.kind, feedback.c.reason, func.count())
        .where(feedback.c.created_at >= start, feedback.c.created_at < end)
        .group_by(feedback.c.kind, feedback.c.reason)
    )
    if scope is not None:
        query = query.where(feedback.c.member_id == scope)
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for kind, reason, n in conn.execute(query):
        kinds[kind] += n
        if reason:
            reasons[reason] += n
    return {
        "feedback_by_kind": dict(sorted(kinds.items())),
        "disagreement_by_reason": dict(sorted(reasons.items())),
    }


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted `values` (share in (0, 1])."""
    return values[max(0, math.ceil(share * len(values)) - 1)]


def durations(seconds: Iterable[float]) -> Durations:
    ordered = sorted(seconds)
    if not ordered:
        return Durations()
    within = sum(s <= ONE_HOUR.total_seconds() for s in ordered) / len(ordered)
    return Durations(
        count=len(ordered),
        median_seconds=float(statistics.median(ordered)),
        p90_seconds=percentile(ordered, 0.9),
        within_one_hour=within,
    )


def _outcomes(
    conn: Connection, start: datetime, end: datetime, scope: int | None
) -> dict[str, Any]:
    query = select(outcomes.c.action, outcomes.c.uploaded_at, outcomes.c.actioned_at).where(
        outcomes.c.actioned_at >= start, outcomes.c.actioned_at < end
    )
    if scope is not None:
        query = query.where(outcomes.c.member_id == scope)
    actions: Counter[str] = Counter()
    removal_seconds: list[float] = []
    for action, uploaded, actioned in conn.execute(query):
        actions[action] += 1
        if action == Action.REMOVED.value:
            removal_seconds.append((actioned - uploaded).total_seconds())
    total = sum(actions.values())
    return {
        "outcomes_by_action": dict(sorted(actions.items())),
        "takedown_rate": actions[Action.REMOVED.value] / total if total else None,
        "time_to_action": durations(removal_seconds),
    }


def _incidents(
    conn: Connection, start: datetime, end: datetime, scope: int | None
) -> list[IncidentFigures]:
    rows = conn.execute(
        select(incidents)
        .where(
            incidents.c.started_at < end,
            or_(incidents.c.ended_at.is_(None), incidents.c.ended_at >= start),
        )
        .order_by(incidents.c.started_at, incidents.c.id)
    ).mappings()
    found = list(rows)
    count_query = (
        select(hashes.c.incident_id, func.count())
        .where(hashes.c.incident_id.in_([r["id"] for r in found]))
        .group_by(hashes.c.incident_id)
    )
    if scope is not None:
        count_query = count_query.where(hashes.c.contributor_id == scope)
    counts = {i: n for i, n in conn.execute(count_query)} if found else {}
    return [
        IncidentFigures(
            id=r["id"],
            name=r["name"],
            started_at=utc(r["started_at"]),
            ended_at=utc(r["ended_at"]) if r["ended_at"] else None,
            hashes=counts.get(r["id"], 0),
        )
        for r in found
    ]


# ---- renderers ----------------------------------------------------------------


def to_dict(report: TransparencyReport) -> dict[str, Any]:
    """The report as plain JSON values (times as ISO 8601 strings)."""
    t = report.time_to_action
    return {
        "period": {"from": report.start.isoformat(), "to": report.end.isoformat()},
        "member_id": report.member_id,
        "generated_at": report.generated_at.isoformat(),
        "hashes": {
            "by_type": report.hashes_by_type,
            "by_label": report.hashes_by_label,
            "by_status": report.hashes_by_status,
            "by_contributor": report.hashes_by_contributor,
        },
        "changes": {
            "added": report.added,
            "approved": report.approved,
            "rejected": report.rejected,
            "retired": report.retired,
            "disputed": report.disputed,
        },
        "disputes": {"kept": report.disputes_kept, "retired": report.disputes_retired},
        "matches": {
            "total": report.matches,
            "by_label": report.matches_by_label,
            "by_member": report.matches_by_member,
        },
        "feedback": {
            "by_kind": report.feedback_by_kind,
            "disagreement_by_reason": report.disagreement_by_reason,
        },
        "outcomes": {
            "by_action": report.outcomes_by_action,
            "takedown_rate": report.takedown_rate,
            "time_to_action": {
                "removals": t.count,
                "median_seconds": t.median_seconds,
                "p90_seconds": t.p90_seconds,
                "within_one_hour": t.within_one_hour,
            },
        },
        "incidents": [
            {
                "id": i.id,
                "name": i.name,
                "started_at": i.started_at.isoformat(),
                "ended_at": i.ended_at.isoformat() if i.ended_at else None,
                "hashes": i.hashes,
            }
            for i in report.incidents
        ],
        "audit_head": (
            {"seq": report.audit_head[0], "hash": report.audit_head[1]}
            if report.audit_head
            else None
        ),
    }


def render_json(report: TransparencyReport) -> str:
    return json.dumps(to_dict(report), indent=2, sort_keys=False) + "\n"


def _flatten(prefix: str, value: Any) -> Iterable[tuple[str, str, Any]]:
    """(section, key, value) rows: nested objects become dotted sections."""
    if isinstance(value, dict):
        leaves = {k: v for k, v in value.items() if not isinstance(v, dict | list)}
        for k, v in leaves.items():
            yield prefix, k, v
        for k, v in value.items():
            if isinstance(v, dict | list):
                yield from _flatten(f"{prefix}.{k}" if prefix else k, v)
    elif isinstance(value, list):
        for item in value:
            key = str(item.get("id", "")) if isinstance(item, dict) else ""
            for _, k, v in _flatten(prefix, item):
                yield prefix, f"{key}.{k}" if key else k, v


def render_csv(report: TransparencyReport) -> str:
    """One row per figure: section, key, value (empty for none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "key", "value"])
    for section, key, value in _flatten("", to_dict(report)):
        writer.writerow([section, key, "" if value is None else value])
    return buffer.getvalue()


def _md_table(title: str, counts: dict[str, int]) -> list[str]:
    lines = [f"### {title}", ""]
    if not counts:
        return [*lines, "none", ""]
    lines += ["| | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    return [*lines, ""]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.0%}" if unit == "%" else f"{value:.0f}{unit}"


def render_markdown(report: TransparencyReport) -> str:
    scope = "consortium" if report.member_id is None else f"member {report.member_id}"
    t = report.time_to_action
    lines = [
        f"# Transparency report ({scope})",
        "",
        f"Period: {report.start.isoformat()} to {report.end.isoformat()}  ",
        f"Generated: {report.generated_at.isoformat()}",
        "",
        "## Hashes held",
        "",
        *_md_table("By type", report.hashes_by_type),
        *_md_table("By label", report.hashes_by_label),
        *_md_table("By status", report.hashes_by_status),
        *_md_table("By contributor", report.hashes_by_contributor),
        "## Changes in the period",
        "",
        f"- added: {report.added}",
        f"- approved: {report.approved}",
        f"- rejected: {report.rejected}",
        f"- retired: {report.retired}",
        f"- disputed: {report.disputed}",
        f"- disputes resolved: {report.disputes_kept} kept, {report.disputes_retired} retired",
        "",
        f"## Matches: {report.matches}",
        "",
        *_md_table("By label", report.matches_by_label),
        *(_md_table("By member", report.matches_by_member) if report.member_id is None else []),
        "## Feedback",
        "",
        *_md_table("By kind", report.feedback_by_kind),
        *_md_table("Disagreement by reason", report.disagreement_by_reason),
        "## Outcomes",
        "",
        *_md_table("By action", report.outcomes_by_action),
        f"- takedown rate: {_fmt(report.takedown_rate, '%')}",
        f"- time from upload to removal: median {_fmt(t.median_seconds, ' s')}, "
        f"p90 {_fmt(t.p90_seconds, ' s')} over {t.count} removals; "
        f"{_fmt(t.within_one_hour, '%')} within one hour",
        "",
        "## Crisis incidents",
        "",
    ]
    if report.incidents:
        lines += ["| id | name | started | ended | hashes |", "|---:|---|---|---|---:|"]
        for i in report.incidents:
            ended = i.ended_at.isoformat() if i.ended_at else "open"
            lines.append(
                f"| {i.id} | {i.name} | {i.started_at.isoformat()} | {ended} | {i.hashes} |"
            )
    else:
        lines.append("none")
    if report.audit_head:
        lines += ["", f"Audit chain head: entry {report.audit_head[0]}, {report.audit_head[1]}"]
    return "\n".join(lines) + "\n"
