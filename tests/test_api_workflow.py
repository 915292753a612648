"""The consortium workflow over HTTP: who may do what, and what each bad request gets.

Vetting, labels, incidents and the audit log are for admins; feedback, outcomes,
the export feed and reports for members, who see their own figures only. Every
refusal is the one JSON error shape, naming the field where there is one.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.test import TestResponse

from hashdb.store import NewHash, Role
from hashdb.store.hashes import NewVariant

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]


def pdq(seed: int) -> dict[str, Any]:
    return {"signal_type": "pdq", "value": random.Random(seed).randbytes(32).hex()}


def error(response: TestResponse, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.json["error"]  # type: ignore[index]
    assert set(body) == {"code", "message", "details"}
    if field is not None:
        assert body["details"].get("field") == field, body
    return body


def period(**extra: Any) -> str:
    now = datetime.now(UTC)
    query = {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }
    query.update(extra)
    return "&".join(f"{k}={str(v).replace('+', '%2B')}" for k, v in query.items())


# ---- role boundaries ----------------------------------------------------------------


def test_a_member_cannot_approve_read_the_audit_log_or_see_another_members_figures(
    api: Api,
) -> None:
    (hash_id,) = api.add(pdq(1))
    assert error(api.post("/v1/hashes/approve", {"ids": [hash_id]}), 403)["code"] == "forbidden"
    error(api.get("/v1/audit"), 403)
    error(api.get("/v1/audit/verify"), 403)
    error(api.get("/v1/review"), 403)
    error(api.get(f"/v1/hashes/{hash_id}/history"), 403)
    error(api.client.delete(f"/v1/hashes/{hash_id}", headers=api.auth("member")), 403)
    admin_id = api.store.members.by_name("test-admin").id
    error(api.get(f"/v1/reports/transparency?{period(member_id=admin_id)}"), 403)
    assert api.get(f"/v1/hashes/{hash_id}").json["status"] == "pending"  # type: ignore[index]


def test_ops_keys_do_not_reach_member_data(api: Api) -> None:
    error(api.get("/v1/export", "ops"), 403)
    error(api.get(f"/v1/reports/transparency?{period()}", "ops"), 403)
    assert api.get("/v1/labels", "ops").status_code == 200


def test_an_admin_sees_any_members_figures(api: Api) -> None:
    member_id = api.store.members.by_name("test-member").id
    api.add(pdq(2))
    report = api.get(f"/v1/reports/transparency?{period(member_id=member_id)}", "admin").json
    assert report["member_id"] == member_id  # type: ignore[index]
    assert report["hashes"]["by_status"] == {"pending": 1}  # type: ignore[index]


# ---- vetting ----------------------------------------------------------------------


def test_bulk_approve_moves_every_hash_or_none(api: Api) -> None:
    first, second = api.add(pdq(3), pdq(4))
    (live,) = api.add(pdq(5), role="admin")
    refused = error(api.post("/v1/hashes/approve", {"ids": [first, live, second]}, "admin"), 409)
    assert refused["details"]["ids"] == [live]
    assert api.get(f"/v1/hashes/{first}").json["status"] == "pending"  # type: ignore[index]
    done = api.post("/v1/hashes/approve", {"ids": [first, second]}, "admin").json
    assert [h["status"] for h in done["hashes"]] == ["active", "active"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ids": []}, "ids"),
        ({"ids": [0]}, "ids"),
        ({"ids": ["1"]}, "ids"),
        ({"ids": [1], "reason": "x" * 2001}, "reason"),
        ({"ids": [1], "why": "typo"}, "why"),
    ],
)
def test_a_malformed_status_change_is_400_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    error(api.post("/v1/hashes/approve", body, "admin"), 400, field)


def test_rejecting_or_retiring_needs_a_reason_and_unknown_ids_are_404(api: Api) -> None:
    (hash_id,) = api.add(pdq(6))
    error(api.post("/v1/hashes/reject", {"ids": [hash_id]}, "admin"), 400, "reason")
    error(api.post("/v1/hashes/retire", {"ids": [hash_id], "reason": " "}, "admin"), 400, "reason")
    assert error(
        api.post("/v1/hashes/reject", {"ids": [hash_id, 999], "reason": "x"}, "admin"), 404
    )["details"]["ids"] == [999]
    rejected = api.post("/v1/hashes/reject", {"ids": [hash_id], "reason": "a meme"}, "admin")
    assert rejected.json["hashes"][0]["status"] == "rejected"  # type: ignore[index]


def test_delete_retires_through_the_workflow_with_a_reason_and_is_idempotent(api: Api) -> None:
    first, second = api.add(pdq(7), pdq(8), role="admin")
    assert api.delete(f"/v1/hashes/{first}").json["status"] == "retired"  # type: ignore[index]
    again = api.delete(f"/v1/hashes/{first}")
    assert again.status_code == 200 and again.json["status"] == "retired"  # type: ignore[index]
    api.client.delete(
        f"/v1/hashes/{second}",
        json={"reason": "duplicate of a better copy"},
        headers=api.auth("admin"),
    )
    reasons = [
        api.get(f"/v1/hashes/{i}/history", "admin").json["transitions"][-1]["reason"]  # type: ignore[index]
        for i in (first, second)
    ]
    assert reasons == ["deleted through the API", "duplicate of a better copy"]
    retirements = [
        e
        for e in api.get("/v1/audit", "admin").json["entries"]
        if e["action"] == "hash.retire"  # type: ignore[index]
    ]
    assert [e["target"] for e in retirements] == [f"hash:{first}", f"hash:{second}"]


def test_a_rejected_hash_cannot_be_deleted(api: Api) -> None:
    (hash_id,) = api.add(pdq(9))
    api.post("/v1/hashes/reject", {"ids": [hash_id], "reason": "not terrorist content"}, "admin")
    error(api.delete(f"/v1/hashes/{hash_id}"), 409)


def test_a_dispute_is_resolved_by_keeping_or_retiring(make_api: Any) -> None:
    api = make_api(dispute_threshold=1)
    (hash_id,) = api.add(pdq(10), role="admin")
    error(
        api.post(f"/v1/hashes/{hash_id}/resolve", {"resolution": "keep", "reason": "x"}, "admin"),
        409,
    )
    api.post(f"/v1/hashes/{hash_id}/feedback", {"kind": "disagree", "reason": "wrong_label"})
    error(
        api.post(f"/v1/hashes/{hash_id}/resolve", {"resolution": "maybe", "reason": "x"}, "admin"),
        400,
        "resolution",
    )
    kept = api.post(
        f"/v1/hashes/{hash_id}/resolve", {"resolution": "keep", "reason": "checked"}, "admin"
    )
    assert kept.json["status"] == "active"  # type: ignore[index]


def test_the_contributor_or_an_admin_sets_an_expiry_and_nobody_else(api: Api) -> None:
    (hash_id,) = api.add(pdq(11))
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    done = api.client.put(
        f"/v1/hashes/{hash_id}/expiry", json={"expires_at": later}, headers=api.auth("member")
    )
    assert done.status_code == 200 and done.json["expires_at"] is not None  # type: ignore[index]
    other = api.post("/v1/members", {"name": "Platform Z"}, "admin").json["key"]["secret"]  # type: ignore[index]

    def by_other() -> TestResponse:
        return api.client.put(
            f"/v1/hashes/{hash_id}/expiry",
            json={"expires_at": None},
            headers={"Authorization": f"Bearer {other}"},
        )

    error(by_other(), 404)  # pending: another member cannot see it at all
    api.post("/v1/hashes/approve", {"ids": [hash_id]}, "admin")
    error(by_other(), 403)  # active: seen, but not theirs to change
    naive = api.client.put(
        f"/v1/hashes/{hash_id}/expiry",
        json={"expires_at": "2030-01-01T00:00:00"},
        headers=api.auth("admin"),
    )
    error(naive, 400, "expires_at")


def test_labels_are_replaced_by_an_admin_or_by_the_contributor_while_pending(
    api: Api,
) -> None:
    (hash_id,) = api.add(pdq(15))

    def relabel(labels: list[str], who: str) -> TestResponse:
        return api.client.put(
            f"/v1/hashes/{hash_id}/labels", json={"labels": labels}, headers=api.auth(who)
        )

    mine = relabel(["manifesto"], "member")
    assert mine.status_code == 200 and mine.json["labels"] == ["manifesto"]  # type: ignore[index]
    error(relabel(["no_such_label"], "member"), 400, "labels")
    error(relabel(["crisis_incident:1"], "admin"), 400, "labels")
    api.post("/v1/hashes/approve", {"ids": [hash_id]}, "admin")
    error(relabel(["attack_footage"], "member"), 403)  # active: an admin's call now
    done = relabel(["attack_footage", "manifesto"], "admin")
    assert done.json["labels"] == ["attack_footage", "manifesto"]  # type: ignore[index]
    audit = api.get("/v1/audit?limit=1000", "admin").json["entries"]  # type: ignore[index]
    changes = [e["details"] for e in audit if e["action"] == "hash.relabel"]
    assert changes[-1] == {"from": ["manifesto"], "to": ["attack_footage", "manifesto"]}
    api.post("/v1/hashes/retire", {"ids": [hash_id], "reason": "wrong"}, "admin")
    error(relabel(["manifesto"], "admin"), 409)


def test_the_review_queue_pages_oldest_first(api: Api) -> None:
    ids = api.add(pdq(12), pdq(13), pdq(14))
    first = api.get("/v1/review?limit=2", "admin").json
    assert [h["id"] for h in first["hashes"]] == ids[:2]  # type: ignore[index]
    rest = api.get(f"/v1/review?limit=2&cursor={first['cursor']}", "admin").json  # type: ignore[index]
    assert [h["id"] for h in rest["hashes"]] == ids[2:] and rest["more"] is False  # type: ignore[index]
    error(api.get("/v1/review?status=retired", "admin"), 400, "status")
    error(api.get("/v1/review?limit=0", "admin"), 400, "limit")
    error(api.get("/v1/review?page=2", "admin"), 400, "page")


# ---- labels and incidents -------------------------------------------------------------


def test_admins_manage_labels_and_contributions_must_use_live_ones(api: Api) -> None:
    names = [x["name"] for x in api.get("/v1/labels").json["labels"]]  # type: ignore[index]
    assert "attack_footage" in names
    body = {"name": "hostage_video", "description": "Footage of hostages."}
    assert api.post("/v1/labels", body, "admin").status_code == 201
    error(api.post("/v1/labels", body, "admin"), 409)
    error(api.post("/v1/labels", {**body, "name": "Bad Name"}, "admin"), 400, "name")
    error(api.post("/v1/labels", body), 403)
    api.add({**pdq(15), "labels": ["hostage_video"]})
    edited = api.client.patch(
        "/v1/labels/hostage_video", json={"deprecated": True}, headers=api.auth("admin")
    )
    assert edited.json["deprecated_at"] is not None  # type: ignore[index]
    refused = api.post("/v1/hashes", {"hashes": [{**pdq(16), "labels": ["hostage_video"]}]})
    error(refused, 400, "labels")
    missing = api.client.patch("/v1/labels/nothing", json={}, headers=api.auth("admin"))
    error(missing, 404)


def test_an_open_incident_fast_tracks_contributions_until_it_is_closed(api: Api) -> None:
    opened = api.post("/v1/incidents", {"name": "Attack in X"}, "admin")
    assert opened.status_code == 201
    incident = opened.json["id"]  # type: ignore[index]
    (fast,) = api.add({**pdq(17), "labels": [f"crisis_incident:{incident}"]})
    assert api.get(f"/v1/hashes/{fast}").json["status"] == "active"  # type: ignore[index]
    closed = api.client.post(f"/v1/incidents/{incident}/close", headers=api.auth("admin"))
    assert closed.status_code == 200 and closed.json["open"] is False  # type: ignore[index]
    error(api.client.post(f"/v1/incidents/{incident}/close", headers=api.auth("admin")), 409)
    (slow,) = api.add({**pdq(18), "labels": [f"crisis_incident:{incident}"]})
    assert api.get(f"/v1/hashes/{slow}").json["status"] == "pending"  # type: ignore[index]
    listed = api.get("/v1/incidents", "admin").json["incidents"]  # type: ignore[index]
    assert [i["name"] for i in listed] == ["Attack in X"]
    error(
        api.post("/v1/incidents", {"name": "x", "started_at": "yesterday"}, "admin"),
        400,
        "started_at",
    )


# ---- feedback and outcomes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "disagree"}, "reason"),
        ({"kind": "agree", "reason": "wrong_label"}, "reason"),
        ({"kind": "false_positive"}, "content"),
        (
            {"kind": "false_positive", "content": {"signal_type": "pdq", "value": "ab"}},
            "content.value",
        ),
        ({"kind": "meh"}, "kind"),
    ],
)
def test_bad_feedback_is_400_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    (hash_id,) = api.add(pdq(19))
    error(api.post(f"/v1/hashes/{hash_id}/feedback", body), 400, field)


def test_feedback_is_kept_and_a_member_reads_back_only_its_own(api: Api) -> None:
    (hash_id,) = api.add(pdq(20), role="admin")
    content = pdq(21)
    given = api.post(
        f"/v1/hashes/{hash_id}/feedback", {"kind": "false_positive", "content": content}
    )
    assert given.status_code == 201
    assert given.json["feedback"]["content"] == content  # type: ignore[index]
    assert given.json["disputed"] is False  # type: ignore[index]  # threshold 2, one member
    api.post(f"/v1/hashes/{hash_id}/feedback", {"kind": "agree"}, "admin")
    mine = api.get(f"/v1/hashes/{hash_id}/feedback").json["feedback"]  # type: ignore[index]
    everyone = api.get(f"/v1/hashes/{hash_id}/feedback", "admin").json["feedback"]  # type: ignore[index]
    assert (len(mine), len(everyone)) == (1, 2)
    error(api.post("/v1/hashes/999/feedback", {"kind": "agree"}), 404)


def test_outcomes_need_times_in_order_with_a_zone(api: Api) -> None:
    (hash_id,) = api.add(pdq(22), role="admin")
    now = datetime.now(UTC)

    def times(up: datetime, matched: datetime, acted: datetime) -> dict[str, str]:
        return {
            "action": "removed",
            "uploaded_at": up.isoformat(),
            "matched_at": matched.isoformat(),
            "actioned_at": acted.isoformat(),
        }

    path = f"/v1/hashes/{hash_id}/outcomes"
    hour = timedelta(hours=1)
    error(api.post(path, times(now, now - hour, now)), 400, "matched_at")
    error(api.post(path, times(now - hour, now, now - hour / 2)), 400, "actioned_at")
    error(api.post(path, times(now, now, now + 2 * hour)), 400, "actioned_at")
    error(
        api.post(path, {**times(now, now, now), "uploaded_at": "2024-01-01T00:00:00"}),
        400,
        "uploaded_at",
    )
    done = api.post(path, times(now - hour, now - hour / 2, now))
    assert done.status_code == 201 and done.json["time_to_action_seconds"] == 3600.0  # type: ignore[index]


# ---- who sees which hash ----------------------------------------------------------------


def test_another_members_pending_or_rejected_hash_is_404_as_an_unknown_id_is(api: Api) -> None:
    pending, rejected, approved = api.add({**pdq(40), "labels": ["manifesto"]}, pdq(41), pdq(42))
    api.post("/v1/hashes/reject", {"ids": [rejected], "reason": "not terrorist content"}, "admin")
    api.post("/v1/hashes/approve", {"ids": [approved]}, "admin")
    other = {"Authorization": f"Bearer {member_key(api, 'Platform Y')}"}
    unknown = error(api.client.get("/v1/hashes/987654", headers=other), 404)
    for hidden in (pending, rejected):
        body = error(api.client.get(f"/v1/hashes/{hidden}", headers=other), 404)
        assert body == {**unknown, "message": f"no hash with id {hidden}"}
        assert api.get(f"/v1/hashes/{hidden}").status_code == 200  # the contributor's own
        assert api.get(f"/v1/hashes/{hidden}", "admin").json["id"] == hidden  # type: ignore[index]
    # Feedback may follow a match, and pending hashes match here: a rejected one never.
    assert api.client.get(f"/v1/hashes/{pending}/feedback", headers=other).status_code == 200
    error(api.client.get(f"/v1/hashes/{rejected}/feedback", headers=other), 404)
    seen = api.client.get(f"/v1/hashes/{approved}", headers=other)
    assert seen.status_code == 200 and seen.json["status"] == "active"  # type: ignore[index]
    assert seen.json["reference"] is None  # type: ignore[index]


def test_feedback_and_outcomes_on_a_stored_variant_are_404(api: Api) -> None:
    admin = api.store.members.by_name("test-admin")
    crops = tuple(NewVariant(f"crop{i}", random.Random(50 + i).randbytes(32)) for i in range(4))
    value = random.Random(49).randbytes(32)
    (image,) = api.store.hashes.add(
        admin.id, [NewHash("pdq", value, ("manifesto",), 90, variants=crops)]
    )
    now = datetime.now(UTC).isoformat()
    outcome = {"action": "removed", "uploaded_at": now, "matched_at": now, "actioned_at": now}
    for other in range(image.id + 1, image.id + 1 + len(crops)):
        error(api.post(f"/v1/hashes/{other}/feedback", {"kind": "agree"}), 404)
        error(api.post(f"/v1/hashes/{other}/outcomes", outcome), 404)
        error(api.get(f"/v1/hashes/{other}", "admin"), 404)
    # The image itself is a hash like any other: feedback on it still works.
    given = api.post(f"/v1/hashes/{image.id}/feedback", {"kind": "agree"})
    assert given.status_code == 201, given.json
    assert api.post(f"/v1/hashes/{image.id}/outcomes", outcome).status_code == 201


def member_key(api: Api, name: str) -> str:
    return api.store.members.create(name, Role.MEMBER)[1].secret


# ---- export, reports, audit -------------------------------------------------------------


def test_the_export_feed_pages_with_a_cursor_and_never_exports_pending_hashes(api: Api) -> None:
    (pending,) = api.add(pdq(23))
    live = api.add(pdq(24), pdq(25), role="admin")
    lines = api.get("/v1/export?since=0&limit=1").get_data(as_text=True).splitlines()
    assert len(lines) == 1
    response = api.get("/v1/export?since=0")
    entries = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    ops = {e["id"]: (e["op"], e["value"] is not None) for e in entries}
    assert ops == {pending: ("delete", False), live[0]: ("add", True), live[1]: ("add", True)}
    assert response.headers["X-Hashdb-More"] == "false"
    cursor = response.headers["X-Hashdb-Cursor"]
    assert api.get(f"/v1/export?since={cursor}").get_data() == b""
    as_csv = api.get("/v1/export?format=csv")
    assert as_csv.mimetype == "text/csv"
    assert as_csv.get_data(as_text=True).startswith("seq,op,id,signal_type,status,value")
    te = api.get("/v1/export?format=threatexchange").get_data(as_text=True)
    assert te.count("pdq ") == 2
    error(api.get("/v1/export?format=xml"), 400, "format")
    error(api.get("/v1/export?since=-1"), 400, "since")
    assert api.get(f"/v1/export?cursor={cursor}").get_data() == b""  # `since`'s new name
    error(api.get("/v1/export?cursor=3&since=3"), 400, "since")
    error(api.get("/v1/export?after=3"), 400, "after")


def test_reports_come_as_json_csv_or_markdown_and_need_a_zoned_period(api: Api) -> None:
    assert api.get(f"/v1/reports/transparency?{period()}").mimetype == "application/json"
    assert api.get(f"/v1/reports/transparency?{period(format='csv')}").mimetype == "text/csv"
    markdown = api.client.get(
        f"/v1/reports/transparency?{period()}",
        headers={**api.auth(), "Accept": "text/markdown"},
    )
    assert markdown.mimetype == "text/markdown"
    assert markdown.get_data(as_text=True).startswith("# Transparency report (member ")
    error(api.get("/v1/reports/transparency?to=2030-01-01T00:00:00Z"), 400, "from")
    flipped = "from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z"
    error(api.get(f"/v1/reports/transparency?{flipped}"), 400, "to")
    naive = "from=2029-01-01T00:00:00&to=2030-01-01T00:00:00Z"
    error(api.get(f"/v1/reports/transparency?{naive}"), 400, "from")


def test_every_admin_write_is_audited_with_its_key_and_request_id(api: Api) -> None:
    response = api.client.post(
        "/v1/members",
        json={"name": "Platform Y"},
        headers={**api.auth("admin"), "X-Request-Id": "trace-42"},
    )
    assert response.headers["X-Request-Id"] == "trace-42"
    member_id = response.json["member"]["id"]  # type: ignore[index]
    api.post(f"/v1/members/{member_id}/keys", {}, "admin")
    entries = api.get("/v1/audit", "admin").json["entries"]  # type: ignore[index]
    created, issued = entries[-2:]
    assert (created["action"], created["target"], created["request_id"]) == (
        "member.create",
        f"member:{member_id}",
        "trace-42",
    )
    assert issued["action"] == "key.issue" and issued["key_id"] is not None
    odd = api.client.get("/v1/labels", headers={**api.auth(), "X-Request-Id": "<b>not an id</b>"})
    assert odd.headers["X-Request-Id"] != "<b>not an id</b>"
    error(api.get("/v1/audit?limit=5000", "admin"), 400, "limit")
