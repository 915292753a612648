"""Who is acting: the member, and for the audit log the key and request it came with.

The HTTP layer builds an `Actor` from the authenticated principal and the request
id; the console from its logged-in user and the request id; the CLI from the
member it acts as, with a `cli-` request id of its own. Role checks live here so
every use case refuses the same way (Forbidden, HTTP 403, exit code 2).

A request id is 1-64 characters of letters, digits, `.`, `_` and `-`: what a
caller or a load balancer may send as `X-Request-Id` is kept only if it is one
(`request_id`), and an `Actor` refuses any other value, so no edge can write
arbitrary or unbounded text into the audit log through it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from hashdb.errors import Forbidden, InvalidInput
from hashdb.store import Member, Principal, Role

MAX_REQUEST_ID = 64
_REQUEST_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_REQUEST_ID}}}")


def valid_request_id(value: str) -> bool:
    return _REQUEST_ID.fullmatch(value) is not None


def request_id(sent: str | None) -> str:
    """`sent` if it is a valid request id, else a fresh random one (128 random bits in hex)."""
    return sent if sent is not None and valid_request_id(sent) else secrets.token_hex(16)


@dataclass(frozen=True)
class Actor:
    member: Member
    key_id: int | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if self.request_id is not None and not valid_request_id(self.request_id):
            raise InvalidInput(
                f"a request id is 1-{MAX_REQUEST_ID} letters, digits, '.', '_' or '-'",
                field="request_id",
            )

    @classmethod
    def of(cls, principal: Principal, request_id: str | None = None) -> Actor:
        return cls(principal.member, principal.key_id, request_id)

    @property
    def id(self) -> int:
        return self.member.id

    @property
    def is_admin(self) -> bool:
        return self.member.role is Role.ADMIN


def require_admin(actor: Actor, doing: str) -> None:
    """Forbidden unless the actor is an admin; `doing` completes "only admins may ..."."""
    if not actor.is_admin:
        raise Forbidden(f"only admins may {doing}", role=actor.member.role.value)


STAFF: frozenset[Role] = frozenset({Role.OPS, Role.ADMIN})


def require_staff(actor: Actor, doing: str) -> None:
    """Forbidden unless the actor is an ops team or an admin (imports, the dashboard);
    `doing` completes "only ops teams and admins may ..."."""
    if actor.member.role not in STAFF:
        raise Forbidden(f"only ops teams and admins may {doing}", role=actor.member.role.value)
