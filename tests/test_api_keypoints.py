"""Keypoint sets over the API: a member that keeps only hashes shares a picture's set
as base64 text and finds its crops and mirrored crops; bad sets and options that do
not apply are 400s naming the field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from media_factory import jpeg_copy, keep
from PIL import Image, ImageOps

from ingest.keypoints import keypoints, query_sets

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]


def lookup(picture: Image.Image, *, mirrored: bool = True) -> dict[str, Any]:
    plain, mirror = query_sets(picture)
    query = {"signal_type": "keypoints", "value": plain.to_text()}
    return {**query, "mirror": mirror.to_text()} if mirrored else query


@pytest.fixture
def stored(api: Api, bridge_picture: Image.Image) -> int:
    text = keypoints(jpeg_copy(bridge_picture, 90)).to_text()
    (hash_id,) = api.add({"signal_type": "keypoints", "value": text, "labels": ["manifesto"]})
    return hash_id


def test_a_crop_matches_a_set_shared_as_text_with_inliers_and_share(
    api: Api, stored: int, bridge_picture: Image.Image
) -> None:
    (result,) = api.match(lookup(jpeg_copy(keep(bridge_picture, 0.8))))
    assert result["signal_type"] == "keypoints" and len(result["value"]) == 64
    (match,) = result["matches"]
    assert (match["id"], match["distance"], match["via"]) == (stored, 0, None)
    assert match["inliers"] >= 12 and 0.5 < match["share"] < 0.8
    assert match["labels"] == ["manifesto"]
    record = api.get(f"/v1/hashes/{stored}").json
    assert record is not None and record["quality"] > 24  # its keypoint count


def test_a_mirrored_crop_is_found_by_the_mirrored_set(
    api: Api, stored: int, bridge_picture: Image.Image
) -> None:
    mirrored = jpeg_copy(ImageOps.mirror(keep(bridge_picture, 0.85, 0.2, 0.6)))
    (found,) = api.match(lookup(mirrored))
    assert [(m["id"], m["variant"]) for m in found["matches"]] == [(stored, "mirror")]
    (alone,) = api.match(lookup(mirrored, mirrored=False))
    assert alone["matches"] == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"value": "not base64!"}, "value"),
        ({"value": "AAAA"}, "value"),  # base64, but not a keypoint set
        ({"mirror": "%%%"}, "mirror"),
        ({"threshold": 5}, "threshold"),
        ({"dihedral": True}, "dihedral"),
    ],
)
def test_a_bad_keypoints_query_is_a_400_naming_the_field(
    api: Api, bridge_picture: Image.Image, extra: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/match", {"queries": [{**lookup(bridge_picture), **extra}]})
    assert response.status_code == 400, response.json
    error = response.json["error"]  # type: ignore[index]
    assert error["details"]["field"] == field and error["details"]["index"] == 0


def test_mirror_applies_to_keypoints_only(api: Api) -> None:
    query = {"signal_type": "pdq", "value": "ab" * 32, "mirror": "AAAA"}
    response = api.post("/v1/match", {"queries": [query]})
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "mirror"  # type: ignore[index]


def test_a_contributed_set_is_checked_and_takes_no_quality(api: Api) -> None:
    bad = api.post("/v1/hashes", {"hashes": [{"signal_type": "keypoints", "value": "AAAA"}]})
    assert bad.status_code == 400
    assert bad.json["error"]["details"]["field"] == "value"  # type: ignore[index]
    text = keypoints(Image.new("RGB", (64, 64), "grey")).to_text()  # a set of none
    flat = api.post("/v1/hashes", {"hashes": [{"signal_type": "keypoints", "value": text}]})
    assert flat.status_code == 400  # below the quality floor: too few to verify
    assert flat.json["error"]["details"]["field"] == "quality"  # type: ignore[index]
