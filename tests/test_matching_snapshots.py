"""Shared snapshots: API processes map one snapshot, adopt newer ones, and never write
one themselves when the worker role does; on both database backends."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from hashdb.matching import Matcher, Query
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Status, Store


def code(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, 32, dtype=np.uint8).tobytes()


def api_matcher(store: Store, snapshots: Path, poll: float = 3600.0) -> Matcher:
    """How an API worker is set up when the worker role writes the snapshots (polling
    for newer ones every `poll` seconds)."""
    return Matcher(
        store.hashes,
        store.changes,
        snapshot_dir=snapshots,
        save_after_build=False,
        snapshot_poll=poll,
        sync_interval=0.0,
    )


def test_an_api_matcher_without_a_snapshot_builds_and_writes_nothing(
    store: Store, tmp_path: Path
) -> None:
    member = store.members.create("A", Role.ADMIN)[0]
    store.hashes.add(member.id, [NewHash("pdq", code(1))])
    matcher = api_matcher(store, tmp_path / "snapshots")
    matcher.load()
    assert matcher.sizes()["pdq"] == 1 and matcher.snapshot_cursor is None
    assert not (tmp_path / "snapshots").exists()


def test_a_newer_snapshot_is_adopted_while_searches_run(store: Store, tmp_path: Path) -> None:
    member = store.members.create("A", Role.ADMIN)[0]
    snapshots = tmp_path / "snapshots"
    steady = store.hashes.add(member.id, [NewHash("pdq", code(s)) for s in range(20)])
    writer = Matcher(store.hashes, store.changes, snapshot_dir=snapshots)
    writer.load()  # builds and saves: the worker role's first snapshot
    api = api_matcher(store, snapshots)
    api.load()
    first = api.snapshot_cursor
    assert first == writer.cursor

    later = store.hashes.add(member.id, [NewHash("pdq", code(s)) for s in range(100, 130)])
    store.hashes.set_status([steady[0].id], Status.RETIRED)
    writer.refresh()
    writer.save_snapshot()
    assert writer.snapshot_cursor == writer.cursor  # the writer maps what it saved, too

    want = {a.id for a in steady[1:]}
    seen: list[set[int]] = []
    stop = threading.Event()

    def search() -> None:  # a request thread: the steady hashes always match, whole
        queries = [Query(PDQ, code(s)) for s in range(1, 20)]
        while not stop.is_set():
            results = api.match(queries)
            seen.append({m.record.id for r in results for m in r.matches})

    thread = threading.Thread(target=search)
    thread.start()
    try:
        assert api.adopt_snapshot()
    finally:
        stop.set()
        thread.join()
    assert seen and all(found == want for found in seen)
    assert api.snapshot_cursor == writer.cursor and api.snapshot_cursor > first
    assert api.cursor == store.changes.head()
    results = api.match([Query(PDQ, code(0)), Query(PDQ, code(100))])
    assert [[m.record.id for m in r.matches] for r in results] == [[], [later[0].id]]
    assert not api.adopt_snapshot()  # nothing newer now


def test_changes_after_the_snapshot_are_replayed_on_adoption(store: Store, tmp_path: Path) -> None:
    member = store.members.create("A", Role.ADMIN)[0]
    snapshots = tmp_path / "snapshots"
    added = store.hashes.add(member.id, [NewHash("pdq", code(s)) for s in range(5)])
    writer = Matcher(store.hashes, store.changes, snapshot_dir=snapshots)
    writer.load()
    api = api_matcher(store, snapshots)
    api.load()
    store.hashes.add(member.id, [NewHash("pdq", code(50))])
    writer.refresh()
    writer.save_snapshot()
    store.hashes.set_status([added[1].id], Status.RETIRED)  # after the new snapshot
    api.refresh()
    assert api.adopt_snapshot()
    (old, new) = api.match([Query(PDQ, code(1)), Query(PDQ, code(50))])
    assert old.matches == [] and len(new.matches) == 1
    assert api.sizes()["pdq"] == 5


def test_lookups_poll_for_a_newer_snapshot(store: Store, tmp_path: Path) -> None:
    member = store.members.create("A", Role.ADMIN)[0]
    snapshots = tmp_path / "snapshots"
    store.hashes.add(member.id, [NewHash("pdq", code(1))])
    writer = Matcher(store.hashes, store.changes, snapshot_dir=snapshots)
    writer.load()
    api = api_matcher(store, snapshots, poll=0.0)
    api.load()
    store.hashes.add(member.id, [NewHash("pdq", code(2))])
    writer.refresh()
    writer.save_snapshot()
    api.catch_up(store.changes.head())  # a request: notices the save, adopts in the background
    adopter = api._adopter
    assert adopter is not None
    adopter.join(timeout=30)
    assert api.snapshot_cursor == writer.cursor
