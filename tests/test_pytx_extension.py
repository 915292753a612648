"""The python-threatexchange extension (`hashdb.pytx`) follows a real hashdb server.

The story a pytx or HMA user lives: the `threatexchange` CLI, with the extension
added and a collaboration for the server, fetches the feed and matches an
admin's photo with its labels; once central retires the hash, the next fetch
forgets it. The exchange's rules are then specified one by one: labels as tags,
status as opinion (disputed aggregates to DISPUTED), tombstones as deletions, pages
that hold only internal changes (an image's stored variants) never end a fetch,
resuming from the checkpoint, only PDQ crossing over, the key from the
environment or a file and never from the command line, and a feed whose history
changed (a new epoch, or a cursor behind ours) purging what the follower held
before replaying from zero.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import ROOT, Server, start_server
from threatexchange.exchanges import auth
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.fetch_state import AggregateSignalOpinionCategory as Agg
from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal

from hashdb.pytx import (
    PURGE_CHUNK,
    FeedPage,
    HashdbCheckpoint,
    HashdbCollabConfig,
    HashdbCredentials,
    HashdbFeedError,
    HashdbHash,
    HashdbSignalExchangeAPI,
    HashdbSignalMetadata,
    parse_page,
)
from hashdb.store import Role, Store

PHOTO = Path("pdq") / "bridge-mods" / "aaa-orig.jpg"
SIGNALS = [PdqSignal, VideoMD5Signal]


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    started = start_server(db_url, tmp_path, workers=1, sync_interval=0.5, dispute_threshold=1)
    yield started
    started.stop()


@pytest.fixture
def keys(db_url: str) -> Iterator[dict[str, str]]:
    store = Store.open(db_url, migrate_schema=False)
    yield {
        name: store.members.create(f"{name}-pytx", role)[1].secret
        for name, role in (("admin", Role.ADMIN), ("member", Role.MEMBER))
    }
    store.close()


@pytest.fixture(autouse=True)
def no_ambient_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key from the developer's environment or home directory leaks in."""
    monkeypatch.delenv("HASHDB_API_KEY", raising=False)
    monkeypatch.setattr(HashdbCredentials, "FILE_NAME", str(tmp_path / "no-such-key"))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def contribute(url: str, key: str, value: str, labels: list[str]) -> int:
    r = requests.post(
        f"{url}/v1/hashes",
        json={"hashes": [{"signal_type": "pdq", "value": value, "labels": labels}]},
        headers=bearer(key),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["hashes"][0]["id"])


