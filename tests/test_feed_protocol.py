"""The feed protocol: a follower converges whatever the page size, the history or the
signal type.

A page hands back the cursor of the last change-log entry it read and whether more
follow, so a page with nothing to show (several changes of one hash, filtered
entries) never looks like the end; tombstones carry the value; a cursor belongs
to an epoch, and a follower whose cursor belongs to another history (a restored
central) forgets its copy and replays; videos travel with their frames and
keyframes, keypoints rows with their sets (tests/test_feed_keypoints.py).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from click.testing import CliRunner
from feed_server import FeedServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from hashdb.cli import main
from hashdb.client import Client
from hashdb.consortium import sync
from hashdb.consortium.actor import Actor
from hashdb.consortium.backup import backup, restore
from hashdb.consortium.core import Consortium
from hashdb.consortium.export import FeedEntry, FeedOp, FeedPage
from hashdb.consortium.feedback import DisagreeReason, Kind
from hashdb.consortium.keypoints import new_hash
from hashdb.consortium.matching import VideoQuery
from hashdb.consortium.vetting import Resolution
from hashdb.errors import Forbidden, InvalidInput
from hashdb.keypoints.codec import KeypointSet
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import MD5, PDQ
from hashdb.signals.vpdq import Frame
from hashdb.store import NewHash, NewVideo, Role, Status, Store
from hashdb.store.hashes import NewVariant
from hashdb.store.schema import api_keys, changes, hashes
from ingest.records import video_contributions
from ingest.video import EVERY_FRAME, REFERENCE_KEYFRAMES, VideoHashes, hash_video_file

if TYPE_CHECKING:
    from api_fixtures import MakeApi

pytest_plugins = ["api_fixtures"]

Row = tuple[str, str, tuple[str, ...]]


def pdq(seed: int) -> bytes:
    return random.Random(seed).randbytes(32)


def image(seed: int, labels: tuple[str, ...] = ("attack_footage",)) -> NewHash:
    """A contributed image's PDQ row with stored variants, as uploads make them."""
    variants = tuple(NewVariant(f"crop90_{k}_0", pdq(seed * 1000 + k), 80) for k in range(3))
    return NewHash(PDQ.name, pdq(seed), labels, 90, variants=variants)


def digest(seed: int) -> NewHash:
    return NewHash(MD5.name, random.Random(seed).randbytes(16), ("manifesto",))


def keypoint_set(seed: int, n: int = 32) -> KeypointSet:
    """A random set of `n` keypoints (enough to be contributed; matches nothing)."""
    rng = np.random.default_rng(seed)
    x, y, angle = (rng.integers(0, 256, n, dtype=np.uint8) for _ in range(3))
    level = rng.integers(0, 8, n, dtype=np.uint8)
    descriptors = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    return KeypointSet(512, 384, x, y, level, angle, descriptors)


@pytest.fixture
def db(store: Store) -> Consortium:
    return Consortium(Settings(), store)


@pytest.fixture
def admin(store: Store) -> Actor:
    return Actor(store.members.create("Consortium", Role.ADMIN)[0])


@pytest.fixture
def member(store: Store) -> Actor:
    return Actor(store.members.create("Platform A", Role.MEMBER)[0])


@pytest.fixture
def key(store: Store) -> str:
    return store.members.create("Small platform", Role.MEMBER)[1].secret


def follower(path: Path) -> Consortium:
    copy = Store.open(f"sqlite:///{path}", migrate_schema=True)
    copy.members.create("Local admin", Role.ADMIN)
    return Consortium(Settings(), copy)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Consortium]:
    copy = follower(tmp_path / "local.sqlite3")
    yield copy
    copy.close()


def operator(local: Consortium) -> Actor:
    return Actor(local.members.operator())


def exported(db: Consortium, reader: Actor) -> set[Row]:
    """Central's exported list: (signal type, hex value, labels)."""
    return {(e.signal_type, e.value or "", e.labels) for e in db.feed.snapshot(reader)}


def held(local: Consortium) -> set[Row]:
    """What the follower matches against from its sync: its active rows."""
    with local.store.engine.connect() as conn:
        rows = conn.execute(
            select(hashes.c.signal_type, hashes.c.value, hashes.c.labels).where(
                hashes.c.status == Status.ACTIVE.value
            )
        ).all()
    return {(str(t), bytes(v).hex(), tuple(labels)) for t, v, labels in rows}


