"""HMA-compatible read endpoints: an HMA 2.0 client points at hashdb unchanged but for
its `Authorization: Bearer <key>` header.

Meta's Hasher-Matcher-Actioner 2.0 (OpenMediaMatch, BSD) serves lookups and hashing
under `/m` and `/h`; these routes answer the same requests with the same shapes
(paths, parameters and bodies as HMA's `blueprints/matching.py`, `blueprints/hashing.py`,
`schemas/matching.py` and `app.py` at ThreatExchange commit baefb4ed67b6):

    GET  /m/raw_lookup?signal_type=&signal=[&banks=][&include_distance=]
         {"matches": [id, ...]}, or with include_distance
         {"matches": [{"bank_content_id": id, "distance": "4"}, ...]}
    GET  /m/lookup?signal_type=&signal=[&banks=]
         {"BANK": [{"bank_content_id": id, "distance": "4"}, ...], ...}
    POST /m/lookup[?types=][&banks=]   multipart, one file in the field `photo` or `video`
         {"pdq": {"BANK": [...]}, ...}
    POST /h/hash[?types=]              multipart, one file in the field `photo` or `video`
         {"pdq": "<hex>"} for a photo, {"video_md5": "<hex>"} for a video
    POST /m/compare                    {"pdq": [hex, hex]}  ->  {"pdq": [true, {"distance": 9}]}
    GET  /status, /status/live         "I-AM-ALIVE" (text)

The mapping, and where hashdb differs:

- **Signal types**: HMA's names, for those with a hashdb counterpart: `pdq` is
  hashdb's `pdq`; `video_md5` (the MD5 of a video file's bytes) is hashdb's `md5`
  (the MD5 of any file's bytes: identical bytes are the same file, so a video's
  digest finds only that video). Any other name is HMA's 400
  `No such SignalType '<name>'`.
- **Banks are labels.** An HMA bank is a named collection holding each content
  once; a hashdb hash carries labels. A match is listed under a bank per label
  (so one hash may appear under several banks, with the same id), and a hash
  without labels under `UNLABELLED`, a name no label can have (labels are lower
  case). `banks=` keeps the matches in the named banks, as in HMA.
- **Content ids are hash ids**: `bank_content_id` is the matched hash's id (for a
  PDQ hit on a video frame, the video's), the id `/v1/hashes/<id>` and feedback use.
- **Distance** is text, as HMA writes its `SignalSimilarityInfo.pretty_str()`: the
  Hamming distance for `pdq`, `-` for `video_md5` (exact matches have none).
- **What matches is hashdb's rule, not the edge's**: the lookups go through the
  matching use case (`ctx.db.matching.answer`: threshold, price, the key's budget,
  counted for the member), so they answer what `POST /v1/match` answers at the
  default threshold, pending and disputed hashes included where hashdb matches them.
  HMA's shape has no status: clients that must tell an unvetted hash apart use
  `/v1/match`, or the operator sets `HASHDB_PENDING_MATCHES=false`. HMA's per-bank
  "coinflip" (`seed`, `bypass_coinflip`) has no counterpart: accepted and ignored.
- **Hashing** decodes in the media sandbox, never in the worker (as
  `/v1/match/media` does); `video_md5` is the MD5 of the bytes as uploaded (no
  decoding, as HMA). A photo whose PDQ quality is below hashdb's floor (50, HMA's
  too) has no `pdq` in the answer: HMA answers `""`, a sentinel hashdb does not
  emit, and a lookup of it matches nothing either way.
- **No URL fetching**: HMA's `url=` parameters (`GET /h/hash`, `GET /m/lookup`)
  make the server download a file; hashdb refuses them (400 naming `url`) rather
  than open a fetcher to arbitrary addresses: upload the file instead.
- **Errors** are hashdb's one body with HMA's `message` beside it,
  `{"message": "...", "error": {"code", "message", "details"}}`, with hashdb's
  statuses: 400 bad input, 401 no key, 413/415/422 bad uploads, 429 rate, 503 while
  the indexes load (HMA: `index not yet ready`; `/status` answers the same 503).

The blueprint is registered only when `HASHDB_HMA_COMPAT` is on (off by default:
HMA's shape cannot flag a pending or disputed hash, and an HMA deployment acts on
what it is told, so an operator turns it on knowingly); off, every path here is 404.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from flask import Blueprint, Response, json, request
from pydantic import Field, RootModel

from api import errors
from api.auth import heads, requires
from api.context import ApiContext, context
from api.openapi import Raw, document
from api.request_id import actor
from api.schemas import QueryArgs
from api.schemas import Response as Model
from api.uploads import image_limits, in_sandbox
from api.web import json_body, query_args, reply_data
from hashdb.consortium import Match, Query, QueryResult, Role
from hashdb.errors import InvalidInput, OutsideFailure
from hashdb.signals import MD5, PDQ, Matching, SignalType
from ingest import sandbox

bp = Blueprint("hma", __name__)

TAG = "hma"

# HMA signal type name -> hashdb's signal type.
SIGNAL_TYPES: dict[str, SignalType] = {"pdq": PDQ, "video_md5": MD5}
# HMA content type (the multipart field an upload comes in) -> the signal types it
# is hashed into (HMA's reference configuration: PdqSignal for photos, VideoMD5Signal
# for videos).
CONTENT_TYPES: dict[str, tuple[str, ...]] = {"photo": ("pdq",), "video": ("video_md5",)}
# The bank of hashes without labels (labels are lower case, so none is called so).
UNLABELLED = "UNLABELLED"
# HMA's distance text for a match without a distance (SignalSimilarityInfo's).
NO_DISTANCE = "-"
ALIVE = "I-AM-ALIVE"


# ---- request and answer models (documented in /openapi.json) ----------------------


class RawLookupArgs(QueryArgs):
    signal: str = Field(description="The hash, as HMA writes it (hex).")
    signal_type: str = Field(description="`pdq` or `video_md5`.")
    banks: str | None = Field(default=None, description="Comma-separated banks (labels).")
    include_distance: bool = Field(default=False, description="Answer ids with distances.")


class LookupArgs(QueryArgs):
    signal: str | None = Field(default=None, description="The hash (hex).")
    signal_type: str | None = Field(default=None, description="`pdq` or `video_md5`.")
    banks: str | None = Field(default=None, description="Comma-separated banks (labels).")
    url: str | None = Field(default=None, description="Refused: hashdb does not fetch URLs.")
    content_type: str | None = Field(default=None, description="With `url` only (refused).")
    types: str | None = Field(default=None, description="With `url` only (refused).")
    seed: str | None = Field(default=None, description="HMA's coinflip seed; ignored.")
    bypass_coinflip: bool = Field(default=False, description="HMA's coinflip; ignored.")


class HashArgs(QueryArgs):
    types: str | None = Field(
        default=None, description="Comma-separated signal types to compute (default: all)."
    )


class UploadLookupArgs(HashArgs):
    banks: str | None = Field(default=None, description="Comma-separated banks (labels).")
    seed: str | None = Field(default=None, description="HMA's coinflip seed; ignored.")
    bypass_coinflip: bool = Field(default=False, description="HMA's coinflip; ignored.")


class HashUrlArgs(QueryArgs):
    url: str | None = Field(default=None, description="Refused: hashdb does not fetch URLs.")
    content_type: str | None = None
    types: str | None = None


class BankMatch(Model):
    bank_content_id: int = Field(description="The matched hash's id.")
    distance: str = Field(description="Hamming distance for pdq, `-` for video_md5.")


class RawLookupResponse(Model):
    matches: list[int] | list[BankMatch]


class LookupResponse(RootModel[dict[str, list[BankMatch]]]):
    """Matches by bank (label)."""


class UploadLookupResponse(RootModel[dict[str, dict[str, list[BankMatch]]]]):
    """Matches by signal type, then by bank."""


class HashResponse(RootModel[dict[str, str]]):
    """Hex hash by HMA signal type."""


class CompareRequest(RootModel[dict[str, list[str]]]):
    """Two hashes to compare, by HMA signal type."""


# [match, {"distance": d}]: HMA serialises a (bool, similarity info) pair as a list.
Comparison = Annotated[list[bool | dict[str, int]], Field(min_length=2, max_length=2)]


class CompareResponse(RootModel[dict[str, Comparison]]):
    """Per signal type: whether the two match at hashdb's default threshold, and the
    distance (none for video_md5)."""


# ---- errors: hashdb's body with HMA's `message` -----------------------------------


@bp.errorhandler(Exception)
def _render(exc: Exception) -> Response:
    """`api.errors.render`'s answer with HMA's top-level `message` added (HMA's
    `api_error_handler` answers `{"message": ...}`), so both kinds of client read it."""
    response = errors.render(exc)
    body = json.loads(response.get_data())
    response.set_data(json.dumps({"message": body["error"]["message"], **body}))
    return response


# ---- status ---------------------------------------------------------------------


@bp.get("/status")
@document(
    "HMA readiness",
    tag=TAG,
    description="`I-AM-ALIVE` once the indexes are loaded; 503 (`INDEX-NOT-LOADED`) "
    "before, as HMA's `/status`. No key needed, as for `/readyz`.",
    responses={200: Raw("text/plain")},
    uses_index=True,
)
def status() -> Response:
    if not context().loader.ready:
        raise OutsideFailure("INDEX-NOT-LOADED")
    return Response(ALIVE, mimetype="text/plain")


@bp.get("/status/live")
@document(
    "HMA liveness",
    tag=TAG,
    description="`I-AM-ALIVE` whenever the process answers, as HMA's `/status/live`.",
    responses={200: Raw("text/plain")},
)
def status_live() -> Response:
    return Response(ALIVE, mimetype="text/plain")


# ---- lookups --------------------------------------------------------------------


@bp.get("/m/raw_lookup")
@document(
    "HMA raw lookup",
    tag=TAG,
    description="The ids of the hashes that match one hash (HMA's `raw_lookup`).",
    query=RawLookupArgs,
    responses={200: RawLookupResponse},
    uses_index=True,
)
@requires(Role.MEMBER)
def raw_lookup() -> Response:
    args = query_args(RawLookupArgs)
    result = _lookup_one(args.signal_type, args.signal)
    wanted = _banks(args.banks)
    matches = [m for m in result.matches if wanted is None or wanted & set(banks_of(m))]
    found: list[Any] = [m.record.id for m in matches]
    if args.include_distance:
        found = [_bank_match(m, result.query.signal_type) for m in matches]
    return reply_data({"matches": found})


@bp.get("/m/lookup")
@document(
    "HMA lookup",
    tag=TAG,
    description="The hashes that match one hash, by bank (label), as HMA's `lookup`.",
    query=LookupArgs,
    responses={200: LookupResponse},
    uses_index=True,
)
@requires(Role.MEMBER)
def lookup() -> Response:
    args = query_args(LookupArgs)
    if args.url is not None:
        raise InvalidInput(
            "hashdb does not fetch URLs: upload the file with POST /m/lookup "
            "(multipart field `photo` or `video`)",
            field="url",
        )
    if not args.signal or not args.signal_type:
        raise InvalidInput(
            "Either url or both signal and signal_type are required",
            field="signal" if args.signal_type else "signal_type",
        )
    result = _lookup_one(args.signal_type, args.signal)
    return reply_data(by_bank(result, _banks(args.banks)))


@bp.post("/m/lookup")
@document(
    "HMA lookup of an upload",
    tag=TAG,
    description="Hash one uploaded file (multipart field `photo` or `video`, as HMA) and "
    "answer each of its hashes' matches by bank (label).",
    query=UploadLookupArgs,
    responses={200: UploadLookupResponse},
    uses_index=True,
    errors={
        413: "Upload larger than the configured limit.",
        415: "Not an image format the server decodes.",
        422: "The image is corrupt or a decompression bomb.",
    },
)
@requires(Role.MEMBER)
def lookup_upload() -> Response:
    args = query_args(UploadLookupArgs)
    hashed = _hash_upload(context(), args.types)
    if not hashed:
        return reply_data({})
    queries = [Query(h.signal_type, h.value, quality=h.quality) for h in hashed]
    results = _answer(queries)
    wanted = _banks(args.banks)
    return reply_data({h.name: by_bank(r, wanted) for h, r in zip(hashed, results, strict=True)})


@bp.post("/m/compare")
@document(
    "HMA compare",
    tag=TAG,
    description="The distance between two hashes of each signal type, and whether they "
    "match at hashdb's default threshold (HMA's `compare`).",
    body=CompareRequest,
    responses={200: CompareResponse},
)
@requires(Role.MEMBER)
def compare() -> Response:
    pairs = json_body(CompareRequest).root
    out: dict[str, list[Any]] = {}
    for name, pair in pairs.items():
        signal_type = hma_signal_type(name)
        if len(pair) != 2:
            raise InvalidInput(
                "Comparison hash list length must be exactly 2", field=name, got=len(pair)
            )
        try:
            left, right = (signal_type.parse(value, name) for value in pair)
        except InvalidInput as exc:
            raise InvalidInput(f"Invalid {name} hash: {exc.message}", field=name) from None
        if signal_type.matching is Matching.EXACT:
            out[name] = [left == right, {}]
        else:
            distance = (int.from_bytes(left) ^ int.from_bytes(right)).bit_count()
            out[name] = [distance <= signal_type.default_threshold, {"distance": distance}]
    return reply_data(out)


# ---- hashing --------------------------------------------------------------------


@bp.post("/h/hash")
@document(
    "HMA hash",
    tag=TAG,
    description="Hash one uploaded file (multipart field `photo` or `video`, as HMA): "
    "`pdq` for a photo (left out below PDQ quality 50), `video_md5` for a video.",
    query=HashArgs,
    responses={200: HashResponse},
    errors={
        413: "Upload larger than the configured limit.",
        415: "Not an image format the server decodes.",
        422: "The image is corrupt or a decompression bomb.",
    },
)
@requires(Role.MEMBER)
def hash_upload() -> Response:
    args = query_args(HashArgs)
    hashed = _hash_upload(context(), args.types)
    return reply_data({h.name: h.signal_type.format(h.value) for h in hashed})


@bp.get("/h/hash")
@document(
    "HMA hash of a URL (refused)",
    tag=TAG,
    description="HMA fetches `url` and hashes it; hashdb does not fetch URLs and answers "
    "400 naming `url`: upload the file with POST /h/hash.",
    query=HashUrlArgs,
    responses={},
)
@requires(Role.MEMBER)
def hash_url() -> Response:
    query_args(HashUrlArgs)
    raise InvalidInput(
        "hashdb does not fetch URLs: upload the file with POST /h/hash "
        "(multipart field `photo` or `video`)",
        field="url",
    )


# ---- the mapping ----------------------------------------------------------------


@dataclass(frozen=True)
class Hashed:
    """One signal of an uploaded file: HMA's name for it, hashdb's type, the raw hash
    and the PDQ quality of the picture (None for a digest)."""

    name: str
    signal_type: SignalType
    value: bytes
    quality: int | None


def hma_signal_type(name: str) -> SignalType:
    """hashdb's signal type for HMA's `name`, or HMA's 400 for an unknown one."""
    found = SIGNAL_TYPES.get(name)
    if found is None:
        raise InvalidInput(
            f"No such SignalType '{name}'", field="signal_type", known=sorted(SIGNAL_TYPES)
        )
    return found


