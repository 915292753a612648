"""Request and response bodies, as pydantic models.

The models do three jobs: they validate what comes in (strict types, unknown
fields refused, so a misspelt `treshold` is an error rather than ignored), they
shape what goes out, and their JSON Schemas are the OpenAPI document's schemas
(`api/openapi.py`), so the document cannot drift from the code.

Checks that depend on the signal type or on settings (hash length, hex digits,
threshold caps, batch size) are done by the views with hashdb's own parsers, so
the errors name the field and the index of the bad item in the batch.

A validation error becomes `InvalidInput` with `field` (the name inside the item,
for example `value`) and `index` (the item's position in the batch), and a message
spelling out the whole path (`queries[3].value: ...`).

No text that comes in holds a C0 control character (U+0000-U+001F) other than tab,
line feed and carriage return: PostgreSQL text cannot store NUL at all, and the
others only hide things in logs and pages. Every request, query-string and form
model inherits that check (`_Text`), so a new field cannot forget it; one-line text
(names, labels) is declared with `LINE_PATTERN` and refuses those three as well.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hashdb.consortium.paging import DEFAULT_LIMIT, MAX_KEY, MAX_LIMIT
from hashdb.errors import InvalidInput
from hashdb.keypoints.codec import MAX_TEXT_CHARS as MAX_KEYPOINTS_CHARS
from hashdb.signals import SIGNAL_TYPES

SIGNAL_NAMES = sorted(SIGNAL_TYPES)
_HEX_MAX = max(s.hex_length for s in SIGNAL_TYPES.values())
_VALUE_MAX = max(_HEX_MAX, MAX_KEYPOINTS_CHARS)
_KEYPOINTS_DOC = (
    "For keypoints, the keypoint set as base64 text (hashdb/keypoints/codec.py: "
    "`hashdb hash` and the member client compute it)."
)
# A vpdq query's value is vPDQ text, one `frame_number,quality,pdq_hex,timestamp`
# line per frame (about 80 characters): room for 25,000 frames; the frame count is
# capped by HASHDB_VIDEO_MAX_FRAMES and the body by HASHDB_MAX_UPLOAD_BYTES.
MAX_VPDQ_CHARS = 2_000_000
_SIGNAL_DOC = "Signal type: " + ", ".join(SIGNAL_NAMES) + "."
MAX_LABELS = 32
MAX_LABEL_CHARS = 100
MAX_REFERENCE_CHARS = 2000

# Free text may hold tab, line feed and carriage return; one-line text none of C0.
FREE_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"
LINE_PATTERN = r"^[^\x00-\x1f]*$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CONTROL_IN_LINE = re.compile(r"[\x00-\x1f]")

M = TypeVar("M", bound=BaseModel)


def control_character(text: str, *, line: bool = False) -> str | None:
    """Where `text` holds a control character it may not (tab and line breaks are
    allowed unless `line`), as words for an error message; None if it holds none."""
    found = (_CONTROL_IN_LINE if line else _CONTROL).search(text)
    if found is None:
        return None
    return f"control character U+{ord(found.group()):04X} at position {found.start()}"


def _refuse_control(value: object) -> None:
    if isinstance(value, str):
        if (where := control_character(value)) is not None:
            raise ValueError(f"{where} is not allowed")
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _refuse_control(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_control(key)
            _refuse_control(item)
    # Nested models checked their own fields; numbers, times and None hold no text.


class _Text(BaseModel):
    """Every field of every incoming model: no C0 control character but tab and
    line breaks, however deep in lists and objects the text is."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: object, info: ValidationInfo) -> object:
        _refuse_control(value)
        return value


