"""A follower applies a page of the feed as a batch, and leaves what applying its
entries one by one, in order, would.

Pages here are written by hand (a central's feed sends one entry per hash and page;
these cover what a batch could get wrong that a real feed rarely shows): two remote
hashes sharing one local row in one page, one live and one deleted; the same remote
id twice in a page; the last of two entries for one row giving its labels; a
refreshed row reaching the local change log; unknown signal types counted, not
stored; a bad video (frames, keyframes) refusing the whole page.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select

from hashdb.consortium import sync
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.consortium.export import (
    MAX_KEYPOINTS_CHARS,
    FeedEntry,
    FeedOp,
    FeedPage,
    FeedVariant,
)
from hashdb.errors import InvalidInput
from hashdb.keypoints.codec import empty
from hashdb.settings import Settings
from hashdb.signals.vpdq import Frame, format_frames, frames_digest
from hashdb.store import MAX_KEYFRAMES, Role, Status, Store
from hashdb.store.schema import changes, hashes, synced_hashes

URL = "central"


class Pages:
    """A central that hands out the pages it is given, in order, one per call."""

    def __init__(self, *pages: Sequence[FeedEntry]) -> None:
        self._pages = [list(p) for p in pages]
        self._served = 0

    def export(self, since: int = 0, limit: int = sync.DEFAULT_PAGE) -> FeedPage:
        entries = self._pages[self._served]
        self._served += 1
        more = self._served < len(self._pages)
        cursor = max([since, *(e.seq for e in entries)])
        return FeedPage(entries, cursor, more, "epoch-1", cursor)


def value(seed: int) -> str:
    return random.Random(seed).randbytes(32).hex()


def live(
    seq: int,
    remote: int,
    seed: int,
    labels: tuple[str, ...] = ("attack_footage",),
    status: Status = Status.ACTIVE,
    variants: tuple[FeedVariant, ...] | None = None,
) -> FeedEntry:
    return FeedEntry(
        seq, FeedOp.ADD, remote, "pdq", status, value(seed), 90, labels, variants=variants
    )


def gone(seq: int, remote: int, seed: int) -> FeedEntry:
    return FeedEntry(seq, FeedOp.DELETE, remote, "pdq", Status.RETIRED, value(seed))


@pytest.fixture
def local(store: Store) -> Consortium:
    return Consortium(Settings(), store)


@pytest.fixture
def admin(store: Store) -> Actor:
    return Actor(store.members.create("Local admin", Role.ADMIN)[0])


def rows(local: Consortium) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each local pdq row as hex value -> (status, labels)."""
    with local.store.engine.connect() as conn:
        found = conn.execute(
            select(hashes.c.value, hashes.c.status, hashes.c.labels).where(
                hashes.c.signal_type == "pdq"
            )
        ).all()
    return {bytes(v).hex(): (str(s), tuple(labels)) for v, s, labels in found}


def mappings(local: Consortium) -> dict[int, tuple[bool, str | None]]:
    with local.store.engine.connect() as conn:
        found = conn.execute(
            select(synced_hashes.c.remote_id, synced_hashes.c.live, synced_hashes.c.status)
        ).all()
    return {int(r): (bool(on), s) for r, on, s in found}


def test_two_remote_hashes_of_one_value_in_one_page_one_deleted_keep_the_row_active(
    local: Consortium, admin: Actor
) -> None:
    local.sync.pull(admin, Pages([live(1, 10, 1), live(2, 11, 1)]), URL)
    assert rows(local) == {value(1): ("active", ("attack_footage",))}

    local.sync.pull(admin, Pages([live(3, 10, 1), gone(4, 11, 1)]), URL)
    assert rows(local)[value(1)][0] == "active"
    assert mappings(local) == {10: (True, "active"), 11: (False, "retired")}

    local.sync.pull(admin, Pages([gone(5, 10, 1)]), URL)
    assert rows(local)[value(1)][0] == "retired"


def test_a_page_holding_a_row_new_and_deleted_leaves_it_retired(
    local: Consortium, admin: Actor
) -> None:
    done = local.sync.pull(admin, Pages([live(1, 10, 1), live(2, 11, 2), gone(3, 10, 1)]), URL)
    assert rows(local) == {
        value(1): ("retired", ("attack_footage",)),
        value(2): ("active", ("attack_footage",)),
    }
    assert mappings(local) == {10: (False, "retired"), 11: (True, "active")}
    assert (done.entries, done.retired) == (3, 1)  # stored, then retired by its delete


