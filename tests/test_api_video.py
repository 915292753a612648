"""Videos over HTTP: contribute one, match an upload or a vPDQ frame list against them.

Stored videos are hashed at 1 frame per second, uploads to match at every frame
(`api.video`). The sample videos of ../shared/testdata/video: the grey-bar chair
is a re-encode of the original chair and must match it and nothing else; a clip
cut from the original at 5.27 s must be found with that offset.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest
from media_factory import write_video
from werkzeug.datastructures import FileStorage
from werkzeug.test import TestResponse, encode_multipart

from api.context import context
from hashdb.consortium import VideoQuery
from hashdb.signals.vpdq import format_frames
from ingest.records import video_contributions, video_frames
from ingest.video import EVERY_FRAME, hash_video_file

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

CHAIR, GREY_CHAIR = "chair-orig-22-sd-bar", "chair-22-sd-grey-bar"
OTHERS = ("doorknob-hd-no-bar", "pattern-sd-with-small-logo-bar")
CLIP_FIRST, CLIP_STOP = 158, 458  # frames of the original chair: 5.27 s to 15.27 s at 30 fps


def sample(testdata: Path, name: str) -> bytes:
    return (testdata / "video" / f"{name}.mp4").read_bytes()


def upload(api: Api, path: str, data: bytes, role: str = "member", **fields: Any) -> TestResponse:
    # Encoded here, in memory: the test client spools a large form to a temporary
    # file that it never closes.
    form: dict[str, Any] = {"file": FileStorage(io.BytesIO(data), "upload.mp4"), **fields}
    boundary, body = encode_multipart(form)
    return api.client.post(
        path,
        data=body,
        headers=api.auth(role),
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def contribute(api: Api, data: bytes, role: str = "admin", **fields: Any) -> dict[str, Any]:
    response = upload(api, "/v1/media", data, role, **fields)
    assert response.status_code == 201, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


@pytest.fixture(scope="module")
def clip(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Frames 158-457 of the original chair (5.27 s to 15.27 s), re-encoded with OpenCV."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    source = cv2.VideoCapture(str(testdata / "video" / f"{CHAIR}.mp4"))
    fps = source.get(cv2.CAP_PROP_FPS)
    size = (
        int(source.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(source.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    number = 0
    while number < CLIP_STOP:
        ok, frame = source.read()
        if not ok:
            break
        if number >= CLIP_FIRST:
            writer.write(frame)
        number += 1
    source.release()
    writer.release()
    return path.read_bytes()


@pytest.fixture(scope="module")
def grey_chair_vpdq(testdata: Path) -> str:
    """The grey chair's frames as vPDQ text, hashed at every frame as a member would."""
    hashed = hash_video_file(
        testdata / "video" / f"{GREY_CHAIR}.mp4", frames_per_second=EVERY_FRAME
    )
    video, _ = video_contributions(hashed, (), None)
    return format_frames(video.frames)


@pytest.fixture
def library(api: Api, testdata: Path) -> dict[str, int]:
    """The original chair and two unrelated samples, contributed by an admin (active)."""
    return {
        name: contribute(api, sample(testdata, name), labels=["attack_footage"])["added"][0]["id"]
        for name in (CHAIR, *OTHERS)
    }


def test_a_member_contributes_a_video_as_frames_and_digests_pending_review(
    api: Api, testdata: Path
) -> None:
    body = contribute(api, sample(testdata, CHAIR), "member", labels=["attack_footage"])
    assert body["kind"] == "video" and body["low_quality"] is False
    assert body["hashes"]["frames_per_second"] == 1.0
    assert body["hashes"]["frames"] == 23 and body["hashes"]["complete"] is True
    assert [a["signal_type"] for a in body["added"]] == ["vpdq", "md5", "sha256"]
    vpdq_id = body["added"][0]["id"]
    stored = api.get(f"/v1/hashes/{vpdq_id}").json
    assert (stored["signal_type"], stored["status"], stored["labels"]) == (  # type: ignore[index]
        "vpdq",
        "pending",
        ["attack_footage"],
    )
    again = contribute(api, sample(testdata, CHAIR), "member", labels=["attack_footage"])
    assert [a["created"] for a in again["added"]] == [False, False, False]
    audit = api.get("/v1/audit", "admin").json["entries"]  # type: ignore[index]
    assert [e["action"] for e in audit].count("videos.contribute") == 2