class Request(_Text):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ParsedRequest(BaseModel):
    """A request whose text is all parsed into typed values (a known signal type's
    name, hex digits, vPDQ frame lines), which refuse control characters by
    themselves (400 naming the field), so it skips `_Text`'s per-field check: the
    match path would pay a Python call for every field of every query."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class QueryArgs(_Text):
    """Query-string parameters: strings coerced to the field's type ("12", "true");
    unknown parameters are refused by `api.web.query_args`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Form(_Text):
    """The text fields of a multipart upload: form values are strings, so types are
    coerced ("true", "12"); the `file` field is added to the documented schema by
    `api/openapi.py`."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# Text stored in the database: a label is one line; a reference is free text.
Label = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_LABEL_CHARS, pattern=r"^[^\x00-\x1f]+$")
]
Reference = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_REFERENCE_CHARS,
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]+$",
    ),
]


def signal_field() -> Any:
    names = cast("list[JsonValue]", SIGNAL_NAMES)
    return Field(description=_SIGNAL_DOC, json_schema_extra={"enum": names})


def value_field() -> Any:
    return Field(
        max_length=_VALUE_MAX,
        description="The hash as hex digits: 64 for pdq and sha256, 16 for phash, 32 for md5. "
        + _KEYPOINTS_DOC,
    )


# ---- pages of a list ---------------------------------------------------------------
# Every list endpoint pages the same way (the export feed's way; hashdb/consortium/
# paging.py is the contract): `cursor` and `limit` in the query, `cursor` and `more`
# in the body and in the X-Hashdb-Cursor and X-Hashdb-More headers, and a Link
# rel="next" header while `more` (api/web.py `reply_page`).

CURSOR_HEADER = "X-Hashdb-Cursor"
MORE_HEADER = "X-Hashdb-More"
# The headers of every page, as OpenAPI response headers (api/openapi.py adds them to
# each answer whose model is a `PageOut`).
PAGE_HEADERS: dict[str, dict[str, Any]] = {
    CURSOR_HEADER: {
        "description": "The page's `cursor`: pass it back as `cursor` for the next page.",
        "schema": {"type": "integer", "minimum": 0},
    },
    MORE_HEADER: {
        "description": "The page's `more`: `true` while items follow the cursor.",
        "schema": {"type": "string", "enum": ["true", "false"]},
    },
    "Link": {
        "description": 'While `more`: `<URL>; rel="next"`, the next page with the same '
        "filters, `cursor` and `limit`.",
        "schema": {"type": "string"},
    },
}


class PageArgs(QueryArgs):
    """`cursor` and `limit` of a list endpoint. A subclass that replaces an older
    paging parameter names it in `ALIAS` and declares it as an optional integer
    field (documented as deprecated): it is read as `cursor`, and giving both is a
    400. `position` is where to read on from, whichever was given."""

    ALIAS: ClassVar[str | None] = None

    cursor: int | None = Field(
        default=None,
        ge=0,
        le=MAX_KEY,
        description="Page on: the `cursor` the previous page handed back (absent or 0: "
        "from the start).",
    )
    limit: int = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Most items in the page."
    )

    @model_validator(mode="after")
    def _one_cursor(self) -> Self:
        if self.ALIAS is not None and self.cursor is not None and self.alias_value is not None:
            raise InvalidInput(
                f"give `cursor` or its deprecated alias `{self.ALIAS}`, not both",
                field=self.ALIAS,
            )
        return self

    @property
    def alias_value(self) -> int | None:
        if self.ALIAS is None:
            return None
        value = getattr(self, self.ALIAS)
        return value if isinstance(value, int) else None

    @property
    def position(self) -> int:
        return self.cursor or self.alias_value or 0


def deprecated_cursor() -> Any:
    """The field of a deprecated alias of `cursor` (see `PageArgs.ALIAS`)."""
    return Field(
        default=None,
        ge=0,
        le=MAX_KEY,
        description="Deprecated: the old name of `cursor` (giving both is a 400).",
        json_schema_extra={"deprecated": True},
    )


class PageOut(Response):
    """The paging fields of every list answer (the items are the subclass's)."""

    cursor: int = Field(
        description="Pass back as `cursor` for the next page: the last item's key, or the "
        "request's cursor when the page is empty. Also the X-Hashdb-Cursor header."
    )
    more: bool = Field(
        description="Whether items follow the cursor: read on while true. Also the "
        "X-Hashdb-More header."
    )


# ---- matching ---------------------------------------------------------------------


class MatchQuery(ParsedRequest):
    signal_type: str = signal_field()
    value: str = Field(
        max_length=MAX_VPDQ_CHARS,
        description="The hash as hex digits: 64 for pdq and sha256, 16 for phash, 32 for "
        "md5. For vpdq, a video's frames as vPDQ text: one line per frame, "
        "`frame_number,quality,pdq_hex,timestamp_seconds` (frames of quality below 50 "
        "are left out, as vPDQ does). " + _KEYPOINTS_DOC + " A keypoints query matches "
        "the stored sets that geometric verification accepts; it takes no threshold.",
    )
    mirror: str | None = Field(
        default=None,
        max_length=MAX_KEYPOINTS_CHARS,
        description="keypoints only: the keypoint set of the mirror image of the picture, "
        "as base64 text, matched as well (ORB keypoints do not find a mirrored copy "
        "otherwise); a match it found says `mirror` in `via`.",
    )
    threshold: int | None = Field(
        default=None,
        ge=0,
        description="Largest Hamming distance that counts as a match (pdq default 31, "
        "phash 4; capped by the server's configured maximum). Digests match exactly.",
    )
    quality: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="PDQ quality of the image the hash came from; below 50 the query is "
        "answered `low_quality` with no matches.",
    )
    dihedral: bool = Field(
        default=False,
        description="pdq only: also match the 7 rotations and flips of the image, "
        "derived from the hash's bits (a few bits from the exact forms).",
    )
    min_query_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="vpdq only: report a stored video only if at least this share of the "
        "query's seconds matched it (default 0).",
    )
    min_reference_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="vpdq only: report a stored video only if at least this share of its "
        "seconds matched (default 0).",
    )


