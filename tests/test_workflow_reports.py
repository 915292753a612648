"""The transparency report: scope and roles, figures, renderers, `hashdb report`."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from hashdb.cli import main
from hashdb.consortium import outcomes, reports
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.errors import Forbidden, InvalidInput
from hashdb.settings import Settings
from hashdb.signals import MD5, PDQ
from hashdb.store import NewHash, Role, Status, Store

NOW = datetime.now(UTC)
START, END = NOW - timedelta(days=1), NOW + timedelta(days=1)


def report_of(
    store: Store, actor: Actor, start: datetime, end: datetime, member_id: int | None = None
) -> reports.TransparencyReport:
    return Consortium(Settings(), store).reports.transparency(actor, start, end, member_id)


@pytest.fixture
def people(store: Store) -> dict[str, Actor]:
    return {
        "admin": Actor(store.members.create("Consortium", Role.ADMIN)[0]),
        "a": Actor(store.members.create("Platform A", Role.MEMBER)[0]),
        "b": Actor(store.members.create("Platform B", Role.MEMBER)[0]),
    }


@pytest.fixture
def busy(store: Store, people: dict[str, Actor]) -> None:
    """An incident with two fast-tracked hashes, a rejection, and three outcomes."""
    db = Consortium(Settings(), store)
    incident = db.incidents.open(people["admin"], "Attack in X")
    tag = f"crisis_incident:{incident.id}"
    fast = db.contributions.add(
        people["a"],
        [
            NewHash(PDQ.name, bytes(range(32)), ("terrorist_entity:Group X", tag), 90),
            NewHash(MD5.name, bytes(16), ("attack_footage", tag)),
        ],
    )
    (slow,) = db.contributions.add(people["b"], [NewHash(PDQ.name, bytes(32), ("manifesto",), 90)])
    db.vetting.reject(people["admin"], [slow.id], "duplicate")
    db.incidents.close(people["admin"], incident.id)
    up = NOW - timedelta(hours=3)
    for minutes, action in ((10, "removed"), (90, "removed"), (5, "kept")):
        db.outcomes.report(
            people["b"],
            fast[0].id,
            outcomes.Action(action),
            uploaded_at=up,
            matched_at=up,
            actioned_at=up + timedelta(minutes=minutes),
        )


def test_the_consortium_report_counts_labels_by_name_and_incidents(
    store: Store, people: dict[str, Actor], busy: None
) -> None:
    report = report_of(store, people["admin"], START, END)
    assert report.hashes_by_label == {
        "attack_footage": 1,
        "crisis_incident": 2,
        "manifesto": 1,
        "terrorist_entity": 1,
    }
    assert report.hashes_by_status == {"active": 2, "rejected": 1}
    assert report.hashes_by_contributor == {"Platform A": 2, "Platform B": 1}
    assert (report.added, report.rejected, report.approved) == (3, 1, 0)
    (incident,) = report.incidents
    assert (incident.name, incident.hashes) == ("Attack in X", 2)
    assert incident.ended_at is not None


def test_takedown_rate_and_time_to_action_come_from_the_outcomes(
    store: Store, people: dict[str, Actor], busy: None
) -> None:
    report = report_of(store, people["admin"], START, END)
    assert report.outcomes_by_action == {"kept": 1, "removed": 2}
    assert report.takedown_rate == pytest.approx(2 / 3)
    assert report.time_to_action == reports.Durations(2, 50 * 60.0, 90 * 60.0, 0.5)


def test_a_period_before_anything_happened_is_empty(
    store: Store, people: dict[str, Actor], busy: None
) -> None:
    report = report_of(store, people["admin"], NOW - timedelta(days=9), NOW - timedelta(days=8))
    assert (report.added, report.matches, report.outcomes_by_action) == (0, 0, {})
    assert report.takedown_rate is None and report.incidents == []
    assert report.hashes_by_status == {}


def test_a_member_sees_only_its_own_figures(
    store: Store, people: dict[str, Actor], busy: None
) -> None:
    own = report_of(store, people["a"], START, END)
    assert own.member_id == people["a"].id
    assert own.hashes_by_contributor == {"Platform A": 2}
    assert own.outcomes_by_action == {}
    with pytest.raises(Forbidden):
        report_of(store, people["a"], START, END, people["b"].id)
    by_admin = report_of(store, people["admin"], START, END, people["b"].id)
    assert by_admin.outcomes_by_action == {"kept": 1, "removed": 2}


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [(END, START, "to"), (datetime(2024, 1, 1), END, "from")],
)
def test_a_bad_period_is_refused_naming_the_field(
    store: Store, people: dict[str, Actor], start: datetime, end: datetime, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        report_of(store, people["admin"], start, end)
    assert caught.value.field == field


def test_the_renderers_carry_the_same_figures(
    store: Store, people: dict[str, Actor], busy: None
) -> None:
    report = report_of(store, people["admin"], START, END)
    data = json.loads(reports.render_json(report))
    assert data["outcomes"]["time_to_action"]["p90_seconds"] == 5400.0
    assert data["hashes"]["by_status"] == {"active": 2, "rejected": 1}
    rows = list(csv.reader(io.StringIO(reports.render_csv(report))))
    assert rows[0] == ["section", "key", "value"]
    assert ["hashes.by_status", "rejected", "1"] in rows
    assert ["outcomes.time_to_action", "median_seconds", "3000.0"] in rows
    assert any(r[0] == "incidents" and r[1].endswith(".name") for r in rows)
    text = reports.render_markdown(report)
    assert "takedown rate: 67%" in text and "Attack in X" in text


def test_hashdb_report_prints_the_report(
    store: Store, db_url: str, people: dict[str, Actor], busy: None
) -> None:
    runner = CliRunner()
    env = {"HASHDB_DATABASE_URL": db_url}
    args = ["report", "--from", START.isoformat(), "--to", END.isoformat()]
    result = runner.invoke(main, [*args, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["changes"]["rejected"] == 1
    md = runner.invoke(main, args, env=env)
    assert md.exit_code == 0 and md.output.startswith("# Transparency report (consortium)")
    refused = runner.invoke(main, [*args, "--as", "Platform A", "--member", "Platform B"], env=env)
    assert refused.exit_code == 2 and "own figures" in refused.output
    bad = runner.invoke(main, ["report", "--from", "yesterday", "--to", "today"], env=env)
    assert bad.exit_code == 2


def test_the_dashboard_figures_are_for_ops_and_admins_and_count_every_hash(
    store: Store, people: dict[str, Actor], busy: None
) -> None:
    db = Consortium(Settings(), store)
    ops = Actor(store.members.create("Ops team", Role.OPS)[0])
    held = db.reports.holdings(ops)
    assert held.total == 3 and held.by_label["crisis_incident"] == 2
    assert held.status(Status.REJECTED) == 1
    assert len(db.reports.activity(ops).days) == 30
    assert db.reports.freshness(ops, loaded=False).head == store.changes.head()
    for figure in (db.reports.holdings, db.reports.activity):
        with pytest.raises(Forbidden):
            figure(people["a"])
    with pytest.raises(Forbidden):
        db.reports.hash_activity(ops, 1)
    total, per_day = db.reports.hash_activity(people["admin"], 1)
    assert total == 0 and sum(per_day.matches) == 0