def test_a_video_with_an_unknown_label_is_refused(api: Api, testdata: Path) -> None:
    response = upload(api, "/v1/media", sample(testdata, CHAIR), labels=["cats"])
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "labels"  # type: ignore[index]


def test_the_grey_chair_matches_the_original_and_nothing_else(
    api: Api, testdata: Path, library: dict[str, int]
) -> None:
    response = upload(api, "/v1/match/media", sample(testdata, GREY_CHAIR))
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    assert body["kind"] == "video"
    assert body["hashes"]["frames_per_second"] == EVERY_FRAME
    assert [v["id"] for v in body["videos"]] == [library[CHAIR]]
    (chair,) = body["videos"]
    assert chair["labels"] == ["attack_footage"] and chair["status"] == "active"
    assert chair["query_share"] >= 0.9 and chair["reference_share"] >= 0.9
    assert chair["offset"] == pytest.approx(0.0, abs=0.1)
    assert chair["reference_ranges"][0]["start"] == pytest.approx(0.0, abs=1.0)
    assert [(r["signal_type"], r["matches"]) for r in body["results"]] == [
        ("md5", []),
        ("sha256", []),
    ]


def test_the_same_file_also_matches_by_its_digests(
    api: Api, testdata: Path, library: dict[str, int]
) -> None:
    body = upload(api, "/v1/match/media", sample(testdata, OTHERS[0])).json
    assert [v["id"] for v in body["videos"]] == [library[OTHERS[0]]]  # type: ignore[index]
    assert all(len(r["matches"]) == 1 for r in body["results"])  # type: ignore[index]


def test_a_clip_is_found_with_its_offset_and_the_shares_narrow_it(
    api: Api, clip: bytes, library: dict[str, int]
) -> None:
    body = upload(api, "/v1/match/media", clip).json
    (found,) = body["videos"]  # type: ignore[index]
    assert found["id"] == library[CHAIR]
    assert found["offset"] == pytest.approx(CLIP_FIRST / 30, abs=0.1)
    assert found["query_share"] >= 0.9
    assert found["reference_share"] == pytest.approx(10 / 23, abs=0.1)
    [where] = found["reference_ranges"]
    assert (where["start"], where["end"]) == (pytest.approx(6.0), pytest.approx(15.0))
    narrowed = upload(api, "/v1/match/media", clip, min_reference_share="0.9").json
    assert narrowed["videos"] == []  # type: ignore[index]
    kept = upload(api, "/v1/match/media", clip, min_query_share="0.9").json
    assert [v["id"] for v in kept["videos"]] == [library[CHAIR]]  # type: ignore[index]
    bad = upload(api, "/v1/match/media", clip, min_query_share="1.5")
    assert bad.status_code == 400
    assert bad.json["error"]["details"]["field"] == "min_query_share"  # type: ignore[index]