class MatchRequest(ParsedRequest):
    queries: list[MatchQuery] = Field(
        min_length=1,
        description="Hashes to look up: at most the configured batch size "
        "(HASHDB_MAX_BATCH), and at most HASHDB_MAX_REQUEST_COST query units of index "
        "work (one plain query at the default threshold is 1 unit; each dihedral form and "
        "vpdq frame is a probe more; higher thresholds cost more per probe; 413 beyond).",
    )


class ViaOut(Response):
    probe: str | None = Field(
        description="The form of the query that was searched (a dihedral form such as "
        "`rot90`, the `content` region, a crop); null for the query as sent."
    )
    stored: str | None = Field(
        description="The stored variant of the hash that was hit (its `content` region "
        "or a crop window such as `crop90_3_3`); null for the hash itself."
    )


class MatchOut(Response):
    id: int = Field(description="Hash id.")
    distance: int = Field(description="Hamming distance (0 for digests and keypoints).")
    via: ViaOut | None = Field(
        description="How the match was found; null when the query as sent hit the hash itself."
    )
    variant: str | None = Field(
        description="`via` as one string, `probe+stored:<kind>` (for example "
        "`content+stored:content`); null when `via` is."
    )
    inliers: int | None = Field(
        default=None,
        description="keypoints only: keypoints of the query that geometric verification "
        "found where the stored picture's are (at least 12).",
    )
    share: float | None = Field(
        default=None,
        description="keypoints only: the share of the stored picture's area the query "
        "shows (1.0: all of it; below 0.25 a part of it, such as a small crop).",
    )
    labels: list[str]
    status: str
    added_at: datetime


class TimeRange(Response):
    start: float = Field(description="Seconds from the start of the video.")
    end: float


class VideoMatchOut(Response):
    """A stored video that a query video matches, scored the vPDQ way."""

    id: int = Field(description="Hash id of the stored video (its vpdq hash).")
    labels: list[str]
    status: str
    added_at: datetime
    query_share: float = Field(description="Share of the query's seconds that matched it.")
    reference_share: float = Field(description="Share of its seconds that matched.")
    query_ranges: list[TimeRange] = Field(description="Where in the query the matches are.")
    reference_ranges: list[TimeRange] = Field(description="Where in the stored video.")
    offset: float | None = Field(
        description="Stored-video time minus query time where the two line up, seconds "
        "(a clip cut from the stored video at 5 s: +5)."
    )
    aligned_query_share: float = Field(
        description="Share of the query's seconds matching at that offset: well below "
        "`query_share` means scattered matches (logos, title cards), not one copy."
    )