def test_a_deleted_then_re_added_remote_hash_in_one_page_is_live(
    local: Consortium, admin: Actor
) -> None:
    local.sync.pull(admin, Pages([live(1, 10, 1)]), URL)
    local.sync.pull(admin, Pages([gone(2, 10, 1), live(3, 10, 1, ("manifesto",))]), URL)
    assert rows(local) == {value(1): ("active", ("manifesto",))}
    assert mappings(local) == {10: (True, "active")}


def test_the_last_entry_for_a_shared_row_gives_its_labels_and_a_live_disputed_one_keeps_it_active(
    local: Consortium, admin: Actor
) -> None:
    page = [
        live(1, 10, 1, ("attack_footage",)),
        live(2, 11, 1, ("manifesto",), Status.DISPUTED),
        live(3, 12, 2, ("manifesto",), Status.DISPUTED),
    ]
    local.sync.pull(admin, Pages(page), URL)
    assert rows(local) == {
        value(1): ("active", ("manifesto",)),
        value(2): ("disputed", ("manifesto",)),
    }


def test_a_refreshed_row_gets_a_change_log_entry_so_local_matchers_replay_it(
    local: Consortium, admin: Actor
) -> None:
    local.sync.pull(admin, Pages([live(1, 10, 1), live(2, 11, 2)]), URL)
    (row,) = local.store.hashes.find_exact("pdq", [bytes.fromhex(value(1))]).values()
    with local.store.engine.connect() as conn:
        before = conn.execute(select(func.max(changes.c.seq))).scalar_one()
    local.sync.pull(admin, Pages([live(3, 10, 1, ("manifesto",))]), URL)
    with local.store.engine.connect() as conn:
        logged = conn.execute(
            select(changes.c.hash_id, changes.c.op).where(changes.c.seq > before)
        ).all()
    assert [(int(h), str(op)) for h, op in logged] == [(row[0].id, "update")]


def test_an_image_keeps_its_variants_and_unknown_types_are_skipped(
    local: Consortium, admin: Actor
) -> None:
    variants = (FeedVariant("content", value(50), 80), FeedVariant("crop90_0_0", value(51)))
    unknown = FeedEntry(2, FeedOp.ADD, 11, "tmk", Status.ACTIVE, "ab" * 16)
    done = local.sync.pull(admin, Pages([live(1, 10, 1, variants=variants), unknown]), URL)
    assert (done.entries, done.skipped) == (2, 1)
    (image,) = local.store.hashes.find_exact("pdq", [bytes.fromhex(value(1))]).values()
    stored = local.store.hashes.variants([image[0].id])[image[0].id]
    assert {(v.kind, v.value.hex()) for v in stored} == {
        ("content", value(50)),
        ("crop90_0_0", value(51)),
    }


A_SET = empty(64, 64).to_text()  # a well-formed keypoint set (of no keypoints)


@pytest.mark.parametrize(
    "keyframes",
    [
        [{"at": 0.0, "keypoints": "not base64 at all"}],
        [{"at": -1.0, "keypoints": A_SET}],
        [{"at": 0.0, "keypoints": "A" * (MAX_KEYPOINTS_CHARS + 4)}],
        [{"at": float(i), "keypoints": A_SET} for i in range(MAX_KEYFRAMES + 1)],
    ],
    ids=["malformed", "negative time", "too long", "too many"],
)
def test_a_video_with_a_bad_keyframe_refuses_the_whole_page(
    local: Consortium, admin: Actor, keyframes: list[dict[str, object]]
) -> None:
    frames = (Frame(0, 0.0, bytes.fromhex(value(3)), 90),)
    entry = FeedEntry.from_json(
        {
            "seq": 2,
            "op": "add",
            "id": 11,
            "signal_type": "vpdq",
            "status": "active",
            "value": frames_digest(frames).hex(),
            "frames": format_frames(frames),
            "duration": 1.0,
            "fps": 1.0,
            "keyframes": keyframes,
        }
    )
    with pytest.raises(InvalidInput) as refused:
        local.sync.pull(admin, Pages([live(1, 10, 1), entry]), URL)
    assert refused.value.details["field"] == "keyframes"
    assert rows(local) == {}
    assert local.sync.cursor(admin, URL) == 0


def test_a_video_whose_frames_do_not_hash_to_its_value_refuses_the_whole_page(
    local: Consortium, admin: Actor
) -> None:
    video = FeedEntry(
        2, FeedOp.ADD, 11, "vpdq", Status.ACTIVE, "00" * 32, frames=f"0,90,{value(3)},0.000"
    )
    with pytest.raises(InvalidInput, match="frames do not hash"):
        local.sync.pull(admin, Pages([live(1, 10, 1), video]), URL)
    assert rows(local) == {}
    assert local.sync.cursor(admin, URL) == 0
