"""Idempotency keys: a retried request gets its first answer and changes nothing.

A client that sends a request creating something (a contribution, an upload,
feedback, an outcome, an import) may name it with an idempotency key: 1-200
printable ASCII characters of its choosing, scoped to the API key that sends it
(two keys, and so two members, may use the same string independently). The edge
claims the key before it runs the request (`claim`), in a transaction of its own
that commits at once, by inserting a row with no answer; the unique (key id,
idempotency key) pair makes the claim exclusive on SQLite and PostgreSQL alike.
Then, for the same key:

- the same request (method, path and SHA-256 of the body: `Fingerprint`) after the
  first one succeeded gets the stored `Reply` and runs nothing, so no row, audit
  entry, match count or report figure moves;
- the same request while the first is still running is Conflict (409): it is not
  run a second time;
- a different request is IdempotencyKeyReused (422), whatever state the first is in.

Only a successful (2xx) answer is kept (`finish`); a failed one, or a request that
raised, releases the key (`release`), so a corrected retry runs. A claim never
finished (the process died) is taken over by a retry after `ABANDONED_AFTER`,
longer than any request the API serves, rather than blocking the key until it
expires. Keys are kept HASHDB_IDEMPOTENCY_HOURS after their first request; expired
rows are purged by the next claim, so the table holds roughly one retention's keys.

The bookkeeping is not an action of the member's: claims and answers are not
audited (the request they carry is, by its own use case, once).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from hashdb.consortium.actor import Actor
from hashdb.errors import Conflict, IdempotencyKeyReused, InvalidInput
from hashdb.store.clock import now, utc
from hashdb.store.schema import idempotency_keys as keys

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

MAX_KEY_CHARS = 200
_KEY = re.compile(rf"[ -~]{{1,{MAX_KEY_CHARS}}}")  # printable ASCII, space included
# A claim still unanswered after this long belongs to a request that died: longer
# than any request the API serves (its body and hashing deadlines are minutes).
ABANDONED_AFTER = timedelta(minutes=15)
_CLAIM_TRIES = 3  # a claim races at most a release and a takeover


def valid_key(value: str) -> bool:
    """Whether `value` may be an idempotency key: 1-200 printable ASCII characters."""
    return _KEY.fullmatch(value) is not None


@dataclass(frozen=True)
class Fingerprint:
    """What makes two requests the same request: method, path and the body's SHA-256."""

    method: str
    path: str
    body_sha256: bytes

    def __post_init__(self) -> None:
        if len(self.body_sha256) != 32:
            raise ValueError("body_sha256 is a SHA-256 digest: 32 bytes")

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Reply:
    """A request's answer as the edge sent it: status, body and the headers to repeat."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Claim:
    """The right to run the request named by `key`; `token` tells this claim from a
    later one that took over an abandoned key."""

    key_id: int
    key: str
    token: str


def _reply(row: RowMapping) -> Reply:
    headers = row["headers"] or []
    return Reply(
        status=int(row["status"]),
        body=str(row["body"]),
        headers=tuple((str(name), str(value)) for name, value in headers),
    )


def _fingerprint(row: RowMapping) -> Fingerprint:
    return Fingerprint(str(row["method"]), str(row["path"]), bytes(row["body_sha256"]))


class Idempotency:
    """Claims, answers and releases of idempotency keys."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @property
    def retention(self) -> timedelta:
        return timedelta(hours=self._ctx.settings.idempotency_hours)

    def claim(self, actor: Actor, key: str, request: Fingerprint) -> Claim | Reply:
        """Claim `key` for `request` (a `Claim`: run it, then `finish` or `release`), or
        the `Reply` kept from the first time `request` ran under it (answer that, run
        nothing). Conflict while the first is still running, IdempotencyKeyReused if
        `key` named another request. Committed before it returns."""
        if actor.key_id is None:
            raise InvalidInput(
                "an idempotency key belongs to an API key; this actor has none",
                field="idempotency_key",
            )
        if not valid_key(key):
            raise InvalidInput(
                f"an idempotency key is 1-{MAX_KEY_CHARS} printable ASCII characters",
                field="idempotency_key",
            )
        engine = self._ctx.store.engine
        for _ in range(_CLAIM_TRIES):
            at = now()
            claim = Claim(actor.key_id, key, uuid.uuid4().hex)
            try:
                with engine.begin() as conn:
                    conn.execute(delete(keys).where(keys.c.expires_at <= at))
                    conn.execute(insert(keys).values(self._claimed(claim, request, at)))
                return claim
            except IntegrityError:  # claimed before: by this request, or another
                pass
            with engine.begin() as conn:
                row = (
                    conn.execute(select(keys).where(_named(actor.key_id, key)))
                    .mappings()
                    .one_or_none()
                )
                if row is None:  # released (or purged) since: claim it again
                    continue
                first = _fingerprint(row)
                if first != request:
                    raise IdempotencyKeyReused(
                        f"this idempotency key was used for another request ({first}); "
                        "send a new key for a new request",
                        field="idempotency_key",
                    )
                if row["status"] is not None:
                    return _reply(row)
                if utc(row["created_at"]) > at - ABANDONED_AFTER:
                    raise _in_progress()
                taken = conn.execute(
                    update(keys)
                    .where(
                        _named(actor.key_id, key),
                        keys.c.token == row["token"],
                        keys.c.status.is_(None),
                    )
                    .values(token=claim.token, created_at=at, expires_at=at + self.retention)
                )
                if taken.rowcount == 1:
                    return claim
        raise _in_progress()

    def finish(self, claim: Claim, reply: Reply) -> None:
        """Keep `reply` as the answer to `claim`'s key if it succeeded (2xx); release
        the key otherwise, so that a corrected retry runs."""
        if not reply.succeeded:
            self.release(claim)
            return
        with self._ctx.store.engine.begin() as conn:
            conn.execute(
                update(keys)
                .where(_named(claim.key_id, claim.key), keys.c.token == claim.token)
                .values(
                    status=reply.status,
                    body=reply.body,
                    headers=[[name, value] for name, value in reply.headers],
                )
            )

    def release(self, claim: Claim) -> None:
        """Forget `claim`'s key (its request failed or raised): the next request with
        it runs. A claim taken over by a later request is left alone."""
        with self._ctx.store.engine.begin() as conn:
            conn.execute(
                delete(keys).where(
                    _named(claim.key_id, claim.key),
                    keys.c.token == claim.token,
                    keys.c.status.is_(None),
                )
            )

    def _claimed(self, claim: Claim, request: Fingerprint, at: datetime) -> dict[str, object]:
        return {
            "key_id": claim.key_id,
            "idempotency_key": claim.key,
            "method": request.method,
            "path": request.path,
            "body_sha256": request.body_sha256,
            "token": claim.token,
            "created_at": at,
            "expires_at": at + self.retention,
        }


def _named(key_id: int, key: str) -> ColumnElement[bool]:
    return and_(keys.c.key_id == key_id, keys.c.idempotency_key == key)


def _in_progress() -> Conflict:
    return Conflict(
        "a request with this idempotency key is still running; retry after it finished",
        field="idempotency_key",
    )
