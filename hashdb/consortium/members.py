"""Members, their keys, console logins and authentication: one door for every edge.

Only admins manage members and keys (`require_admin`, checked here, so the API,
the console and the CLI refuse a non-admin the same way). Every change of a member
or a key writes its audit entry in the same transaction as the change:

    member.create   a member and its first key      target member:<id>
    member.disable  a member and every key of it    target member:<id>
    key.issue       a new key (a rotation with an overlap)
    key.revoke      one key

A revocation or a disabled member that would leave no enabled admin with a valid
key is refused with Conflict (409) by the member store, inside that transaction.
The first admin of a new database is created by the service itself (an entry with
no actor), so the log accounts for every member there is.

Authentication turns an API key into a `Principal`; a console session is a row
whose token only the browser holds, checked against its key and member on every
request (`session`), so a revoked key or a disabled member ends it at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from hashdb.consortium import audit
from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.paging import DEFAULT_LIMIT, Page, check_page, page_of
from hashdb.consortium.ratelimit import Quota
from hashdb.errors import Conflict, NotFound
from hashdb.store import ApiKey, Heads, Member, NewKey, Principal, Role
from hashdb.store.clock import now

if TYPE_CHECKING:
    from hashdb.consortium.core import Context


def _target(member_id: int) -> str:
    return f"member:{member_id}"


class Members:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    # ---- changes (admins; audited) -----------------------------------------------

    def create(
        self, actor: Actor, name: str, role: Role, *, trusted: bool = False
    ) -> tuple[Member, NewKey]:
        """A new member with its first key (its secret is only in the result).
        InvalidInput for a bad name, Conflict if the name is taken."""
        require_admin(actor, "create members")
        with self._ctx.store.engine.begin() as conn:
            member, key = self._ctx.store.members.create_in(conn, name, role, trusted=trusted)
            audit.append(
                conn,
                actor,
                "member.create",
                _target(member.id),
                {"role": role.value, "trusted": trusted, "key_id": key.key.id},
            )
        return member, key

    def ensure_first_admin(self, name: str = "admin") -> NewKey | None:
        """Create an admin if the database has none, audited as the service's own
        act; its key, or None if an admin existed. For `hashdb init` and `serve`:
        several servers starting at once on an empty database race here, and the
        losers, whose insert of the same name conflicts, find the winner's admin."""
        store = self._ctx.store
        try:
            with store.engine.begin() as conn:
                if store.members.has_admin_in(conn):
                    return None
                member, key = store.members.create_in(conn, name, Role.ADMIN)
                audit.append(
                    conn,
                    None,
                    "member.create",
                    _target(member.id),
                    {"role": Role.ADMIN.value, "trusted": False, "key_id": key.key.id},
                )
        except Conflict:
            with store.engine.connect() as conn:
                if store.members.has_admin_in(conn):
                    return None
            raise
        return key

    def disable(self, actor: Actor, member_id: int) -> Member:
        """Mark the member disabled and revoke every key of it (NotFound if none);
        Conflict if it is the last enabled admin with a valid key."""
        require_admin(actor, "disable members")
        with self._ctx.store.engine.begin() as conn:
            member = self._ctx.store.members.disable_in(conn, member_id)
            audit.append(conn, actor, "member.disable", _target(member_id))
        return member

    def issue_key(
        self, actor: Actor, member_id: int, *, overlap: timedelta | None = None
    ) -> NewKey:
        """A new key for the member (NotFound if none), shown once. With `overlap`
        (a rotation) the member's other live keys expire after it."""
        require_admin(actor, "issue keys")
        with self._ctx.store.engine.begin() as conn:
            new = self._ctx.store.members.issue_key_in(conn, member_id, overlap=overlap)
            audit.append(
                conn,
                actor,
                "key.issue",
                _target(member_id),
                {
                    "key_id": new.key.id,
                    "overlap_seconds": None if overlap is None else int(overlap.total_seconds()),
                },
            )
        return new

    def revoke_key(self, actor: Actor, member_id: int, key_id: int) -> ApiKey:
        """Revoke one key of the member (NotFound if it has none such); effective on
        the key's next request. Conflict if it is the last valid admin key."""
        require_admin(actor, "revoke keys")
        with self._ctx.store.engine.begin() as conn:
            key = self._ctx.store.members.revoke_key_in(conn, member_id, key_id)
            audit.append(conn, actor, "key.revoke", _target(member_id), {"key_id": key_id})
        return key

    # ---- reads --------------------------------------------------------------------

    def all(self, actor: Actor) -> list[Member]:
        """Every member, oldest first (admins)."""
        require_admin(actor, "list members")
        return self._ctx.store.members.all()

    def page(self, actor: Actor, *, after: int = 0, limit: int = DEFAULT_LIMIT) -> Page[Member]:
        """Members with ids above `after`, by id, a page at a time (admins)."""
        require_admin(actor, "list members")
        check_page(after, limit)
        rows = self._ctx.store.members.after(after, limit + 1)
        return page_of(rows, after, limit, lambda m: m.id)

    def names(self, actor: Actor) -> dict[int, str]:
        """Member names by id, for pages that show who contributed or decided
        (every role sees contributors' names)."""
        return {m.id: m.name for m in self._ctx.store.members.all()}

    def get(self, actor: Actor, member_id: int) -> Member:
        """A member (admins; NotFound if none)."""
        require_admin(actor, "read members")
        return self._ctx.store.members.get(member_id)

    def by_name(self, actor: Actor, name: str) -> Member:
        """A member by its name (admins; NotFound if none)."""
        require_admin(actor, "read members")
        return self._ctx.store.members.by_name(name)

    def keys(self, actor: Actor, member_id: int) -> list[ApiKey]:
        """The member's keys, oldest first, revoked and expired ones included (admins;
        NotFound for an unknown member)."""
        require_admin(actor, "read keys")
        self._ctx.store.members.get(member_id)
        return self._ctx.store.members.keys(member_id)

    def operator(self, name: str | None = None) -> Member:
        """The member a command run on the database's host acts as: the one named,
        or the first enabled admin. Whoever runs commands there holds the database
        itself, so this takes no key; the use cases still check the member's role."""
        if name:
            return self._ctx.store.members.by_name(name)
        for member in self._ctx.store.members.all():
            if member.role is Role.ADMIN and member.disabled_at is None:
                return member
        raise NotFound("no enabled admin member exists; run `hashdb init` first")

    # ---- authentication -----------------------------------------------------------

    def heads(self) -> Heads:
        """The heads of the hash and auth change logs, in one read: what a request
        reads before it is answered (a moved auth head empties the key cache)."""
        return self._ctx.store.heads()

    def authenticate(self, secret: str) -> Principal:
        """The member behind an API key; Unauthenticated if it is unknown, revoked or
        expired, or its member is disabled."""
        return self._ctx.store.members.authenticate(secret)

    def admit(self, who: Principal | Actor) -> Quota | None:
        """Take one request from the key's request rate (HASHDB_RATE_LIMIT_PER_MINUTE),
        before any work for the request, and return the key's bucket after it (for the
        API's RateLimit fields); OutOfRequests (a RateLimited, 429) when it is spent.
        The API calls this at its door for every request; an edge without that door
        (the console's lookup) calls it for each request it answers. No key, no
        charge; no limit (0 a minute), no bucket: None either way."""
        if who.key_id is None:
            return None
        return self._ctx.limiter.take(who.key_id)

    # ---- console sessions ---------------------------------------------------------

    def open_session(self, principal: Principal, lifetime: timedelta) -> str:
        """A console session for `principal`, ending after `lifetime`: its token
        (the database keeps only the token's digest)."""
        return self._ctx.store.members.open_session(principal, lifetime)

    def session(self, token: str) -> Principal | None:
        """Who the session of `token` belongs to, or None if it is gone: logged out,
        expired, its key revoked or expired, or its member disabled."""
        members = self._ctx.store.members
        live = members.session(token)
        if live is None:
            return None
        try:
            member = members.get(live.member_id)
        except NotFound:
            return None
        key = next((k for k in members.keys(member.id) if k.id == live.key_id), None)
        if key is None or not key.is_valid(now()) or member.disabled_at is not None:
            return None
        return Principal(member, key.id, key.expires_at)

    def close_session(self, token: str) -> None:
        """End the session of `token` (logging out); nothing if it is gone already."""
        self._ctx.store.members.close_session(token)
