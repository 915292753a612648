"""Every hash of one image file, in one call: what the CLI and the HTTP API use.

An image is read once and yields all its signals together (PDQ with its quality,
pHash, MD5, SHA-256), because a member's upload is matched on all of them and the
decode is the expensive part. Digests are of the file bytes exactly as received;
perceptual hashes are of the upright picture (see ingest/decode.py for formats,
limits, EXIF orientation and the reduced decode, ingest/pixels.py for pixel modes).

Low quality is reported, never an error: `pdq_quality` below 50 means the picture
is too featureless for its PDQ hash to mean anything (hashdb.signals.PDQ), and
deciding what to do about it is the caller's business.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import imagehash

from hashdb.keypoints.codec import KeypointSet
from ingest.decode import Decoded, decode
from ingest.pdq import pdq

DEFAULT_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class ImageHashes:
    """All signals of one image file. Hashes are raw bytes (hex only at the edges)."""

    pdq: bytes  # 32 bytes, in the bit order of the hex the C++ reference prints
    pdq_quality: int  # 0-100; below 50 the PDQ hash is not trustworthy
    phash: bytes  # 8 bytes, in the order of str(imagehash.phash(...))
    md5: bytes  # 16 bytes, of the file bytes
    sha256: bytes  # 32 bytes, of the file bytes
    width: int  # of the image as stored in the file (before EXIF orientation)
    height: int
    # With dihedral=True, the PDQ hashes of the 7 other rotations and flips of the
    # upright picture, named as hashdb.signals.pdq_dihedral.DIHEDRAL_FORMS
    # ("rotate90", "rotate180", "rotate270", "flip_x", "flip_y", "transpose",
    # "transverse"); () otherwise.
    dihedral: tuple[tuple[str, bytes], ...]
    # The picture's keypoint set (hashdb/signals/keypoints.py), when the caller asked
    # for it: an image to store (ingest.records.hash_with_variants); None otherwise.
    keypoints: KeypointSet | None = None


def hash_image(
    data: bytes, *, dihedral: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageHashes:
    """Hash the image file `data`.

    Raises UnsupportedMedia if it is not an image in a supported format, MediaError
    if it is corrupt, truncated or declares more than `max_pixels` pixels.
    """
    return hash_decoded(data, decode(data, max_pixels=max_pixels), dihedral=dihedral)


def hash_decoded(data: bytes, decoded: Decoded, *, dihedral: bool = False) -> ImageHashes:
    """The hashes of `data`, already decoded (for callers that also use the pixels)."""
    perceptual = pdq(decoded.image, dihedral=dihedral, full_size=decoded.full_size)
    return ImageHashes(
        pdq=perceptual.hash,
        pdq_quality=perceptual.quality,
        phash=bytes.fromhex(str(imagehash.phash(decoded.image))),
        md5=hashlib.md5(data, usedforsecurity=False).digest(),
        sha256=hashlib.sha256(data).digest(),
        width=decoded.width,
        height=decoded.height,
        dihedral=perceptual.dihedral,
    )


def hash_image_file(
    path: Path, *, dihedral: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageHashes:
    """Hash the image file at `path` (OSError if it cannot be read); see hash_image."""
    return hash_image(path.read_bytes(), dihedral=dihedral, max_pixels=max_pixels)
