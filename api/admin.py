"""The administration blueprint: members and their keys (admin only).

Retiring hashes lives with the rest of the status lifecycle in `api.vetting`.
Every write goes through the consortium's `Members`, which checks the role and
writes the audit entry (with the admin's key and request id) in the change's
transaction; here it is parsed, called, logged and rendered.

Keys: `POST /v1/members/<id>/keys` issues a new key (with `overlap_seconds`, the
member's other keys expire after that overlap: rotation); `DELETE
.../keys/<key_id>` revokes one, effective on the next request, unless it is the
consortium's last valid admin key (409: `Members` keeps that rule for every edge).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, Response

from api import schemas as s
from api.auth import principal, requires
from api.context import context
from api.openapi import document
from api.request_id import actor
from api.web import json_body, query_args, reply, reply_page
from hashdb.consortium import ApiKey, Member, NewKey, Role

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__)

TAG = "administration"


def member_out(m: Member) -> s.MemberOut:
    return s.MemberOut(
        id=m.id,
        name=m.name,
        role=m.role.value,
        trusted=m.trusted,
        created_at=m.created_at,
        disabled_at=m.disabled_at,
    )


def key_out(k: ApiKey) -> s.KeyOut:
    return s.KeyOut(
        id=k.id,
        prefix=k.prefix,
        created_at=k.created_at,
        expires_at=k.expires_at,
        revoked_at=k.revoked_at,
    )


def new_key_out(new: NewKey) -> s.NewKeyOut:
    return s.NewKeyOut(**key_out(new.key).model_dump(), secret=new.secret)


@bp.get("/v1/members")
@document(
    "List members",
    tag=TAG,
    description="By id (oldest first), a page at a time.",
    query=s.PageArgs,
    responses={200: s.MemberList},
)
@requires(Role.ADMIN)
def list_members() -> Response:
    args = query_args(s.PageArgs)
    found = context().db.members.page(actor(), after=args.position, limit=args.limit)
    body = s.MemberList(
        members=[member_out(m) for m in found.items], cursor=found.cursor, more=found.more
    )
    return reply_page(body, args)


@bp.post("/v1/members")
@document(
    "Create a member",
    tag=TAG,
    description="Creates the member and its first key; the key's secret is in this answer only.",
    body=s.MemberIn,
    responses={201: s.MemberCreated},
)
@requires(Role.ADMIN)
def create_member() -> Response:
    body = json_body(s.MemberIn)
    role = Role.parse(body.role)
    member, key = context().db.members.create(actor(), body.name, role, trusted=body.trusted)
    log.info(
        "member %d (%s, %s) created by %s", member.id, member.name, role, principal().member.name
    )
    return reply(s.MemberCreated(member=member_out(member), key=new_key_out(key)), 201)


@bp.get("/v1/members/<id:member_id>")
@document("Get a member and its keys", tag=TAG, responses={200: s.MemberDetail})
@requires(Role.ADMIN)
def get_member(member_id: int) -> Response:
    members = context().db.members
    member = members.get(actor(), member_id)
    keys = members.keys(actor(), member_id)
    return reply(s.MemberDetail(member=member_out(member), keys=[key_out(k) for k in keys]))


@bp.post("/v1/members/<id:member_id>/keys")
@document(
    "Issue a key",
    tag=TAG,
    description="A new key for the member, shown once. With `overlap_seconds` this is a "
    "rotation: the member's other live keys expire after the overlap.",
    body=s.KeyRequest,
    responses={201: s.KeyCreated},
)
@requires(Role.ADMIN)
def issue_key(member_id: int) -> Response:
    body = json_body(s.KeyRequest)
    overlap = None if body.overlap_seconds is None else timedelta(seconds=body.overlap_seconds)
    new = context().db.members.issue_key(actor(), member_id, overlap=overlap)
    log.info("key %d issued to member %d by %s", new.key.id, member_id, principal().member.name)
    return reply(s.KeyCreated(key=new_key_out(new)), 201)


@bp.delete("/v1/members/<id:member_id>/keys/<id:key_id>")
@document(
    "Revoke a key",
    tag=TAG,
    description="The key stops working on its next request, on every worker and server. "
    "Refused when it is the last valid key of an enabled admin: the consortium would "
    "have nobody left to administer it.",
    responses={200: s.KeyRevoked},
    errors={409: "No enabled admin would have a valid key left."},
)
@requires(Role.ADMIN)
def revoke_key(member_id: int, key_id: int) -> Response:
    key = context().db.members.revoke_key(actor(), member_id, key_id)
    log.info("key %d of member %d revoked by %s", key_id, member_id, principal().member.name)
    return reply(s.KeyRevoked(key=key_out(key)))