Matchable = tuple[str, str, tuple[str, ...], str, frozenset[tuple[str, str]], bytes | None]


def matchable(db: Consortium) -> set[Matchable]:
    """Everything `db` matches against, read from its tables: each live hash (active
    or disputed, not past its expiry) as (signal type, hex value, labels, status,
    its stored variants as (kind, hex value), its keypoint set's wire form or None).
    The same function reads central and follower, so equality means both match the
    same things and say the same."""
    at = datetime.now(UTC)
    with db.store.engine.connect() as conn:
        rows = conn.execute(
            select(
                hashes.c.id,
                hashes.c.signal_type,
                hashes.c.value,
                hashes.c.labels,
                hashes.c.status,
                hashes.c.expires_at,
            ).where(hashes.c.status.in_([Status.ACTIVE.value, Status.DISPUTED.value]))
        ).all()
    live = [r for r in rows if r.expires_at is None or _aware(r.expires_at) > at]
    variants = db.store.hashes.variants([r.id for r in live])
    sets = db.store.hashes.keypoint_sets([r.id for r in live])
    return {
        (
            str(r.signal_type),
            bytes(r.value).hex(),
            tuple(r.labels),
            str(r.status),
            frozenset((v.kind, v.value.hex()) for v in variants.get(r.id, [])),
            sets.get(r.id),
        )
        for r in live
    }


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def pull(local: Consortium, central: FeedServer, key: str, limit: int) -> sync.SyncResult:
    with Client(central.url, key) as feed:
        return local.sync.pull(operator(local), feed, central.url, limit=limit)


# ---- pages that cannot stall ---------------------------------------------------------


def test_a_page_of_repeated_changes_still_advances_and_says_more(
    db: Consortium, admin: Actor
) -> None:
    (one,) = db.contributions.add(admin, [image(1)])
    for n in range(6):  # one hash, many changes
        db.vetting.set_expiry(admin, one.id, datetime.now(UTC) + timedelta(days=n + 1))
    db.contributions.add(admin, [image(2)])
    page = db.feed.page(admin, 0, 7)
    assert [e.id for e in page.entries] == [one.id]
    assert (page.cursor, page.more) == (7, True)
    rest = db.feed.page(admin, page.cursor, 7)
    assert (len(rest.entries), rest.more, rest.cursor, rest.head) == (1, False, 8, 8)


def test_a_filtered_page_advances_over_what_it_skipped(db: Consortium, admin: Actor) -> None:
    db.contributions.add(admin, [digest(n) for n in range(5)])
    db.contributions.add(admin, [image(1)])
    only_pdq = db.feed.filter(signal_types=["pdq"])
    page = db.feed.page(admin, 0, 3, only_pdq)
    assert (page.entries, page.cursor, page.more) == ([], 3, True)
    (entry,) = db.feed.page(admin, page.cursor, 3, only_pdq).entries
    assert (entry.signal_type, entry.value) == ("pdq", pdq(1).hex())


def test_a_label_filter_turns_hashes_without_the_label_into_tombstones(
    db: Consortium, admin: Actor
) -> None:
    tagged, other = db.contributions.add(
        admin, [image(1, ("attack_footage",)), image(2, ("manifesto",))]
    )
    entries = {
        e.id: e
        for e in db.feed.page(admin, 0, 100, db.feed.filter(label_names=["manifesto"])).entries
    }
    assert entries[other.id].op is FeedOp.ADD
    assert (entries[tagged.id].op, entries[tagged.id].status) == (FeedOp.DELETE, Status.ACTIVE)
    assert entries[tagged.id].value == pdq(1).hex()


def test_unknown_filters_are_refused_naming_the_parameter(db: Consortium) -> None:
    with pytest.raises(InvalidInput) as caught:
        db.feed.filter(signal_types=["sha1"])
    assert caught.value.field == "signal_type"
    with pytest.raises(InvalidInput) as caught:
        db.feed.filter(label_names=["no_such_label"])
    assert caught.value.field == "label"


