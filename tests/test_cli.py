"""The command line: what a person or script sees, and the exit codes they get."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner, Result
from media_factory import write_video
from PIL import Image

from hashdb.cli import main


@pytest.fixture
def run(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"HASHDB_DATABASE_URL": db_url, "HASHDB_DATA_DIR": str(tmp_path)}

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def test_init_prints_a_first_admin_key_once(run) -> None:  # type: ignore[no-untyped-def]
    first = run("init")
    assert first.exit_code == 0 and "first admin key (shown once" in first.output
    again = run("init")
    assert again.exit_code == 0 and "admin key" not in again.output


def test_hash_prints_every_signal_with_quality_as_json(run, testdata: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("hash", str(testdata / "pdq/reference/pen-and-coaster.png"), "--json")
    assert result.exit_code == 0
    (row,) = json.loads(result.output)
    assert set(row) >= {"pdq", "pdq_quality", "phash", "md5", "sha256"}
    assert len(row["pdq"]) == 64 and 0 <= row["pdq_quality"] <= 100


def test_hash_prints_a_video_s_digests_and_frames(run, testdata: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("hash", str(testdata / "video/doorknob-hd-no-bar.mp4"), "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert len(row["sha256"]) == 64 and row["complete"] is True
    frames = row["vpdq"].splitlines()
    assert len(frames) >= 2 and len(frames[0].split(",")) == 4  # one a second, as stored


def test_one_bad_file_is_reported_and_the_rest_still_hashed(  # type: ignore[no-untyped-def]
    run, testdata: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    result = run("hash", str(bad), str(testdata / "pdq/reference/pen-and-coaster.png"), "--json")
    assert result.exit_code == 1
    rows = json.loads(result.output)
    assert "error" in rows[0] and "pdq" in rows[1]


def test_the_bridge_edits_match_the_original_after_it_is_added(run, testdata: Path) -> None:  # type: ignore[no-untyped-def]
    mods = testdata / "pdq/bridge-mods"
    run("init")
    added = run("add", str(mods / "aaa-orig.jpg"), "--label", "attack_footage", "--json")
    assert added.exit_code == 0, added.output
    pdq_id = next(
        a["id"] for a in json.loads(added.output)[0]["added"] if a["signal_type"] == "pdq"
    )
    result = run("match", str(mods), "--json")
    assert result.exit_code == 0
    for row in json.loads(result.output):
        pdq = [m for m in row["matches"] if m["signal_type"] == "pdq"]
        assert [m["id"] for m in pdq] == [pdq_id], row["input"]
        assert pdq[0]["distance"] <= 31 and pdq[0]["labels"] == ["attack_footage"]


def test_a_cropped_copy_matches_an_image_added_from_the_command_line(  # type: ignore[no-untyped-def]
    run, testdata: Path, tmp_path: Path
) -> None:
    """`hashdb add` stores what finds the image's crops: its keypoint set (crop
    windows for a low-detail picture, hashdb/variants.py)."""
    original = testdata / "pdq/bridge-mods/aaa-orig.jpg"
    run("init")
    added = json.loads(run("add", str(original), "--json").output)[0]
    keypoints_id = next(a["id"] for a in added["added"] if a["signal_type"] == "keypoints")
    picture = Image.open(original).convert("RGB")
    w, h = picture.size
    cropped = tmp_path / "cropped.jpg"
    picture.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(cropped, quality=90)
    (row,) = json.loads(run("match", str(cropped), "--json").output)
    found = [m for m in row["matches"] if m["signal_type"] == "keypoints"]
    assert [m["id"] for m in found] == [keypoints_id]


def test_a_dihedral_match_finds_every_rotation_and_flip(run, testdata: Path) -> None:  # type: ignore[no-untyped-def]
    dih = testdata / "pdq/reference/dih"
    run("init")
    run("add", str(dih / "bridge-1-original.jpg"))
    plain = json.loads(run("match", str(dih), "--json").output)
    turned = json.loads(run("match", str(dih), "--dihedral", "--json").output)
    assert all(any(m["signal_type"] == "pdq" for m in row["matches"]) for row in turned)
    assert sum(any(m["signal_type"] == "pdq" for m in row["matches"]) for row in plain) < 8


def test_a_dihedral_hash_query_finds_a_mirrored_copy(run, testdata: Path) -> None:  # type: ignore[no-untyped-def]
    dih = testdata / "pdq/reference/dih"
    run("init")
    run("add", str(dih / "bridge-5-flipx.jpg"))
    original = json.loads(run("hash", str(dih / "bridge-1-original.jpg"), "--json").output)[0]
    plain = json.loads(run("match", original["pdq"], "--json").output)[0]
    turned = json.loads(run("match", original["pdq"], "--dihedral", "--json").output)[0]
    assert plain["matches"] == []
    assert turned["matches"][0]["variant"] == "flip_x"


def test_hashes_can_be_added_and_matched_as_text(run) -> None:  # type: ignore[no-untyped-def]
    value = "f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22"
    run("init")
    assert run("add", f"pdq:{value}", "--label", "manifesto").exit_code == 0
    near = "0" + value[1:]
    result = run("match", near, "--json")
    (row,) = json.loads(result.output)
    assert row["matches"][0]["value"] == value and row["matches"][0]["distance"] == 4


def _regraded(source: Path, target: Path) -> Path:
    """A re-encode of `source` with brightness and contrast changed, as OpenCV writes it."""
    reader = cv2.VideoCapture(str(source))
    fps = reader.get(cv2.CAP_PROP_FPS)
    size = (
        int(reader.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(reader.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    while True:
        ok, frame = reader.read()
        if not ok:
            break
        writer.write(cv2.convertScaleAbs(frame, alpha=1.25, beta=20))
    reader.release()
    writer.release()
    return target


def test_a_video_added_from_the_command_line_is_found_in_a_regraded_copy(  # type: ignore[no-untyped-def]
    run, tmp_path: Path
) -> None:
    clip = write_video(tmp_path / "clip.mp4", seed=5, seconds=6.0)
    regraded = _regraded(clip, tmp_path / "regraded.mp4")
    other = write_video(tmp_path / "other.mp4", seed=6, seconds=6.0)
    assert run("init").exit_code == 0
    added = run("add", str(clip), "--label", "attack_footage", "--json")
    assert added.exit_code == 0, added.output
    (row,) = json.loads(added.output)
    assert [a["signal_type"] for a in row["added"]] == ["vpdq", "md5", "sha256"]
    video_id = row["added"][0]["id"]

    result = run("match", str(regraded), str(other), "--json")
    assert result.exit_code == 0, result.output
    found, unrelated = json.loads(result.output)
    assert found["matches"] == []  # a re-encode: other bytes, so no digest matches
    (video,) = found["videos"]
    assert video["id"] == video_id and video["labels"] == ["attack_footage"]
    assert video["query_share"] > 0.8 and video["reference_share"] > 0.8
    assert video["offset"] is not None and abs(video["offset"]) < 0.5
    (span,) = video["query_ranges"]
    assert span["start"] < 0.5 and span["end"] > 5.0
    assert video["reference_ranges"] and found["video"]["complete"] is True
    assert unrelated["videos"] == []

    again = run("match", str(clip))  # the same file: its digests match too
    assert again.exit_code == 0
    assert f"vpdq#{video_id} query 100% reference 100%" in again.output
    assert "md5#" in again.output and "sha256#" in again.output


def test_a_video_cut_short_by_the_limits_is_not_added(  # type: ignore[no-untyped-def]
    db_url: str, tmp_path: Path
) -> None:
    env = {
        "HASHDB_DATABASE_URL": db_url,
        "HASHDB_DATA_DIR": str(tmp_path),
        "HASHDB_VIDEO_MAX_FRAMES": "3",
    }
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    clip = write_video(tmp_path / "long.mp4", seed=7, seconds=6.0)
    refused = runner.invoke(main, ["add", str(clip), "--json"], env=env)
    assert refused.exit_code == 1
    (row,) = json.loads(refused.output)
    assert "too long to hash" in row["error"] and row["code"] == "media_error"


@pytest.mark.parametrize("arg", ["pdq:xyz", "tmk:" + "0" * 64, "nonexistent-file.jpg"])
def test_an_argument_that_is_neither_file_nor_hash_is_reported(run, arg: str) -> None:  # type: ignore[no-untyped-def]
    run("init")
    result = run("match", arg)
    assert result.exit_code == 1
    assert "error" in result.output


def test_add_without_any_admin_is_a_usage_error(run) -> None:  # type: ignore[no-untyped-def]
    result = run("add", "pdq:" + "0" * 64)
    assert result.exit_code == 2 and "hashdb init" in result.output


def test_members_are_created_listed_and_revoked(run) -> None:  # type: ignore[no-untyped-def]
    assert run("init").exit_code == 0
    created = run("members", "add", "Platform A", "--role", "member")
    assert created.exit_code == 0 and "hdb_" in created.output
    assert run("members", "add", "Platform A").exit_code == 2  # duplicate name
    listed = json.loads(run("members", "list", "--json").output)
    assert listed[1]["name"] == "Platform A" and len(listed[1]["keys"]) == 1
    assert run("members", "revoke", "Platform A").exit_code == 0
    assert json.loads(run("members", "list", "--json").output)[1]["disabled"] is True
    assert run("members", "revoke", "Nobody").exit_code == 2


def test_members_cannot_be_managed_before_init(run) -> None:  # type: ignore[no-untyped-def]
    result = run("members", "add", "Platform A")
    assert result.exit_code == 2 and "hashdb init" in result.output


def test_an_unreachable_database_is_an_outside_failure(tmp_path: Path) -> None:
    env = {"HASHDB_DATABASE_URL": "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"}
    result = CliRunner().invoke(main, ["init"], env=env)
    assert result.exit_code == 3 and "cannot reach the database" in result.output
    assert "secret" not in result.output


def test_a_bad_setting_is_a_user_error_naming_the_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init"], env={"HASHDB_WORKERS": "-1"})
    assert result.exit_code == 2 and "HASHDB_WORKERS" in result.output


@pytest.mark.parametrize("name", ["Platform\x00A", "Platform\x1bA", "Platform\nA"])
def test_a_member_name_with_a_control_character_is_a_user_error(run, name: str) -> None:  # type: ignore[no-untyped-def]
    assert run("init").exit_code == 0
    result = run("members", "add", name)
    assert result.exit_code == 2
    assert "error: member name must not contain control characters" in result.output
    assert [m["name"] for m in json.loads(run("members", "list", "--json").output)] == ["admin"]


def test_the_last_admin_cannot_be_disabled_from_the_command_line(run) -> None:  # type: ignore[no-untyped-def]
    assert run("init").exit_code == 0
    refused = run("members", "revoke", "admin")
    assert refused.exit_code == 2 and "no enabled admin would have a valid key" in refused.output
    assert json.loads(run("members", "list", "--json").output)[0]["disabled"] is False
    assert run("members", "add", "Second", "--role", "admin").exit_code == 0
    assert run("members", "revoke", "admin").exit_code == 0


def test_an_unknown_label_is_refused_with_exit_code_2_as_the_api_refuses_it(run) -> None:  # type: ignore[no-untyped-def]
    value = "f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22"
    run("init")
    refused = run("add", f"pdq:{value}", "--label", "cats")
    assert refused.exit_code == 2 and "unknown label(s): cats" in refused.output
    assert run("labels", "add", "hostage_video", "--description", "Hostages.").exit_code == 0
    assert run("add", f"pdq:{value}", "--label", "hostage_video").exit_code == 0
    listed = json.loads(run("labels", "list", "--json").output)
    assert "hostage_video" in [label["name"] for label in listed]
