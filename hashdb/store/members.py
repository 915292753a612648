"""Members (organisations) and their API keys.

A key is `hdb_` plus 43 random URL-safe characters (256 bits from `secrets`). It is
shown once, when created; the database keeps only its SHA-256 digest (a slow
password hash buys nothing for a 256-bit random secret) and an 8-character prefix
so people can tell keys apart. Rotation issues a new key and lets the old ones
live on for an overlap.

Every change that takes a key's validity away (a revocation, a disabled member, a
rotation setting expiries) appends a row to `auth_changes` in the same
transaction. API workers cache authenticated keys and check the head of that log
on every request (hashdb/store/heads.py), so a revocation takes effect on the very
next request in every worker and on every server, without a key lookup per request.

The consortium is never locked out: a revocation or a disabled member that would
leave no enabled admin with a valid key is refused with `Conflict`, here, so the
API, the console and the CLI all refuse it. (Keys that simply expire are not
prevented; `hashdb members add --role admin` on the database's host is the way
back then.) PostgreSQL writers lock the admins' rows first, so two revocations at
once cannot each leave the other's key as the last one.

A member name is one line of 1-200 characters without control characters.

Console logins are rows of `console_sessions` (`open_session`): the browser holds a
random token, the database its digest, and logging out deletes the row.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from hashdb.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from hashdb.store.clock import now, utc
from hashdb.store.schema import api_keys, auth_changes, console_sessions, members

KEY_PREFIX = "hdb_"
MAX_NAME_CHARS = 200
LOCKOUT = (
    "refused: no enabled admin would have a valid key left, and nobody could "
    "administer the consortium; issue another admin key first"
)


class Role(enum.StrEnum):
    MEMBER = "member"  # match, contribute, feedback
    ADMIN = "admin"  # everything
    OPS = "ops"  # imports

    @classmethod
    def parse(cls, value: object, field: str = "role") -> Role:
        try:
            return cls(str(value))
        except ValueError:
            raise InvalidInput(
                f"unknown role {value!r}; expected one of member, admin, ops", field=field
            ) from None


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    role: Role
    trusted: bool
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class ApiKey:
    id: int
    member_id: int
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def is_valid(self, at: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > at)


@dataclass(frozen=True)
class NewKey:
    """A freshly issued key: `secret` exists only here, never in the database."""

    key: ApiKey
    secret: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the member behind a valid key (valid until `expires_at`, if
    set, unless the auth change log moves first)."""

    member: Member
    key_id: int
    expires_at: datetime | None = None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _member(row: RowMapping) -> Member:
    return Member(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        trusted=bool(row["trusted"]),
        created_at=utc(row["created_at"]),
        disabled_at=utc(row["disabled_at"]) if row["disabled_at"] else None,
    )


def _key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        member_id=row["member_id"],
        prefix=row["prefix"],
        created_at=utc(row["created_at"]),
        expires_at=utc(row["expires_at"]) if row["expires_at"] else None,
        revoked_at=utc(row["revoked_at"]) if row["revoked_at"] else None,
    )


# The key and its member in one read; built once, it runs on every uncached key.
_AUTHENTICATE = (
    select(api_keys, *[c.label(f"m_{c.name}") for c in members.c])
    .join(members, members.c.id == api_keys.c.member_id)
    .where(api_keys.c.digest == bindparam("digest"))
)


def log_auth_change(conn: Connection, member_id: int) -> None:
    """Tell every API worker to forget the keys it has cached (see the docstring)."""
    conn.execute(insert(auth_changes).values(member_id=member_id, at=now()))


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"member name must be 1-{MAX_NAME_CHARS} characters", field="name")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidInput("member name must not contain control characters", field="name")
    return name


def _lock_admins(conn: Connection) -> None:
    """Serialise changes that could take the last admin key away (PostgreSQL row
    locks; SQLite lets one writer in at a time anyway)."""
    conn.execute(select(members.c.id).where(members.c.role == Role.ADMIN).with_for_update())


