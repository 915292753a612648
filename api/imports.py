"""The imports blueprint: ops teams start bulk imports of server-side collections.

`POST /v1/imports` plans an import of a folder or archive under HASHDB_IMPORT_ROOT
and queues it for `hashdb worker` (202 with the job, `queued`; it never hashes
here); `GET
/v1/imports/<id>` reports its progress and every failed file; `GET /v1/imports`
lists recent jobs. How imports run, and what is refused, is in
`api.import_runner` and `hashdb.consortium.imports`: an unknown label is a 400
before any file is read, and the job's start and finish are audited
(`import.start`, `import.finish`) with the key and request id; what it stores is
recorded per file in the job.
"""

from __future__ import annotations

from flask import Blueprint, Response

from api import schemas_imports as i
from api.auth import requires
from api.context import ApiContext, context
from api.idempotency import idempotent
from api.openapi import document
from api.request_id import actor
from api.schemas import PageArgs
from api.web import json_body, query_args, reply, reply_page
from hashdb.consortium import FileState, ImportJob, Role

bp = Blueprint("imports", __name__)

TAG = "imports"


def _out(ctx: ApiContext, job: ImportJob) -> dict[str, object]:
    c = job.counts
    return {
        "id": job.id,
        "member_id": job.member_id,
        "source": ctx.imports.shown(job.source),
        "labels": list(job.labels),
        "status": job.status.value,
        "running_here": ctx.imports.running_here(job),
        "total": c.total,
        "done": c.done,
        "failed": c.failed,
        "duplicates": c.duplicates,
        "pending": c.pending,
        "started_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
    }


@bp.post("/v1/imports")
@document(
    "Start an import",
    tag=TAG,
    description="Queues the import of every image and video of a folder or archive under "
    "the server's HASHDB_IMPORT_ROOT; a `hashdb worker` hashes it (until one runs, the "
    "job stays `queued`); poll `GET /v1/imports/{job_id}`. Starting an unfinished "
    "import of the same path again resumes it (new files planned). An archive is "
    "checked now, unpacking it within HASHDB_IMPORT_MAX_* (bytes, compression ratio, "
    "members, depth); a file that resolves outside the import root (a link) is "
    "reported failed, never read.",
    body=i.ImportRequest,
    responses={202: i.ImportOut},
    errors={
        403: "The role may not import, or imports over HTTP are disabled "
        "(HASHDB_IMPORT_ROOT unset).",
        409: "A worker is running an import of this path now.",
        415: "Body is not `application/json`, or the archive is encrypted or uses a "
        "compression method that cannot be read.",
        422: "The archive is corrupt, or passes a HASHDB_IMPORT_MAX_* limit (named in "
        "`details.setting`).",
    },
)
@requires(Role.OPS)
@idempotent
def start() -> Response:
    ctx = context()
    body = json_body(i.ImportRequest)
    job = ctx.imports.start(actor(), body.path, tuple(body.labels), body.manifest)
    return reply(i.ImportOut.model_validate(_out(ctx, job)), 202)


@bp.get("/v1/imports")
@document(
    "Imports",
    tag=TAG,
    description="Every import job by id (oldest first), a page at a time.",
    query=PageArgs,
    responses={200: i.ImportList},
)
@requires(Role.OPS)
def recent() -> Response:
    ctx = context()
    args = query_args(PageArgs)
    found = ctx.db.imports.page(actor(), after=args.position, limit=args.limit)
    body = i.ImportList(
        imports=[i.ImportOut.model_validate(_out(ctx, j)) for j in found.items],
        cursor=found.cursor,
        more=found.more,
    )
    return reply_page(body, args)


@bp.get("/v1/imports/<id:job_id>")
@document(
    "An import's progress",
    tag=TAG,
    description="File counts (total, done, failed, duplicates, pending), status and "
    "times, what was stored, and every failed file with its reason.",
    responses={200: i.ImportDetail},
)
@requires(Role.OPS)
def progress(job_id: int) -> Response:
    ctx = context()
    who = actor()
    job = ctx.db.imports.get(who, job_id)
    done = ctx.db.imports.files(who, job_id, FileState.DONE)
    failed = ctx.db.imports.files(who, job_id, FileState.FAILED)
    detail = i.ImportDetail.model_validate(
        {
            **_out(ctx, job),
            "images": sum(f.kind == "image" for f in done),
            "videos": sum(f.kind == "video" for f in done),
            "frames": sum(f.frames or 0 for f in done),
            "errors": [{"path": f.path, "error": f.error or "failed"} for f in failed],
        }
    )
    return reply(detail)
