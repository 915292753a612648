"""The audit blueprint: admins read the hash-chained audit log and check the chain.

Every administrative action and every write made with a key is in the log
(the consortium's `Audit`), with the key id and the request id (`X-Request-Id`).
`GET /v1/audit` pages through it oldest first and gives the current head (seq and
hash); `GET /v1/audit/head` gives it as a checkpoint line, signed under
`HASHDB_AUDIT_KEY` when set, which an admin publishes and later checks the log
against (`hashdb audit verify --head`); `GET /v1/audit/verify` recomputes the whole
chain and names the first entry that does not check out.
"""

from __future__ import annotations

from flask import Blueprint, Response

from api import schemas_workflow as w
from api.auth import requires
from api.context import context
from api.openapi import document
from api.request_id import actor
from api.web import query_args, reply, reply_page
from hashdb.consortium import Role

bp = Blueprint("audit", __name__)

TAG = "audit"


@bp.get("/v1/audit")
@document(
    "Read the audit log",
    tag=TAG,
    description="Entries by `seq` (oldest first), a page at a time; `cursor` is the last "
    "`seq` read.",
    query=w.AuditQuery,
    responses={200: w.AuditPage},
)
@requires(Role.ADMIN)
def read() -> Response:
    args = query_args(w.AuditQuery)
    log = context().db.audit
    found = log.page(actor(), after=args.position, limit=args.limit)
    seq, digest = log.head(actor())
    return reply_page(
        w.AuditPage(
            entries=[
                w.AuditEntryOut(
                    seq=e.seq,
                    at=e.at,
                    actor_id=e.actor_id,
                    key_id=e.key_id,
                    action=e.action,
                    target=e.target,
                    request_id=e.request_id,
                    details=e.details,
                    prev_hash=e.prev_hash,
                    hash=e.hash,
                )
                for e in found.items
            ],
            head=w.AuditHead(seq=seq, hash=digest),
            cursor=found.cursor,
            more=found.more,
        ),
        args,
    )


@bp.get("/v1/audit/head")
@document(
    "A checkpoint of the audit log to publish",
    tag=TAG,
    description="The newest entry's number and hash, signed with HMAC-SHA256 under "
    "HASHDB_AUDIT_KEY when it is set. Publish `checkpoint`; a later rewrite of the log "
    "or a cut tail fails `hashdb audit verify --head` against it.",
    responses={200: w.AuditCheckpoint},
)
@requires(Role.ADMIN)
def head() -> Response:
    checkpoint = context().db.audit.checkpoint(actor())
    return reply(
        w.AuditCheckpoint(
            seq=checkpoint.seq,
            hash=checkpoint.hash,
            signature=checkpoint.signature,
            checkpoint=str(checkpoint),
        )
    )


@bp.get("/v1/audit/verify")
@document(
    "Check the audit chain",
    tag=TAG,
    description="Recomputes every entry's hash and link; reads the whole log.",
    responses={200: w.AuditCheck},
)
@requires(Role.ADMIN)
def verify() -> Response:
    check = context().db.audit.verify(actor())
    return reply(
        w.AuditCheck(
            checked=check.checked, ok=check.ok, broken_seq=check.broken_seq, reason=check.reason
        )
    )
