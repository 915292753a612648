"""What every `hashdb` command promises a script: `--json`, `--quiet`, and `-` for stdin.

- Every leaf command of the click tree takes `--json` (its result as JSON on stdout)
  and `--quiet`/`-q` (nothing but errors); a command added without them fails here.
- `-` reads standard input once per command: `TYPE:HEX` lines (blank lines and `#`
  comments skipped) are hashes, anything else one media file, bounded by
  HASHDB_MAX_UPLOAD_BYTES; `hashdb import -` reads an archive.
- Errors keep going to stderr with the exit codes of hashdb/cli/__init__.py, even
  with --quiet.

The database is a real SQLite file made by `hashdb init`; one case runs on both
backends (`db_url`), and one against a real `hashdb serve`.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from api_server import Server, start_server
from click.testing import CliRunner, Result

import hashdb.cli.serve as serve_module
from hashdb.cli import main
from hashdb.client import KEY_ENV, KEY_FILE_ENV, Client
from hashdb.store import Role, Store

PDQ_HEX = "f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22"
MD5_HEX = "0123456789abcdef0123456789abcdef"
LABEL = "attack_footage"

Run = Callable[..., Result]


def leaf_commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from leaf_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


LEAVES = dict(leaf_commands(main))


def runner_for(env: dict[str, str | None]) -> Run:
    runner = CliRunner()

    def invoke(*args: str, input: bytes | str | None = None) -> Result:
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """`hashdb` on a SQLite file in tmp_path (run `init` first to create it)."""
    url = f"sqlite:///{tmp_path / 'hashdb.sqlite3'}"
    return runner_for({"HASHDB_DATABASE_URL": url, "HASHDB_DATA_DIR": str(tmp_path)})


@pytest.fixture
def image(testdata: Path) -> Path:
    return testdata / "pdq/bridge-mods/aaa-orig.jpg"


def pdq_ids(row: dict[str, object]) -> list[int]:
    matches = row["matches"]
    assert isinstance(matches, list)
    return [m["id"] for m in matches if m["signal_type"] == "pdq"]


# ---- the convention itself -----------------------------------------------------------


def test_the_tree_has_the_commands_the_convention_was_written_for() -> None:
    assert {"add", "hash", "match", "import", "init", "serve", "remote match"} <= set(LEAVES)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_leaf_command_takes_json_and_quiet(name: str) -> None:
    options = {opt for param in LEAVES[name].params for opt in param.opts}
    assert {"--json", "--quiet", "-q"} <= options, f"`hashdb {name}` lacks --json/--quiet"


# ---- `-`: hashes on standard input -----------------------------------------------------


def test_hash_reads_type_hex_lines_and_prints_them_back_canonical(run: Run) -> None:
    listing = f"# from a partner\n\npdq:{PDQ_HEX.upper()}\n  md5:{MD5_HEX}  \n"
    result = run("hash", "-", "--json", input=listing)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"hash": f"pdq:{PDQ_HEX}", "signal_type": "pdq"},
        {"hash": f"md5:{MD5_HEX}", "signal_type": "md5"},
    ]
    text = run("hash", "-", input=listing)
    assert text.stdout.splitlines() == [f"pdq:{PDQ_HEX}", f"md5:{MD5_HEX}"]


def test_a_bad_line_on_stdin_is_reported_and_the_rest_still_done(run: Run) -> None:
    result = run("hash", "-", input=f"pdq:{PDQ_HEX}\nnot-a-hash\n")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"pdq:{PDQ_HEX}"]
    assert "not-a-hash: error:" in result.stderr


def test_hashes_piped_to_add_are_found_when_piped_to_match(run: Run) -> None:
    run("init")
    listing = f"# two hashes\npdq:{PDQ_HEX}\n\nmd5:{MD5_HEX}\n"
    added = run("add", "-", "--label", LABEL, "--json", input=listing)
    assert added.exit_code == 0, added.output
    rows = json.loads(added.stdout)
    assert [r["input"] for r in rows] == [f"pdq:{PDQ_HEX}", f"md5:{MD5_HEX}"]
    ids = [r["added"][0]["id"] for r in rows]
    matched = run("match", "-", "--json", input=listing)
    assert matched.exit_code == 0, matched.output
    found = [[m["id"] for m in r["matches"]] for r in json.loads(matched.stdout)]
    assert found == [[ids[0]], [ids[1]]]


def test_stdin_stands_where_the_dash_is_among_other_arguments(run: Run) -> None:
    run("init")
    result = run("add", f"md5:{MD5_HEX}", "-", "--json", input=f"pdq:{PDQ_HEX}\n")
    assert [r["input"] for r in json.loads(result.stdout)] == [f"md5:{MD5_HEX}", f"pdq:{PDQ_HEX}"]


# ---- `-`: a media file on standard input -----------------------------------------------


def test_hash_reads_an_image_from_stdin_as_it_reads_the_file(run: Run, image: Path) -> None:
    (from_file,) = json.loads(run("hash", str(image), "--json").stdout)
    piped = run("hash", "-", "--json", input=image.read_bytes())
    assert piped.exit_code == 0, piped.output
    (from_stdin,) = json.loads(piped.stdout)
    assert from_stdin["file"] == "-"
    assert {k: v for k, v in from_stdin.items() if k != "file"} == {
        k: v for k, v in from_file.items() if k != "file"
    }


def test_an_image_piped_to_add_is_found_when_piped_to_match(run: Run, image: Path) -> None:
    run("init")
    added = run("add", "-", "--json", input=image.read_bytes())
    assert added.exit_code == 0, added.output
    (row,) = json.loads(added.stdout)
    assert row["input"] == "-"
    pdq_id = next(a["id"] for a in row["added"] if a["signal_type"] == "pdq")
    matched = run("match", "-", "--json", input=image.read_bytes())
    assert matched.exit_code == 0, matched.output
    (found,) = json.loads(matched.stdout)
    assert found["input"] == "-" and pdq_ids(found) == [pdq_id]


# ---- `-`: what is refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("hash",),
        ("add",),
        ("match",),
        ("remote", "match", "--url", "http://127.0.0.1:9"),
        ("remote", "contribute", "--url", "http://127.0.0.1:9"),
    ],
    ids=" ".join,
)
def test_the_dash_given_twice_is_a_usage_error(run: Run, command: tuple[str, ...]) -> None:
    run("init")
    result = run(*command, "-", "-", input=f"pdq:{PDQ_HEX}\n")
    assert result.exit_code == 2
    assert "only once" in result.stderr and result.stdout == ""


def test_stdin_larger_than_an_upload_may_be_is_refused(tmp_path: Path) -> None:
    run = runner_for({"HASHDB_DATA_DIR": str(tmp_path), "HASHDB_MAX_UPLOAD_BYTES": "1024"})
    result = run("hash", "-", input=b"\x89PNG\r\n\x1a\n" + bytes(2048))
    assert result.exit_code == 2
    assert "HASHDB_MAX_UPLOAD_BYTES" in result.stderr and result.stdout == ""


def test_empty_stdin_is_refused(run: Run) -> None:
    result = run("hash", "-", input=b"")
    assert result.exit_code == 2 and "standard input is empty" in result.stderr


def test_bytes_that_are_no_picture_are_reported_as_the_file_they_are(run: Run) -> None:
    result = run("hash", "-", "--json", input=b"\x00\x01 binary, not an image")
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)
    assert row["file"] == "-" and "error" in row


# ---- import - ----------------------------------------------------------------------------


def _zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_import_reads_an_archive_from_stdin(run: Run, testdata: Path, tmp_path: Path) -> None:
    mods = testdata / "pdq/bridge-mods"
    pictures = sorted(mods.glob("*.jpg"))[:2]
    run("init")
    archive = _zip_of({f"set/{p.name}": p.read_bytes() for p in pictures})
    result = run("import", "-", "--label", LABEL, "--workers", "1", "--json", input=archive)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["files"] == 2 and summary["images"] == 2 and summary["failed"] == 0
    assert not list((tmp_path / "imports").glob("*/*")), "the spooled archive is removed"
    (row,) = json.loads(run("match", str(pictures[0]), "--json").stdout)
    assert pdq_ids(row), "the imported picture is matchable"


def test_import_refuses_an_archive_on_stdin_beyond_the_import_limit(
    tmp_path: Path, image: Path
) -> None:
    env = {
        "HASHDB_DATABASE_URL": f"sqlite:///{tmp_path / 'hashdb.sqlite3'}",
        "HASHDB_DATA_DIR": str(tmp_path),
        "HASHDB_IMPORT_MAX_UNPACKED_BYTES": "1024",
    }
    run = runner_for(env)
    run("init")
    result = run("import", "-", input=_zip_of({"big.jpg": image.read_bytes()}))
    assert result.exit_code == 2
    assert "HASHDB_IMPORT_MAX_UNPACKED_BYTES" in result.stderr and result.stdout == ""


def test_import_refuses_stdin_that_is_not_an_archive(run: Run, image: Path) -> None:
    run("init")
    result = run("import", "-", input=image.read_bytes())
    assert result.exit_code == 2
    assert "not a .zip or .tar archive" in result.stderr and result.stdout == ""


# ---- --quiet -----------------------------------------------------------------------------


def test_quiet_commands_print_nothing_when_they_succeed(run: Run, image: Path) -> None:
    for args in [
        ("init", "-q"),
        ("add", str(image), "--label", LABEL, "--quiet"),
        ("match", str(image), "-q"),
        ("hash", "-", "-q"),
        ("members", "add", "Platform", "-q"),
        ("members", "list", "-q"),
        ("labels", "list", "-q"),
        ("audit", "verify", "-q"),
        ("feed-epoch", "-q"),
    ]:
        result = run(*args, input=f"pdq:{PDQ_HEX}\n")
        assert result.exit_code == 0, (args, result.output)
        assert (result.stdout, result.stderr) == ("", ""), args


def test_quiet_commands_still_print_their_errors(run: Run) -> None:
    run("init")
    refused = run("members", "revoke", "no-such-member", "-q")
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr.startswith("error: ")
    partial = run("match", f"pdq:{PDQ_HEX}", "no-such-file-or-hash", "-q")
    assert partial.exit_code == 1 and partial.stdout == ""
    assert "no-such-file-or-hash: error:" in partial.stderr


def test_json_and_quiet_together_print_the_json_and_nothing_else(run: Run) -> None:
    run("init")
    result = run("match", f"pdq:{PDQ_HEX}", "no-such-file-or-hash", "--json", "-q")
    assert result.exit_code == 1 and result.stderr == ""
    rows = json.loads(result.stdout)
    assert rows[0]["matches"] == [] and "error" in rows[1]


# ---- --json --------------------------------------------------------------------------------


def test_init_json_gives_the_first_admin_and_its_key_once(run: Run) -> None:
    first = json.loads(run("init", "--json").stdout)
    assert first["admin"] == "admin" and first["key"]
    again = json.loads(run("init", "--json").stdout)
    assert again["admin"] is None and again["key"] is None


def test_every_local_command_prints_json_that_parses(db_url: str, tmp_path: Path) -> None:
    run = runner_for({"HASHDB_DATABASE_URL": db_url, "HASHDB_DATA_DIR": str(tmp_path)})
    run("init")
    outputs = {
        args: run(*args, "--json")
        for args in [
            ("members", "add", "Platform"),
            ("members", "list"),
            ("members", "revoke", "Platform"),
            ("labels", "add", "test_label", "--description", "for a test"),
            ("labels", "list"),
            ("audit", "head"),
            ("audit", "list"),
            ("audit", "verify"),
            ("feed-epoch",),
            ("settings",),
            ("report", "--from", "2024-01-01", "--to", "2124-01-01"),
        ]
    }
    for args, result in outputs.items():
        assert result.exit_code == 0, (args, result.output)
        json.loads(result.stdout)  # each is one JSON document
    created = json.loads(outputs[("members", "add", "Platform")].stdout)
    assert created["name"] == "Platform" and created["key"]
    assert json.loads(outputs[("audit", "verify")].stdout)["ok"] is True
    assert json.loads(outputs[("members", "revoke", "Platform")].stdout)["disabled"] is True


def test_settings_refuses_markdown_as_json(run: Run) -> None:
    result = run("settings", "--markdown", "--json")
    assert result.exit_code == 2 and "--markdown" in result.stderr


def test_serve_prints_its_start_up_as_one_json_object_or_nothing(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []
    monkeypatch.setattr(serve_module, "run_gunicorn", lambda settings: served.append(settings.bind))
    run("init")
    started = run("serve", "--bind", "127.0.0.1:5999", "--json")
    assert started.exit_code == 0, started.output
    shown = json.loads(started.stdout)
    assert shown["api"] == "http://127.0.0.1:5999/v1" and shown["admin_key"] is None
    quiet = run("serve", "--bind", "127.0.0.1:5999", "--quiet")
    assert (quiet.exit_code, quiet.stdout) == (0, "")
    assert served == ["127.0.0.1:5999"] * 2


# ---- remote, against a real server ---------------------------------------------------


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    folder = tmp_path_factory.mktemp("central")
    url = f"sqlite:///{folder / 'central.sqlite3'}"
    made = runner_for({"HASHDB_DATABASE_URL": url, "HASHDB_DATA_DIR": str(folder)})("init")
    assert made.exit_code == 0, made.output
    store = Store.open(url)
    try:  # trusted: its contributions are matchable at once, without vetting
        key = store.members.create("Remote platform", Role.MEMBER, trusted=True)[1].secret
    finally:
        store.close()
    server = start_server(url, folder, workers=1)
    yield server, key
    server.stop()


@pytest.mark.slow
def test_remote_contribute_and_match_read_hash_lines_from_stdin(
    central: tuple[Server, str],
) -> None:
    server, key = central
    run = runner_for({KEY_ENV: key, KEY_FILE_ENV: None})
    listing = f"# one hash\nmd5:{MD5_HEX}\n"
    given = run("remote", "contribute", "--url", server.url, "-", "--json", input=listing)
    assert given.exit_code == 0, given.output
    ((added,),) = [row["added"] for row in json.loads(given.stdout)]
    with Client(server.url, key) as client:  # the server's index has caught up
        deadline = time.monotonic() + 10
        while not client.match([("md5", MD5_HEX)])[0].matches:
            assert time.monotonic() < deadline, "the contribution never became matchable"
            time.sleep(0.1)
    matched = run("remote", "match", "--url", server.url, "-", "--json", input=listing)
    assert matched.exit_code == 0, matched.output
    (row,) = json.loads(matched.stdout)
    assert row["input"] == f"md5:{MD5_HEX}"
    assert [m["id"] for m in row["matches"]] == [added["id"]]
