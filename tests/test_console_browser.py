"""The console in a real browser: Debian's Chromium, headless, against a real server.

Each test opens its own browser context (cookies of its own) on the session's one
browser and server, seeds what it needs through the library on the same database,
and leaves a 1280x800 screenshot of each page it visits in `screenshots/`.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from media_factory import detailed_image, write_image
from PIL import Image

from hashdb.consortium import match_counts
from hashdb.consortium.actor import Actor
from hashdb.consortium.feedback import DisagreeReason, Kind
from hashdb.matching import Match, Query, QueryResult
from hashdb.signals import PDQ
from hashdb.store import NewHash, Status
from hashdb.store.clock import now
from ingest.image import hash_image
from ingest.records import contributions

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture fails each test, saying how to install it
    expect = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from console_fixtures import ConsoleServer, OpenPage
    from playwright.sync_api import FilePayload, Page

pytest_plugins = ["api_fixtures", "console_fixtures"]

ADMIN, MEMBER, MEMBER_B, OPS = "Consortium admin", "Platform A", "Platform B", "Ops team"


ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "screenshots"


def screenshot(page: Page, name: str) -> None:
    """The visible 1280x800 of the page, as screenshots/console-NAME.png."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"))


def png_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def log_in(page: Page, secret: str) -> None:
    page.goto("/console/login")
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Log in").click()


def seed_activity(server: ConsoleServer, photo: bytes) -> None:
    """Hashes, and a month of matches and some feedback, for the dashboard's charts."""
    db = server.open_db()
    try:
        admin = db.store.members.by_name(ADMIN)
        member = db.store.members.by_name(MEMBER)
        items = contributions(hash_image(photo), ("attack_footage",), "dash-1")
        ids = [a.id for a in db.contributions.add(admin, items)]
        records = list(db.store.hashes.get_many(ids).values())
        today = now()
        for days_ago in range(28):
            n = 1 + (days_ago * 7) % 11
            hits = [QueryResult(Query(PDQ, r.value), [Match(r, 0)]) for r in records[:2]] * n
            match_counts.record(
                db.store.engine, member.id, hits, at=today - timedelta(days=days_ago)
            )
        db.feedback.give(Actor(member), ids[0], Kind.AGREE)
    finally:
        db.close()


def test_an_admin_logs_in_sees_the_dashboard_and_logs_out(
    open_page: OpenPage, console_server: ConsoleServer, photo: bytes
) -> None:
    seed_activity(console_server, photo)
    page = open_page()
    page.goto("/console/login")
    screenshot(page, "login")
    log_in(page, console_server.keys[ADMIN])
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()
    nav = page.get_by_role("navigation", name="Console pages")
    for title in [
        "Dashboard",
        "Review queue",
        "Disputes",
        "Lookup",
        "Imports",
        "Members",
        "Reports",
    ]:
        expect(nav.get_by_role("link", name=title)).to_be_visible()
    page.reload()  # without the "logged in" message
    screenshot(page, "dashboard")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to the hashdb console")).to_be_visible()
    page.goto("/console/dashboard")
    assert "/console/login" in page.url


def test_a_bad_key_is_refused_at_login(open_page: OpenPage) -> None:
    page = open_page()
    log_in(page, "hdb_not-a-real-key")
    expect(page.locator("#login-error")).to_contain_text("not valid")


def test_a_member_sees_its_pages_and_cannot_open_admin_pages(
    open_page: OpenPage, console_server: ConsoleServer
) -> None:
    page = open_page()
    log_in(page, console_server.keys[MEMBER])
    expect(page.get_by_role("heading", name="Lookup")).to_be_visible()
    nav = page.get_by_role("navigation", name="Console pages")
    expect(nav.get_by_role("link", name="Lookup")).to_be_visible()
    expect(nav.get_by_role("link", name="Reports")).to_be_visible()
    for hidden in ["Dashboard", "Review queue", "Disputes", "Imports", "Members"]:
        expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
    for path in ["/console/review", "/console/disputes", "/console/members", "/console/imports"]:
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("alert")).to_contain_text("you are logged in as Platform A")
    screenshot(page, "forbidden")


def test_an_admin_approves_a_pending_contribution(
    open_page: OpenPage, console_server: ConsoleServer
) -> None:
    db = console_server.open_db()
    try:
        member = db.store.members.by_name(MEMBER)
        items = contributions(hash_image(png_of(detailed_image(7))), ("glorification",), "r-1")
        pdq_id = db.contributions.add(member, [i for i in items if i.signal_type == PDQ.name])[0].id
        assert db.store.hashes.get(pdq_id).status is Status.PENDING
    finally:
        db.close()
    page = open_page()
    log_in(page, console_server.keys[ADMIN])
    page.goto("/console/review")
    row = page.locator(f"#pending-{pdq_id}")
    expect(row).to_contain_text("Platform A")
    expect(row.locator("svg.bits")).to_be_visible()
    screenshot(page, "review-queue")
    row.get_by_role("button", name=f"Approve hash {pdq_id}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Approved 1 hash: #{pdq_id}")
    expect(page.locator(f"#pending-{pdq_id}")).to_have_count(0)
    db = console_server.open_db()
    try:
        assert db.store.hashes.get(pdq_id).status is Status.ACTIVE
    finally:
        db.close()
    page.goto(f"/console/hashes/{pdq_id}")
    expect(page.locator("#history-table")).to_contain_text("pending")
    expect(page.locator("#history-table")).to_contain_text("active")
    screenshot(page, "hash-detail")


