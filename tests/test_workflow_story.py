"""The consortium workflow end to end, at the library level, on both databases.

A member contributes a hash; it is pending until an admin approves it; another
member matches it and reports removing the content 20 minutes after upload; a
third member disputes it; the admin retires it; the export feed carries its
tombstone; a local copy synced from the feed stops matching it; and the
transparency report for the period shows every one of those numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hashdb.consortium import audit, feedback, outcomes, reports, vetting
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.consortium.export import FeedOp, FeedPage
from hashdb.errors import Forbidden
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Status, Store

CODE = bytes.fromhex("f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22")
CENTRAL = "https://central.example"


class LibraryFeed:
    """The central feed read in-process (the HTTP client is tested on its own)."""

    def __init__(self, central: Consortium, reader: Actor) -> None:
        self._central = central
        self._reader = reader

    def export(self, since: int = 0, limit: int = 1000) -> FeedPage:
        return self._central.feed.page(self._reader, since, limit)


@pytest.fixture
def local(tmp_path: Path, migrated: Callable[[str], str]) -> Iterator[Consortium]:
    copy = Store.open(migrated(f"sqlite:///{tmp_path / 'local.sqlite3'}"))
    copy.members.create("Local admin", Role.ADMIN)
    yield Consortium(Settings(), copy)
    copy.close()


def test_the_whole_story(store: Store, local: Consortium) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    settings = Settings(dispute_threshold=1)
    central = Consortium(settings, store)
    admin = Actor(store.members.create("Consortium", Role.ADMIN)[0])
    contributor = Actor(store.members.create("Platform A", Role.MEMBER)[0])
    matcher = Actor(store.members.create("Platform B", Role.MEMBER)[0])
    disputer = Actor(store.members.create("Platform C", Role.MEMBER)[0])

    # A member contributes: the hash is pending.
    (added,) = central.contributions.add(
        contributor, [NewHash(PDQ.name, CODE, ("attack_footage",), 92, "case 7")]
    )
    hash_id = added.id
    assert store.hashes.get(hash_id).status is Status.PENDING
    with pytest.raises(Forbidden):
        central.vetting.approve(contributor, [hash_id])

    # An admin approves it.
    central.vetting.approve(admin, [hash_id], "verified footage")
    assert store.hashes.get(hash_id).status is Status.ACTIVE

    # A local copy syncs and matches it.
    local.sync.pull(Actor(local.members.operator()), LibraryFeed(central, matcher), CENTRAL)
    local.matcher.refresh()
    assert len(local.matching.match(None, [Query(PDQ, CODE)])[0].matches) == 1

    # Another member matches it, and reports removal 20 minutes after upload.
    central.matcher.refresh()
    (result,) = central.matching.match(matcher, [Query(PDQ, CODE)])
    assert [m.record.id for m in result.matches] == [hash_id]
    uploaded = datetime.now(UTC) - timedelta(minutes=30)
    central.outcomes.report(
        matcher,
        hash_id,
        outcomes.Action.REMOVED,
        uploaded_at=uploaded,
        matched_at=uploaded + timedelta(minutes=2),
        actioned_at=uploaded + timedelta(minutes=20),
    )

    # A third member disputes it, reaching the threshold.
    disputed = central.feedback.give(
        disputer,
        hash_id,
        feedback.Kind.DISAGREE,
        reason=feedback.DisagreeReason.NOT_TERRORIST_CONTENT,
    )
    assert disputed.disputed
    assert store.hashes.get(hash_id).status is Status.DISPUTED

    # The admin retires it.
    central.vetting.resolve_dispute(
        admin, hash_id, vetting.Resolution.RETIRE, "news footage, not propaganda"
    )
    assert central.matching.match(None, [Query(PDQ, CODE)])[0].matches == []
    moves = [(t.from_status, t.to_status) for t in central.vetting.history(admin, hash_id)]
    assert moves == [
        (None, Status.PENDING),
        (Status.PENDING, Status.ACTIVE),
        (Status.ACTIVE, Status.DISPUTED),
        (Status.DISPUTED, Status.RETIRED),
    ]

    # The export feed shows the tombstone.
    last = central.feed.page(matcher, 0, 100).entries[-1]
    assert (last.id, last.op, last.status, last.value) == (
        hash_id,
        FeedOp.DELETE,
        Status.RETIRED,
        CODE.hex(),  # a tombstone names the value: followers may remove by value
    )

    # The synced local copy stops matching it.
    pulled = local.sync.pull(
        Actor(local.members.operator()), LibraryFeed(central, matcher), CENTRAL
    )
    assert pulled.retired == 1
    local.matcher.refresh()
    assert local.matching.match(None, [Query(PDQ, CODE)])[0].matches == []

    # The transparency report for the period shows every one of those numbers
    # (match counts are written every HASHDB_COUNT_FLUSH_SECONDS; now, here).
    central.tally.flush()
    end = datetime.now(UTC) + timedelta(hours=1)
    report = central.reports.transparency(admin, start, end)
    assert report.hashes_by_type == {"pdq": 1}
    assert report.hashes_by_label == {"attack_footage": 1}
    assert report.hashes_by_status == {"retired": 1}
    assert report.hashes_by_contributor == {"Platform A": 1}
    assert (report.added, report.approved, report.rejected) == (1, 1, 0)
    assert (report.disputed, report.retired) == (1, 1)
    assert (report.disputes_kept, report.disputes_retired) == (0, 1)
    assert report.matches == 1
    assert report.matches_by_label == {"attack_footage": 1}
    assert report.matches_by_member == {"Platform B": 1}
    assert report.feedback_by_kind == {"disagree": 1}
    assert report.disagreement_by_reason == {"not_terrorist_content": 1}
    assert report.outcomes_by_action == {"removed": 1}
    assert report.takedown_rate == 1.0
    assert report.time_to_action == reports.Durations(1, 1200.0, 1200.0, 1.0)
    assert report.audit_head == audit.head(store.engine)
    assert central.audit.verify(admin).ok

    # Each member sees its own figures, and only those.
    own = central.reports.transparency(matcher, start, end)
    assert (own.member_id, own.matches, own.outcomes_by_action) == (
        matcher.id,
        1,
        {"removed": 1},
    )
    assert own.hashes_by_status == {} and own.matches_by_member == {}
    assert own.audit_head is None
    mine = central.reports.transparency(contributor, start, end, contributor.id)
    assert mine.hashes_by_status == {"retired": 1} and mine.matches == 0
    with pytest.raises(Forbidden):
        central.reports.transparency(matcher, start, end, contributor.id)
    with pytest.raises(Forbidden):
        central.audit.read(matcher)
