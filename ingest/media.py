"""One entry point for any media file: route to image or video hashing.

Used by bulk import workers, which must never raise across a process boundary
(exceptions with extra fields do not always survive pickling): `hash_media_safely`
returns either the hashes or a `Failure` carrying the error's code and message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hashdb.consortium import NewVariant
from hashdb.errors import HashdbError
from ingest.image import ImageHashes
from ingest.records import hash_with_variants
from ingest.video import (
    REFERENCE_KEYFRAMES,
    Keyframing,
    VideoHashes,
    VideoLimits,
    hash_video_file,
    is_video,
)


@dataclass(frozen=True)
class HashedImage:
    """An image's hashes and the stored variants of its PDQ row (hashdb/variants.py),
    computed in the worker: they cost more than the hashes themselves."""

    hashes: ImageHashes
    variants: tuple[NewVariant, ...]


MediaHashes = HashedImage | VideoHashes


@dataclass(frozen=True)
class MediaOptions:
    frames_per_second: float = 1.0
    max_image_pixels: int = 100_000_000
    video_limits: VideoLimits = field(default_factory=VideoLimits)
    keyframes: Keyframing | None = REFERENCE_KEYFRAMES  # an import stores what it hashes


@dataclass(frozen=True)
class Failure:
    code: str
    message: str


def hash_media_file(path: Path, options: MediaOptions) -> MediaHashes:
    if is_video(path):
        return hash_video_file(
            path,
            frames_per_second=options.frames_per_second,
            limits=options.video_limits,
            keyframes=options.keyframes,
        )
    return HashedImage(*hash_with_variants(path.read_bytes(), max_pixels=options.max_image_pixels))


def hash_media_safely(path: str, options: MediaOptions) -> MediaHashes | Failure:
    """`hash_media_file` for a worker process: errors come back as values."""
    try:
        return hash_media_file(Path(path), options)
    except HashdbError as exc:
        return Failure(exc.code, exc.message)
    except OSError as exc:
        return Failure("io_error", f"cannot read: {exc.strerror or exc}")
