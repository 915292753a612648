"""The audit log: append-only and tamper-evident by a SHA-256 hash chain.

Every administrative action and every write made with a key is appended here, in
the same transaction as the change it records: actor (member id), key id, action
(for example `hash.approve`), target (for example `hash:42`), time, request id and
a small JSON `details` object. Other topics call `append` inside their own
transactions; reading the log, publishing a checkpoint and checking the chain are
the use cases of `Audit` (admins only).

Chain format (version 1). Entries are numbered 1, 2, 3, ... with no gaps. For entry
n, `prev_hash` is the `hash` of entry n-1 (64 zeros for entry 1) and

    hash = SHA-256( prev_hash as 64 lowercase hex ASCII characters
                    || canonical JSON of {seq, at, actor_id, key_id, action,
                                          target, request_id, details} )

as lowercase hex, where canonical JSON is UTF-8 with sorted keys, no whitespace
(`separators=(",", ":")`), ASCII-escaped, and `at` written as ISO 8601 UTC with
microseconds (`2024-05-01T12:00:00.000000+00:00`). `verify` recomputes the chain
and returns the first entry whose number, link or hash does not check out: an
edited, inserted or deleted row breaks the chain there.

The chain alone cannot tell a rewrite of the whole table (every hash recomputed)
or a cut tail (the newest entries deleted) from the truth: both are consistent
chains. Those are caught against a checkpoint published earlier: `checkpoint()`
gives the newest entry's number and hash, signed with HMAC-SHA256 under the
`audit_key` setting when one is set, as one line an admin publishes (format
below). `verify(..., against=checkpoint)` then also fails if the log ends before
the checkpoint's entry (cut tail), if that entry's recomputed hash differs
(rewrite), or if the signature does not verify under the configured key (a forged
checkpoint). A checkpoint is an entry number and hash, so checking one needs no
table and no migration; the key never enters the chain, so entries written
before a key was set verify unchanged.

Checkpoint line (version 1):

    hashdb-audit-v1:<seq>:<hash>:<signature>

where `<signature>` is the lowercase hex HMAC-SHA256, under the audit key, of
`hashdb-audit-v1:<seq>:<hash>`, or `unsigned` when no key is set. A signed
checkpoint is checked only with the key; an unsigned one is refused once a key
is configured (anyone could have written it).

Appends are serialised: on PostgreSQL by a transaction-level advisory lock taken
after the change-log lock (always in that order, so no deadlock); on SQLite by its
single writer. The explicit, unique `seq` means a lost race fails loudly instead
of forking the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import Connection, RowMapping

from hashdb.consortium.actor import Actor, require_admin
from hashdb.consortium.paging import Page, check_page, page_of
from hashdb.errors import InvalidInput
from hashdb.store.clock import now, utc
from hashdb.store.schema import audit_log

if TYPE_CHECKING:
    from hashdb.consortium.core import Context

GENESIS = "0" * 64
CHECKPOINT_VERSION = "hashdb-audit-v1"
UNSIGNED = "unsigned"
_CHECKPOINT = re.compile(
    rf"{CHECKPOINT_VERSION}:(?P<seq>[0-9]{{1,19}}):(?P<hash>[0-9a-f]{{64}}):"
    rf"(?P<signature>[0-9a-f]{{64}}|{UNSIGNED})"
)
_LOCK_KEY = 7267  # the change log uses 7266
MAX_READ = 1000


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor_id: int | None
    key_id: int | None
    action: str
    target: str
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainCheck:
    """Result of `verify`: `reason` says what failed, if anything; `broken_seq` is
    the first entry that fails (None when the fault is the checkpoint's own
    signature, which names no entry)."""

    checked: int
    broken_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Checkpoint:
    """The log's newest entry as published: number, hash and, if signed, the
    HMAC-SHA256 of both under the audit key (None: unsigned)."""

    seq: int
    hash: str
    signature: str | None = None

    def __str__(self) -> str:
        return f"{self._signed_text()}:{self.signature or UNSIGNED}"

    def _signed_text(self) -> str:
        return f"{CHECKPOINT_VERSION}:{self.seq}:{self.hash}"

    def signed(self, key: str) -> Checkpoint:
        return Checkpoint(self.seq, self.hash, _mac(key, self._signed_text()))

    def signature_ok(self, key: str) -> bool:
        expected = _mac(key, self._signed_text())
        return self.signature is not None and hmac.compare_digest(self.signature, expected)

    @classmethod
    def parse(cls, line: str) -> Checkpoint:
        """A checkpoint from its line; InvalidInput if it is not one."""
        found = _CHECKPOINT.fullmatch(line.strip())
        if found is None:
            raise InvalidInput(
                f"not an audit checkpoint: expected {CHECKPOINT_VERSION}:SEQ:HASH:SIGNATURE "
                "(as printed by `hashdb audit head`)",
                field="head",
            )
        signature = found["signature"]
        return cls(int(found["seq"]), found["hash"], None if signature == UNSIGNED else signature)


def _mac(key: str, message: str) -> str:
    return hmac.new(key.encode("utf-8"), message.encode("ascii"), hashlib.sha256).hexdigest()


def _stamp(at: datetime) -> str:
    return utc(at).astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    at: datetime,
    actor_id: int | None,
    key_id: int | None,
    action: str,
    target: str,
    request_id: str | None,
    details: Mapping[str, Any],
) -> str:
    body = {
        "seq": seq,
        "at": _stamp(at),
        "actor_id": actor_id,
        "key_id": key_id,
        "action": action,
        "target": target,
        "request_id": request_id,
        "details": details,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(prev_hash.encode("ascii") + canonical.encode("utf-8")).hexdigest()


def _entry(row: RowMapping) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"],
        at=utc(row["at"]),
        actor_id=row["actor_id"],
        key_id=row["key_id"],
        action=row["action"],
        target=row["target"],
        request_id=row["request_id"],
        details=dict(row["details"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def append(
    conn: Connection,
    actor: Actor | None,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction. `details` must be plain JSON
    (strings, integers, booleans, None, lists and objects of them). A None actor is
    the service itself (for example an expiry sweep)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    last = conn.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).one_or_none()
    seq, prev = (1, GENESIS) if last is None else (int(last[0]) + 1, str(last[1]))
    fields: dict[str, Any] = {
        "seq": seq,
        "at": now(),
        "actor_id": actor.id if actor else None,
        "key_id": actor.key_id if actor else None,
        "action": action,
        "target": target,
        "request_id": actor.request_id if actor else None,
        "details": dict(details or {}),
    }
    digest = entry_hash(prev, **fields)
    conn.execute(insert(audit_log).values(**fields, prev_hash=prev, hash=digest))
    return AuditEntry(**fields, prev_hash=prev, hash=digest)


def head(engine: Engine) -> tuple[int, str]:
    """(seq, hash) of the newest entry; (0, 64 zeros) for an empty log. A plain read
    for other topics (the transparency report names the head it was made at)."""
    with engine.connect() as conn:
        last = conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).one_or_none()
    return (0, GENESIS) if last is None else (int(last[0]), str(last[1]))


class Audit:
    """Reading the log and checking its chain: admins only. The key that signs and
    checks checkpoints is the deployment's `audit_key` setting."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _key(self) -> str | None:
        key = self._ctx.settings.audit_key
        return key.get_secret_value() if key else None

    def read(self, actor: Actor, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries after sequence number `after`, oldest first."""
        return self.page(actor, after=after, limit=limit).items

    def page(self, actor: Actor, *, after: int = 0, limit: int = 100) -> Page[AuditEntry]:
        """Entries after sequence number `after`, oldest first, a page at a time."""
        require_admin(actor, "read the audit log")
        check_page(after, limit, MAX_READ)
        with self._ctx.store.engine.connect() as conn:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.seq > after)
                .order_by(audit_log.c.seq)
                .limit(limit + 1)
            ).mappings()
            return page_of([_entry(r) for r in rows], after, limit, lambda e: e.seq)

    def head(self, actor: Actor) -> tuple[int, str]:
        """(seq, hash) of the newest entry; (0, 64 zeros) for an empty log."""
        require_admin(actor, "read the audit log")
        return head(self._ctx.store.engine)

    def checkpoint(self, actor: Actor) -> Checkpoint:
        """The newest entry as a checkpoint to publish, signed if the audit key is set."""
        require_admin(actor, "read the audit log")
        seq, digest = head(self._ctx.store.engine)
        unsigned = Checkpoint(seq, digest)
        key = self._key()
        return unsigned.signed(key) if key else unsigned

    def verify(
        self, actor: Actor, *, against: Checkpoint | None = None, chunk: int = 10_000
    ) -> ChainCheck:
        """Recompute the whole chain; the first entry that does not check out, if any.

        With `against`, the chain must also reach the checkpoint's entry and have the
        checkpoint's hash there, and the checkpoint's signature must verify under
        the audit key. A signed checkpoint without a key, or an unsigned one with a
        key, is InvalidInput: it cannot be checked as asked."""
        require_admin(actor, "check the audit log")
        if against is not None:
            refused = _signature_fault(against, self._key())
            if refused is not None:
                return ChainCheck(0, None, refused)
            if against.seq == 0 and against.hash != GENESIS:
                return ChainCheck(
                    0, None, "a checkpoint of the empty log must name the genesis hash"
                )
        check = _chain(self._ctx.store.engine, chunk, against)
        if check.ok and against is not None and check.checked < against.seq:
            return ChainCheck(
                check.checked,
                check.checked + 1,
                f"the log ends at entry {check.checked} but the checkpoint names entry "
                f"{against.seq}: entries were cut off the end",
            )
        return check


def _signature_fault(against: Checkpoint, key: str | None) -> str | None:
    if key is None:
        if against.signature is not None:
            raise InvalidInput(
                "the checkpoint is signed but HASHDB_AUDIT_KEY is not set: cannot check it",
                field="head",
            )
        return None
    if against.signature is None:
        raise InvalidInput(
            "the checkpoint is unsigned but HASHDB_AUDIT_KEY is set: only a signed "
            "checkpoint can be trusted",
            field="head",
        )
    if not against.signature_ok(key):
        return (
            "the checkpoint's signature does not verify with HASHDB_AUDIT_KEY: "
            "a forged checkpoint, or one signed with another key"
        )
    return None


def _chain(engine: Engine, chunk: int, against: Checkpoint | None) -> ChainCheck:
    expected_seq, prev, checked = 1, GENESIS, 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.seq >= expected_seq)
                .order_by(audit_log.c.seq)
                .limit(chunk)
            ).mappings()
            entries = [_entry(r) for r in rows]
        if not entries:
            return ChainCheck(checked)
        for entry in entries:
            if entry.seq != expected_seq:
                return ChainCheck(checked, entry.seq, f"expected entry {expected_seq} here")
            if entry.prev_hash != prev:
                return ChainCheck(checked, entry.seq, "link to the previous entry broken")
            recomputed = entry_hash(
                prev,
                seq=entry.seq,
                at=entry.at,
                actor_id=entry.actor_id,
                key_id=entry.key_id,
                action=entry.action,
                target=entry.target,
                request_id=entry.request_id,
                details=entry.details,
            )
            if recomputed != entry.hash:
                return ChainCheck(checked, entry.seq, "content does not match its hash")
            if against is not None and entry.seq == against.seq and entry.hash != against.hash:
                return ChainCheck(
                    checked,
                    entry.seq,
                    f"entry {entry.seq} does not have the checkpoint's hash: the log was rewritten",
                )
            checked += 1
            expected_seq, prev = entry.seq + 1, entry.hash
