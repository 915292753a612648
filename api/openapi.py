"""The OpenAPI 3.1 document, built from the routes and the pydantic models.

Each view declares what it takes and returns with `@document(...)`; `build(app)`
walks the app's URL map, so a route without a declaration is a bug a test catches
(`tests/test_api_docs.py`), and the schemas are the very models the views
validate and serialise with. Roles come from the view's `requires(...)`, so the
document says who may call what without repeating it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from api.auth import allowed_roles
from api.idempotency import ERRORS as IDEMPOTENCY_ERRORS
from api.idempotency import PARAMETER as IDEMPOTENCY_KEY
from api.idempotency import accepts_idempotency_key
from api.schemas import PAGE_HEADERS, ErrorResponse, PageOut
from hashdb.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

OPERATION_ATTR = "hashdb_operation"
REF = "#/components/schemas/{model}"

# Path converters of the routes, as OpenAPI parameter schemas.
_CONVERTERS: dict[str, dict[str, Any]] = {
    "id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    "default": {"type": "string", "minLength": 1},
}
# The file part every upload form has besides its text fields (see schemas.Form).
_FILE_PART: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The image file."}
    },
}
_RULE_PARAM = re.compile(r"<(?:(?P<conv>[a-zA-Z_]+)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_]+)>")


@dataclass(frozen=True)
class Raw:
    """A response not described by a model (metrics text, the docs page, this document)."""

    media_type: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


# One documented answer: a model (JSON), a raw media type, or several alternatives
# (for example JSON or CSV, or an image's answer or a video's).
Answer = type[BaseModel] | Raw | tuple[type[BaseModel] | Raw, ...]


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    description: str = ""
    body: type[BaseModel] | None = None
    body_type: Literal["json", "multipart"] = "json"
    responses: Mapping[int, Answer] = field(default_factory=dict)
    uses_index: bool = False  # answers 503 until the indexes are loaded
    query: type[BaseModel] | None = None  # the query string's parameters
    body_required: bool = True
    errors: Mapping[int, str] = field(default_factory=dict)  # beyond the usual ones


def document(
    summary: str,
    *,
    tag: str,
    description: str = "",
    body: type[BaseModel] | None = None,
    body_type: Literal["json", "multipart"] = "json",
    responses: Mapping[int, Answer],
    uses_index: bool = False,
    query: type[BaseModel] | None = None,
    body_required: bool = True,
    errors: Mapping[int, str] | None = None,
) -> Callable[[F], F]:
    op = Operation(
        summary,
        tag,
        description,
        body,
        body_type,
        responses,
        uses_index,
        query,
        body_required,
        errors or {},
    )

    def decorate(view: F) -> F:
        setattr(view, OPERATION_ATTR, op)
        return view

    return decorate


def operation_of(view: Callable[..., Any]) -> Operation | None:
    found = getattr(view, OPERATION_ATTR, None)
    return found if isinstance(found, Operation) else None


def _alternatives(answer: Answer) -> tuple[type[BaseModel] | Raw, ...]:
    return answer if isinstance(answer, tuple) else (answer,)


def _error_codes(
    op: Operation, secured: bool, has_params: bool, idempotent: bool = False
) -> dict[int, str]:
    codes: dict[int, str] = {}
    if op.body is not None or has_params or op.query is not None:
        codes[400] = "Invalid input: `details.field` names the field, `details.index` the item."
    if secured:
        codes[401] = "Missing, unknown, revoked or expired key."
        codes[403] = "The key's role may not call this endpoint."
    if has_params:
        codes[404] = "No such resource."
    if op.body is not None:
        codes[413] = "Request body larger than the configured limit."
        codes[415] = (
            "Not an image or video format the server decodes."
            if op.body_type == "multipart"
            else "Body is not `application/json`."
        )
    if op.body_type == "multipart" and op.body is not None:
        codes[422] = "The image or video is corrupt, a decompression bomb, or too long."
    codes.update(op.errors)
    if idempotent:
        for status, text in IDEMPOTENCY_ERRORS.items():
            codes[status] = f"{codes[status]} Or: {text}" if status in codes else text
    if secured:
        codes[429] = "Rate limit for this key exceeded; see `Retry-After`."
    codes[503] = "Database unreachable" + (" or indexes still loading." if op.uses_index else ".")
    return codes


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The query-string parameters of `model`, one per field (by alias)."""
    schema = model.model_json_schema(mode="validation", by_alias=True)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        # A parameter is absent or has a value: drop the model's `null` alternative.
        options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}]
        if "anyOf" in prop and len(options) == 1:
            prop = {**{k: v for k, v in prop.items() if k != "anyOf"}, **options[0]}
        shape = {
            k: v
            for k, v in prop.items()
            if k not in ("title", "description") and not (k == "default" and v is None)
        }
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": shape,
        }
        if "description" in prop:
            param["description"] = prop["description"]
        if shape.pop("deprecated", False):
            param["deprecated"] = True
        out.append(param)
    return out


