"""The console's routes through Flask's test client, on SQLite and PostgreSQL:
login, roles, CSRF, each page's main action, and the session key's handling."""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image
from werkzeug.test import TestResponse

from api.console.charts import Series, daily_bars, nice_max
from api.console.secret import KEY_FILE, key_from_file
from api.console.session import safe_next
from api.console.visual import bit_grid
from hashdb.consortium.actor import Actor
from hashdb.consortium.feedback import DisagreeReason, Kind
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Status
from ingest.keypoints import QUERY_LIMIT, keypoints
from ingest.records import image_contributions

if TYPE_CHECKING:
    from console_fixtures import Console

pytest_plugins = ["console_fixtures"]

ADMIN_PAGES = ["/console/review", "/console/disputes", "/console/members", "/console/members/1"]
STAFF_PAGES = ["/console/dashboard", "/console/imports", "/console/imports/rows"]
EVERYONE_PAGES = ["/console/lookup", "/console/reports", "/console/reports.csv"]


def pending_hash(console: Console, value: bytes = bytes(range(32))) -> int:
    member = console.db.store.members.by_name("test-member")
    return console.db.contributions.add(member, [NewHash(PDQ.name, value, ("glorification",), 90)])[
        0
    ].id


def test_pages_need_a_login_and_send_you_back_after_it(console: Console) -> None:
    response = console.client.get("/console/review?after=3")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login?next=")
    page = console.client.get(response.headers["Location"]).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token and 'name="next" value="/console/review?after=3"' in page
    response = console.client.post(
        "/console/login",
        data={
            "key": console.keys["admin"],
            "csrf_token": token.group(1),
            "next": "/console/review?after=3",
        },
    )
    assert response.headers["Location"] == "/console/review?after=3"


def test_a_bad_key_is_refused_with_401_and_a_message(console: Console) -> None:
    response = console.login("hdb_no-such-key")
    assert response.status_code == 401
    assert "That key is not valid" in response.text
    assert console.client.get("/console/dashboard").status_code == 302


@pytest.mark.parametrize(
    ("role", "allowed", "refused"),
    [
        ("admin", ADMIN_PAGES + STAFF_PAGES + EVERYONE_PAGES, []),
        ("ops", STAFF_PAGES + EVERYONE_PAGES, ADMIN_PAGES),
        ("member", EVERYONE_PAGES, ADMIN_PAGES + STAFF_PAGES),
    ],
)
def test_each_role_opens_its_pages_and_gets_403_elsewhere(
    console: Console, role: str, allowed: list[str], refused: list[str]
) -> None:
    assert console.login(role).status_code == 302
    for path in allowed:
        assert console.client.get(path).status_code == 200, path
    for path in refused:
        response = console.client.get(path)
        assert response.status_code == 403, path
        assert f"you are logged in as test-{role} ({role})" in response.text
        assert response.mimetype == "text/html"


def test_the_navigation_shows_only_the_pages_of_the_role(console: Console) -> None:
    console.login("member")
    page = console.client.get("/console/lookup").text
    assert ">Lookup<" in page and ">Reports<" in page
    assert ">Members<" not in page and ">Review queue<" not in page


@pytest.mark.parametrize("token", [None, "forged"])
def test_a_post_without_the_session_csrf_token_is_refused_with_400(
    console: Console, token: str | None
) -> None:
    console.login("admin")
    hash_id = pending_hash(console)
    data = {"act": f"approve:{hash_id}"} | ({"csrf_token": token} if token else {})
    response = console.client.post("/console/review", data=data)
    assert response.status_code == 400
    assert "security token (CSRF) is missing or does not match" in response.text
    assert console.db.store.hashes.get(hash_id).status is Status.PENDING


def test_login_itself_needs_the_csrf_token(console: Console) -> None:
    response = console.client.post("/console/login", data={"key": console.keys["admin"]})
    assert response.status_code == 400