def test_an_admin_resolves_a_dispute(open_page: OpenPage, console_server: ConsoleServer) -> None:
    db = console_server.open_db()
    try:
        admin = db.store.members.by_name(ADMIN)
        value = bytes(range(32))
        (added,) = db.contributions.add(admin, [contributions_pdq(value)])
        for name in (MEMBER, MEMBER_B):
            actor = Actor(db.store.members.by_name(name))
            db.feedback.give(
                actor,
                added.id,
                Kind.DISAGREE,
                reason=DisagreeReason.WRONG_LABEL,
                note=f"{name}: not this label",
            )
        assert db.store.hashes.get(added.id).status is Status.DISPUTED
    finally:
        db.close()
    page = open_page()
    log_in(page, console_server.keys[ADMIN])
    page.goto("/console/disputes")
    card = page.locator(f"#disputed-{added.id}")
    expect(card).to_contain_text("Platform B: not this label")
    screenshot(page, "disputes")
    card.get_by_label("Keep (back to active)").check()
    card.get_by_label("Reason").fill("label checked against the source: correct")
    card.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"Dispute on hash #{added.id} resolved: active"
    )
    db = console_server.open_db()
    try:
        assert db.store.hashes.get(added.id).status is Status.ACTIVE
    finally:
        db.close()


def contributions_pdq(value: bytes) -> NewHash:
    return NewHash(PDQ.name, value, ("attack_footage",), 100, "dispute-1")


def test_a_member_looks_up_an_uploaded_image_and_sees_its_match(
    open_page: OpenPage, console_server: ConsoleServer, photo: bytes, photo_small: bytes
) -> None:
    db = console_server.open_db()
    try:
        admin = db.store.members.by_name(ADMIN)
        items = contributions(hash_image(photo), ("attack_footage",), "lookup-1")
        ids = {
            i.signal_type: a.id
            for i, a in zip(items, db.contributions.add(admin, items), strict=True)
        }
    finally:
        db.close()
    page = open_page()
    log_in(page, console_server.keys[MEMBER])
    page.goto("/console/lookup")
    upload: FilePayload = {"name": "upload.jpg", "mimeType": "image/jpeg", "buffer": photo_small}
    page.set_input_files("#file", files=[upload])
    page.get_by_role("button", name="Look up").click()
    results = page.locator("#hash-matches")
    expect(results.get_by_role("link", name=f"#{ids['pdq']}")).to_be_visible()
    expect(results).to_contain_text("attack_footage")
    screenshot(page, "lookup")


def test_ops_watch_an_import_progress_to_done(
    open_page: OpenPage, console_server: ConsoleServer, tmp_path: Path
) -> None:
    collection = tmp_path / "collection"
    for i in range(24):
        write_image(collection / f"img-{i:02d}.png", seed=5000 + i)
    (collection / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    page = open_page()
    log_in(page, console_server.keys[OPS])
    page.goto("/console/imports")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHDB_")}
    env["HASHDB_DATABASE_URL"] = console_server.database_url
    env["HASHDB_DATA_DIR"] = str(console_server.data_dir)
    command = [sys.executable, "-m", "hashdb.cli", "import", str(collection)]
    command += ["--as", OPS, "--workers", "1", "--label", "attack_footage", "--json"]
    importer = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # The page polls; nobody reloads it: the job appears and runs to done.
        row = page.locator("#import-jobs tr", has_text=str(collection))
        expect(row).to_have_count(1, timeout=30_000)
        expect(row).to_have_attribute("data-status", "done", timeout=60_000)
        expect(row).to_contain_text("25 / 25")
    finally:
        _, err = importer.communicate(timeout=60)
    assert importer.returncode == 1, err  # one file failed; the rest were stored
    screenshot(page, "imports")
    row.get_by_role("link").first.click()
    expect(page.locator("#job-status")).to_have_text("done")
    expect(page.locator("#failed-files")).to_contain_text("broken.jpg")
    screenshot(page, "import-job")


def test_revoking_a_key_ends_the_session_opened_with_it(
    open_page: OpenPage, console_server: ConsoleServer
) -> None:
    admin = open_page()
    log_in(admin, console_server.keys[ADMIN])
    admin.goto("/console/members")
    screenshot(admin, "members")
    admin.get_by_label("Name").fill("Platform R")
    admin.get_by_label("Role").select_option("member")
    admin.get_by_role("button", name="Add member").click()
    secret = admin.locator("#new-secret").input_value()
    assert secret.startswith("hdb_")
    screenshot(admin, "new-key")

    member = open_page()
    log_in(member, secret)
    expect(member.get_by_role("heading", name="Lookup")).to_be_visible()

    admin.get_by_role("link", name="Back to Platform R").click()
    screenshot(admin, "member")
    admin.get_by_role("button", name=f"Revoke key {secret[:12]}").click()
    expect(admin.get_by_role("status")).to_contain_text("revoked")

    member.reload()
    assert "/console/login" in member.url
    expect(member.get_by_role("alert")).to_contain_text("Your session has ended")


def test_the_transparency_report_downloads_as_csv(
    open_page: OpenPage, console_server: ConsoleServer
) -> None:
    page = open_page()
    log_in(page, console_server.keys[ADMIN])
    page.goto("/console/reports")
    expect(page.get_by_role("heading", name="Transparency report")).to_be_visible()
    screenshot(page, "reports")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download as CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("transparency-consortium-")
    text = Path(download.path()).read_text()
    assert text.startswith("section,key,value\n")
    assert "hashes.by_status" in text
