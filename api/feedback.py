"""The feedback blueprint: members say whether a match was right, and what they did.

Feedback (`agree`, `disagree` with a reason, `false_positive` with the hash of the
content that matched wrongly) counts once per member; disagreement from
HASHDB_DISPUTE_THRESHOLD distinct members moves an active hash to `disputed` for
an admin (`Consortium.feedback`). Outcomes record what a member did with
content that matched (removed, kept, escalated) and when, for the takedown rate
and time-to-action figures of the transparency report (`Consortium.outcomes`).
Both take a hash the member may see or could have matched; any other id is 404.
Both are audited by the use case in the same transaction. Both take an
`Idempotency-Key` (api/idempotency.py): a retry with the same key gets the first
answer and counts once.
"""

from __future__ import annotations

from flask import Blueprint, Response

from api import schemas_workflow as w
from api.auth import requires
from api.context import context
from api.idempotency import idempotent
from api.openapi import document
from api.request_id import actor
from api.schemas import PageArgs
from api.web import json_body, query_args, reply, reply_page
from hashdb.consortium import Role
from hashdb.consortium.feedback import ContentHash, DisagreeReason, Feedback, Kind
from hashdb.consortium.outcomes import Action
from hashdb.signals import SIGNAL_TYPES, get_signal_type

bp = Blueprint("feedback", __name__)

TAG = "feedback"


def feedback_out(f: Feedback) -> w.FeedbackOut:
    content = None
    if f.content is not None:
        signal = SIGNAL_TYPES[f.content.signal_type]
        content = w.ContentOut(signal_type=signal.name, value=signal.format(f.content.value))
    return w.FeedbackOut(
        id=f.id,
        hash_id=f.hash_id,
        member_id=f.member_id,
        kind=f.kind.value,
        reason=f.reason.value if f.reason else None,
        content=content,
        note=f.note,
        created_at=f.created_at,
    )


def _content(body: w.FeedbackIn) -> ContentHash | None:
    if body.content is None:
        return None
    signal = get_signal_type(body.content.signal_type, "content.signal_type")
    return ContentHash(signal.name, signal.parse(body.content.value, "content.value"))


@bp.post("/v1/hashes/<id:hash_id>/feedback")
@document(
    "Give feedback on a hash",
    tag=TAG,
    description="agree, disagree (with `reason`) or false_positive (with `content`, the "
    "hash of your content that matched). Enough distinct members disagreeing move an "
    "active hash to `disputed`.",
    body=w.FeedbackIn,
    responses={201: w.FeedbackGiven},
)
@requires(Role.MEMBER)
@idempotent
def give(hash_id: int) -> Response:
    body = json_body(w.FeedbackIn)
    result = context().db.feedback.give(
        actor(),
        hash_id,
        Kind(body.kind),
        reason=DisagreeReason(body.reason) if body.reason else None,
        content=_content(body),
        note=body.note,
    )
    out = w.FeedbackGiven(
        feedback=feedback_out(result.feedback),
        disagreeing_members=result.disagreeing_members,
        disputed=result.disputed,
    )
    return reply(out, 201)


@bp.get("/v1/hashes/<id:hash_id>/feedback")
@document(
    "Feedback on a hash",
    tag=TAG,
    description="By id (oldest first), a page at a time: every member's for admins, your "
    "own otherwise.",
    query=PageArgs,
    responses={200: w.FeedbackList},
)
@requires(Role.MEMBER)
def list_feedback(hash_id: int) -> Response:
    args = query_args(PageArgs)
    found = context().db.feedback.page(actor(), hash_id, after=args.position, limit=args.limit)
    body = w.FeedbackList(
        feedback=[feedback_out(f) for f in found.items], cursor=found.cursor, more=found.more
    )
    return reply_page(body, args)


@bp.post("/v1/hashes/<id:hash_id>/outcomes")
@document(
    "Report what you did with a match",
    tag=TAG,
    description="Times in order (uploaded <= matched <= actioned), none before "
    "2000-01-01 and none in the future (5 minutes of clock skew allowed).",
    body=w.OutcomeIn,
    responses={201: w.OutcomeOut},
)
@requires(Role.MEMBER)
@idempotent
def report_outcome(hash_id: int) -> Response:
    body = json_body(w.OutcomeIn)
    o = context().db.outcomes.report(
        actor(),
        hash_id,
        Action(body.action),
        uploaded_at=body.uploaded_at,
        matched_at=body.matched_at,
        actioned_at=body.actioned_at,
    )
    out = w.OutcomeOut(
        id=o.id,
        hash_id=o.hash_id,
        member_id=o.member_id,
        action=o.action.value,
        uploaded_at=o.uploaded_at,
        matched_at=o.matched_at,
        actioned_at=o.actioned_at,
        created_at=o.created_at,
        time_to_action_seconds=o.time_to_action.total_seconds(),
    )
    return reply(out, 201)
