"""Imports over HTTP: ops start an import of a server-side folder and follow its progress.

Only paths under HASHDB_IMPORT_ROOT may be imported; without the setting the
endpoint is refused. The API only queues the job; `hashdb worker` runs it (here its
job loop, `run_queued`, with a process pool), then the test reads its progress
over HTTP and checks its counts and errors.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from media_factory import write_image, write_video
from worker_fixtures import run_queued

from api.context import context

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

pytestmark = pytest.mark.slow


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An import root holding `collection`: 3 images, a copy of one, a broken file, a video."""
    folder = tmp_path / "root" / "collection"
    for n in range(3):
        write_image(folder / "images" / f"{n}.png", seed=n)
    shutil.copy(folder / "images" / "0.png", folder / "images" / "copy-of-0.png")
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_video(folder / "videos" / "clip.mp4", seed=7, seconds=3.0)
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


@pytest.fixture
def api(make_api: MakeApi, root: Path) -> Api:
    return make_api(import_root=root, import_workers=1)


def wait_done(api: Api, job_id: int) -> dict[str, Any]:
    """Run a worker over the queue, then the job as the API shows it: done."""
    run_queued(context(api.app).settings)
    body: dict[str, Any] = api.get(f"/v1/imports/{job_id}", "ops").json  # type: ignore[assignment]
    assert (body["status"], body["running_here"]) == ("done", False), body
    return body


def test_an_import_started_over_http_runs_to_done_with_counts_and_errors(api: Api) -> None:
    started = api.post("/v1/imports", {"path": "collection", "labels": ["attack_footage"]}, "ops")
    assert started.status_code == 202, started.json
    job = started.json
    assert job is not None
    assert (job["source"], job["total"], job["labels"]) == ("collection", 6, ["attack_footage"])
    assert (job["status"], job["running_here"], job["pending"]) == ("queued", False, 6)
    again = api.post("/v1/imports", {"path": "collection/"}, "ops")
    assert again.status_code == 202  # the same source, still queued: the same job
    assert again.json is not None and again.json["id"] == job["id"]

    done = wait_done(api, job["id"])
    assert (done["done"], done["duplicates"], done["failed"], done["pending"]) == (4, 1, 1, 0)
    assert (done["images"], done["videos"]) == (3, 1)
    assert done["frames"] >= 3 and done["finished_at"] is not None
    [failure] = done["errors"]
    assert failure["path"] == "images/broken.jpg" and failure["error"]
    listed = api.get("/v1/imports", "admin").json["imports"]  # type: ignore[index]
    assert [j["id"] for j in listed] == [job["id"]]
    audit = api.get("/v1/audit", "admin").json["entries"]  # type: ignore[index]
    entries = {e["action"]: e for e in audit if e["target"] == f"import:{job['id']}"}
    assert set(entries) == {"import.start", "import.finish"}  # as `hashdb import` writes
    starts = {e["details"]["resumed"]: e["details"] for e in audit if e["action"] == "import.start"}
    assert set(starts) == {False, True}  # the first start, and the second resuming it
    assert (starts[False]["labels"], starts[False]["files"]) == (["attack_footage"], 6)
    finish = entries["import.finish"]["details"]
    assert (finish["done"], finish["duplicates"], finish["failed"]) == (4, 1, 1)
    assert entries["import.finish"]["actor_id"] == entries["import.start"]["actor_id"]


def test_imported_hashes_are_live_and_labelled(api: Api, root: Path) -> None:
    started = api.post("/v1/imports", {"path": "collection/images", "labels": ["manifesto"]}, "ops")
    wait_done(api, started.json["id"])  # type: ignore[index]
    image = (root / "collection" / "images" / "1.png").read_bytes()
    body = api.upload("/v1/match/media", image).json
    pdq = body["results"][0]  # type: ignore[index]
    assert [(m["status"], m["labels"]) for m in pdq["matches"]] == [("active", ["manifesto"])]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"path": "../outside"}, "path"),
        ({"path": "collection/../../outside"}, "path"),
        ({"path": "/etc"}, "path"),
        ({"path": "nothing-here"}, "path"),
        ({"path": "collection", "labels": ["cats"]}, "labels"),
        ({"path": "collection", "manifest": "missing.csv"}, "manifest"),
        ({"path": ""}, "path"),
        ({"folder": "collection"}, "path"),
    ],
)
def test_a_bad_import_request_is_400_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = api.post("/v1/imports", body, "ops")
    assert response.status_code == 400, response.json
    assert response.json["error"]["details"]["field"] == field  # type: ignore[index]


def test_an_unknown_label_is_400_before_any_job_or_audit_entry(api: Api, root: Path) -> None:
    (root / "manifest.csv").write_text("path,labels\nimages/1.png,cats\n")
    for body, field in [
        ({"path": "collection", "labels": ["no_such_label"]}, "labels"),
        ({"path": "collection", "manifest": "manifest.csv"}, "manifest"),
    ]:
        response = api.post("/v1/imports", body, "ops")
        assert response.status_code == 400, response.json
        error = response.json["error"]  # type: ignore[index]
        assert error["details"]["field"] == field
        assert "unknown label(s)" in error["message"]
    assert api.get("/v1/imports", "ops").json == {"imports": [], "cursor": 0, "more": False}
    assert api.get("/v1/audit", "admin").json["entries"] == []  # type: ignore[index]


def test_a_link_out_of_the_root_is_refused(api: Api, root: Path) -> None:
    (root / "escape").symlink_to(root.parent / "outside")
    response = api.post("/v1/imports", {"path": "escape"}, "ops")
    assert response.status_code == 400
    assert "outside the import root" in response.json["error"]["message"]  # type: ignore[index]


def test_members_cannot_import_and_unknown_jobs_are_404(api: Api) -> None:
    assert api.post("/v1/imports", {"path": "collection"}).status_code == 403
    assert api.get("/v1/imports").status_code == 403
    assert api.get("/v1/imports/999", "ops").status_code == 404


def test_without_an_import_root_imports_over_http_are_refused(make_api: MakeApi) -> None:
    api = make_api()
    response = api.post("/v1/imports", {"path": "collection"}, "ops")
    assert response.status_code == 403
    assert "HASHDB_IMPORT_ROOT" in response.json["error"]["message"]  # type: ignore[index]
    assert api.get("/v1/imports", "ops").json == {"imports": [], "cursor": 0, "more": False}