@pytest.mark.parametrize("limit", [1, 2, 7])
def test_a_follower_with_tiny_pages_converges_after_bulk_approvals_and_uploads(
    db: Consortium, admin: Actor, member: Actor, key: str, local: Consortium, limit: int
) -> None:
    queued = db.contributions.add(member, [image(n) for n in range(16)])
    with FeedServer(db.store) as central:
        pull(local, central, key, limit)
        assert held(local) == set()
        db.vetting.approve(admin, [a.id for a in queued], "bulk")  # 16 at once
        db.contributions.add(admin, [image(n) for n in range(100, 106)])  # uploads
        db.contributions.add(admin, [digest(1)])
        pull(local, central, key, limit)
        assert held(local) == exported(db, admin) and len(held(local)) == 23
        db.vetting.retire(admin, [queued[0].id, queued[5].id], "wrong")
        result = pull(local, central, key, limit)
        assert result.retired == 2
        assert held(local) == exported(db, admin)
        assert central.pages[-1].more is False
        assert all(p.cursor >= (p.entries[-1].seq if p.entries else 0) for p in central.pages)


def test_an_images_stored_variants_travel_so_the_follower_matches_a_crop(
    db: Consortium, admin: Actor, key: str, local: Consortium
) -> None:
    (stored,) = db.contributions.add(admin, [image(7)])
    (entry,) = db.feed.page(admin, 0, 100).entries
    assert {(v.kind, v.value) for v in entry.variants or ()} == {
        (f"crop90_{k}_0", pdq(7000 + k).hex()) for k in range(3)
    }
    with FeedServer(db.store) as central:
        pull(local, central, key, 1)
    crop = Query(PDQ, pdq(7001))  # what a re-upload cropped like window 1 hashes to
    (there,) = db.matching.match(None, [crop])[0].matches
    (here,) = local.matching.match(None, [crop])[0].matches
    assert there.record.id == stored.id and here.record.value == pdq(7)
    assert here.via == there.via and here.distance == there.distance == 0


def test_a_disputed_hash_is_disputed_on_the_follower_too_and_active_once_kept(
    db: Consortium, admin: Actor, store: Store, key: str, local: Consortium
) -> None:
    (one,) = db.contributions.add(admin, [image(8)])
    critics = [Actor(store.members.create(f"Critic {n}", Role.MEMBER)[0]) for n in range(2)]
    with FeedServer(db.store) as central:
        pull(local, central, key, 5)
        assert {m[3] for m in matchable(local)} == {"active"}
        for critic in critics:
            db.feedback.give(critic, one.id, Kind.DISAGREE, reason=DisagreeReason.WRONG_LABEL)
        assert db.hashes.get(admin, one.id).status is Status.DISPUTED
        pull(local, central, key, 5)
        assert matchable(local) == matchable(db) and {m[3] for m in matchable(local)} == {
            "disputed"
        }
        db.vetting.resolve_dispute(admin, one.id, Resolution.KEEP, "it fits")
        db.vetting.relabel(admin, one.id, ["manifesto"])
        pull(local, central, key, 5)
    assert matchable(local) == matchable(db)
    assert {(m[2], m[3]) for m in matchable(local)} == {(("manifesto",), "active")}


# ---- the epoch -----------------------------------------------------------------------


def test_the_epoch_is_stable_and_a_new_one_is_an_admins_audited_act(
    db: Consortium, admin: Actor, member: Actor
) -> None:
    first = db.feed.epoch(member)
    assert first == db.feed.page(member, 0, 10).epoch == db.feed.epoch(admin)
    with pytest.raises(Forbidden):
        db.feed.new_epoch(member, "no")
    fresh = db.feed.new_epoch(admin, "restored from backup")
    assert fresh != first and db.feed.page(member, 0, 10).epoch == fresh
    (entry,) = [e for e in db.audit.read(admin) if e.action == "feed.epoch"]
    assert entry.details == {"from": first, "to": fresh, "reason": "restored from backup"}