class QueryResult(Response):
    index: int = Field(description="Position of the query in the request.")
    signal_type: str
    value: str = Field(
        description="The hash as hex; for vpdq, the SHA-256 of the canonical frame list."
    )
    low_quality: bool = Field(description="True when the query was too featureless to match.")
    matches: list[MatchOut] = Field(description="Matches, nearest first (empty for vpdq).")
    videos: list[VideoMatchOut] | None = Field(
        default=None, description="vpdq queries only: matching stored videos, best first."
    )


class MatchResponse(Response):
    results: list[QueryResult] = Field(description="One result per query, in query order.")


class MediaHashes(Response):
    pdq: str
    pdq_quality: int
    phash: str
    md5: str
    sha256: str
    width: int
    height: int


class MediaMatchResponse(Response):
    kind: Literal["image"] = "image"
    hashes: MediaHashes
    results: list[QueryResult] = Field(description="One result per signal type of the image.")


class VideoHashes(Response):
    md5: str
    sha256: str
    duration: float = Field(description="Seconds of video decoded.")
    fps: float
    width: int
    height: int
    frames_per_second: float = Field(
        description="Sampling rate used (1000: every frame, as for queries)."
    )
    frames: int = Field(description="Frames hashed with PDQ quality >= 50.")
    low_quality_frames: int = Field(description="Frames hashed and left out (quality < 50).")
    keyframes: int = Field(
        description="Frames also described by a keypoint set (every 2 s for a video stored, "
        "every 0.5 s for a query; frames with too few keypoints give none)."
    )
    complete: bool = Field(description="False when a limit or damage cut hashing short.")
    ended_by: str = Field(description="complete, max_duration, max_frames, time_budget or damaged.")


class VideoMatchResponse(Response):
    kind: Literal["video"] = "video"
    hashes: VideoHashes
    videos: list[VideoMatchOut] = Field(description="Matching stored videos, best first.")
    results: list[QueryResult] = Field(
        description="Exact matches of the file's md5 and sha256, in that order."
    )


class MediaMatchForm(Form):
    dihedral: bool = Field(default=False, description="Images: also match rotations and flips.")
    probes: str | None = Field(
        default=None,
        max_length=200,
        description="Images: the probe kinds to look up besides the whole image, "
        "comma-separated from dihedral, content, content_dihedral, crops; `all` or `none`. "
        "Default: content (the picture with borders, bars and captions stripped), plus "
        "dihedral and content_dihedral when `dihedral` is true. Each match names the "
        "probe that found it in `variant`.",
    )
    pdq_threshold: int | None = Field(
        default=None, ge=0, description="PDQ threshold (for a video, per frame)."
    )
    phash_threshold: int | None = Field(default=None, ge=0, description="pHash threshold.")
    min_query_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Videos: report a stored video only if at least this share of the "
        "upload's seconds matched it.",
    )
    min_reference_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Videos: report a stored video only if at least this share of its "
        "seconds matched.",
    )


# ---- contributing -----------------------------------------------------------------


class VariantIn(Request):
    kind: str = Field(
        max_length=32,
        description="`content` or a crop window `crop<keep>_<column>_<row>` (hashdb/variants.py).",
    )
    value: str = Field(max_length=64, description="The PDQ of that part of the image, hex.")
    quality: int = Field(ge=0, le=100, description="Its PDQ quality (50 or more).")


class HashIn(Request):
    signal_type: str = signal_field()
    value: str = value_field()
    labels: list[Label] = Field(
        default_factory=list,
        max_length=MAX_LABELS,
        description=f"Labels such as a category; 1-{MAX_LABEL_CHARS} characters each.",
    )
    reference: Reference | None = Field(
        default=None, description="Free text: where the contributor found it, a case number."
    )
    quality: int | None = Field(
        default=None, ge=0, le=100, description="PDQ quality; below 50 is refused."
    )
    variants: list[VariantIn] | None = Field(
        default=None,
        max_length=128,
        description="pdq only: stored variants of the image, computed as an upload computes "
        "them (`hashdb remote contribute --hash-only`): its content region, and crop windows "
        "for a picture with few keypoints; they let crops of it match.",
    )


