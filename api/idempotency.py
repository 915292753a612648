"""The `Idempotency-Key` header: a retried POST gets its first answer and runs nothing.

Every view that creates something (contributions, media, feedback, outcomes,
imports) is wrapped in `idempotent`, under `requires` (the key is scoped to the
caller's API key). Without the header a request runs as always. With it (1-200
printable ASCII characters, else 400 naming the header), the rules are the
consortium's (`hashdb.consortium.idempotency`): the first request claims the key
before the view runs; a retry of the same request gets the stored status, body
and headers plus `Idempotent-Replayed: true`; one that arrives while the first is
still running is 409; the same key on another request is 422. Only a 2xx answer
is kept: a 4xx or 5xx (or a view that raised) releases the key.

What counts as "the same request" is the method, the path and a SHA-256 of the
body. A JSON body is hashed as sent (a retry resends the same bytes). A multipart
upload is hashed by its parts (each form field's name and value, each file's name
and content), not its bytes: HTTP clients draw a fresh random boundary for every
request they build, and a retry built again must still be the same request.

`accepts_idempotency_key(view)` tells the OpenAPI builder which operations take
the header (the mark survives `requires`' `functools.wraps`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, ParamSpec

from flask import Response, request

from api.context import context
from api.request_id import actor
from hashdb.consortium import Consortium
from hashdb.consortium.idempotency import MAX_KEY_CHARS, Claim, Fingerprint, Reply, valid_key
from hashdb.errors import InvalidInput

log = logging.getLogger(__name__)

P = ParamSpec("P")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
# Headers of a first answer that a replay repeats; the rest (request id, rate-limit
# figures) describe the retry itself and are fresh.
KEPT_HEADERS = ("Content-Type", "Location", "ETag")
ATTR = "hashdb_idempotent"
_CHUNK = 1 << 20

# The header as an OpenAPI parameter of the operations that take it.
PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Names this request so that a retry is answered from the first "
    "attempt and changes nothing (scoped to your key, kept "
    "HASHDB_IDEMPOTENCY_HOURS). A replayed answer carries `Idempotent-Replayed: true`.",
    "schema": {"type": "string", "pattern": f"^[ -~]{{1,{MAX_KEY_CHARS}}}$"},
}
ERRORS = {
    409: "A request with this Idempotency-Key is still running.",
    422: "This Idempotency-Key was used for another request (method, path or body).",
}


def idempotent(view: Callable[P, Response]) -> Callable[P, Response]:
    """Run `view` at most once per `Idempotency-Key` of the caller's key (inside
    `requires`); without the header, just run it."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        sent = request.headers.getlist(HEADER)
        if not sent:
            return view(*args, **kwargs)
        key = _key(sent)
        db = context().db
        found = db.idempotency.claim(actor(), key, fingerprint())
        if isinstance(found, Reply):
            return replay(found)
        try:
            response = view(*args, **kwargs)
        except BaseException:
            _release(db, found)
            raise
        _finish(db, found, response)
        return response

    setattr(wrapper, ATTR, True)
    return wrapper


def accepts_idempotency_key(view: Callable[..., object]) -> bool:
    return getattr(view, ATTR, False) is True


def _key(sent: list[str]) -> str:
    if len(sent) > 1:
        raise InvalidInput(f"send one {HEADER} header, not {len(sent)}", field=HEADER)
    if not valid_key(sent[0]):
        raise InvalidInput(
            f"{HEADER} must be 1-{MAX_KEY_CHARS} printable ASCII characters", field=HEADER
        )
    return sent[0]


def fingerprint() -> Fingerprint:
    """The current request's method, path (with its query string) and body digest."""
    path = request.path
    if request.query_string:
        path += "?" + request.query_string.decode("latin-1")
    return Fingerprint(request.method, path, _body_sha256())


def _body_sha256() -> bytes:
    if request.mimetype != "multipart/form-data":
        return hashlib.sha256(request.get_data(cache=True)).digest()
    # A part may come without a name (werkzeug keeps it under None): sort as text.
    fields = sorted(([n or "", v] for n, v in request.form.items(multi=True)), key=str)
    files = []
    for name, upload in sorted(request.files.items(multi=True), key=lambda item: item[0] or ""):
        digest = hashlib.sha256()
        while chunk := upload.stream.read(_CHUNK):
            digest.update(chunk)
        upload.stream.seek(0)  # the view reads it again
        files.append([name or "", upload.filename or "", digest.hexdigest()])
    parts = json.dumps([fields, files], ensure_ascii=True)
    return hashlib.sha256(parts.encode("ascii")).digest()


def replay(reply: Reply) -> Response:
    response = Response(reply.body, status=reply.status)
    for name, value in reply.headers:
        response.headers[name] = value
    response.headers[REPLAYED] = "true"
    return response


def _finish(db: Consortium, claim: Claim, response: Response) -> None:
    kept = tuple(
        (name, response.headers[name]) for name in KEPT_HEADERS if name in response.headers
    )
    reply = Reply(response.status_code, response.get_data(as_text=True), kept)
    try:
        db.idempotency.finish(claim, reply)
    except Exception:  # the work is done and committed: answer it all the same
        log.exception("could not keep the answer to idempotency key %r", claim.key)


def _release(db: Consortium, claim: Claim) -> None:
    try:
        db.idempotency.release(claim)
    except Exception:  # the view's own error is the one to answer
        log.exception("could not release idempotency key %r", claim.key)