def contribute_photo(url: str, key: str, photo: Path, labels: list[str]) -> dict[str, int]:
    """An image uploaded as media: its ids by signal type (it also stores variants)."""
    r = requests.post(
        f"{url}/v1/media",
        files={"file": photo.read_bytes()},
        data={"labels": labels},
        headers=bearer(key),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return {a["signal_type"]: int(a["id"]) for a in r.json()["added"]}


def retire(url: str, admin: str, hash_id: int) -> None:
    r = requests.delete(f"{url}/v1/hashes/{hash_id}", headers=bearer(admin), timeout=30)
    assert r.status_code == 200, r.text


def exchange(url: str, key: str, page_size: int = 1000) -> HashdbSignalExchangeAPI:
    collab = HashdbCollabConfig(name="consortium", api="hashdb", server=url, page_size=page_size)
    return HashdbSignalExchangeAPI.for_collab(collab, HashdbCredentials(key))


def follow(
    api: HashdbSignalExchangeAPI,
    held: dict[int, HashdbSignalMetadata],
    checkpoint: HashdbCheckpoint | None = None,
) -> tuple[HashdbCheckpoint | None, int]:
    """Fetch into `held` as pytx's stores do; (last checkpoint, deltas)."""
    deltas = 0
    for delta in api.fetch_iter(SIGNALS, checkpoint):
        HashdbSignalExchangeAPI.naive_fetch_merge(held, delta.updates)
        checkpoint, deltas = delta.checkpoint, deltas + 1
    return checkpoint, deltas


# The threatexchange CLI, end to end -------------------------------------------------


def tx(state_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threatexchange", *args],
        cwd=ROOT,
        env={**env, "TX_STATEDIR": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_the_threatexchange_cli_follows_a_consortium(
    server: Server, keys: dict[str, str], tmp_path: Path, testdata: Path
) -> None:
    photo = testdata / PHOTO
    ids = contribute_photo(server.url, keys["admin"], photo, ["attack_footage", "manifesto"])
    # Other hashes on the list (pytx 1.2's PDQ index also loses a lone entry when it
    # is saved and loaded again, so a one-hash list would not match at all).
    for n in range(2):
        contribute(server.url, keys["admin"], f"{n + 1:064x}", ["glorification"])
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HASHDB_", "TX_"))}
    env.update(HOME=str(home), HASHDB_API_KEY=keys["member"])
    state_dir = tmp_path / "threatexchange"

    def run(*args: str) -> str:
        done = tx(state_dir, env, *args)
        assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run("config", "extensions", "add", "hashdb.pytx")
    # A small page size: the pages holding the photo's stored variants are
    # internal changes, and the fetch must go past them.
    run("config", "collab", "edit", "hashdb", "consortium", "--create",
        "--server", server.url, "--page-size", "2")  # fmt: skip
    run("fetch")
    found = run("match", "photo", str(photo))
    (line,) = [x for x in found.splitlines() if "(consortium)" in x]
    assert line.startswith("pdq ")
    assert "POSITIVE_CLASS attack_footage,manifesto" in line
    assert f"hashdb_id={ids['pdq']}" in line

    retire(server.url, keys["admin"], ids["pdq"])
    run("fetch")
    assert "(consortium)" not in run("match", "photo", str(photo))
    # Nothing on the command line carried the key; pytx's state holds none either.
    assert not any(
        keys["member"] in p.read_bytes().decode("latin-1")
        for p in state_dir.rglob("*")
        if p.is_file()
    )


def test_a_missing_key_is_a_clear_cli_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HASHDB_", "TX_"))}
    env["HOME"] = str(home)
    state_dir = tmp_path / "threatexchange"
    assert tx(state_dir, env, "config", "extensions", "add", "hashdb.pytx").returncode == 0
    edit = ("config", "collab", "edit", "hashdb", "c", "--create", "--server", "http://127.0.0.1:9")
    assert tx(state_dir, env, *edit).returncode == 0
    done = tx(state_dir, env, "fetch")
    assert done.returncode != 0
    assert "HASHDB_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


# The exchange against a real server --------------------------------------------------


@pytest.mark.slow
def test_fetch_maps_labels_status_and_retirements(
    server: Server, keys: dict[str, str], testdata: Path
) -> None:
    url, admin, member = server.url, keys["admin"], keys["member"]
    a, b = "a" * 64, "0123456789abcdef" * 4
    first = contribute(url, admin, a, ["attack_footage"])
    second = contribute(url, admin, b, ["manifesto", "glorification"])
    photo = contribute_photo(url, admin, testdata / PHOTO, ["attack_footage"])

    held: dict[int, HashdbSignalMetadata] = {}
    api = exchange(url, member, page_size=1)
    checkpoint, deltas = follow(api, held)
    assert checkpoint is not None and deltas > 3  # page by page, variants included
    # Only PDQ crosses over: the photo's md5, sha256 and phash are not pytx signals.
    assert set(held) == {first, second, photo["pdq"]}
    assert held[second].value == b and held[second].signal_type == "pdq"
    opinion = held[second].get_as_aggregate_opinion()
    assert opinion.category is Agg.POSITIVE_CLASS
    assert opinion.tags == {"manifesto", "glorification"}

    # Resuming from the checkpoint: nothing new, no delta at all.
    assert follow(api, held, checkpoint) == (checkpoint, 0)

    # A member disagrees (threshold 1): disputed; the admin retires the other one.
    r = requests.post(
        f"{url}/v1/hashes/{first}/feedback",
        json={"kind": "disagree", "reason": "wrong_label"},
        headers=bearer(member),
        timeout=30,
    )
    assert r.status_code == 201 and r.json()["disputed"], r.text
    retire(url, admin, second)
    checkpoint, _ = follow(api, held, checkpoint)
    assert set(held) == {first, photo["pdq"]}
    assert held[first].get_as_aggregate_opinion().category is Agg.DISPUTED
    assert "DISPUTED attack_footage" in str(held[first])

    # Matching sees one signal per value; a second contributor's hash joins it.
    other = contribute(url, keys["member"], a, ["manifesto"])
    r = requests.post(
        f"{url}/v1/hashes/approve", json={"ids": [other]}, headers=bearer(admin), timeout=30
    )
    assert r.status_code == 200, r.text
    follow(api, held, checkpoint)
    index = HashdbSignalExchangeAPI.naive_convert_to_signal_type(SIGNALS, api.collab, held)
    by_value = index[PdqSignal]
    assert {h.id for h in by_value[a].hashes} == {first, other}


def test_a_wrong_key_fails_the_fetch_as_invalid_auth(server: Server) -> None:
    api = exchange(server.url, "not-a-key")
    with pytest.raises(auth.SignalExchangeAPIInvalidAuthException, match="refused the key"):
        next(api.fetch_iter(SIGNALS, None))


# Credentials and configuration --------------------------------------------------------


def collab(**fields: Any) -> HashdbCollabConfig:
    return HashdbCollabConfig(
        name="c", api="hashdb", server=fields.pop("server", "http://127.0.0.1:9"), **fields
    )


def test_the_key_comes_from_the_environment_or_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(auth.SignalExchangeAPIMissingAuthException) as missing:
        HashdbSignalExchangeAPI.for_collab(collab())
    assert "HASHDB_API_KEY" in missing.value.pretty_str()

    monkeypatch.setenv("HASHDB_API_KEY", "from-env")
    assert HashdbSignalExchangeAPI.for_collab(collab()).feed._key == "from-env"  # type: ignore[attr-defined]

    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    api = HashdbSignalExchangeAPI.for_collab(collab(key_file=str(key_file)))
    assert api.feed._key == "from-file"  # type: ignore[attr-defined]

    with pytest.raises(auth.SignalExchangeAPIInvalidAuthException, match="cannot read"):
        HashdbSignalExchangeAPI.for_collab(collab(key_file=str(tmp_path / "absent")))
    key_file.write_text("two words\n")
    with pytest.raises(auth.SignalExchangeAPIInvalidAuthException, match="no valid key"):
        HashdbSignalExchangeAPI.for_collab(collab(key_file=str(key_file)))

    # HMA hands stored credentials over as pytx's default: they win over the file.
    with HashdbCredentials.set_default(HashdbCredentials("from-hma"), "hma"):
        api = HashdbSignalExchangeAPI.for_collab(collab(key_file=str(tmp_path / "absent")))
    assert api.feed._key == "from-hma"  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["ftp://host/", "file:///etc/passwd", "hashdb.example"])
def test_only_http_servers_are_followed(url: str) -> None:
    with pytest.raises(auth.SignalExchangeAPIInvalidAuthException, match="http"):
        HashdbSignalExchangeAPI.for_collab(collab(server=url), HashdbCredentials("k"))


def test_the_page_size_is_checked() -> None:
    with pytest.raises(auth.SignalExchangeAPIInvalidAuthException, match="page_size"):
        HashdbSignalExchangeAPI.for_collab(collab(page_size=0), HashdbCredentials("k"))


def test_the_manifest_names_the_exchange() -> None:
    manifest = ThreatExchangeExtensionManifest.load_from_module_name("hashdb.pytx")
    assert manifest.apis == (HashdbSignalExchangeAPI,)
    assert HashdbSignalExchangeAPI.get_name() == "hashdb"


# The page protocol, read defensively ------------------------------------------------


def line(seq: int, hash_id: int, op: str = "add", **more: Any) -> str:
    entry = {"seq": seq, "op": op, "id": hash_id, "signal_type": "pdq", "status": "active"}
    return json.dumps({**entry, **more})


def test_headers_give_the_cursor_more_and_epoch() -> None:
    page = parse_page(
        "", {"X-Hashdb-Cursor": "40", "X-Hashdb-More": "true", "X-Hashdb-Epoch": "e2"}, 7
    )
    assert page == FeedPage([], 40, True, "e2")  # empty, yet not the end


def test_without_headers_the_last_seq_is_the_cursor_and_an_empty_page_the_end() -> None:
    page = parse_page(line(3, 1) + "\n" + line(9, 2, epoch=5) + "\n", {}, 0)
    assert (page.cursor, page.more, page.epoch) == (9, True, "5")
    assert parse_page("", {}, 9) == FeedPage([], 9, False, None)


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"seq": 1}'])
def test_a_body_that_is_not_the_feed_is_refused(body: str) -> None:
    with pytest.raises(HashdbFeedError):
        parse_page(body, {}, 0)


class ScriptedFeed:
    """A server's answers, in order, recording what was asked."""

    def __init__(self, *pages: FeedPage) -> None:
        self.pages = list(pages)
        self.asked: list[int] = []

    def page(self, since: int, limit: int) -> FeedPage:
        self.asked.append(since)
        return self.pages.pop(0)


def entry(seq: int, hash_id: int, op: str = "add", signal_type: str = "pdq") -> dict[str, Any]:
    return {
        "seq": seq,
        "op": op,
        "id": hash_id,
        "signal_type": signal_type,
        "value": f"{hash_id:064x}",
        "status": "active" if op != "delete" else "retired",
        "labels": ["manifesto"],
    }


def scripted(feed: ScriptedFeed) -> HashdbSignalExchangeAPI:
    return HashdbSignalExchangeAPI(collab(), feed)


def test_a_server_that_says_more_without_moving_on_is_an_error() -> None:
    api = scripted(ScriptedFeed(FeedPage([], 5, True, None)))
    with pytest.raises(HashdbFeedError, match="cursor stays"):
        list(api.fetch_iter(SIGNALS, HashdbCheckpoint(5)))


def test_other_signal_types_and_bad_values_are_skipped() -> None:
    bad = {**entry(3, 3), "value": "xyz"}
    api = scripted(
        ScriptedFeed(FeedPage([entry(1, 1, signal_type="md5"), entry(2, 2), bad], 3, False, "e"))
    )
    (delta,) = api.fetch_iter(SIGNALS, None)
    assert set(k for k, v in delta.updates.items() if v is not None) == {2}
    assert delta.checkpoint == HashdbCheckpoint(3, "e", 3)


def test_a_new_epoch_purges_what_was_held_and_replays_from_zero() -> None:
    held: dict[int, HashdbSignalMetadata] = {}
    first = scripted(ScriptedFeed(FeedPage([entry(1, 1), entry(2, 7)], 2, False, "old")))
    checkpoint, _ = follow(first, held)
    assert set(held) == {1, 7} and checkpoint == HashdbCheckpoint(2, "old", 7)

    # Restored from a backup: id 1 is back with another value, id 7 never existed.
    feed = ScriptedFeed(FeedPage([], 2, False, "new"), FeedPage([entry(1, 1)], 1, False, "new"))
    checkpoint, _ = follow(scripted(feed), held, checkpoint)
    assert feed.asked == [2, 0]
    assert set(held) == {1} and checkpoint == HashdbCheckpoint(1, "new", 1)


def test_a_cursor_behind_ours_is_a_new_history_too() -> None:
    held: dict[int, HashdbSignalMetadata] = {5: HashdbSignalMetadata("pdq", "0" * 64, ())}
    feed = ScriptedFeed(FeedPage([], 3, False, None), FeedPage([], 0, False, None))
    checkpoint, _ = follow(scripted(feed), held, HashdbCheckpoint(10, None, 5))
    assert held == {} and checkpoint == HashdbCheckpoint(0, None, 0)


def test_a_head_behind_our_cursor_is_a_new_history_too() -> None:
    held: dict[int, HashdbSignalMetadata] = {5: HashdbSignalMetadata("pdq", "0" * 64, ())}
    feed = ScriptedFeed(FeedPage([], 10, False, None, head=4), FeedPage([], 0, False, None, 4))
    checkpoint, _ = follow(scripted(feed), held, HashdbCheckpoint(10, None, 5))
    assert held == {} and feed.asked == [10, 0]
    assert checkpoint == HashdbCheckpoint(0, None, 0)


def test_a_history_that_keeps_changing_is_an_error_not_a_loop() -> None:
    feed = ScriptedFeed(FeedPage([], 2, False, "b"), FeedPage([], 0, False, "a"))
    with pytest.raises(HashdbFeedError, match="twice"):
        list(scripted(feed).fetch_iter(SIGNALS, HashdbCheckpoint(2, "a", 3)))


def test_a_large_purge_goes_in_chunks_that_resume() -> None:
    high = PURGE_CHUNK * 2 + 5
    feed = ScriptedFeed(FeedPage([], 9, False, "new"), FeedPage([], 0, False, "new"))
    deltas = list(scripted(feed).fetch_iter(SIGNALS, HashdbCheckpoint(9, "old", high)))
    sizes = [len(d.updates) for d in deltas]
    assert sizes == [PURGE_CHUNK, PURGE_CHUNK, 5]
    # Until the purge is done the checkpoint keeps the old history, so a resumed
    # fetch purges what is left.
    assert deltas[0].checkpoint == HashdbCheckpoint(9, "old", high - PURGE_CHUNK)
    assert deltas[-1].checkpoint == HashdbCheckpoint(0, "new", 0)


def test_opinions_follow_the_status() -> None:
    def category(status: str) -> Agg:
        record = HashdbSignalMetadata("pdq", "0" * 64, (HashdbHash(1, status, ("x",)),))
        return record.get_as_aggregate_opinion().category

    assert category("active") is Agg.POSITIVE_CLASS
    assert category("disputed") is Agg.DISPUTED
    assert category("something_new") is Agg.INVESTIGATION_SEED
    assert state.SignalOpinionCategory.POSITIVE_CLASS == 2  # pytx's model, unchanged