def test_a_revoked_key_ends_its_session_on_the_next_request(console: Console) -> None:
    members = console.db.store.members
    member, new = members.create("Platform R", Role.MEMBER)
    console.login(new.secret)
    assert console.client.get("/console/lookup").status_code == 200
    members.revoke_key(member.id, new.key.id)
    response = console.client.get("/console/lookup")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]
    assert "Your session has ended" in console.client.get(response.headers["Location"]).text


def test_logout_clears_the_session(console: Console) -> None:
    console.login("admin")
    assert console.post("/console/logout").status_code == 302
    assert console.client.get("/console/dashboard").status_code == 302


def test_an_admin_approves_in_bulk_and_rejects_only_with_a_reason(console: Console) -> None:
    console.login("admin")
    first, second = pending_hash(console, bytes(32 * [1])), pending_hash(console, bytes(32 * [2]))
    page = console.client.get("/console/review").text
    assert f'id="pending-{first}"' in page and "Platform" not in page.split("<main")[0]
    response = console.post("/console/review", {"act": "reject", "ids": [str(first)]})
    assert response.status_code == 302
    assert "a reason is required" in console.client.get("/console/review").text
    console.post("/console/review", {"act": "approve", "ids": [str(first), str(second)]})
    statuses = {r.status for r in console.db.store.hashes.get_many([first, second]).values()}
    assert statuses == {Status.ACTIVE}


def test_an_admin_resolves_a_dispute_by_retiring_the_hash(console: Console) -> None:
    store = console.db.store
    admin = store.members.by_name("test-admin")
    hash_id = console.db.contributions.add(admin, [NewHash(PDQ.name, bytes(32 * [9]), (), 90)])[
        0
    ].id
    for name in ("test-member", "test-ops"):
        console.db.feedback.give(  # HASHDB_DISPUTE_THRESHOLD: 2 by default
            Actor(store.members.by_name(name)),
            hash_id,
            Kind.DISAGREE,
            reason=DisagreeReason.NOT_TERRORIST_CONTENT,
        )
    console.login("admin")
    assert f'id="disputed-{hash_id}"' in console.client.get("/console/disputes").text
    console.post(f"/console/disputes/{hash_id}", {"resolution": "retire", "reason": "satire"})
    assert store.hashes.get(hash_id).status is Status.RETIRED


def test_lookup_of_pasted_hashes_and_a_bad_line(console: Console) -> None:
    admin = console.db.store.members.by_name("test-admin")
    value = bytes(range(100, 132))
    hash_id = console.db.contributions.add(admin, [NewHash(PDQ.name, value, ("manifesto",), 90)])[
        0
    ].id
    console.login("member")
    response = console.post("/console/lookup", {"hashes": f"pdq:{value.hex()}\n{'0' * 64}"})
    assert response.status_code == 200
    assert f">#{hash_id}</a>" in response.text and "manifesto" in response.text
    bad = console.post("/console/lookup", {"hashes": "pdq:abc"})
    assert bad.status_code == 400 and "line 1" in bad.text


def test_a_match_on_a_hash_the_user_cannot_open_is_shown_without_a_link(
    console: Console,
) -> None:
    """Another member's pending hash matches (HASHDB_PENDING_MATCHES), but its page
    is a 404 for this user, so the lookup names it without linking to it."""
    member = console.db.store.members.by_name("test-member")
    value = bytes(range(60, 92))
    (added,) = console.db.contributions.add(member, [NewHash(PDQ.name, value, (), 90)])
    for role, linked in [("ops", False), ("member", True)]:
        console.client = console.app.test_client()
        console.login(role)
        page = console.post("/console/lookup", {"hashes": f"pdq:{value.hex()}"}).text
        assert 'class="match"' in page
        assert (f">#{added.id}</a>" in page) is linked, role
        assert (console.client.get(f"/console/hashes/{added.id}").status_code == 200) is linked


