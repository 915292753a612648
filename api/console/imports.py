"""Import jobs (ops and admins): running and past jobs with live progress.

Imports are started by `hashdb import` on a machine that sees the collection (or
over HTTP); the console watches them through the same use cases
(`hashdb.consortium.imports`: ops and admins only). A job's counts are derived
from its file rows, so what the page shows is what the database holds. The
pages poll a small HTML fragment every second or two (`static/console.js`) while
a job runs; without script, the page still shows the state when it was loaded.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from api.console.common import member_names
from api.console.session import STAFF, page, user
from api.context import context
from hashdb.consortium import FileState, JobStatus

bp = Blueprint("imports", __name__)

RECENT = 50


def _jobs_context() -> dict[str, object]:
    ctx = context()
    jobs = ctx.db.imports.recent(user().actor(), RECENT)
    running = any(j.status is JobStatus.RUNNING for j in jobs)
    return {"jobs": jobs, "names": member_names(ctx), "running": running}


@bp.get("/imports")
@page(STAFF)
def jobs() -> str:
    return render_template("console_imports.html", **_jobs_context())


@bp.get("/imports/rows")
@page(STAFF)
def rows() -> str:
    return render_template("console_import_rows.html", **_jobs_context())


def _job_context(job_id: int) -> dict[str, object]:
    ctx = context()
    who = user().actor()
    return {
        "job": ctx.db.imports.get(who, job_id),
        "failed": ctx.db.imports.files(who, job_id, FileState.FAILED),
        "duplicates": ctx.db.imports.files(who, job_id, FileState.DUPLICATE),
        "names": member_names(ctx),
    }


@bp.get("/imports/<id:job_id>")
@page(STAFF)
def job(job_id: int) -> str:
    return render_template("console_import.html", **_job_context(job_id))


@bp.get("/imports/<id:job_id>/status")
@page(STAFF)
def status(job_id: int) -> str:
    return render_template("console_import_status.html", **_job_context(job_id))