def test_a_follower_whose_cursor_is_from_another_epoch_resyncs_and_converges(
    db: Consortium, admin: Actor, key: str, local: Consortium
) -> None:
    db.contributions.add(admin, [image(n) for n in range(5)])
    with FeedServer(db.store) as central:
        pull(local, central, key, 2)
        before = local.sync.position(operator(local), central.url)
        assert before[0] == db.feed.epoch(admin)
        db.feed.new_epoch(admin, "promoted a standby")
        db.contributions.add(admin, [image(9)])
        result = pull(local, central, key, 2)
    assert result.resyncs == 1
    assert held(local) == exported(db, admin) and len(held(local)) == 6
    assert local.sync.position(operator(local), central.url)[0] == db.feed.epoch(admin)
    actions = [e.action for e in local.audit.read(operator(local))]
    assert actions.count("sync.resync") == 1


def test_a_follower_converges_after_central_is_restored_from_a_backup(
    tmp_path: Path, local: Consortium
) -> None:
    """Central's database file is copied (the backup), changes continue and are
    synced, then the backup is restored and different changes reuse the numbers."""
    path = tmp_path / "central.sqlite3"
    central_store = Store.open(f"sqlite:///{path}", migrate_schema=True)
    admin = Actor(central_store.members.create("Consortium", Role.ADMIN)[0])
    key = central_store.members.create("Small platform", Role.MEMBER)[1].secret
    db = Consortium(Settings(), central_store)
    db.contributions.add(admin, [image(n) for n in range(3)])
    central_store.close()
    shutil.copy(path, tmp_path / "backup.sqlite3")
    central_store = Store.open(f"sqlite:///{path}", migrate_schema=True)
    db = Consortium(Settings(), central_store)
    with FeedServer(central_store) as central:
        db.contributions.add(admin, [image(n) for n in range(10, 14)])  # lost in the restore
        pull(local, central, key, 3)
        assert len(held(local)) == 7
        restored = Store.open(f"sqlite:///{tmp_path / 'backup.sqlite3'}")
        central.db = Consortium(Settings(), restored)  # same epoch, shorter history
        result = pull(local, central, key, 3)
        assert result.resyncs == 1
        assert held(local) == exported(central.db, admin) and len(held(local)) == 3
        # The restore reuses sequence numbers for other changes; the operator
        # starts a new epoch, and the follower follows again.
        central.db.contributions.add(admin, [image(n) for n in range(20, 26)])
        central.db.feed.new_epoch(admin, "restored from backup")
        assert pull(local, central, key, 3).resyncs == 1
        assert held(local) == exported(central.db, admin) and len(held(local)) == 9
        restored.close()
    central_store.close()


# ---- a worker that sees the change log go backwards ----------------------------------


def test_a_matcher_that_sees_the_change_log_go_backwards_rebuilds(
    db: Consortium, admin: Actor
) -> None:
    _, lost = db.contributions.add(admin, [image(1), image(2)])
    db.matching.load()
    assert db.matching.match(None, [_query(2)])[0].matches
    # The database is restored to before `lost` was added: its row and change go.
    with db.store.engine.begin() as conn:
        conn.execute(delete(changes).where(changes.c.hash_id == lost.id))
        for table in ("hash_variants", "hash_transitions"):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE hash_id = {int(lost.id)}")
        conn.execute(delete(hashes).where(hashes.c.id == lost.id))
    heads = db.members.heads()
    assert heads.changes < db.matching.cursor
    assert db.matching.catch_up(heads) is True
    assert db.matching.match(None, [_query(2)])[0].matches == []
    assert db.matching.match(None, [_query(1)])[0].matches
    assert db.matching.catch_up(db.members.heads()) is False


def test_a_matcher_that_sees_a_new_epoch_rebuilds_even_if_the_log_looks_ahead(
    db: Consortium, admin: Actor
) -> None:
    """A restore followed by more changes than were lost leaves the head *past* the
    worker's cursor: only the epoch tells the worker its cursor means nothing here."""
    _, lost = db.contributions.add(admin, [image(1), image(2)])
    db.matching.load()
    with db.store.engine.begin() as conn:  # restored to before `lost`, then changed more
        conn.execute(delete(changes).where(changes.c.hash_id == lost.id))
        for table in ("hash_variants", "hash_transitions"):
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE hash_id = {int(lost.id)}")
        conn.execute(delete(hashes).where(hashes.c.id == lost.id))
    db.contributions.add(admin, [image(3), image(4)])
    db.feed.new_epoch(admin, "restored from backup")
    heads = db.members.heads()
    assert heads.changes > db.matching.cursor and heads.epoch != db.matching.epoch
    assert db.matching.other_history(heads)
    assert db.matching.catch_up(heads) is True
    assert db.matching.match(None, [_query(2)])[0].matches == []
    assert all(db.matching.match(None, [_query(n)])[0].matches for n in (1, 3, 4))
    assert not db.matching.other_history(db.members.heads())


