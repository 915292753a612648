"""Request and response bodies of the consortium workflow: vetting, labels,
incidents, feedback, outcomes, the export feed, reports and the audit log.

Same conventions as `api.schemas`: requests are strict and refuse unknown fields,
query strings are `QueryArgs` models, and these models are the OpenAPI schemas.
Times must carry a zone (`2024-05-01T12:00:00Z`); a time without one is refused
rather than guessed, and every time is answered in UTC. A time that says when
something happened (`EventTime`: outcomes, incidents) lies between `EARLIEST`
and a few minutes from now (`CLOCK_SKEW`), and an expiry is not before `EARLIEST`:
year 0001 would otherwise skew the transparency report's time to action. Ids are
positive 64-bit integers, as the database stores them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field

from api.schemas import (
    FREE_TEXT_PATTERN,
    LINE_PATTERN,
    MAX_LABELS,
    HashOut,
    Label,
    PageArgs,
    PageOut,
    QueryArgs,
    Request,
    Response,
    deprecated_cursor,
    signal_field,
    value_field,
)
from hashdb.consortium import now
from hashdb.consortium.audit import MAX_READ
from hashdb.consortium.export import MAX_FILTER_LABELS as MAX_FEED_LABELS
from hashdb.consortium.export import MAX_LIMIT as MAX_EXPORT
from hashdb.consortium.feedback import MAX_NOTE_CHARS
from hashdb.consortium.outcomes import CLOCK_SKEW, EARLIEST
from hashdb.consortium.vetting import MAX_IDS, MAX_REASON_CHARS

MAX_ID = 2**63 - 1


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range once converted to UTC") from None


def _not_before_earliest(value: datetime) -> datetime:
    if value < EARLIEST:
        raise ValueError(f"time before {EARLIEST.date().isoformat()}")
    return value


def _not_in_future(value: datetime) -> datetime:
    if value > now() + CLOCK_SKEW:
        raise ValueError("time in the future")
    return value


Moment = Annotated[AwareDatetime, AfterValidator(_in_utc)]
# When something happened: from EARLIEST to now (give or take the clock skew).
EventTime = Annotated[Moment, AfterValidator(_not_before_earliest), AfterValidator(_not_in_future)]
ExpiryTime = Annotated[Moment, AfterValidator(_not_before_earliest)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Reason = Annotated[str, Field(max_length=MAX_REASON_CHARS, pattern=FREE_TEXT_PATTERN)]
Text = Annotated[str, Field(max_length=MAX_NOTE_CHARS, pattern=FREE_TEXT_PATTERN)]


# ---- vetting ----------------------------------------------------------------------


class ReviewQuery(PageArgs):
    ALIAS = "after_id"

    status: Literal["pending", "disputed"] = Field(
        default="pending", description="Which queue: pending contributions or disputes."
    )
    after_id: int | None = deprecated_cursor()


class OwnHashesQuery(PageArgs):
    ALIAS = "after_id"

    status: Literal["pending", "active", "disputed", "retired", "rejected"] | None = Field(
        default=None, description="Only hashes in this status (default: every status)."
    )
    after_id: int | None = deprecated_cursor()


class ReviewPage(PageOut):
    hashes: list[HashOut] = Field(description="By id (oldest first).")


class StatusChange(Request):
    ids: list[Id] = Field(min_length=1, max_length=MAX_IDS, description="Hash ids to move.")
    reason: Reason | None = Field(
        default=None, description="Why; required to reject or retire, optional to approve."
    )


class HashList(Response):
    hashes: list[HashOut] = Field(description="The hashes after the move, in request order.")


class Resolve(Request):
    resolution: Literal["keep", "retire"] = Field(
        description="keep: the dispute is unfounded, back to active; retire: it stops matching."
    )
    reason: Reason = Field(description="Why (required).")


class RetireArgs(QueryArgs):
    reason: Reason | None = Field(
        default=None, description="Why the hash is retired (default: deleted through the API)."
    )


class RetireBody(Request):
    reason: Reason | None = None


class Relabel(Request):
    labels: list[Label] = Field(
        max_length=MAX_LABELS,
        description="The hash's labels from now on (replacing the old ones); the "
        "taxonomy's rules apply as for a contribution.",
    )


class Expiry(Request):
    expires_at: ExpiryTime | None = Field(
        description="From then on the hash never matches and is retired; null clears it."
    )


class TransitionOut(Response):
    id: int = Field(description="Grows with every move of any hash: the history's cursor.")
    from_status: str | None = Field(description="null: the hash was created.")
    to_status: str
    actor_id: int | None = Field(description="Member who moved it; null: the service (expiry).")
    reason: str | None
    at: datetime


class History(PageOut):
    hash_id: int
    transitions: list[TransitionOut] = Field(description="Oldest first.")


# ---- labels and incidents -----------------------------------------------------------


class LabelOut(Response):
    name: str
    description: str
    value_kind: str = Field(description="none, optional or required: whether `name:value` is.")
    created_at: datetime
    deprecated_at: datetime | None


class LabelList(PageOut):
    labels: list[LabelOut] = Field(
        description="In creation order; the cursor is a position (labels are never deleted)."
    )


class LabelIn(Request):
    name: str = Field(
        max_length=64, pattern=LINE_PATTERN, description="a-z first, then a-z, 0-9 or _."
    )
    description: Text
    value_kind: Literal["none", "optional", "required"] = "none"


class LabelEdit(Request):
    description: Text | None = None
    deprecated: bool | None = Field(
        default=None, description="true: contributions may no longer use it; false: again."
    )


class IncidentOut(Response):
    id: int
    name: str
    description: str | None
    started_at: datetime
    ended_at: datetime | None
    open: bool
    opened_by: int
    closed_by: int | None


class IncidentList(PageOut):
    incidents: list[IncidentOut] = Field(description="By id (the order they were opened in).")


class IncidentIn(Request):
    name: str = Field(max_length=200, pattern=LINE_PATTERN)
    description: Text | None = None
    started_at: EventTime | None = Field(default=None, description="Default: now.")


class IncidentClose(Request):
    ended_at: EventTime | None = Field(default=None, description="Default: now.")


# ---- feedback and outcomes ----------------------------------------------------------


class ContentIn(Request):
    signal_type: str = signal_field()
    value: str = value_field()


class ContentOut(Response):
    signal_type: str
    value: str


class FeedbackIn(Request):
    kind: Literal["agree", "disagree", "false_positive"]
    reason: Literal["not_terrorist_content", "wrong_label", "low_quality"] | None = Field(
        default=None, description="Required with `disagree`, refused otherwise."
    )
    content: ContentIn | None = Field(
        default=None,
        description="With `false_positive` (required there): the hash of your content "
        "that matched wrongly.",
    )
    note: Text | None = None


class FeedbackOut(Response):
    id: int
    hash_id: int
    member_id: int
    kind: str
    reason: str | None
    content: ContentOut | None
    note: str | None
    created_at: datetime


class FeedbackGiven(Response):
    feedback: FeedbackOut
    disagreeing_members: int = Field(
        description="Distinct members disagreeing since the hash last became active."
    )
    disputed: bool = Field(description="This feedback moved the hash to `disputed`.")


class FeedbackList(PageOut):
    feedback: list[FeedbackOut] = Field(description="All of it for admins; your own otherwise.")


class OutcomeIn(Request):
    action: Literal["removed", "kept", "escalated_to_authorities"]
    uploaded_at: EventTime = Field(
        description="When the content was uploaded to your platform (not before 2000)."
    )
    matched_at: EventTime = Field(description="When it matched (>= uploaded_at).")
    actioned_at: EventTime = Field(description="When you acted (>= matched_at, not in the future).")


class OutcomeOut(Response):
    id: int
    hash_id: int
    member_id: int
    action: str
    uploaded_at: datetime
    matched_at: datetime
    actioned_at: datetime
    created_at: datetime
    time_to_action_seconds: float = Field(description="actioned_at - uploaded_at.")


# ---- export -----------------------------------------------------------------------


class ExportQuery(PageArgs):
    ALIAS = "since"

    limit: int = Field(
        default=1000, ge=1, le=MAX_EXPORT, description="Most change-log entries read."
    )
    since: int | None = deprecated_cursor()
    format: Literal["jsonl", "json", "csv", "threatexchange"] = Field(
        default="jsonl",
        description="jsonl: one entry per line (cursor, more, epoch and head in the "
        "X-Hashdb-* headers); json: one object with `entries`, `cursor`, `more`, `epoch` and "
        "`head`; csv: the entries with a header; threatexchange: a snapshot of the live PDQ "
        "hashes (cursor/limit/filters ignored).",
    )
    label: list[Label] = Field(
        default_factory=list,
        max_length=MAX_FEED_LABELS,
        description="Repeatable: only hashes carrying one of these labels (a label without "
        "a value selects it with any value); a hash carrying none is a `delete`.",
    )
    signal_type: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(
        default_factory=list,
        max_length=10,
        description="Repeatable: only entries of these signal types (others are skipped; "
        "the cursor still passes over them).",
    )


# ---- reports ----------------------------------------------------------------------


class ReportQuery(QueryArgs):
    from_: Moment = Field(alias="from", description="Start of the period (inclusive).")
    to: Moment = Field(description="End of the period (exclusive).")
    member_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="One member's figures (admins: any member; members: their own only).",
    )
    format: Literal["json", "csv", "markdown"] | None = Field(
        default=None, description="Default: from the Accept header, else json."
    )


class _Aliased(Response):
    model_config = ConfigDict(frozen=True, serialize_by_alias=True, populate_by_name=True)


class Period(_Aliased):
    from_: datetime = Field(alias="from")
    to: datetime


class HeldHashes(Response):
    by_type: dict[str, int]
    by_label: dict[str, int]
    by_status: dict[str, int]
    by_contributor: dict[str, int]


class Changes(Response):
    added: int
    approved: int
    rejected: int
    retired: int
    disputed: int


class Disputes(Response):
    kept: int
    retired: int


class Matches(Response):
    total: int
    by_label: dict[str, int]
    by_member: dict[str, int] = Field(description="Consortium-wide reports only.")


class FeedbackFigures(Response):
    by_kind: dict[str, int]
    disagreement_by_reason: dict[str, int]


class TimeToAction(Response):
    removals: int
    median_seconds: float | None
    p90_seconds: float | None
    within_one_hour: float | None = Field(description="Share of removals within an hour.")


class OutcomeFigures(Response):
    by_action: dict[str, int]
    takedown_rate: float | None
    time_to_action: TimeToAction


class IncidentFigures(Response):
    id: int
    name: str
    started_at: datetime
    ended_at: datetime | None
    hashes: int


class AuditHead(Response):
    seq: int
    hash: str


class AuditCheckpoint(Response):
    seq: int = Field(description="The newest entry's number (0: the log is empty).")
    hash: str = Field(description="Its hash, lowercase hex.")
    signature: str | None = Field(
        description="HMAC-SHA256 of the checkpoint under HASHDB_AUDIT_KEY; null: no key set."
    )
    checkpoint: str = Field(
        description="The line to publish; `hashdb audit verify --head LINE` checks the log "
        "against it."
    )


class Transparency(_Aliased):
    period: Period
    member_id: int | None = Field(description="null: the whole consortium.")
    generated_at: datetime
    hashes: HeldHashes
    changes: Changes
    disputes: Disputes
    matches: Matches
    feedback: FeedbackFigures
    outcomes: OutcomeFigures
    incidents: list[IncidentFigures]
    audit_head: AuditHead | None = Field(
        description="Newest audit entry at generation time (consortium-wide, admins only)."
    )


# ---- audit ------------------------------------------------------------------------


class AuditQuery(PageArgs):
    ALIAS = "after"

    limit: int = Field(default=100, ge=1, le=MAX_READ, description="Most entries in the page.")
    after: int | None = deprecated_cursor()


class AuditEntryOut(Response):
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


class AuditPage(PageOut):
    entries: list[AuditEntryOut] = Field(description="Oldest first (by seq).")
    head: AuditHead = Field(description="The newest entry now.")


class AuditCheck(Response):
    checked: int
    ok: bool
    broken_seq: int | None = Field(description="First entry whose seq, link or hash is wrong.")
    reason: str | None
