"""Uploads: reading the multipart form and hashing the file.

The file arrives as the multipart field `file`, next to plain text fields parsed
by a `schemas.Form` model. werkzeug enforces the body limit
(`HASHDB_MAX_UPLOAD_BYTES`, 413 beyond it) while parsing, before anything is
decoded. A video container (`ingest.video.is_video`, magic bytes only) goes to
`api.video`; anything else is an image for `ingest.image.hash_image`, which
refuses unsupported formats (415), corrupt files and decompression bombs (422)
with a message saying which.
"""

from __future__ import annotations

from typing import TypeVar, get_origin

from flask import request
from pydantic import ValidationError

from api.schemas import Form, invalid_input
from hashdb.errors import InvalidInput, UnsupportedMedia
from hashdb.settings import Settings
from ingest.image import ImageHashes, hash_image

FILE_FIELD = "file"

F = TypeVar("F", bound=Form)


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


def image_hashes(settings: Settings, data: bytes, *, dihedral: bool = False) -> ImageHashes:
    """Hash an uploaded image (with its dihedral forms if asked)."""
    return hash_image(data, dihedral=dihedral, max_pixels=settings.max_image_pixels)


def uploaded_image(settings: Settings, *, dihedral: bool = False) -> ImageHashes:
    """Hash the uploaded image (with its dihedral forms if asked)."""
    return image_hashes(settings, uploaded_file(), dihedral=dihedral)
