"""The matching blueprint: what member platforms call for every upload.

`POST /v1/match` takes a batch of hashes, `POST /v1/match/media` an image or a
video that the server hashes itself. A video (an upload, or a vpdq query carrying
its frames as vPDQ text) is answered with the stored videos it matches, scored
the vPDQ way: the share of each side's seconds that matched, where, and at which
offset (`api.video`, `hashdb.video_match`).

This is the hot path: a request costs one key lookup, the in-memory index search,
and one read to hydrate the matched rows (which is also what makes a retired hash
stop matching at once); a change-log replay happens at most once per
`HASHDB_SYNC_INTERVAL` seconds. Nothing is read per query.

A `dihedral` query matches the 7 rotations and flips of an image as well. From an
image they are hashed exactly; from a PDQ hash alone they are derived from its
bits (`hashdb.signals.pdq_dihedral`, within a few bits of the exact forms; see the
measurements there), so a member that only keeps hashes can ask too. Each match
names the form that matched in `variant`.

Every view answers through the consortium's matching use case
(`ctx.db.matching.answer`), which caps thresholds, prices the request in query
units, refuses it above HASHDB_MAX_REQUEST_COST (413), charges the key (429 with
Retry-After) and counts the matches, as it does for the console and the CLI; this
module parses, hashes uploads in the sandbox, and renders. `POST /v1/match` also
refuses an unaffordable batch from its cost as sent, before parsing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from flask import Blueprint, Response

from api import match_json
from api import schemas as s
from api.auth import heads, requires
from api.context import ApiContext, context
from api.openapi import document
from api.request_id import actor
from api.uploads import form_fields, lookup_probes, probed_image, uploaded_file
from api.video import VpdqQuery, hash_query, video_hashes, video_match, video_query, vpdq_query
from api.web import json_body, reply_json
from hashdb.budget import check_request_cost, check_threshold, probe_cost, video_cost
from hashdb.consortium import Answer, Query, Role, VideoQuery, keypoints
from hashdb.errors import InvalidInput, OutsideFailure
from hashdb.settings import Settings
from hashdb.signals import MD5, PDQ, PHASH, SHA256, SIGNAL_TYPES, Matching, get_signal_type
from hashdb.signals.pdq_dihedral import dihedral_probes
from hashdb.signals.vpdq import VPDQ
from hashdb.video_match import VideoThresholds
from ingest.image import ImageHashes
from ingest.probes import FULL, PLAIN, ProbeKind, ProbeOptions
from ingest.video import is_video

bp = Blueprint("matching", __name__)

TAG = "matching"

# The documented default request rate of a key (HASHDB_RATE_LIMIT_PER_MINUTE / 60).
_DEFAULT_REQUESTS_PER_SECOND = Settings.model_fields["rate_limit_per_minute"].default // 60


def batch_cost(items: Sequence[s.MatchQuery]) -> int:
    """Query units of a `POST /v1/match` batch estimated from the request as sent, so
    that an unaffordable one is refused (413) before its dihedral forms are derived or
    its frames parsed (which alone take seconds for 10,000 queries). It is never below
    what the matching use case then prices and charges for the parsed queries: a vpdq
    query is estimated at one probe per line of its frame list (its frames of quality
    below 50 are not searched, nor charged); an unknown signal type at 1 (`to_queries`
    refuses it)."""
    total = 0
    for item in items:
        signal = SIGNAL_TYPES.get(item.signal_type)
        if signal is None:
            total += 1
        elif signal.matching is Matching.VIDEO:
            total += video_cost(len(item.value.strip().splitlines()), item.threshold)
        elif signal.matching is Matching.LOCAL:
            total += probe_cost(signal, None, 1 if item.mirror is None else 2)
        else:
            total += probe_cost(signal, item.threshold, 8 if item.dihedral else 1)
    return total


def to_queries(settings: Settings, items: Sequence[s.MatchQuery]) -> list[Query | VpdqQuery]:
    if len(items) > settings.max_batch:
        raise InvalidInput(
            f"{len(items)} queries in one request; at most {settings.max_batch}",
            field="queries",
            maximum=settings.max_batch,
        )
    out: list[Query | VpdqQuery] = []
    for i, item in enumerate(items):
        signal = get_signal_type(item.signal_type, "signal_type", i)
        if signal.matching is Matching.VIDEO:
            out.append(vpdq_query(settings, item, i))
            continue
        if item.min_query_share is not None or item.min_reference_share is not None:
            name = "min_query_share" if item.min_query_share is not None else "min_reference_share"
            raise InvalidInput(f"{name} applies to vpdq only", field=name, index=i)
        if signal.matching is Matching.LOCAL:
            out.append(keypoint_query(item, i))
            continue
        if item.mirror is not None:
            raise InvalidInput("mirror applies to keypoints only", field="mirror", index=i)
        value = signal.parse(item.value, "value", i)
        if item.threshold is not None:
            check_threshold(settings, signal, item.threshold, "threshold", i)
        variants: tuple[tuple[str, bytes], ...] = ()
        if item.dihedral:
            if signal is not PDQ:
                raise InvalidInput("dihedral applies to pdq only", field="dihedral", index=i)
            variants = dihedral_probes(value)
        out.append(Query(signal, value, item.threshold, item.quality, variants))
    return out


def keypoint_query(item: s.MatchQuery, i: int) -> Query:
    """A keypoints query: its set, and its mirror image's set when sent."""
    for name, given in (("threshold", item.threshold), ("quality", item.quality)):
        if given is not None:
            raise InvalidInput(f"a keypoints query takes no {name}", field=name, index=i)
    if item.dihedral:
        raise InvalidInput(
            "a keypoints query is matched mirrored by sending the mirrored set in `mirror`",
            field="dihedral",
            index=i,
        )
    kps = keypoints.read(item.value, "value", i)
    mirrored = None if item.mirror is None else keypoints.read(item.mirror, "mirror", i)
    return keypoints.query(kps, mirrored)


