"""Who is acting: the member, and for the audit log the key and request it came with.

The HTTP layer builds an `Actor` from the authenticated principal and the request
id; the CLI builds one for the member it acts as. Role checks live here so every
workflow function refuses the same way (Forbidden, HTTP 403, exit code 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from hashdb.errors import Forbidden
from hashdb.store import Member, Principal, Role


@dataclass(frozen=True)
class Actor:
    member: Member
    key_id: int | None = None
    request_id: str | None = None

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
