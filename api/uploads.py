"""Uploads: reading the multipart form and hashing the file.

The file arrives as the multipart field `file`, next to plain text fields parsed
by a `schemas.Form` model. werkzeug enforces the body limit
(`HASHDB_MAX_UPLOAD_BYTES`, 413 beyond it) while parsing, before anything is
decoded. A video container (`ingest.video.is_video`, magic bytes only) goes to
`api.video`; anything else is an image for `ingest.image.hash_image`, which
refuses unsupported formats (415), corrupt files and decompression bombs (422)
with a message saying which.

Every upload is decoded and hashed in the media sandbox (`ingest.sandbox`), never
in the API worker: `in_sandbox` runs a job there under the image or video limits
(HASHDB_MEDIA_*), tagged with the request id for the log. A file that crashes the
decoder or exceeds a limit is a 422 for its own request only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar, get_origin

from flask import request
from pydantic import ValidationError

from api import request_id
from api.context import ApiContext
from api.schemas import Form, invalid_input
from hashdb.consortium import NewVariant
from hashdb.errors import InvalidInput, UnsupportedMedia
from hashdb.settings import Settings
from ingest import sandbox
from ingest.image import ImageHashes
from ingest.probes import ProbedImage, ProbeKind, ProbeOptions

FILE_FIELD = "file"

F = TypeVar("F", bound=Form)
P = ParamSpec("P")
T = TypeVar("T")


def _require_multipart() -> None:
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMedia(
            f"upload the image as multipart/form-data in the field `{FILE_FIELD}`",
            content_type=request.mimetype or None,
        )


def form_fields(model: type[F]) -> F:
    """The text fields of the upload form, validated by `model`."""
    _require_multipart()
    data: dict[str, object] = {}
    for name, info in model.model_fields.items():
        values = request.form.getlist(name)
        if values:
            data[name] = values if get_origin(info.annotation) is list else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def uploaded_file() -> bytes:
    """The bytes of the uploaded file (InvalidInput if there is none, or it is empty)."""
    _require_multipart()
    upload = request.files.get(FILE_FIELD)
    if upload is None:
        raise InvalidInput(
            f"no file: send the image or video in the form field `{FILE_FIELD}`",
            field=FILE_FIELD,
        )
    data: bytes = upload.read()
    if not data:
        raise InvalidInput("the uploaded file is empty", field=FILE_FIELD)
    return data


def in_sandbox(
    ctx: ApiContext,
    limits: sandbox.JobLimits,
    job: Callable[Concatenate[bytes, P], T],
    data: bytes,
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`job(data, ...)` in the media sandbox, on behalf of the current request."""
    tag = f"request {request_id.current()}"
    return ctx.media.run(limits, tag, job, data, *args, **kwargs)


def lookup_probes(dihedral: bool = False) -> ProbeOptions:
    """The probes a lookup of an image builds unless it names its own: its content
    region (a letterboxed or captioned copy matches the stored picture) and its
    keypoint set (a crop, a logo, a tilt, a screenshot) always, and with `dihedral`
    the 7 other rotations and flips of the image and of its content region, and the
    mirrored keypoint set. The API, the console and the CLI all probe with these."""
    kinds = [ProbeKind.CONTENT, ProbeKind.KEYPOINTS]
    if dihedral:
        kinds += [ProbeKind.DIHEDRAL, ProbeKind.CONTENT_DIHEDRAL]
    return ProbeOptions(frozenset(kinds))


def image_limits(settings: Settings) -> sandbox.JobLimits:
    return sandbox.JobLimits(
        memory_mib=settings.media_memory_mib,
        cpu_seconds=settings.media_image_cpu_seconds,
        wall_seconds=settings.media_image_wall_seconds,
    )


def probed_image(ctx: ApiContext, data: bytes, options: ProbeOptions) -> ProbedImage:
    """Hash an uploaded image and its query probes (`ingest.probes.probe_queries`)."""
    s = ctx.settings
    return in_sandbox(
        ctx,
        image_limits(s),
        sandbox.probed_image,
        data,
        options,
        max_pixels=s.max_image_pixels,
        max_decoded_bytes=s.max_decoded_bytes,
    )


def image_with_variants(ctx: ApiContext, data: bytes) -> tuple[ImageHashes, tuple[NewVariant, ...]]:
    """Hash an uploaded image to store, with its stored variants
    (`ingest.records.hash_with_variants`)."""
    s = ctx.settings
    return in_sandbox(
        ctx,
        image_limits(s),
        sandbox.image_with_variants,
        data,
        max_pixels=s.max_image_pixels,
        max_decoded_bytes=s.max_decoded_bytes,
    )
