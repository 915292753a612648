"""Keypoint sets on the command line: `hashdb hash` prints an image's set as base64
text, and every command that takes `TYPE:HEX` arguments takes it back as
`keypoints:BASE64`, checked as strictly as a hex hash (hashdb/cli/inputs.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from hashdb.cli import main
from hashdb.cli.inputs import parse_hash_arg
from hashdb.consortium import Query
from hashdb.consortium.keypoints import new_hash
from hashdb.consortium.keypoints import query as keypoint_query
from hashdb.errors import InvalidInput
from hashdb.keypoints.codec import KeypointSet
from hashdb.signals import KEYPOINTS, PDQ
from hashdb.signals.keypoints import digest
from ingest.keypoints import DEFAULT_LIMIT, keypoints

Run = Callable[..., Result]
PDQ_HEX = "f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22"


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """`hashdb` on a SQLite file in tmp_path (run `init` first to create it)."""
    env = {
        "HASHDB_DATABASE_URL": f"sqlite:///{tmp_path / 'hashdb.sqlite3'}",
        "HASHDB_DATA_DIR": str(tmp_path),
    }

    def invoke(*args: str, input: str | bytes | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def picture(bridge_picture: Image.Image, tmp_path: Path) -> Path:
    """The bridge photo as a PNG: the pixels `hashdb hash` decodes are the fixture's."""
    path = tmp_path / "bridge.png"
    bridge_picture.save(path)
    return path


@pytest.fixture
def stored_set(bridge_picture: Image.Image) -> KeypointSet:
    return keypoints(bridge_picture)


# ---- `hashdb hash` ------------------------------------------------------------------


