"""Authenticated keys, cached in the worker until the auth change log moves.

Looking a key up costs a database round trip, which on the single-hash match path
cost as much as the lookup itself. A worker therefore keeps the principals of the
keys it has seen, keyed by the key's digest, and forgets all of them whenever the
auth change log's head moves (a revocation, a disabled member, a rotation). Keys
are looked up through the consortium layer (`Members.authenticate`); a head that
differs from the cached one either way empties the cache (backwards: the database
was restored from a backup). The head is
read on every request anyway (`Members.heads`), so a revoked key fails on the very
next request in every worker. A key's own expiry is checked against the clock on
every use. Unknown and refused keys are never cached.

A principal is cached only if the log did not move while it was read: a reader
that looked the key up just before a revocation must not put the old answer back
after the revocation emptied the cache.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Protocol

from hashdb.consortium import Principal, now

CAPACITY = 10_000  # keys; a consortium has a few dozen members with a few keys each


class Authenticator(Protocol):
    """What the cache looks keys up with: the consortium's `Members`."""

    def authenticate(self, secret: str) -> Principal: ...


class KeyCache:
    def __init__(self, members: Authenticator, capacity: int = CAPACITY) -> None:
        self._members = members
        self._capacity = capacity
        self._keys: dict[str, Principal] = {}
        self._head = 0  # the auth change log head the cached principals are valid at
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every cached principal (the database became another history)."""
        with self._lock:
            self._keys.clear()

    def principal(self, secret: str, head: int) -> Principal:
        """The principal behind `secret` (Unauthenticated if none), given the auth
        change log's current `head`."""
        key = hashlib.sha256(secret.encode()).hexdigest()  # the secret is not kept
        with self._lock:
            if head != self._head:  # moved on, or back (a restored database)
                self._keys.clear()
                self._head = head
            found = self._keys.get(key) if head == self._head else None
        if found is not None and (found.expires_at is None or found.expires_at > now()):
            return found
        fresh = self._members.authenticate(secret)
        with self._lock:
            if head == self._head:
                if len(self._keys) >= self._capacity:
                    self._keys.clear()
                self._keys[key] = fresh
        return fresh
