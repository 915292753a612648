"""POST /v1/match and /v1/match/media: batches of hashes, or an image, in; matches out.

Results come back one per query, in query order, nearest match first, with the
hash id, distance, labels, status and when it was added.
"""

from __future__ import annotations

import io
import random
from typing import TYPE_CHECKING, Any

import pytest
from media_factory import letterboxed
from PIL import Image

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]


def random_pdq(seed: int) -> str:
    return random.Random(seed).randbytes(32).hex()


def flip(hex_value: str, bits: int) -> str:
    """`hex_value` with its first `bits` bits inverted: exactly `bits` away."""
    raw = bytearray(bytes.fromhex(hex_value))
    for b in range(bits):
        raw[b // 8] ^= 0x80 >> (b % 8)
    return raw.hex()


def pdq(value: str, **extra: Any) -> dict[str, Any]:
    return {"signal_type": "pdq", "value": value, **extra}


def test_a_near_duplicate_matches_with_its_distance_labels_and_status(api: Api) -> None:
    stored = random_pdq(1)
    (hash_id,) = api.add(pdq(stored, labels=["attack_footage"]))
    (result,) = api.match(pdq(flip(stored, 7)))
    assert result["index"] == 0
    assert result["low_quality"] is False
    (match,) = result["matches"]
    assert match["id"] == hash_id
    assert match["distance"] == 7
    assert match["labels"] == ["attack_footage"]
    assert match["status"] == api.get(f"/v1/hashes/{hash_id}").json["status"]  # type: ignore[index]
    assert match["variant"] is None and match["via"] is None
    assert match["added_at"].startswith("20")


def test_a_batch_answers_in_query_order_nearest_first(api: Api) -> None:
    a, b = random_pdq(2), random_pdq(3)
    id_a, id_near_a, id_b = api.add(pdq(a), pdq(flip(a, 3)), pdq(b))
    results = api.match(pdq(b), pdq(random_pdq(4)), pdq(flip(a, 1)))
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [m["id"] for m in results[0]["matches"]] == [id_b]
    assert results[1]["matches"] == []
    assert [(m["id"], m["distance"]) for m in results[2]["matches"]] == [
        (id_a, 1),
        (id_near_a, 2),
    ]


def test_the_threshold_is_inclusive_and_per_query(api: Api) -> None:
    stored = random_pdq(5)
    api.add(pdq(stored))
    far = flip(stored, 40)
    default, wider, exact = api.match(pdq(far), pdq(far, threshold=40), pdq(far, threshold=39))
    assert default["matches"] == []  # default pdq threshold is 31
    assert [m["distance"] for m in wider["matches"]] == [40]
    assert exact["matches"] == []


def test_a_threshold_above_the_configured_cap_is_refused_naming_the_item(api: Api) -> None:
    response = api.post(
        "/v1/match", {"queries": [pdq(random_pdq(6)), pdq(random_pdq(7), threshold=64)]}
    )
    assert response.status_code == 400
    details = response.json["error"]["details"]  # type: ignore[index]
    assert details == {"field": "threshold", "index": 1, "maximum": 63}


def test_digests_match_exactly(api: Api) -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    (hash_id,) = api.add({"signal_type": "md5", "value": md5.upper()})
    same, other = api.match(
        {"signal_type": "md5", "value": md5},
        {"signal_type": "md5", "value": "f" * 32},
    )
    assert [(m["id"], m["distance"]) for m in same["matches"]] == [(hash_id, 0)]
    assert other["matches"] == []
    assert same["value"] == md5  # hex is echoed lower-case


def test_phash_matches_by_hamming_distance(api: Api) -> None:
    (hash_id,) = api.add({"signal_type": "phash", "value": "00ff00ff00ff00ff"})
    (result,) = api.match({"signal_type": "phash", "value": "01ff00ff00ff00fe"})
    assert [(m["id"], m["distance"]) for m in result["matches"]] == [(hash_id, 2)]


def test_a_low_quality_query_is_flagged_and_never_matched(api: Api) -> None:
    stored = random_pdq(8)
    api.add(pdq(stored))
    (result,) = api.match(pdq(stored, quality=20))
    assert result["low_quality"] is True
    assert result["matches"] == []


def test_a_retired_hash_stops_matching_at_once(api: Api) -> None:
    stored = random_pdq(9)
    (hash_id,) = api.add(pdq(stored))
    assert api.match(pdq(stored))[0]["matches"]
    assert api.delete(f"/v1/hashes/{hash_id}").status_code == 200
    assert api.match(pdq(stored))[0]["matches"] == []


def test_a_dihedral_hash_query_matches_a_rotated_image_naming_the_form(
    api: Api, photo: bytes, photo_rotated: bytes
) -> None:
    """The rotations of a PDQ hash are derived from its bits: a member holding only the
    hash of a rotated copy still finds the original."""
    api.upload("/v1/media", photo)
    rotated = api.upload("/v1/match/media", photo_rotated).json
    assert rotated is not None
    rotated_pdq = rotated["hashes"]["pdq"]
    plain, turned = api.match(pdq(rotated_pdq), pdq(rotated_pdq, dihedral=True))
    assert plain["matches"] == []
    (match,) = turned["matches"]
    assert match["variant"] in {"rotate90", "rotate270"}


def test_a_batch_larger_than_the_configured_maximum_is_refused(make_api: MakeApi) -> None:
    api = make_api(max_batch=3)
    response = api.post("/v1/match", {"queries": [pdq(random_pdq(i)) for i in range(4)]})
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "queries"  # type: ignore[index]


def test_a_full_batch_of_ten_thousand_queries_is_answered(api: Api) -> None:
    stored = random_pdq(11)
    api.add(pdq(stored))
    queries = [pdq(random_pdq(100 + i)) for i in range(9_999)] + [pdq(stored)]
    results = api.match(*queries)
    assert len(results) == 10_000
    assert results[-1]["matches"] and not any(r["matches"] for r in results[:-1])


@pytest.mark.parametrize(
    ("query", "field", "why"),
    [
        (pdq("abc"), "value", "too short"),
        (pdq("g" * 64), "value", "not hex"),
        ({"signal_type": "tmk", "value": "00"}, "signal_type", "unknown type"),
        (pdq("0" * 64, threshold=-1), "threshold", "negative"),
        (pdq("0" * 64, threshold="5"), "threshold", "a string, not a number"),
        (pdq("0" * 64, treshold=5), "treshold", "unknown field (a typo)"),
        ({"value": "0" * 64}, "signal_type", "missing"),
        ({"signal_type": "md5", "value": "0" * 32, "dihedral": True}, "dihedral", "not pdq"),
    ],
)
def test_a_bad_query_gets_400_naming_the_field_and_its_index(
    api: Api, query: dict[str, Any], field: str, why: str
) -> None:
    response = api.post("/v1/match", {"queries": [pdq(random_pdq(12)), query]})
    assert response.status_code == 400, why
    error = response.json["error"]  # type: ignore[index]
    assert error["code"] == "invalid_input"
    assert (error["details"]["field"], error["details"]["index"]) == (field, 1), why


# ---- media ------------------------------------------------------------------------


def test_an_uploaded_image_is_hashed_and_matched(
    api: Api, photo: bytes, photo_small: bytes
) -> None:
    added = api.upload("/v1/media", photo, labels=["glorification"])
    assert added.status_code == 201, added.json
    ids = {a["signal_type"]: a["id"] for a in added.json["added"]}  # type: ignore[index]
    response = api.upload("/v1/match/media", photo_small)
    assert response.status_code == 200, response.json
    body = response.json
    assert body is not None
    assert body["hashes"]["pdq_quality"] >= 50
    assert (body["hashes"]["width"], body["hashes"]["height"]) == (128, 128)
    by_type = {r["signal_type"]: r for r in body["results"]}
    assert set(by_type) == {"pdq", "phash", "keypoints", "md5", "sha256"}
    assert [m["id"] for m in by_type["pdq"]["matches"]] == [ids["pdq"]]
    assert by_type["md5"]["matches"] == []  # a different file


def test_the_same_file_matches_its_digests_too(api: Api, photo: bytes) -> None:
    api.upload("/v1/media", photo)
    body = api.upload("/v1/match/media", photo).json
    assert body is not None
    assert all(r["matches"] for r in body["results"])


def test_a_rotated_image_matches_only_when_dihedral_is_asked(
    api: Api, photo: bytes, photo_rotated: bytes
) -> None:
    api.upload("/v1/media", photo)
    plain = api.upload("/v1/match/media", photo_rotated).json
    assert plain is not None
    assert next(r for r in plain["results"] if r["signal_type"] == "pdq")["matches"] == []
    turned = api.upload("/v1/match/media", photo_rotated, dihedral="true").json
    assert turned is not None
    (match,) = next(r for r in turned["results"] if r["signal_type"] == "pdq")["matches"]
    assert match["via"]["probe"] in {"rotate90", "rotate270"} and match["via"]["stored"] is None
    assert match["variant"] == match["via"]["probe"]


def test_a_cropped_upload_says_which_stored_variant_it_hit(
    api: Api, low_detail_photo: bytes
) -> None:
    api.upload("/v1/media", low_detail_photo)
    picture = Image.open(io.BytesIO(low_detail_photo)).convert("RGB")
    w, h = picture.size
    cropped = io.BytesIO()
    picture.crop((w // 10, h // 10, w, h)).save(cropped, "PNG")
    body = api.upload("/v1/match/media", cropped.getvalue(), probes="none").json
    assert body is not None
    (match,) = next(r for r in body["results"] if r["signal_type"] == "pdq")["matches"]
    assert match["via"]["probe"] is None and match["via"]["stored"].startswith("crop90_")
    assert match["variant"] == f"stored:{match['via']['stored']}"


def test_media_thresholds_are_capped_like_hash_queries(api: Api, photo: bytes) -> None:
    response = api.upload("/v1/match/media", photo, pdq_threshold="100")
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "pdq_threshold"  # type: ignore[index]


def test_a_featureless_image_is_answered_low_quality(api: Api, flat_image: bytes) -> None:
    body = api.upload("/v1/match/media", flat_image).json
    assert body is not None
    pdq_result = next(r for r in body["results"] if r["signal_type"] == "pdq")
    assert pdq_result["low_quality"] is True


def test_a_letterboxed_upload_matches_its_original_through_the_content_probe(
    api: Api, photo: bytes
) -> None:
    api.upload("/v1/media", photo)
    boxed = io.BytesIO()
    letterboxed(Image.open(io.BytesIO(photo)).convert("RGB")).save(boxed, "PNG")
    padded = boxed.getvalue()
    plain = api.upload("/v1/match/media", padded, probes="none").json
    assert plain is not None
    assert next(r for r in plain["results"] if r["signal_type"] == "pdq")["matches"] == []
    body = api.upload("/v1/match/media", padded).json
    assert body is not None
    (match,) = next(r for r in body["results"] if r["signal_type"] == "pdq")["matches"]
    assert match["variant"] == "content"
    assert match["via"] == {"probe": "content", "stored": None}


def test_an_unknown_probe_kind_is_a_400_naming_the_field(api: Api, photo: bytes) -> None:
    response = api.upload("/v1/match/media", photo, probes="content,wobble")
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == "probes"  # type: ignore[index]