class MediaContributeForm(Form):
    labels: list[Label] = Field(
        default_factory=list, max_length=MAX_LABELS, description="Labels (repeat the field)."
    )
    reference: Reference | None = Field(default=None, description="Free-text reference.")


class ContributeRequest(Request):
    hashes: list[HashIn] = Field(min_length=1, description="Hashes to add.")


class AddedOut(Response):
    index: int = Field(description="Position of the item in the request.")
    signal_type: str
    id: int
    created: bool = Field(description="False when this member had already added the hash.")


class ContributeResponse(Response):
    hashes: list[AddedOut]


class MediaContributeResponse(Response):
    kind: Literal["image"] = "image"
    hashes: MediaHashes
    added: list[AddedOut]
    low_quality: bool = Field(
        description="True when PDQ quality < 50: only the digests were added."
    )


class VideoContributeResponse(Response):
    kind: Literal["video"] = "video"
    hashes: VideoHashes
    added: list[AddedOut] = Field(description="vpdq (the frames), md5, sha256.")
    low_quality: bool = Field(
        description="True when no frame reached PDQ quality 50: only the digests were added."
    )


class HashOut(Response):
    id: int
    signal_type: str
    value: str
    quality: int | None
    labels: list[str]
    status: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = Field(
        default=None, description="From then on the hash does not match; null: never."
    )
    reference: str | None = Field(
        default=None, description="Shown to admins and to the contributor only."
    )
    contributor_id: int | None = Field(
        default=None, description="Shown to admins and to the contributor only."
    )


# ---- administration ----------------------------------------------------------------


class MemberIn(Request):
    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f]*\S[^\x00-\x1f]*$",
        description="One line, not blank; no control characters.",
    )
    role: str = Field(
        default="member",
        description="member (match, contribute), admin (everything), ops (imports).",
        json_schema_extra={"enum": ["member", "admin", "ops"]},
    )
    trusted: bool = False


class MemberOut(Response):
    id: int
    name: str
    role: str
    trusted: bool
    created_at: datetime
    disabled_at: datetime | None


class KeyOut(Response):
    id: int
    prefix: str = Field(description="First characters after `hdb_`, to tell keys apart.")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    secret: str = Field(description="The key itself. Shown this once; only a digest is kept.")


class MemberList(PageOut):
    members: list[MemberOut] = Field(description="By id (oldest first).")


class MemberDetail(Response):
    member: MemberOut
    keys: list[KeyOut]


class MemberCreated(Response):
    member: MemberOut
    key: NewKeyOut


class KeyRequest(Request):
    overlap_seconds: int | None = Field(
        default=None,
        ge=0,
        le=90 * 24 * 3600,
        description="Rotation: the member's other live keys expire after this many "
        "seconds. Omit to keep them valid.",
    )


class KeyCreated(Response):
    key: NewKeyOut


class KeyRevoked(Response):
    key: KeyOut


# ---- health and errors -------------------------------------------------------------


class Health(Response):
    status: str


class Readiness(Response):
    ready: bool
    index_sizes: dict[str, int]
    cursor: int = Field(description="Change-log position the indexes reflect.")


class ErrorBody(Response):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_input.")
    message: str
    details: dict[str, Any] = Field(
        description="For invalid_input: `field` and, in a batch, `index` of the bad item."
    )


class ErrorResponse(Response):
    error: ErrorBody


# ---- parsing ----------------------------------------------------------------------


def parse_json(model: type[M], body: bytes) -> M:
    """Validate a JSON body against `model`, or raise InvalidInput naming the field."""
    try:
        return model.model_validate_json(body or b"")
    except ValidationError as exc:
        raise invalid_input(exc) from None


def invalid_input(exc: ValidationError) -> InvalidInput:
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return InvalidInput(f"request body is not valid JSON: {first['msg']}", field="body")
    loc = list(first["loc"])
    index: int | None = None
    if len(loc) >= 2 and isinstance(loc[1], int):
        index = loc[1]
        field = _path(loc[2:]) or str(loc[0])
    else:
        field = _path(loc) or "body"
    message = f"{_path(loc) or 'body'}: {first['msg']}"
    return InvalidInput(message, field=field, index=index, errors=len(errors))


def _path(loc: list[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