def build(app: Flask, settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of `app`; raises if a route is undocumented."""
    ops: list[tuple[str, str, Operation, Callable[..., Any], list[tuple[str, str]]]] = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        op = operation_of(view)
        if op is None:
            raise LookupError(f"route {rule.rule} ({rule.endpoint}) has no @document")
        params = [(m["name"], m["conv"] or "default") for m in _RULE_PARAM.finditer(rule.rule)]
        path = _RULE_PARAM.sub(lambda m: "{" + m["name"] + "}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            ops.append((path, method.lower(), op, view, params))

    models: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ErrorResponse, "serialization"): None
    }
    for _, _, op, _, _ in ops:
        if op.body is not None:
            models[(op.body, "validation")] = None
        for answer in op.responses.values():
            for out in _alternatives(answer):
                if isinstance(out, type):
                    models[(out, "serialization")] = None
    refs, defs = models_json_schema(list(models), ref_template=REF)

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return refs[(model, mode)]

    paths: dict[str, dict[str, Any]] = {}
    for path, method, op, view, params in ops:
        roles = allowed_roles(view)
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": f"{method}_{view.__name__}",
        }
        description = op.description
        if roles is not None:
            entry["security"] = [{"bearer": []}]
            names = ", ".join(sorted(r.value for r in roles))
            description = f"{description}\n\nRoles: {names}.".strip()
        if description:
            entry["description"] = description
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": _CONVERTERS[conv]}
            for name, conv in params
        ]
        if op.query is not None:
            parameters += query_parameters(op.query)
        idempotent = accepts_idempotency_key(view)
        if idempotent:
            parameters.append(dict(IDEMPOTENCY_KEY))
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            media = "application/json" if op.body_type == "json" else "multipart/form-data"
            schema = ref(op.body, "validation")
            if op.body_type == "multipart":
                schema = {"allOf": [schema, _FILE_PART]}
            entry["requestBody"] = {
                "required": op.body_required,
                "content": {media: {"schema": schema}},
            }
        responses: dict[str, Any] = {}
        for status, answer in op.responses.items():
            content: dict[str, Any] = {}
            json_refs = []
            paged = False
            for out in _alternatives(answer):
                if isinstance(out, Raw):
                    content[out.media_type] = {"schema": dict(out.schema)}
                else:
                    json_refs.append(ref(out, "serialization"))
                    paged = paged or issubclass(out, PageOut)
            if json_refs:
                one = json_refs[0] if len(json_refs) == 1 else {"anyOf": json_refs}
                content["application/json"] = {"schema": one}
            responses[str(status)] = {"description": "Success.", "content": content}
            if paged:  # a page of a list: its cursor and more in headers too
                responses[str(status)]["headers"] = {k: dict(v) for k, v in PAGE_HEADERS.items()}
        error = {"application/json": {"schema": ref(ErrorResponse, "serialization")}}
        codes = _error_codes(op, roles is not None, bool(params), idempotent)
        for status, text in codes.items():
            responses[str(status)] = {"description": text, "content": error}
        responses["default"] = {"description": "Any other error, same shape.", "content": error}
        entry["responses"] = responses
        paths.setdefault(path, {})[method] = entry

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hashdb",
            "version": "1",
            "description": (
                "Perceptual-hash sharing for a consortium of platforms. Send "
                "`Authorization: Bearer <key>` to every /v1 endpoint. Batches hold at most "
                f"{settings.max_batch} items; thresholds are capped at "
                f"{settings.max_threshold_pdq} (pdq) and {settings.max_threshold_phash} "
                f"(phash); bodies at {settings.max_upload_bytes} bytes. Every error is "
                '`{"error": {"code", "message", "details"}}`.'
            ),
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