def test_an_api_worker_forgets_cached_keys_when_the_epoch_changes(make_api: MakeApi) -> None:
    api = make_api()
    assert api.get("/v1/labels").status_code == 200  # the member's key is now cached
    with api.store.engine.begin() as conn:  # the restored database never had that key
        conn.execute(update(api_keys).values(revoked_at=datetime.now(UTC)))
    assert api.get("/v1/labels").status_code == 200  # same auth head: still cached
    central = Consortium(Settings(), api.store)
    central.feed.new_epoch(Actor(central.members.operator()), "restored from backup")
    assert api.get("/v1/labels").status_code == 401


def _query(seed: int) -> Query:
    return Query(PDQ, pdq(seed))


# ---- videos --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(testdata: Path) -> dict[str, VideoHashes]:
    folder = testdata / "video"
    return {
        "stored": hash_video_file(
            folder / "chair-orig-22-sd-bar.mp4", keyframes=REFERENCE_KEYFRAMES
        ),
        "re-encode": hash_video_file(
            folder / "chair-22-sd-grey-bar.mp4", frames_per_second=EVERY_FRAME
        ),
    }


def test_a_synced_video_matches_a_re_encode_on_the_follower_as_on_central(
    db: Consortium,
    admin: Actor,
    key: str,
    local: Consortium,
    videos: dict[str, VideoHashes],
) -> None:
    video, digests = video_contributions(videos["stored"], ("attack_footage",), "chair")
    stored = db.contributions.add_video(admin, video, digests)[0]
    (entry,) = [e for e in db.feed.page(admin, 0, 100).entries if e.id == stored.id]
    assert entry.signal_type == "vpdq" and entry.frames and entry.duration and entry.fps
    assert len(entry.video_frames() or []) == len(video.frames)
    assert video.keyframes and entry.video_keyframes() == list(video.keyframes)
    query = VideoQuery(
        tuple(Frame(f.index, f.timestamp, f.pdq, f.quality) for f in videos["re-encode"].frames)
    )
    with FeedServer(db.store) as central:
        pull(local, central, key, 2)
        (there,) = db.matching.answer(None, videos=[query]).videos[0]
        (here,) = local.matching.answer(None, videos=[query]).videos[0]
        assert here.record.labels == there.record.labels == ("attack_footage",)
        copy = local.store.videos.info([here.record.id], with_keyframes=True)[here.record.id]
        assert copy.keyframes == video.keyframes  # the follower keeps them too
        assert here.score.query_share == pytest.approx(there.score.query_share)
        db.vetting.retire(admin, [stored.id], "wrong")
        pull(local, central, key, 2)
    assert local.matching.answer(None, videos=[query]).videos[0] == []


# ---- convergence, property-tested ----------------------------------------------------


class LibraryFeed:
    """Central's feed read in-process (the HTTP client is tested above)."""

    def __init__(self, central: Consortium, reader: Actor) -> None:
        self._central, self._reader = central, reader

    def export(self, since: int = 0, limit: int = sync.DEFAULT_PAGE) -> FeedPage:
        return self._central.feed.page(self._reader, since, limit)


def synthetic_video(seed: int) -> NewVideo:
    frames = tuple(Frame(i, float(i), pdq(seed * 100 + i), 90) for i in range(4))
    return NewVideo(frames, 4.0, 1.0, 64, 64, labels=("attack_footage",))