def banks_of(match: Match) -> tuple[str, ...]:
    """The HMA banks a match is listed under: its labels, or UNLABELLED."""
    return match.record.labels or (UNLABELLED,)


def by_bank(result: QueryResult, wanted: frozenset[str] | None) -> dict[str, list[Any]]:
    """HMA's `lookup` answer: per bank (in order of first appearance), its matches
    nearest first; only the `wanted` banks if named."""
    out: dict[str, list[Any]] = {}
    for m in result.matches:
        for bank in banks_of(m):
            if wanted is None or bank in wanted:
                out.setdefault(bank, []).append(_bank_match(m, result.query.signal_type))
    return out


def _bank_match(match: Match, signal_type: SignalType) -> dict[str, Any]:
    exact = signal_type.matching is Matching.EXACT
    return {
        "bank_content_id": match.record.id,
        "distance": NO_DISTANCE if exact else str(match.distance),
    }


def _banks(text: str | None) -> frozenset[str] | None:
    """HMA's `banks=A,B` (None when absent or empty: every bank)."""
    return frozenset(text.split(",")) if text else None


def _lookup_one(signal_type_name: str, signal: str) -> QueryResult:
    signal_type = hma_signal_type(signal_type_name)
    try:
        value = signal_type.parse(signal, "signal")
    except InvalidInput as exc:
        raise InvalidInput(f"invalid signal: {exc.message}", field="signal") from None
    (result,) = _answer([Query(signal_type, value)])
    return result