def _answer(
    ctx: ApiContext, queries: Sequence[Query] = (), videos: Sequence[VideoQuery] = ()
) -> Answer:
    """Answer one request through the matching use case (capped, priced, charged to
    the caller's key, counted for its member), and count it in the metrics."""
    if not ctx.loader.ready:
        raise OutsideFailure("the indexes are still loading; retry shortly")
    answer = ctx.db.matching.answer(actor(), queries, videos, heads=heads())
    _count(ctx, answer)
    return answer


def _match_mixed(ctx: ApiContext, queries: Sequence[Query | VpdqQuery]) -> list[bytes]:
    """Hash and vpdq queries answered as one request; results (JSON) in query order."""
    hashes = [q for q in queries if isinstance(q, Query)]
    if len(hashes) == len(queries):  # the usual request: nothing to put back in order
        return match_json.results(_answer(ctx, hashes).results)
    plain = [(i, q) for i, q in enumerate(queries) if isinstance(q, Query)]
    sent = [(i, q) for i, q in enumerate(queries) if isinstance(q, VpdqQuery)]
    answer = _answer(ctx, [q for _, q in plain], [q.query for _, q in sent])
    positions = [i for i, _ in plain]
    out = dict(zip(positions, match_json.results(answer.results, positions), strict=True))
    for (i, q), found in zip(sent, answer.videos, strict=True):
        out[i] = (
            s.QueryResult(
                index=i,
                signal_type=VPDQ.name,
                value=VPDQ.format(q.digest),
                low_quality=not q.query.frames,
                matches=[],
                videos=[video_match(m) for m in found],
            )
            .model_dump_json()
            .encode()
        )
    return [out[i] for i in range(len(queries))]


def _count(ctx: ApiContext, answer: Answer) -> None:
    """The request's lookups in the metrics: one update, by signal type, not one per
    query."""
    queried: Counter[str] = Counter()
    matched: Counter[str] = Counter()
    for r in answer.results:
        name = r.query.signal_type.name
        queried[name] += 1
        matched[name] += len(r.matches)
    if answer.videos:
        queried[VPDQ.name] += len(answer.videos)
        matched[VPDQ.name] += sum(len(found) for found in answer.videos)
    ctx.metrics.note_lookup(queried, matched, ctx.db.matching)


def media_hashes(h: ImageHashes) -> s.MediaHashes:
    return s.MediaHashes(
        pdq=PDQ.format(h.pdq),
        pdq_quality=h.pdq_quality,
        phash=PHASH.format(h.phash),
        md5=MD5.format(h.md5),
        sha256=SHA256.format(h.sha256),
        width=h.width,
        height=h.height,
    )