def frames_of(db: Consortium) -> set[tuple[str, tuple[Frame, ...]]]:
    """Each matchable video's value and frames (as `matchable` reads hashes)."""
    videos = {m[1] for m in matchable(db) if m[0] == "vpdq"}
    with db.store.engine.connect() as conn:
        ids = conn.execute(
            select(hashes.c.id).where(
                hashes.c.signal_type == "vpdq",
                hashes.c.status.in_([Status.ACTIVE.value, Status.DISPUTED.value]),
            )
        ).scalars()
        infos = db.store.videos.info(list(ids))
    records = db.store.hashes.get_many(infos)
    return {
        (records[i].value.hex(), v.frames)
        for i, v in infos.items()
        if records[i].value.hex() in videos
    }


Step = tuple[str, int]
STEPS = st.tuples(
    st.sampled_from(
        [
            *("image", "pending", "video", "digest", "keypoints", "approve", "reject"),
            "retire",
            *("dispute", "keep", "expire", "relabel", "epoch", "backup", "restore", "sync"),
        ]
    ),
    st.integers(0, 10_000),
)
LABEL_SETS = (
    ("attack_footage",),
    ("manifesto",),
    ("attack_footage", "manifesto"),
    ("imminent_threat", "recruitment_instruction"),
)


class Central:
    """The central service of the property test: its database (a file that a backup
    and a restore replace), its consortium, the feed a follower reads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.generation = 0
        self.store = Store.open(self.settings(0).resolved_database_url(), migrate_schema=True)
        self.db = Consortium(Settings(), self.store)
        self.admin = Actor(self.store.members.create("Consortium", Role.ADMIN)[0])
        self.members = [Actor(self.store.members.create(f"P{n}", Role.MEMBER)[0]) for n in range(3)]
        self.backup: Path | None = None  # the latest
        self.backups = 0

    def feed(self) -> LibraryFeed:
        return LibraryFeed(self.db, self.members[0])

    def settings(self, generation: int) -> Settings:
        url = f"sqlite:///{self.folder / f'central-{generation}.sqlite3'}"
        return Settings(database_url=url, data_dir=self.folder)

    def back_up(self) -> None:
        """`hashdb backup` of the running central."""
        self.backups += 1
        self.backup = self.folder / f"backup-{self.backups}"
        backup(self.settings(self.generation), self.backup)

    def restore(self) -> None:
        """`hashdb restore` of the last backup into a fresh database, which replaces
        central's: the changes since the backup are lost, their sequence numbers will
        be reused, and the restore starts a new epoch."""
        if self.backup is None:
            return
        self.db.close()
        self.generation += 1
        fresh = self.settings(self.generation)
        done = restore(fresh, self.backup)
        assert done.epoch is not None and done.next_step is None
        self.store = Store.open(fresh.resolved_database_url())
        self.db = Consortium(Settings(), self.store)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEPS, min_size=5, max_size=30))
@example(  # a restore that drops changes the follower already holds, then reuses numbers
    steps=[
        *[("image", 1), ("pending", 2), ("video", 3), ("backup", 0), ("image", 4)],
        *[("relabel", 1), ("dispute", 0), ("retire", 1), ("sync", 5), ("restore", 0)],
        *[("image", 6), ("approve", 0), ("relabel", 2), ("sync", 1), ("image", 7)],
    ]
)
@example(  # keypoint sets: added active and pending, synced, approved, retired, restored
    steps=[
        *[("keypoints", 1), ("keypoints", 2), ("sync", 3), ("backup", 0), ("approve", 0)],
        *[("relabel", 1), ("sync", 1), ("retire", 0), ("restore", 0), ("sync", 2)],
    ]
)
def test_a_follower_syncing_at_random_moments_with_random_pages_converges(
    steps: list[Step],
) -> None:
    """After every sync, the follower matches exactly what central matches (values,
    signal types, labels, status, stored variants, video frames, keypoint sets),
    whatever happened in between: contributions, vetting, disputes, relabelling,
    expiry, new epochs, and a restore of central from a backup taken earlier."""
    with tempfile.TemporaryDirectory() as folder:
        central = Central(Path(folder))
        local = follower(Path(folder) / "local.sqlite3")
        ids: list[int] = []

        def some(statuses: set[Status], n: int) -> list[int]:
            records = central.store.hashes.get_many(ids)
            found = sorted(i for i, r in records.items() if r.status in statuses)
            return [found[n % len(found)]] if found else []

        def converge(limit: int) -> None:
            local.sync.pull(operator(local), central.feed(), "central", limit=limit)
            assert matchable(local) == matchable(central.db)
            assert frames_of(local) == frames_of(central.db)

        for n, (what, k) in enumerate(steps):
            seed = n * 100_000 + k
            db, admin, members = central.db, central.admin, central.members
            if what == "image":
                ids += [a.id for a in db.contributions.add(admin, [image(seed)])]
            elif what == "pending":
                ids += [a.id for a in db.contributions.add(members[1], [image(seed)])]
            elif what == "video":
                done = db.contributions.add_video(admin, synthetic_video(seed), [digest(seed)])
                ids += [a.id for a in done]
            elif what == "digest":
                ids += [a.id for a in db.contributions.add(admin, [digest(seed)])]
            elif what == "keypoints":  # an admin's is active, a member's pending
                item = new_hash(keypoint_set(seed), ("attack_footage",))
                ids += [a.id for a in db.contributions.add(admin if k % 2 else members[1], [item])]
            elif what in ("approve", "reject") and (picked := some({Status.PENDING}, k)):
                move = db.vetting.approve if what == "approve" else db.vetting.reject
                move(admin, picked, what)
            elif what == "retire" and (picked := some({Status.ACTIVE, Status.DISPUTED}, k)):
                db.vetting.retire(admin, picked, "retired")
            elif what == "dispute" and (picked := some({Status.ACTIVE}, k)):
                for m in members[1:]:
                    db.feedback.give(m, picked[0], Kind.DISAGREE, reason=DisagreeReason.WRONG_LABEL)
            elif what == "keep" and (picked := some({Status.DISPUTED}, k)):
                db.vetting.resolve_dispute(admin, picked[0], Resolution.KEEP, "checked: it fits")
            elif what == "expire" and (picked := some({Status.ACTIVE}, k)):
                soon = datetime.now(UTC) + timedelta(milliseconds=1)
                db.vetting.set_expiry(admin, picked[0], soon)
                time.sleep(0.002)
            elif what == "relabel" and (
                picked := some({Status.PENDING, Status.ACTIVE, Status.DISPUTED}, k)
            ):
                db.vetting.relabel(admin, picked[0], LABEL_SETS[k % len(LABEL_SETS)])
            elif what == "epoch":
                db.feed.new_epoch(admin, "promoted a standby")
            elif what == "backup":
                central.back_up()
            elif what == "restore":
                central.restore()
            elif what == "sync":
                converge(1 + k % 1000 if k % 3 else 1 + k % 7)
        converge(1 + len(steps) % 5)
        local.close()
        central.db.close()


def test_hashdb_feed_epoch_shows_the_epoch_and_starts_a_new_one(tmp_path: Path) -> None:
    env = {"HASHDB_DATABASE_URL": f"sqlite:///{tmp_path / 'central.sqlite3'}"}
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    shown = runner.invoke(main, ["feed-epoch"], env=env)
    assert shown.exit_code == 0, shown.output
    renewed = runner.invoke(main, ["feed-epoch", "--new", "restored", "--json"], env=env)
    assert renewed.exit_code == 0, renewed.output
    body = json.loads(renewed.output)
    assert body["new"] is True and body["epoch"] != shown.output.strip()
    again = runner.invoke(main, ["feed-epoch"], env=env)
    assert again.output.strip() == body["epoch"]
    bad = runner.invoke(
        main, ["sync", "--from", "http://x", "--limit", "0"], env={**env, "HASHDB_API_KEY": "k"}
    )
    assert bad.exit_code == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"quality": 1000},
        {"variants": [{"kind": "crop90_3_3", "value": "00" * 32, "quality": -1}]},
        {"variants": "crop90_3_3"},
        {"variants": [{"value": "00" * 32}]},
    ],
)
def test_a_malformed_feed_entry_is_refused_by_name_not_stored(bad: dict[str, object]) -> None:
    entry = {"seq": 1, "op": "add", "id": 7, "signal_type": "pdq", "status": "active"}
    with pytest.raises(InvalidInput) as caught:
        FeedEntry.from_json({**entry, "value": "00" * 32, **bad})
    assert caught.value.field == "feed"