def test_lookup_of_an_uploaded_image(console: Console) -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(out, "PNG")
    console.login("member")
    response = console.post(
        "/console/lookup",
        {"file": (io.BytesIO(out.getvalue()), "flat.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert "too featureless to match perceptually" in response.text


def test_a_new_key_is_shown_once_and_not_cached(console: Console) -> None:
    console.login("admin")
    response = console.post("/console/members", {"name": "Platform N", "role": "member"})
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-secret"[^>]*value="(hdb_[^"]+)"', response.text)
    assert secret and console.db.store.members.authenticate(secret.group(1))
    member = console.db.store.members.by_name("Platform N")
    assert secret.group(1) not in console.client.get(f"/console/members/{member.id}").text
    rotated = console.post(f"/console/members/{member.id}/keys", {"overlap": "1h"})
    assert rotated.status_code == 201
    (old, _new) = console.db.store.members.keys(member.id)
    assert old.expires_at is not None
    console.post(f"/console/members/{member.id}/keys/{old.id}/revoke")
    assert console.db.store.members.keys(member.id)[0].revoked_at is not None


def test_the_report_downloads_as_csv_for_a_period(console: Console) -> None:
    console.login("admin")
    response = console.client.get("/console/reports.csv?from=2024-01-01&to=2024-01-31")
    assert response.mimetype == "text/csv"
    assert (
        'filename="transparency-consortium-2024-01-01-to-2024-01-31.csv"'
        in (response.headers["Content-Disposition"])
    )
    assert response.text.startswith("section,key,value\n")
    assert console.client.get("/console/reports?from=yesterday").status_code == 400


def test_the_dashboard_draws_its_charts_as_svg(console: Console) -> None:
    console.login("ops")
    page = console.client.get("/console/dashboard").text
    assert page.count('<svg class="chart" role="img"') == 2
    assert "<script" not in page.split("</head>")[1]


def test_console_pages_forbid_framing_and_foreign_scripts(console: Console) -> None:
    response = console.client.get("/console/login")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_api_requests_never_touch_the_session_key(db_url: str, tmp_path: Path) -> None:
    from api.app import create_app
    from api.console import register
    from api.context import context
    from hashdb.settings import Settings

    app = create_app(Settings(database_url=db_url, sync_interval=0.0, data_dir=tmp_path))
    register(app)
    try:
        client = app.test_client()
        assert client.get("/healthz").status_code == 200
        assert "Set-Cookie" not in client.get("/healthz").headers
        assert not (tmp_path / KEY_FILE).exists()
        client.get("/console/login")  # a console page: the key is made, kept private
        mode = (tmp_path / KEY_FILE).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    finally:
        context(app).close()


def test_the_generated_key_is_made_once_and_then_reused(tmp_path: Path) -> None:
    first = key_from_file(tmp_path)
    assert key_from_file(tmp_path) == first and len(first) >= 32
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/console/review?after=3", True),
        ("//evil.example/console", False),
        ("https://evil.example/console", False),
        ("/v1/match", False),
        ("/console\\@evil", False),
        ("", False),
    ],
)
def test_only_console_paths_are_followed_after_login(target: str, kept: bool) -> None:
    assert (safe_next(target) == target) is kept


def test_charts_round_their_axis_and_escape_their_text() -> None:
    assert [nice_max(v) for v in (0, 1, 3, 7, 11, 2000, 2001)] == [1, 1, 5, 10, 20, 2000, 5000]
    from datetime import date

    svg = daily_bars("<b>", [date(2024, 1, 1), date(2024, 1, 2)], [Series("a<b", [1, 3])])
    assert "<b>" not in svg and "&lt;b&gt;" in svg and svg.count('<rect class="series-0"') == 3


def test_a_pdq_hash_is_pictured_as_its_bits() -> None:
    svg = bit_grid("pdq", bytes([0x80]) + bytes(31))
    assert 'viewBox="0 0 16 16"' in svg and 'd="M0 0h1v1h-1z"' in svg
    assert bit_grid("md5", bytes(16)) == ""


def test_lookup_of_an_uploaded_video_shows_the_matched_time_ranges(
    console: Console, tmp_path: Path
) -> None:
    from media_factory import write_video

    from ingest.records import video_contributions
    from ingest.video import hash_video_file

    path = write_video(tmp_path / "clip.mp4", seed=3, seconds=4.0)
    video, _ = video_contributions(hash_video_file(path), ("attack_footage",), "clip")
    admin = console.db.store.members.by_name("test-admin")
    stored = console.db.store.videos.add(admin.id, video, Status.ACTIVE)
    console.login("member")
    response = console.post(
        "/console/lookup",
        {"file": (io.BytesIO(path.read_bytes()), "clip.mp4")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    table = response.text.split('id="video-matches"')[1].split("</table>")[0]
    assert f">#{stored.id}</a>" in table and "100%" in table
    assert re.search(r"0:00–0:0[34]", table), table


def test_the_hash_page_shows_another_members_pending_hash_to_nobody_but_admins(
    console: Console,
) -> None:
    hash_id = pending_hash(console)  # test-member's, labelled glorification
    other = console.db.store.members.create("Platform Q", Role.MEMBER)[1].secret
    hidden = page_as(console, other, f"/console/hashes/{hash_id}")
    unknown = page_as(console, other, "/console/hashes/987654")
    assert (hidden.status_code, unknown.status_code) == (404, 404)
    assert hidden.mimetype == "text/html" and "glorification" not in hidden.text
    for role in ("member", "admin"):  # the contributor, and admins
        shown = page_as(console, console.keys[role], f"/console/hashes/{hash_id}")
        assert shown.status_code == 200 and "glorification" in shown.text


def page_as(console: Console, secret: str, path: str) -> TestResponse:
    """`path` as a fresh session logged in with `secret` sees it."""
    client = console.app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/login").text)
    assert token
    client.post("/console/login", data={"key": secret, "csrf_token": token.group(1)})
    return client.get(path)


def test_lookup_of_a_cropped_image_shows_the_keypoints_that_agree(
    console: Console, bridge_picture: Image.Image
) -> None:
    stored = io.BytesIO()
    bridge_picture.save(stored, "JPEG", quality=90)
    admin = console.db.store.members.create("Stored by", Role.ADMIN)[0]
    _, rows = image_contributions(stored.getvalue(), (), "case-1")
    added = console.db.contributions.add(Actor(admin), rows)
    w, h = bridge_picture.size
    cropped = io.BytesIO()
    bridge_picture.crop((w // 10, h // 5, w, h)).save(cropped, "JPEG", quality=85)
    console.login("member")
    response = console.post(
        "/console/lookup",
        {"file": (io.BytesIO(cropped.getvalue()), "crop.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert re.search(r"\d+ keypoints agree, \d+% of it shown", response.text)
    (keypoints_id,) = [
        a.id for r, a in zip(rows, added, strict=True) if r.signal_type == "keypoints"
    ]
    page = console.client.get(f"/console/hashes/{keypoints_id}")  # active: members see it
    assert page.status_code == 200 and "keypoints" in page.text
    # the crop's keypoint set pasted, as `hashdb hash` prints one, finds it too
    crop = Image.open(io.BytesIO(cropped.getvalue())).convert("RGB")
    pasted = keypoints(crop, limit=QUERY_LIMIT).to_text()
    found = console.post("/console/lookup", {"hashes": f"keypoints:{pasted}"})
    assert found.status_code == 200 and f">#{keypoints_id}</a>" in found.text
    bad = console.post("/console/lookup", {"hashes": f"keypoints:{'ab' * 32}"})
    assert bad.status_code == 400 and "line 1" in bad.text