def test_a_vpdq_frame_list_is_matched_as_a_video_in_a_batch(
    api: Api, grey_chair_vpdq: str, library: dict[str, int]
) -> None:
    results = api.match(
        {"signal_type": "vpdq", "value": grey_chair_vpdq, "min_reference_share": 0.5},
        {"signal_type": "pdq", "value": "00" * 32},
    )
    video, image = results
    assert (video["index"], video["signal_type"], video["low_quality"]) == (0, "vpdq", False)
    assert [v["id"] for v in video["videos"]] == [library[CHAIR]]
    assert video["matches"] == [] and len(video["value"]) == 64
    assert (image["index"], image["signal_type"], image.get("videos")) == (1, "pdq", None)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"value": "1,100,abcd,0.0"}, "value"),
        ({"value": ""}, "value"),
        ({"value": "0,100," + "ab" * 32 + ",0.0", "dihedral": True}, "dihedral"),
        ({"value": "0,100," + "ab" * 32 + ",0.0", "threshold": 200}, "threshold"),
    ],
)
def test_a_bad_vpdq_query_is_400_naming_the_field(
    api: Api, query: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/match", {"queries": [{"signal_type": "vpdq", **query}]})
    assert response.status_code == 400, response.json
    assert response.json["error"]["details"] == {  # type: ignore[index]
        **response.json["error"]["details"],  # type: ignore[index]
        "field": field,
        "index": 0,
    }


def test_shares_apply_to_vpdq_queries_only(api: Api) -> None:
    query = {"signal_type": "pdq", "value": "ab" * 32, "min_query_share": 0.5}
    response = api.post("/v1/match", {"queries": [query]})
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "min_query_share"  # type: ignore[index]


def test_a_vpdq_hash_is_not_contributed_as_hex(api: Api) -> None:
    response = api.post("/v1/hashes", {"hashes": [{"signal_type": "vpdq", "value": "ab" * 32}]})
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "signal_type"  # type: ignore[index]


def test_request_limits_cut_a_query_short_and_refuse_a_long_contribution(
    make_api: MakeApi, testdata: Path, grey_chair_vpdq: str
) -> None:
    api = make_api(video_max_frames=60)
    matched = upload(api, "/v1/match/media", sample(testdata, GREY_CHAIR))
    assert matched.status_code == 200
    hashes = matched.json["hashes"]  # type: ignore[index]
    assert (hashes["complete"], hashes["ended_by"]) == (False, "max_frames")
    refused = upload(api, "/v1/media", sample(testdata, CHAIR), role="admin")
    # 23 frames at 1 per second fit in 60: the reference is complete.
    assert refused.status_code == 201
    tight = make_api(video_max_frames=5)
    too_long = upload(tight, "/v1/media", sample(testdata, CHAIR), role="admin")
    assert too_long.status_code == 422
    assert too_long.json["error"]["details"]["ended_by"] == "max_frames"  # type: ignore[index]
    too_many = tight.post(
        "/v1/match", {"queries": [{"signal_type": "vpdq", "value": grey_chair_vpdq}]}
    )
    assert too_many.status_code == 400
    assert too_many.json["error"]["details"]["maximum"] == 5  # type: ignore[index]


def letterboxed_video(source: Path, path: Path) -> Path:
    """`source` re-encoded with its picture scaled into black bars above and below
    (a 4:3 clip shown letterboxed), at the same frame size and rate."""
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    inner = round(height * 0.7)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        barred = np.zeros_like(frame)
        top = (height - inner) // 2
        barred[top : top + inner] = cv2.resize(frame, (width, inner), interpolation=cv2.INTER_AREA)
        writer.write(barred)
    capture.release()
    writer.release()
    return path


def test_a_copy_with_bars_added_matches_its_reference_through_the_frame_probes(
    api: Api, tmp_path: Path
) -> None:
    reference = write_video(tmp_path / "reference.mp4", seed=41, seconds=4.0)
    stored = contribute(api, reference.read_bytes(), labels=["attack_footage"])["added"][0]["id"]
    contribute(api, write_video(tmp_path / "other.mp4", seed=42, seconds=4.0).read_bytes())
    barred = letterboxed_video(reference, tmp_path / "barred.mp4")

    response = upload(api, "/v1/match/media", barred.read_bytes())
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    assert [v["id"] for v in body["videos"]] == [stored]
    assert body["videos"][0]["query_share"] >= 0.5

    # The frames alone, without the probes that cut the bars off, find nothing.
    plain = hash_video_file(barred, frames_per_second=EVERY_FRAME)
    answer = context(api.app).db.matching.answer(None, (), [VideoQuery(video_frames(plain))])
    assert answer.videos == [[]]