def test_hash_prints_an_images_keypoint_set_as_base64_in_json(
    run: Run, picture: Path, stored_set: KeypointSet
) -> None:
    result = run("hash", str(picture), "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert KeypointSet.from_text(row["keypoints"]) == stored_set  # what a stored picture keeps
    assert row["keypoints_count"] == len(stored_set) == DEFAULT_LIMIT
    assert {"pdq", "phash", "md5", "sha256"} <= set(row)


def test_hash_prints_the_keypoint_set_and_its_count_as_text(
    run: Run, picture: Path, stored_set: KeypointSet
) -> None:
    result = run("hash", str(picture))
    assert result.exit_code == 0, result.output
    line = f"  keypoints {stored_set.to_text()} ({len(stored_set)} keypoints)"
    assert line in result.stdout.splitlines()


def test_a_featureless_image_says_its_set_has_too_few_keypoints(run: Run, tmp_path: Path) -> None:
    flat = tmp_path / "flat.png"
    Image.new("RGB", (300, 200), "grey").save(flat)
    (row,) = json.loads(run("hash", str(flat), "--json").stdout)
    assert row["keypoints_count"] < (KEYPOINTS.min_quality or 0)
    assert "keypoints, too few to match on)" in run("hash", str(flat)).stdout


def test_a_video_has_no_keypoint_set(run: Run, testdata: Path) -> None:
    (row,) = json.loads(
        run("hash", str(testdata / "video/doorknob-hd-no-bar.mp4"), "--json").stdout
    )
    assert "vpdq" in row and "keypoints" not in row


def test_keypoint_lines_on_stdin_are_printed_back_canonical_and_bad_ones_reported(
    run: Run, stored_set: KeypointSet
) -> None:
    listing = f"keypoints:{stored_set.to_text()}\nkeypoints:not base64!\npdq:{PDQ_HEX}\n"
    result = run("hash", "-", "--json", input=listing)
    assert result.exit_code == 1
    good, bad, pdq = json.loads(result.stdout)
    assert good == {"hash": f"keypoints:{stored_set.to_text()}", "signal_type": "keypoints"}
    assert bad["code"] == "invalid_input" and "keypoints must be standard base64" in bad["error"]
    assert pdq["hash"] == f"pdq:{PDQ_HEX}"


# ---- `keypoints:BASE64` arguments ----------------------------------------------------


def test_a_keypoints_argument_parses_to_its_set(stored_set: KeypointSet) -> None:
    arg = parse_hash_arg(f"keypoints:{stored_set.to_text()}")
    assert arg.signal_type is KEYPOINTS and arg.keypoints == stored_set
    assert arg.value == stored_set.to_bytes() and arg.canonical == stored_set.to_text()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "0 bytes is shorter than the 7-byte header"),
        ("AAAA", "3 bytes is shorter than the 7-byte header"),
        ("abc def!", "keypoints must be standard base64"),
        ("AQIAAUEAgEBQ", "128 keypoints take 4615 bytes, got 9"),
    ],
)
def test_a_bad_keypoints_argument_is_invalid_input_naming_the_argument(
    value: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as bad:
        parse_hash_arg(f"keypoints:{value}")
    assert bad.value.field == "argument"


def test_a_keypoints_argument_is_contributed_and_looked_up_as_the_consortium_builds_them(
    stored_set: KeypointSet,
) -> None:
    """A stored row's value is the set's digest, with the set beside it; a lookup
    searches the set as given (no mirror: it cannot be derived from the set)."""
    arg = parse_hash_arg(f"keypoints:{stored_set.to_text()}")
    assert arg.new_hash(("attack_footage",), "case 1") == new_hash(
        stored_set, ("attack_footage",), "case 1"
    )
    assert arg.query() == keypoint_query(stored_set)


def test_a_hex_argument_is_contributed_and_looked_up_as_before() -> None:
    arg = parse_hash_arg(f"pdq:{PDQ_HEX}")
    row = arg.new_hash((), None)
    assert (row.signal_type, row.value, row.keypoint_set) == ("pdq", bytes.fromhex(PDQ_HEX), None)
    probes = (("flip_x", bytes(32)),)
    assert arg.query(20, probes) == Query(PDQ, bytes.fromhex(PDQ_HEX), 20, None, probes)


def test_a_bad_keypoints_argument_is_reported_and_the_rest_still_done(
    run: Run, stored_set: KeypointSet
) -> None:
    """A keypoints argument is far longer than a file name may be: it is still read
    as a hash, never taken for a file the system refused to look up."""
    assert run("init").exit_code == 0
    broken = f"keypoints:{stored_set.to_text()}!"
    result = run("match", broken, f"keypoints:{stored_set.to_text()}", "--json")
    assert result.exit_code == 1, result.output
    bad, good = json.loads(result.stdout)
    assert bad["input"] == broken and "keypoints must be standard base64" in bad["error"]
    assert good["matches"] == []
    text = run("match", broken)
    assert text.exit_code == 1 and f"{broken}: error: keypoints must be" in text.stderr


def test_a_keypoints_argument_to_hash_is_a_file_that_cannot_be_read(
    run: Run, stored_set: KeypointSet
) -> None:
    """`hashdb hash` reads hashes from standard input only; an argument is a file."""
    result = run("hash", f"keypoints:{stored_set.to_text()}", "--json")
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)
    assert row["code"] == "io_error" and "cannot read" in row["error"]


def test_a_set_printed_by_hash_and_added_is_found_by_the_set_of_a_crop(
    run: Run, picture: Path, bridge_picture: Image.Image, tmp_path: Path
) -> None:
    assert run("init").exit_code == 0
    (printed,) = json.loads(run("hash", str(picture), "--json").stdout)
    added = run("add", f"keypoints:{printed['keypoints']}", "--json")
    assert added.exit_code == 0, added.output
    ((row,),) = [r["added"] for r in json.loads(added.stdout)]
    w, h = bridge_picture.size
    crop = tmp_path / "crop.png"
    bridge_picture.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(crop)
    (shown,) = json.loads(run("hash", str(crop), "--json").stdout)
    (found,) = json.loads(run("match", f"keypoints:{shown['keypoints']}", "--json").stdout)
    (match,) = found["matches"]
    assert match["id"] == row["id"] and match["signal_type"] == "keypoints"
    assert match["value"] == digest(KeypointSet.from_text(printed["keypoints"]).to_bytes()).hex()
