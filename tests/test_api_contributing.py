"""POST /v1/hashes and /v1/media add hashes; GET /v1/hashes/<id> reads one back."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest

from hashdb.store import Role

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]


def random_pdq(seed: int) -> str:
    return random.Random(seed).randbytes(32).hex()


def test_a_batch_gets_one_id_per_item_in_order(api: Api) -> None:
    response = api.post(
        "/v1/hashes",
        {
            "hashes": [
                {
                    "signal_type": "pdq",
                    "value": random_pdq(1),
                    "labels": ["manifesto"],
                    "quality": 90,
                },
                {"signal_type": "sha256", "value": "ab" * 32, "reference": "case 17"},
            ]
        },
    )
    assert response.status_code == 201
    out = response.json["hashes"]  # type: ignore[index]
    assert [(h["index"], h["signal_type"], h["created"]) for h in out] == [
        (0, "pdq", True),
        (1, "sha256", True),
    ]
    assert out[0]["id"] != out[1]["id"]


def test_adding_the_same_hash_again_returns_the_same_id_not_created(api: Api) -> None:
    item = {"signal_type": "pdq", "value": random_pdq(2)}
    (first,) = api.add(item)
    again = api.post("/v1/hashes", {"hashes": [item]}).json["hashes"][0]  # type: ignore[index]
    assert (again["id"], again["created"]) == (first, False)


def test_a_low_quality_pdq_hash_is_refused_naming_the_item(api: Api) -> None:
    response = api.post(
        "/v1/hashes",
        {
            "hashes": [
                {"signal_type": "pdq", "value": random_pdq(3)},
                {"signal_type": "pdq", "value": random_pdq(4), "quality": 10},
            ]
        },
    )
    assert response.status_code == 400
    assert response.json["error"]["details"] == {"field": "quality", "index": 1}  # type: ignore[index]


def test_a_pdq_hash_carries_its_stored_variants_and_they_are_kept(api: Api) -> None:
    variants = [
        {"kind": "content", "value": random_pdq(2), "quality": 90},
        {"kind": "crop90_0_0", "value": random_pdq(3), "quality": 70},
    ]
    (pdq_id,) = api.add({"signal_type": "pdq", "value": random_pdq(1), "variants": variants})
    kept = api.store.hashes.variants([pdq_id])[pdq_id]
    assert [(v.kind, v.value.hex(), v.quality) for v in kept] == [
        ("content", random_pdq(2), 90),
        ("crop90_0_0", random_pdq(3), 70),
    ]


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ({"signal_type": "phash", "value": "ab" * 8}, "pdq only"),
        ({"variants": [{"kind": "crop42_9_9", "value": random_pdq(2), "quality": 90}]}, "unknown"),
        ({"variants": [{"kind": "content", "value": random_pdq(2), "quality": 30}]}, "50-100"),
        ({"variants": [{"kind": "content", "value": "zz" * 32, "quality": 90}]}, "hex"),
        (
            {
                "variants": [
                    {"kind": "content", "value": random_pdq(k), "quality": 90} for k in (2, 3)
                ]
            },
            "twice",
        ),
    ],
)
def test_bad_stored_variants_are_refused_naming_the_item(
    api: Api, item: dict[str, Any], why: str
) -> None:
    variants = [{"kind": "content", "value": random_pdq(2), "quality": 90}]
    bad = {"signal_type": "pdq", "value": random_pdq(1), "variants": variants} | item
    response = api.post("/v1/hashes", {"hashes": [{"signal_type": "md5", "value": "ab" * 16}, bad]})
    assert response.status_code == 400
    error = response.json["error"]  # type: ignore[index]
    assert error["details"]["field"] == "variants" and error["details"]["index"] == 1
    assert why in error["message"]


def test_bad_labels_are_refused_naming_the_item(api: Api) -> None:
    for labels, why in (([""], "empty"), (["x" * 101], "too long"), (["a\x00b"], "NUL")):
        response = api.post(
            "/v1/hashes",
            {"hashes": [{"signal_type": "md5", "value": "0" * 32, "labels": labels}]},
        )
        assert response.status_code == 400, why
        details = response.json["error"]["details"]  # type: ignore[index]
        assert (details["field"], details["index"]) == ("labels[0]", 0), why


def test_a_hash_reads_back_with_reference_for_its_contributor_and_admins_only(
    api: Api,
) -> None:
    (hash_id,) = api.add(
        {
            "signal_type": "pdq",
            "value": random_pdq(5),
            "labels": ["glorification"],
            "reference": "case 9",
        }
    )
    mine = api.get(f"/v1/hashes/{hash_id}").json
    assert mine is not None
    # An untrusted member's contribution waits for vetting (and matches meanwhile).
    assert (mine["value"], mine["labels"], mine["status"]) == (
        random_pdq(5),
        ["glorification"],
        "pending",
    )
    assert mine["reference"] == "case 9"
    assert api.get(f"/v1/hashes/{hash_id}", "admin").json["reference"] == "case 9"  # type: ignore[index]
    other = {"Authorization": f"Bearer {api.store.members.create('other', Role.MEMBER)[1].secret}"}
    # Pending: other members cannot see it at all (the export feed withholds it too).
    assert api.client.get(f"/v1/hashes/{hash_id}", headers=other).status_code == 404
    api.post("/v1/hashes/approve", {"ids": [hash_id]}, "admin")
    theirs = api.client.get(f"/v1/hashes/{hash_id}", headers=other)
    assert theirs.status_code == 200
    assert theirs.json["reference"] is None  # type: ignore[index]
    assert theirs.json["contributor_id"] is None  # type: ignore[index]


def test_an_unknown_hash_id_is_404(api: Api) -> None:
    response = api.get("/v1/hashes/424242")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"  # type: ignore[index]


def test_an_uploaded_image_adds_all_five_hashes(api: Api, photo: bytes) -> None:
    response = api.upload(
        "/v1/media", photo, labels=["manifesto", "terrorist_entity:example"], reference="upload 1"
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert body is not None
    assert body["low_quality"] is False
    assert [a["signal_type"] for a in body["added"]] == [
        "pdq",
        "phash",
        "keypoints",
        "md5",
        "sha256",
    ]
    record = api.get(f"/v1/hashes/{body['added'][0]['id']}").json
    assert record is not None
    assert record["value"] == body["hashes"]["pdq"]
    assert record["labels"] == ["manifesto", "terrorist_entity:example"]
    assert record["reference"] == "upload 1"


def test_a_featureless_image_adds_only_its_digests(api: Api, flat_image: bytes) -> None:
    body = api.upload("/v1/media", flat_image).json
    assert body is not None
    assert body["low_quality"] is True
    assert [a["signal_type"] for a in body["added"]] == ["md5", "sha256"]


def test_a_member_pages_through_its_own_contributions_and_no_one_elses(api: Api) -> None:
    mine = api.add(*({"signal_type": "md5", "value": f"{i:032x}"} for i in range(3)))
    api.add({"signal_type": "md5", "value": "f" * 32}, role="admin")
    page = api.get("/v1/hashes?limit=2").json
    assert page is not None
    assert [h["id"] for h in page["hashes"]] == mine[:2]
    assert {h["status"] for h in page["hashes"]} == {"pending"}
    assert (page["cursor"], page["more"]) == (mine[1], True)
    rest = api.get(f"/v1/hashes?cursor={page['cursor']}").json
    assert rest is not None
    assert ([h["id"] for h in rest["hashes"]], rest["more"]) == (mine[2:], False)
    assert api.get("/v1/hashes?status=active").json == {"hashes": [], "cursor": 0, "more": False}
    refused = api.get("/v1/hashes?status=lost")
    assert refused.status_code == 400 and refused.json["error"]["details"]["field"] == "status"  # type: ignore[index]
