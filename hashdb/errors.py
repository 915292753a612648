"""One exception tree for the whole service, so every edge renders errors one way.

The HTTP layer turns an error into `{"error": {"code", "message", "details"}}` with
`http_status`; the CLI turns it into an exit code with `exit_code`. Nothing else
needs to know which error is which.

    HashdbError
    ├── UserError                  the caller can fix it          exit 2, HTTP 4xx
    │   ├── InvalidInput           400  a field is malformed (names the field)
    │   ├── Unauthenticated        401  missing, unknown or revoked key
    │   ├── Forbidden              403  the key's role may not do this
    │   ├── NotFound               404
    │   ├── Conflict               409  the request contradicts current state
    │   ├── PayloadTooLarge        413
    │   │   └── BudgetExceeded     413  a match request costs more index work than allowed
    │   ├── UnsupportedMedia       415  not a format we decode
    │   ├── MediaError             422  a decodable format that is corrupt, a bomb, ...
    │   ├── IdempotencyKeyReused   422  an idempotency key sent again with another request
    │   └── RateLimited            429  carries retry_after seconds
    └── OutsideFailure             something we depend on failed  exit 3, HTTP 503
        └── StorageUnavailable     the database cannot be reached
"""

from __future__ import annotations

from typing import Any


class HashdbError(Exception):
    """Base of every error hashdb raises on purpose."""

    code = "error"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = {k: v for k, v in details.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class UserError(HashdbError):
    code = "bad_request"
    http_status = 400
    exit_code = 2


class InvalidInput(UserError):
    """A field of the request is malformed; `field` names it (with its batch index)."""

    code = "invalid_input"

    def __init__(
        self, message: str, *, field: str | None = None, index: int | None = None, **details: Any
    ) -> None:
        super().__init__(message, field=field, index=index, **details)
        self.field = field
        self.index = index


class Unauthenticated(UserError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(UserError):
    code = "forbidden"
    http_status = 403


class NotFound(UserError):
    code = "not_found"
    http_status = 404


class Conflict(UserError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(UserError):
    code = "payload_too_large"
    http_status = 413


class BudgetExceeded(PayloadTooLarge):
    """A request would cost more index work (query units, hashdb/budget.py) than one
    request may; `details` carry its `cost`, the `maximum` and the `setting`."""

    code = "budget_exceeded"


class UnsupportedMedia(UserError):
    code = "unsupported_media"
    http_status = 415


class MediaError(UserError):
    """The file claims a format we read but cannot be decoded safely."""

    code = "media_error"
    http_status = 422


class IdempotencyKeyReused(UserError):
    """An idempotency key already used (within its retention) for a different request:
    another method, path or body. A retry must repeat its first request exactly."""

    code = "idempotency_key_reused"
    http_status = 422


class RateLimited(UserError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class OutsideFailure(HashdbError):
    code = "unavailable"
    http_status = 503
    exit_code = 3


class StorageUnavailable(OutsideFailure):
    code = "storage_unavailable"
