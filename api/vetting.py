"""The vetting blueprint: the review queue and every move of a hash's status.

Admins work the queue (`GET /v1/review`, pending contributions or disputes),
approve, reject or retire hashes in bulk (a list of ids: all move, or none do and
the answer is 409 naming the ids that cannot), resolve disputes, and read a
hash's history. `DELETE /v1/hashes/<id>` is retirement too, through the same
use case (`Consortium.vetting`), so who retired it, with which key and why, is in the history and
the audit log (reason from `?reason=` or a JSON body; a default otherwise).
Deleting a hash that is already retired answers it unchanged: DELETE is
idempotent. An expiry may be set by an admin or by the hash's contributor.

The use cases write the audit entries themselves (same transaction as the move),
so these views add none.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from api import schemas as s
from api import schemas_workflow as w
from api.auth import requires
from api.context import context
from api.contributing import hash_out
from api.openapi import document
from api.request_id import actor
from api.web import json_body, optional_json_body, query_args, reply, reply_page
from hashdb.consortium import HashRecord, Role, Status
from hashdb.consortium.vetting import Resolution

log = logging.getLogger(__name__)

bp = Blueprint("vetting", __name__)

TAG = "vetting"
DEFAULT_DELETE_REASON = "deleted through the API"
CONFLICT = {409: "A hash is not in a status this move starts from; `details.ids` names them."}


def _hashes(records: list[HashRecord]) -> Response:
    return reply(w.HashList(hashes=[hash_out(r, full=True) for r in records]))


@bp.get("/v1/review")
@document(
    "The review queue",
    tag=TAG,
    description="Pending contributions (or, with `status=disputed`, disputed hashes), "
    "by id (oldest first), a page at a time.",
    query=w.ReviewQuery,
    responses={200: w.ReviewPage},
)
@requires(Role.ADMIN)
def review() -> Response:
    args = query_args(w.ReviewQuery)
    found = context().db.hashes.queue(
        actor(), Status(args.status), after=args.position, limit=args.limit
    )
    body = w.ReviewPage(
        hashes=[hash_out(r, full=True) for r in found.items],
        cursor=found.cursor,
        more=found.more,
    )
    return reply_page(body, args)


@bp.post("/v1/hashes/approve")
@document(
    "Approve pending hashes",
    tag=TAG,
    description="pending -> active, for every id or none.",
    body=w.StatusChange,
    responses={200: w.HashList},
    errors=CONFLICT,
)
@requires(Role.ADMIN)
def approve() -> Response:
    body = json_body(w.StatusChange)
    return _hashes(context().db.vetting.approve(actor(), body.ids, body.reason))


@bp.post("/v1/hashes/reject")
@document(
    "Reject pending hashes",
    tag=TAG,
    description="pending -> rejected (final), for every id or none; `reason` is required.",
    body=w.StatusChange,
    responses={200: w.HashList},
    errors=CONFLICT,
)
@requires(Role.ADMIN)
def reject() -> Response:
    body = json_body(w.StatusChange)
    return _hashes(context().db.vetting.reject(actor(), body.ids, body.reason or ""))


@bp.post("/v1/hashes/retire")
@document(
    "Retire hashes",
    tag=TAG,
    description="pending, active or disputed -> retired (final), for every id or none; "
    "`reason` is required. They stop matching at once everywhere.",
    body=w.StatusChange,
    responses={200: w.HashList},
    errors=CONFLICT,
)
@requires(Role.ADMIN)
def retire() -> Response:
    body = json_body(w.StatusChange)
    return _hashes(context().db.vetting.retire(actor(), body.ids, body.reason or ""))


@bp.delete("/v1/hashes/<id:hash_id>")
@document(
    "Retire a hash",
    tag=TAG,
    description="The hash stops matching at once, on every worker and server. The row is "
    "kept with status `retired`, and the retirement is recorded with its reason "
    f'(`?reason=` or a JSON body `{{"reason": ...}}`; default: {DEFAULT_DELETE_REASON}). '
    "An already retired hash is answered unchanged.",
    query=w.RetireArgs,
    body=w.RetireBody,
    body_required=False,
    responses={200: s.HashOut},
    errors={409: "The hash was rejected: it cannot be retired."},
)
@requires(Role.ADMIN)
def delete_hash(hash_id: int) -> Response:
    args = query_args(w.RetireArgs)
    body = optional_json_body(w.RetireBody)
    reason = (body.reason if body else None) or args.reason or DEFAULT_DELETE_REASON
    db, who = context().db, actor()
    record = db.hashes.get(who, hash_id)
    if record.status is not Status.RETIRED:
        (record,) = db.vetting.retire(who, [hash_id], reason)
        log.info(
            "hash %d (%s) retired by member %d (%s), key %s: %s",
            record.id,
            record.signal_type,
            who.id,
            who.member.name,
            who.key_id,
            reason,
        )
    return reply(hash_out(record, full=True))


@bp.post("/v1/hashes/<id:hash_id>/resolve")
@document(
    "Resolve a dispute",
    tag=TAG,
    description="disputed -> active (keep) or retired (retire), with a reason.",
    body=w.Resolve,
    responses={200: s.HashOut},
    errors={409: "The hash is not disputed."},
)
@requires(Role.ADMIN)
def resolve(hash_id: int) -> Response:
    body = json_body(w.Resolve)
    record = context().db.vetting.resolve_dispute(
        actor(), hash_id, Resolution(body.resolution), body.reason
    )
    return reply(hash_out(record, full=True))


@bp.put("/v1/hashes/<id:hash_id>/expiry")
@document(
    "Set or clear a hash's expiry",
    tag=TAG,
    description="From `expires_at` on the hash never matches, and it is retired (a "
    "tombstone in the export feed). Admins, or the member that contributed the hash.",
    body=w.Expiry,
    responses={200: s.HashOut},
    errors={409: "The hash no longer matches (retired or rejected)."},
)
@requires(Role.MEMBER)
def set_expiry(hash_id: int) -> Response:
    body = json_body(w.Expiry)
    record = context().db.vetting.set_expiry(actor(), hash_id, body.expires_at)
    return reply(hash_out(record, full=True))  # an admin or the contributor


@bp.put("/v1/hashes/<id:hash_id>/labels")
@document(
    "Replace a hash's labels",
    tag=TAG,
    description="Admins, or the contributor while the hash is pending. Followers get the "
    "new labels as an `update` in the export feed; the change is audited. A "
    "`crisis_incident` tag cannot be added or removed this way.",
    body=w.Relabel,
    responses={200: s.HashOut},
    errors={409: "The hash no longer matches (retired or rejected)."},
)
@requires(Role.MEMBER)
def relabel(hash_id: int) -> Response:
    body = json_body(w.Relabel)
    record = context().db.vetting.relabel(actor(), hash_id, body.labels)
    return reply(hash_out(record, full=True))


@bp.get("/v1/hashes/<id:hash_id>/history")
@document(
    "A hash's status history",
    tag=TAG,
    description="Every move, oldest first, with who made it and why, a page at a time.",
    query=s.PageArgs,
    responses={200: w.History},
)
@requires(Role.ADMIN)
def history(hash_id: int) -> Response:
    args = query_args(s.PageArgs)
    moves = context().db.vetting.transitions(
        actor(), hash_id, after=args.position, limit=args.limit
    )
    body = w.History(
        hash_id=hash_id,
        transitions=[
            w.TransitionOut(
                id=t.id,
                from_status=t.from_status.value if t.from_status else None,
                to_status=t.to_status.value,
                actor_id=t.actor_id,
                reason=t.reason,
                at=t.at,
            )
            for t in moves.items
        ],
        cursor=moves.cursor,
        more=moves.more,
    )
    return reply_page(body, args)