def _answer(queries: Sequence[Query]) -> list[QueryResult]:
    """The matching use case's answer (capped, priced, charged to the key, counted)."""
    ctx = context()
    if not ctx.loader.ready:
        raise OutsideFailure("index not yet ready")
    return ctx.db.matching.answer(actor(), queries, heads=heads()).results


def _check_types(content_type: str, types: str | None) -> None:
    """Refuse a `types=` selection naming a signal type `content_type` is not hashed
    into, or none (HMA's `_parse_request_signal_type`, with its messages). Each
    content type has one signal type, so a valid selection is all of them."""
    if types is None:
        return
    offered = CONTENT_TYPES[content_type]
    names = [n.strip() for n in types.split(",") if n.strip()]
    for name in names:
        if name not in offered:
            raise InvalidInput(
                f"signal type '{name}' doesn't exist or is disabled", field="types", known=offered
            )
    if not names:
        raise InvalidInput("empty signal type selection", field="types")


def _hash_upload(ctx: ApiContext, types: str | None) -> list[Hashed]:
    """The signals of the one file uploaded in the field `photo` or `video` (HMA's
    `hash_media_from_form_data`, with its messages)."""
    files = request.files
    if not files:
        raise InvalidInput("Missing multipart/form-data file upload", field="photo")
    fields = list(files.keys())
    if len(fields) > 1 or len(files.getlist(fields[0])) > 1:
        raise InvalidInput("Only one file allowed per request", field=fields[-1])
    (content_type,) = fields
    if content_type not in CONTENT_TYPES:
        raise InvalidInput(
            f"no such content_type: '{content_type}'",
            field=content_type,
            known=sorted(CONTENT_TYPES),
        )
    _check_types(content_type, types)
    data = files[content_type].read()
    if not data:
        raise InvalidInput("the uploaded file is empty", field=content_type)
    if content_type == "video":
        return [Hashed("video_md5", MD5, hashlib.md5(data, usedforsecurity=False).digest(), None)]
    s = ctx.settings
    image = in_sandbox(
        ctx,
        image_limits(s),
        sandbox.image_hashes,
        data,
        max_pixels=s.max_image_pixels,
        max_decoded_bytes=s.max_decoded_bytes,
    )
    if image.pdq_quality < (PDQ.min_quality or 0):
        return []
    return [Hashed("pdq", PDQ, image.pdq, image.pdq_quality)]