def _admin_keys(conn: Connection, at: datetime) -> int:
    """Valid keys of enabled admins."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(api_keys.join(members, members.c.id == api_keys.c.member_id))
            .where(
                members.c.role == Role.ADMIN,
                members.c.disabled_at.is_(None),
                api_keys.c.revoked_at.is_(None),
                or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > at),
            )
        ).scalar_one()
    )


@dataclass(frozen=True)
class ConsoleSession:
    member_id: int
    key_id: int
    expires_at: datetime


class MemberStore:
    """Reads and writes of members, keys and console sessions. The writes come in
    two forms: `<verb>_in(conn, ...)` inside the caller's transaction (the
    consortium layer's `Members` writes the audit entry in the same one), and
    `<verb>(...)` in a transaction of its own, for setting up tests and benchmarks."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, name: str, role: Role, *, trusted: bool = False) -> tuple[Member, NewKey]:
        with self._engine.begin() as conn:
            return self.create_in(conn, name, role, trusted=trusted)

    def create_in(
        self, conn: Connection, name: str, role: Role, *, trusted: bool = False
    ) -> tuple[Member, NewKey]:
        """A new member with its first key; Conflict if the name is taken."""
        name = _checked_name(name)
        try:  # a taken name ends the caller's transaction: nothing of it may stand
            member_id = conn.execute(
                insert(members).values(
                    name=name, role=role.value, trusted=trusted, created_at=now()
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError:
            raise Conflict(f"a member named {name!r} already exists", field="name") from None
        new_key = self._issue(conn, int(member_id))
        return self.get_in(conn, int(member_id)), new_key

    def has_admin_in(self, conn: Connection) -> bool:
        """Whether any admin member exists (enabled or not)."""
        found = conn.execute(
            select(func.count()).select_from(members).where(members.c.role == Role.ADMIN)
        ).scalar_one()
        return bool(found)

    def all(self) -> list[Member]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(members).order_by(members.c.id)).mappings()
            return [_member(r) for r in rows]

    def after(self, after: int, limit: int) -> list[Member]:
        """Up to `limit` members with ids above `after`, by id."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(members).where(members.c.id > after).order_by(members.c.id).limit(limit)
            ).mappings()
            return [_member(r) for r in rows]

    def get(self, member_id: int) -> Member:
        with self._engine.connect() as conn:
            return self.get_in(conn, member_id)

    def get_in(self, conn: Connection, member_id: int) -> Member:
        row = conn.execute(select(members).where(members.c.id == member_id)).mappings()
        found = row.one_or_none()
        if found is None:
            raise NotFound(f"no member with id {member_id}")
        return _member(found)

    def by_name(self, name: str) -> Member:
        name = _checked_name(name)
        with self._engine.connect() as conn:
            row = conn.execute(select(members).where(members.c.name == name)).mappings()
            found = row.one_or_none()
        if found is None:
            raise NotFound(f"no member named {name!r}")
        return _member(found)

    def keys(self, member_id: int) -> list[ApiKey]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(api_keys).where(api_keys.c.member_id == member_id).order_by(api_keys.c.id)
            ).mappings()
            return [_key(r) for r in rows]

    def issue_key(self, member_id: int, *, overlap: timedelta | None = None) -> NewKey:
        with self._engine.begin() as conn:
            return self.issue_key_in(conn, member_id, overlap=overlap)

    def issue_key_in(
        self, conn: Connection, member_id: int, *, overlap: timedelta | None = None
    ) -> NewKey:
        """A new key for the member (NotFound if none). With `overlap`, the member's
        other live keys expire after that long (rotation); without it they stay valid."""
        self.get_in(conn, member_id)
        if overlap is not None:
            # Live keys expire after the overlap, or sooner if an earlier
            # rotation already said so.
            until = now() + overlap
            conn.execute(
                update(api_keys)
                .where(
                    api_keys.c.member_id == member_id,
                    api_keys.c.revoked_at.is_(None),
                    or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > until),
                )
                .values(expires_at=until)
            )
            log_auth_change(conn, member_id)
        return self._issue(conn, member_id)

    def revoke_key(self, member_id: int, key_id: int) -> ApiKey:
        with self._engine.begin() as conn:
            return self.revoke_key_in(conn, member_id, key_id)

    def revoke_key_in(self, conn: Connection, member_id: int, key_id: int) -> ApiKey:
        """Revoke one key (NotFound if the member has no such key); Conflict if it is
        the last valid key of an enabled admin."""
        at = now()
        _lock_admins(conn)
        before = _admin_keys(conn, at)
        revoked = conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.member_id == member_id)
            .where(api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        if revoked.rowcount:
            if before and not _admin_keys(conn, at):
                raise Conflict(LOCKOUT, key_id=key_id)
            log_auth_change(conn, member_id)
        row = (
            conn.execute(
                select(api_keys).where(api_keys.c.id == key_id, api_keys.c.member_id == member_id)
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            raise NotFound(f"member {member_id} has no key {key_id}")
        return _key(row)

    def disable(self, member_id: int) -> Member:
        with self._engine.begin() as conn:
            return self.disable_in(conn, member_id)

    def disable_in(self, conn: Connection, member_id: int) -> Member:
        """Revoke every key of the member and mark it disabled (NotFound if none);
        Conflict if it is the last enabled admin with a valid key."""
        at = now()
        self.get_in(conn, member_id)
        _lock_admins(conn)
        before = _admin_keys(conn, at)
        disabled = conn.execute(
            update(members)
            .where(members.c.id == member_id, members.c.disabled_at.is_(None))
            .values(disabled_at=at)
        )
        conn.execute(
            update(api_keys)
            .where(api_keys.c.member_id == member_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        if before and not _admin_keys(conn, at):
            raise Conflict(LOCKOUT, member_id=member_id)
        if disabled.rowcount:
            log_auth_change(conn, member_id)
        return self.get_in(conn, member_id)

    # ---- console sessions -------------------------------------------------------

    def open_session(self, principal: Principal, lifetime: timedelta) -> str:
        """A new console session for `principal`: its token (the database keeps the
        digest only). Sessions past their end are swept out here."""
        token = secrets.token_urlsafe(32)
        at = now()
        with self._engine.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= at))
            conn.execute(
                insert(console_sessions).values(
                    digest=digest(token),
                    member_id=principal.member.id,
                    key_id=principal.key_id,
                    created_at=at,
                    expires_at=at + lifetime,
                )
            )
        return token

    def session(self, token: str) -> ConsoleSession | None:
        """The live session of `token`, or None (never opened, ended or expired)."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    select(console_sessions).where(console_sessions.c.digest == digest(token))
                )
                .mappings()
                .one_or_none()
            )
        if row is None or utc(row["expires_at"]) <= now():
            return None
        return ConsoleSession(row["member_id"], row["key_id"], utc(row["expires_at"]))

    def close_session(self, token: str) -> None:
        """End the session of `token` (logging out); nothing if it is gone already."""
        with self._engine.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.digest == digest(token)))

    def authenticate(self, secret: str) -> Principal:
        """The member behind a key, or Unauthenticated (unknown, revoked or expired)."""
        if not secret.startswith(KEY_PREFIX):
            raise Unauthenticated("invalid API key")
        with self._engine.connect() as conn:
            row = conn.execute(_AUTHENTICATE, {"digest": digest(secret)}).mappings().one_or_none()
        if row is None:
            raise Unauthenticated("invalid API key")
        key = _key(row)
        member = _member({c.name: row[f"m_{c.name}"] for c in members.c})  # type: ignore[arg-type]
        if not key.is_valid(now()) or member.disabled_at is not None:
            raise Unauthenticated("API key revoked or expired")
        return Principal(member=member, key_id=key.id, expires_at=key.expires_at)

    @staticmethod
    def _issue(conn: Connection, member_id: int) -> NewKey:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        at = now()
        key_id = conn.execute(
            insert(api_keys).values(
                member_id=member_id,
                digest=digest(secret),
                prefix=secret[len(KEY_PREFIX) : len(KEY_PREFIX) + 8],
                created_at=at,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        key = ApiKey(int(key_id), member_id, secret[4:12], at, None, None)
        return NewKey(key=key, secret=secret)
