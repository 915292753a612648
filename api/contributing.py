"""The contributing blueprint: members add hashes, or images for the server to hash.

Contributions go through the consortium layer (`Consortium.contributions`): the
quality floor, labels checked against the taxonomy, a member's hashes start `pending` until an
admin approves them, an admin's, a trusted flagger's or an open crisis
incident's start `active`, and the write is audited with the key and request id.
Adding the same hash twice from one member returns the same
id with `created: false`, so a pipeline can retry a batch safely. A PDQ hash below
quality 50 is refused (400, naming the item); from an uploaded image of low
quality only the file digests are added, and the answer says so. An uploaded
image also adds its keypoint set (a `keypoints` hash) and stores its variants
(hashdb/variants.py: content region; crop windows when it has too few keypoints)
with the image's PDQ row; variants are not hashes of their own and have no id. A
keypoint set sent as a hash is base64 text (hashdb/signals/keypoints.py).

`GET /v1/hashes/<id>` follows the layer's visibility rules (`Consortium.hashes`):
an admin sees every hash, a member its own in any status and other members' only
while the export feed shows them (active or disputed); anything else is 404, as
for an id that does not exist. Hash records show `reference` and
`contributor_id` only to admins and to the member who contributed the hash: a
reference may name a case or a source that other members have no business seeing.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import Blueprint, Response

from api import schemas as s
from api import schemas_workflow as w
from api.auth import requires
from api.context import context
from api.idempotency import idempotent
from api.matching import media_hashes
from api.openapi import document
from api.request_id import actor
from api.uploads import form_fields, image_with_variants, uploaded_file
from api.video import hash_reference, video_hashes
from api.web import json_body, query_args, reply, reply_page, reply_tagged
from hashdb.consortium import Added, HashRecord, NewHash, NewVideo, Role, Status, keypoints
from hashdb.consortium.contributions import variants
from hashdb.errors import InvalidInput
from hashdb.settings import Settings
from hashdb.signals import SIGNAL_TYPES, Matching, get_signal_type
from hashdb.signals.vpdq import VPDQ
from ingest.records import contributions, usable_perceptual, video_contributions
from ingest.video import is_video

bp = Blueprint("contributing", __name__)

TAG = "contributing"


def to_new_hashes(settings: Settings, items: Sequence[s.HashIn]) -> list[NewHash]:
    if len(items) > settings.max_batch:
        raise InvalidInput(
            f"{len(items)} hashes in one request; at most {settings.max_batch}",
            field="hashes",
            maximum=settings.max_batch,
        )
    out = []
    for i, item in enumerate(items):
        signal = get_signal_type(item.signal_type, "signal_type", i)
        if signal.matching is Matching.VIDEO:
            raise InvalidInput(
                "a video is contributed as a file: upload it to /v1/media",
                field="signal_type",
                index=i,
            )
        stored = variants(
            signal.name, [(v.kind, v.value, v.quality) for v in item.variants or ()], i
        )
        if signal.matching is Matching.LOCAL:
            if item.quality is not None:
                raise InvalidInput(
                    "a keypoint set's quality is its keypoint count", field="quality", index=i
                )
            kps = keypoints.read(item.value, "value", i)
            out.append(keypoints.new_hash(kps, tuple(item.labels), item.reference))
            continue
        value = signal.parse(item.value, "value", i)
        if item.quality is not None and signal.min_quality is None:
            raise InvalidInput(
                f"{signal.name} hashes have no quality score", field="quality", index=i
            )
        out.append(
            NewHash(
                signal.name,
                value,
                tuple(item.labels),
                item.quality,
                item.reference,
                variants=stored,
            )
        )
    return out


def hash_out(record: HashRecord, *, full: bool) -> s.HashOut:
    return s.HashOut(
        id=record.id,
        signal_type=record.signal_type,
        value=SIGNAL_TYPES[record.signal_type].format(record.value),
        quality=record.quality,
        labels=list(record.labels),
        status=record.status.value,
        created_at=record.created_at,
        updated_at=record.updated_at,
        expires_at=record.expires_at,
        reference=record.reference if full else None,
        contributor_id=record.contributor_id if full else None,
    )


@bp.post("/v1/hashes")
@document(
    "Contribute hashes",
    tag=TAG,
    description="Add a batch of hashes with labels and an optional reference. Returns one "
    "id per item, in order; an item this member already added keeps its id.",
    body=s.ContributeRequest,
    responses={201: s.ContributeResponse},
)
@requires(Role.MEMBER)
@idempotent
def contribute() -> Response:
    ctx = context()
    request = json_body(s.ContributeRequest)
    items = to_new_hashes(ctx.settings, request.hashes)
    added = ctx.db.contributions.add(actor(), items)
    return reply(s.ContributeResponse(hashes=_added(items, added)), 201)


def _added(items: Sequence[NewHash | NewVideo], added: Sequence[Added]) -> list[s.AddedOut]:
    return [
        s.AddedOut(
            index=i,
            signal_type=VPDQ.name if isinstance(item, NewVideo) else item.signal_type,
            id=a.id,
            created=a.created,
        )
        for i, (item, a) in enumerate(zip(items, added, strict=True))
    ]


@bp.post("/v1/media")
@document(
    "Contribute an image or a video",
    tag=TAG,
    description="Upload an image or a video (multipart field `file`, repeatable `labels`, "
    "optional `reference`). An image is hashed and PDQ, pHash, MD5 and SHA-256 are added "
    "(`kind: image`). A video is hashed at 1 frame per second and stored as one vpdq hash "
    "(its frames) plus its MD5 and SHA-256 (`kind: video`); one too long to hash within "
    "HASHDB_VIDEO_MAX_SECONDS is refused (422): import it instead. Both go through "
    "vetting as any contribution does.",
    body=s.MediaContributeForm,
    body_type="multipart",
    responses={201: (s.MediaContributeResponse, s.VideoContributeResponse)},
)
@requires(Role.MEMBER)
@idempotent
def contribute_media() -> Response:
    ctx = context()
    form = form_fields(s.MediaContributeForm)
    data = uploaded_file()
    if is_video(data):
        v = hash_reference(ctx, data)
        video, digests = video_contributions(v, tuple(form.labels), form.reference)
        if video.frames:
            items: list[NewHash | NewVideo] = [video, *digests]
            added = ctx.db.contributions.add_video(actor(), video, digests)
        else:  # nothing matchable in it: the digests still identify the file
            items, added = list(digests), ctx.db.contributions.add(actor(), digests)
        body: s.Response = s.VideoContributeResponse(
            hashes=video_hashes(v), added=_added(items, added), low_quality=not video.frames
        )
        return reply(body, 201)
    h, variants = image_with_variants(ctx, data)
    hashes = contributions(h, tuple(form.labels), form.reference, variants)
    added = ctx.db.contributions.add(actor(), hashes)
    body = s.MediaContributeResponse(
        hashes=media_hashes(h), added=_added(hashes, added), low_quality=not usable_perceptual(h)
    )
    return reply(body, 201)


@bp.get("/v1/hashes")
@document(
    "Your contributions",
    tag=TAG,
    description="The hashes you contributed, in any status (or one `status`), by id "
    "(oldest first), a page at a time: where each stands in vetting.",
    query=w.OwnHashesQuery,
    responses={200: w.ReviewPage},
)
@requires(Role.MEMBER)
def own_hashes() -> Response:
    args = query_args(w.OwnHashesQuery)
    status = None if args.status is None else Status(args.status)
    found = context().db.hashes.mine(actor(), status=status, after=args.position, limit=args.limit)
    body = w.ReviewPage(
        hashes=[hash_out(r, full=True) for r in found.items],
        cursor=found.cursor,
        more=found.more,
    )
    return reply_page(body, args)


@bp.get("/v1/hashes/<id:hash_id>")
@document(
    "Get a hash",
    tag=TAG,
    description="Your own hashes in any status; other members' while they are exported "
    "(active or disputed). Any other id is 404, as an unknown one is.\n\n"
    "The answer carries a strong `ETag` (the SHA-256 of its JSON body): it changes "
    "whenever what the answer shows changes (status, labels, expiry, value), so a "
    "member re-checking a hash sends it back in `If-None-Match` and gets `304 Not "
    "Modified`, with no body, while the hash is as it was; any other tag gets the "
    "200 with the current one.",
    responses={200: s.HashOut},
)
@requires(Role.MEMBER)
def get_hash(hash_id: int) -> Response:
    who = actor()
    record = context().db.hashes.get(who, hash_id)
    return reply_tagged(hash_out(record, full=who.is_admin or who.id == record.contributor_id))
