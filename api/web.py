"""Reading request bodies and writing responses, the same way in every view.

JSON bodies must say `Content-Type: application/json` (415 otherwise, so a
forgotten header is named rather than reported as bad JSON) and are parsed and
validated in one step by pydantic. Responses are serialised from the response
models, which are also the documented schemas.
"""

from __future__ import annotations

from typing import TypeVar

from flask import Response, request
from pydantic import BaseModel

from api.schemas import parse_json
from hashdb.errors import UnsupportedMedia

M = TypeVar("M", bound=BaseModel)


def json_body(model: type[M]) -> M:
    if request.mimetype != "application/json":
        raise UnsupportedMedia(
            "send the body as JSON with `Content-Type: application/json`",
            content_type=request.mimetype or None,
        )
    return parse_json(model, request.get_data(cache=False))


def reply(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")