@bp.post("/v1/match")
@document(
    "Match a batch of hashes",
    tag=TAG,
    description="Each query is matched against every active hash of its signal type; "
    "results come back in query order, nearest match first. A request costs index work "
    "in query units: one plain query at its signal type's default threshold is 1 unit, "
    "each dihedral form and each vpdq frame a probe more, and a probe at a higher "
    "threshold more units (pdq: 1 up to 31, rising steeply above; see hashdb/budget.py). "
    "A request above the per-request budget (HASHDB_MAX_REQUEST_COST, default "
    f"{Settings.model_fields['max_request_cost'].default:,} units, so 10,000 plain queries "
    "pass) is refused with 413 `budget_exceeded` naming its cost and the maximum, before "
    "any index work. Each key has two budgets, in each worker process, beyond which it "
    "gets 429 with Retry-After: requests (HASHDB_RATE_LIMIT_PER_MINUTE, default "
    f"{_DEFAULT_REQUESTS_PER_SECOND:,} a second, burst HASHDB_RATE_LIMIT_BURST, default "
    f"{Settings.model_fields['rate_limit_burst'].default:,}), so that a platform can look up "
    "each upload as it comes, and index work (HASHDB_KEY_COST_PER_SECOND, default "
    f"{Settings.model_fields['key_cost_per_second'].default:,.0f} units a second, burst "
    "HASHDB_KEY_COST_BURST, default the per-request budget), which bounds what its "
    "lookups cost the index whether they come one by one or in batches.",
    body=s.MatchRequest,
    responses={200: s.MatchResponse},
    uses_index=True,
    errors={
        413: "Request body larger than the configured limit, or (`budget_exceeded`) the "
        "request costs more than HASHDB_MAX_REQUEST_COST query units; `details` give its "
        "`cost` and the `maximum`.",
    },
)
@requires(Role.MEMBER)
def match() -> Response:
    ctx = context()
    request = json_body(s.MatchRequest)
    check_request_cost(ctx.settings, batch_cost(request.queries))
    queries = to_queries(ctx.settings, request.queries)
    body = match_json.document([("results", match_json.array(_match_mixed(ctx, queries)))])
    return reply_json(body)


@bp.post("/v1/match/media")
@document(
    "Match an image or a video",
    tag=TAG,
    description="Upload an image or a video (multipart field `file`). An image: the server "
    "computes its PDQ, pHash, MD5 and SHA-256 and matches each (`kind: image`). A video: "
    "the server hashes every frame (within HASHDB_VIDEO_MAX_SECONDS and "
    "HASHDB_VIDEO_MAX_FRAMES) and answers the stored videos it matches, with both shares, "
    "the matched time ranges and the offset, plus exact matches of the file's digests "
    "(`kind: video`).",
    body=s.MediaMatchForm,
    body_type="multipart",
    responses={200: (s.MediaMatchResponse, s.VideoMatchResponse)},
    uses_index=True,
)
@requires(Role.MEMBER)
def match_media() -> Response:
    ctx = context()
    form = form_fields(s.MediaMatchForm)
    check_threshold(ctx.settings, PDQ, form.pdq_threshold, "pdq_threshold", None)
    check_threshold(ctx.settings, PHASH, form.phash_threshold, "phash_threshold", None)
    if not ctx.loader.ready:
        raise OutsideFailure("the indexes are still loading; retry shortly")
    data = uploaded_file()
    if is_video(data):
        return _match_uploaded_video(ctx, data, form)
    probed = probed_image(ctx, data, probe_options(form))
    queries = probed.queries(pdq_threshold=form.pdq_threshold, phash_threshold=form.phash_threshold)
    results = match_json.results(_answer(ctx, queries).results)
    body = match_json.document(
        [
            ("kind", b'"image"'),
            ("hashes", media_hashes(probed.hashes).model_dump_json().encode()),
            ("results", match_json.array(results)),
        ]
    )
    return reply_json(body)


def probe_options(form: s.MediaMatchForm) -> ProbeOptions:
    """The probe set a request asks for (see MediaMatchForm.probes)."""
    if form.probes is None:
        return lookup_probes(form.dihedral)
    names = [n.strip() for n in form.probes.split(",") if n.strip()]
    if names == ["all"]:
        return FULL
    if names in (["none"], []):
        return PLAIN
    try:
        return ProbeOptions.of(names)
    except ValueError:
        known = ", ".join(k.value for k in ProbeKind)
        raise InvalidInput(
            f"unknown probe kind in {form.probes!r}; expected {known}, all or none",
            field="probes",
        ) from None


def _match_uploaded_video(ctx: ApiContext, data: bytes, form: s.MediaMatchForm) -> Response:
    v = hash_query(ctx, data)
    thresholds = VideoThresholds(
        min_query_share=form.min_query_share, min_reference_share=form.min_reference_share
    )
    digests = [Query(MD5, v.md5), Query(SHA256, v.sha256)]
    answer = _answer(ctx, digests, [video_query(v, form.pdq_threshold, thresholds)])
    (found,) = answer.videos
    videos = [video_match(m).model_dump_json().encode() for m in found]
    body = match_json.document(
        [
            ("kind", b'"video"'),
            ("hashes", video_hashes(v).model_dump_json().encode()),
            ("videos", match_json.array(videos)),
            ("results", match_json.array(match_json.results(answer.results))),
        ]
    )
    return reply_json(body)
