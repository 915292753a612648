"""Reading request bodies and writing responses, the same way in every view.

JSON bodies must say `Content-Type: application/json` (415 otherwise, so a
forgotten header is named rather than reported as bad JSON) and are parsed and
validated in one step by pydantic. Query strings are validated the same way by a
`schemas.QueryArgs` model (an unknown parameter is an error, not ignored).
Responses are serialised from the response models, which are also the documented
schemas.

A read whose answer a client may keep (`reply_tagged`) carries a strong `ETag`:
the SHA-256 of the exact JSON body, so it changes exactly when what the answer
shows changes (status, labels, expiry, value, ...) and differs between two views of
one resource (a contributor's and another member's). `If-None-Match` naming it (or
`*`) is answered 304 with no body, as RFC 9110 section 13.1.2 asks (weak comparison).

A page of a list (`reply_page`) carries its `cursor` and `more` in the body and in
the X-Hashdb-Cursor and X-Hashdb-More headers, and, while `more`, a `Link:
<...>; rel="next"` header (RFC 8288): the same path and filters with the page's
`cursor` and `limit` (a deprecated alias of `cursor` given in the request is
dropped from it). The link is relative to the request's URL.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import TypeVar, get_origin

from flask import Response, request
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from api.schemas import (
    CURSOR_HEADER,
    MORE_HEADER,
    PageArgs,
    PageOut,
    QueryArgs,
    invalid_input,
    parse_json,
)
from hashdb.errors import InvalidInput, UnsupportedMedia

M = TypeVar("M", bound=BaseModel)
Q = TypeVar("Q", bound=QueryArgs)


def json_body(model: type[M]) -> M:
    if request.mimetype != "application/json":
        raise UnsupportedMedia(
            "send the body as JSON with `Content-Type: application/json`",
            content_type=request.mimetype or None,
        )
    return parse_json(model, request.get_data(cache=False))


def reply(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


def reply_tagged(model: BaseModel) -> Response:
    """`reply(model)` with a strong ETag of its body, or 304 (no body) when the
    request's `If-None-Match` already names that tag."""
    body = model.model_dump_json().encode()
    tag = hashlib.sha256(body).hexdigest()
    if request.if_none_match.contains_weak(tag):
        response = Response(status=304)
        del response.headers["Content-Type"]
    else:
        response = Response(body, status=200, mimetype="application/json")
    response.set_etag(tag)
    return response


def reply_page(model: PageOut, args: PageArgs) -> Response:
    """`reply(model)` for a page of a list, with its paging headers (module docstring)."""
    response = reply(model)
    response.headers[CURSOR_HEADER] = str(model.cursor)
    response.headers[MORE_HEADER] = "true" if model.more else "false"
    if model.more:
        dropped = {"cursor", "limit", args.ALIAS}
        kept = [(k, v) for k, v in request.args.items(multi=True) if k not in dropped]
        query = urllib.parse.urlencode([*kept, ("cursor", model.cursor), ("limit", args.limit)])
        path = urllib.parse.quote(request.script_root + request.path)
        response.headers["Link"] = f'<{path}?{query}>; rel="next"'
    return response


def reply_data(data: object, status: int = 200) -> Response:
    """A response from plain data already shaped like its documented model, for the
    hot path (no model objects built); serialised by pydantic's own encoder, so
    dates and numbers read exactly as `reply` writes them."""
    return Response(to_json(data), status=status, mimetype="application/json")


def reply_json(body: bytes, status: int = 200) -> Response:
    """A response whose JSON body is already encoded (`api.match_json`)."""
    return Response(body, status=status, mimetype="application/json")


def optional_json_body(model: type[M]) -> M | None:
    """A JSON body if one was sent (DELETE may carry one or not); None otherwise."""
    if not request.get_data(cache=True):
        return None
    return json_body(model)


def query_args(model: type[Q]) -> Q:
    """The query string, validated by `model` (InvalidInput naming the parameter)."""
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    unknown = sorted(set(request.args) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise InvalidInput(
            f"unknown query parameter {unknown[0]!r} (known: {known})", field=unknown[0]
        )
    data: dict[str, object] = {}
    for name, info in fields.items():
        values = request.args.getlist(name)
        if values:
            data[name] = values if get_origin(info.annotation) is list else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc) from None
