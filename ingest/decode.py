"""File bytes to a small, upright, 8-bit picture, or a typed error; never a crash.

Uploads are untrusted, so decoding is the trust boundary of hashing:

- **Formats**: only JPEG (including MPO, the multi-picture JPEG phones write, which
  Pillow opens through its JPEG plugin), PNG, GIF, WebP, BMP and TIFF are opened.
  Anything else Pillow could read (EPS, PSD, ICO, ...) is `UnsupportedMedia` (415):
  less parser surface, and nobody uploads them.
  Bytes that start with a supported format's signature but cannot be parsed are
  `MediaError` (422), as are truncated files and every other decoder failure.
- **Size**: the width x height a file declares is checked against `max_pixels`
  before any pixel is decoded, so a 30000 x 30000 PNG or GIF of a few hundred bytes
  costs nothing. Pillow also refuses files above 2 x `Image.MAX_IMAGE_PIXELS`
  (about 179 M pixels) whatever `max_pixels` says.
- **Memory**: the pixels' size once decoded (width x height, after the JPEG draft
  reduction, x the bytes Pillow stores per pixel of the decoded mode: 1 for "L" and
  "P", 2 for 16-bit grey, 4 for RGB, RGBA, CMYK and 32-bit modes) is checked
  against `max_decoded_bytes` from the header alone, so a small, highly compressed
  16-bit RGBA PNG of 10000 x 10000 is refused before it costs 400 MB and seconds
  of CPU. `admit` makes the same header checks on their own, for callers whose
  hashing function decodes internally (the media sandbox, `ingest.sandbox`).
- **Warnings**: Pillow reports some conditions by `warnings.warn` (a declared size
  above `Image.MAX_IMAGE_PIXELS`, corrupt EXIF, a malformed MPO or APNG). None may
  escape to the caller: they are recorded and logged at DEBUG. Python 3.11's
  `warnings.catch_warnings` swaps process-wide state, so decodes are serialised by
  a lock (and a warning another thread raises meanwhile is logged the same way);
  run hashing in several processes (gunicorn workers, the bulk importer's process
  pool) for parallelism; pdqhash and imagehash hold the GIL anyway.
- **Reduced decode**: PDQ squeezes every picture to 64 x 64 and pHash to 32 x 32, so
  the full resolution of a photo is mostly wasted work. A picture is decoded at
  1/2, 1/4 or 1/8 of each side (`reduction`): a JPEG by libjpeg's DCT scaling
  (Pillow's draft mode, which skips most of the inverse DCT), any other format by
  averaging blocks of pixels after decoding. `ingest.pdq.pdq` then hashes the small
  picture as its full-resolution self (`Decoded.full_size`): it maps PDQ's own
  filter, whose box window is ceil(side / 128) full-resolution pixels, onto the
  decoded pixels, rather than letting PDQ filter the small picture at its own
  size (which moved hashes well beyond the bound below). The rule: the largest
  factor whose decoded pixel spans at most half of that window along the short
  side (`WINDOW_SHARE` = 2 decoded pixels a window, at least), so 1/2 from a short
  side of 385 pixels, 1/4 from 897 and 1/8 from 1921. Why half a window: it is
  the coarsest decode at which every PDQ hash of the reference images, the test
  data's photos and 1-2 MP JPEGs cut from them stays within 4 bits of the PDQ of
  the full-resolution pixels, with its quality within a few points; a decoded
  pixel as wide as the window breaks that bound (tests/test_ingest_image.py
  checks both; figures in docs/measurements.md, "Decode limits"). pHash, the
  content region and the crop probes (ingest/probes.py) are computed from the
  same decoded picture; `Decoded.scale` says how reduced it is.
- **Orientation**: the EXIF orientation tag is applied (as
  `ImageOps.exif_transpose` would), so we hash the picture people see. A phone
  photo stored sideways with a "rotate 90" tag then matches the copy another
  platform re-encoded upright, which is the usual way such pictures spread.
  The cost: hashes from tools that ignore the tag (the C++ reference,
  python-threatexchange) differ for such files by a rotation, which a dihedral
  query recovers. Width and height are reported as stored in the file. EXIF that
  cannot be parsed counts as no orientation.
- **Frames**: animated GIF, WebP and PNG, multi-page TIFF and MPO are hashed by
  their first frame.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import warnings
from dataclasses import dataclass

from PIL import ExifTags, Image, UnidentifiedImageError

from hashdb.errors import MediaError, UnsupportedMedia
from ingest.pixels import to_8bit

log = logging.getLogger(__name__)

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
# A decoded pixel spans at most 1 / WINDOW_SHARE of PDQ's box window (ceil(side /
# PDQ_WINDOW_DIVISOR) full-resolution pixels, along the short side).
WINDOW_SHARE = 2
PDQ_WINDOW_DIVISOR = 128
FACTORS = (8, 4, 2)  # libjpeg's DCT scaling factors, largest first
# Admits a 64 MP RGB picture (Pillow stores RGB in 4 bytes a pixel), refuses a
# 10000 x 10000 RGBA one (400 MB).
DEFAULT_MAX_DECODED_BYTES = 256 * 1024 * 1024

# Bytes a pixel takes in Pillow's memory, for modes that take other than 4
# (libImaging/Storage.c: every 2-, 3- and 4-band mode and "I", "F" take 4).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}

# What Pillow raises for malformed input: the exceptions `Image.open` itself treats as
# "not this format" (SyntaxError, IndexError, TypeError, struct.error), plus OSError
# (truncated or broken data), ValueError and EOFError from decoders.
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)

# Signatures of the supported formats, to tell a corrupt image (422) from a file
# that is not an image at all (415). BMP's two-byte "BM" is too weak to rely on.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# EXIF orientation (1-8) -> the transpose that shows the picture upright (EXIF 2.3,
# tag 0x0112; the same table as Pillow's ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_SIDEWAYS = (5, 6, 7, 8)  # orientations whose upright picture swaps width and height

# Serialises the process-wide warning filters swapped by catch_warnings (see above).
_WARNINGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Decoded:
    """A picture ready for hashing, and the facts about the file it came from."""

    image: Image.Image  # mode "RGB" or "L", upright, reduced (see module docstring)
    width: int  # as stored in the file, before reduction and orientation
    height: int
    format: str  # Pillow's name: "JPEG", "PNG", ...
    scale: int  # full-resolution pixels per decoded pixel along each side (1, 2, 4, 8)
    full_size: tuple[int, int]  # (width, height) of the upright full-resolution picture


def reduction(width: int, height: int) -> int:
    """The factor (1, 2, 4 or 8) a `width` x `height` picture is decoded at: the
    largest whose decoded pixel spans at most 1 / WINDOW_SHARE of PDQ's window."""
    window = -(-min(width, height) // PDQ_WINDOW_DIVISOR)
    return next((f for f in FACTORS if window >= WINDOW_SHARE * f), 1)


def decode(
    data: bytes,
    *,
    max_pixels: int,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    finer: int = 1,
) -> Decoded:
    """Decode `data`; UnsupportedMedia if it is no supported image, MediaError if broken
    or over a budget (`max_pixels` declared, `max_decoded_bytes` once decoded).
    `finer` (1, 2, 4): that many times the resolution `reduction` chooses, where it
    reduces at all (for detail PDQ does not need: a small region's keypoints)."""
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _decode(data, max_pixels, max_decoded_bytes, finer)
        finally:
            for warning in caught:
                log.debug("Pillow warning while decoding: %s", warning.message)


def admit(data: bytes, *, max_pixels: int, max_decoded_bytes: int) -> None:
    """Check `data`'s header against the budgets `decode` applies, decoding no pixel:
    the same errors as `decode` for a file it would refuse before decoding."""
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _opened(data, max_pixels, max_decoded_bytes, 1)[0].close()
        finally:
            for warning in caught:
                log.debug("Pillow warning while reading a header: %s", warning.message)


def _opened(
    data: bytes, max_pixels: int, max_decoded_bytes: int, finer: int
) -> tuple[Image.Image, int, int]:
    """The file opened and drafted (`finer` times less reduced than `reduction`
    chooses), within budget, no pixel decoded yet; and its width and height as stored
    in the file."""
    opened = _open(data)
    width, height = opened.size
    if width * height > max_pixels:
        raise MediaError(
            f"image is {width} x {height} = {width * height} pixels, "
            f"more than the limit of {max_pixels}",
            width=width,
            height=height,
            max_pixels=max_pixels,
        )
    factor = max(1, reduction(width, height) // finer)
    try:
        if factor > 1:  # JPEG only; a no-op for other formats
            opened.draft(None, (max(1, width // factor), max(1, height // factor)))
    except _CORRUPT as exc:
        raise MediaError(f"image header cannot be read: {exc}") from exc
    decoded_bytes = _decoded_bytes(opened)
    if decoded_bytes > max_decoded_bytes:
        w, h = opened.size
        raise MediaError(
            f"image would take {decoded_bytes} bytes of memory once decoded "
            f"({w} x {h}, mode {opened.mode}), more than the limit of {max_decoded_bytes} "
            "(setting HASHDB_MAX_DECODED_BYTES)",
            width=width,
            height=height,
            decoded_bytes=decoded_bytes,
            max_decoded_bytes=max_decoded_bytes,
        )
    return opened, width, height


def _decoded_bytes(opened: Image.Image) -> int:
    """What the pixels of `opened` (after draft) take in Pillow's memory."""
    width, height = opened.size
    return width * height * _STORED_BYTES.get(opened.mode, 4)


def _decode(data: bytes, max_pixels: int, max_decoded_bytes: int, finer: int) -> Decoded:
    opened, width, height = _opened(data, max_pixels, max_decoded_bytes, finer)
    file_format = opened.format or "unknown"
    drafted = max(1, round(width / max(1, opened.width)))  # libjpeg's scale, or 1
    rest = max(1, reduction(width, height) // finer // drafted)
    try:
        opened.load()
        pixels = to_8bit(opened)
        if rest >= 2:
            pixels = pixels.reduce(rest)
    except _CORRUPT as exc:
        raise MediaError(
            f"{file_format} image cannot be decoded: {exc}", format=file_format
        ) from exc
    orientation = _orientation(opened)  # after load: a PNG may keep EXIF after its pixels
    full_size = (width, height)
    if orientation in _UPRIGHT:
        pixels = pixels.transpose(_UPRIGHT[orientation])
        if orientation in _SIDEWAYS:
            full_size = (height, width)
    return Decoded(
        image=pixels,
        width=width,
        height=height,
        format=file_format,
        scale=drafted * rest,
        full_size=full_size,
    )


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:
        claimed = _signature(data)
        if claimed is None:
            raise UnsupportedMedia(
                "not an image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF)"
            ) from exc
        raise MediaError(f"{claimed} image has a corrupt header", format=claimed) from exc
    except Image.DecompressionBombError as exc:
        raise MediaError(f"image is too large to decode safely: {exc}") from exc
    except _CORRUPT as exc:
        raise MediaError(f"image header cannot be read: {exc}") from exc


def _signature(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for prefix, name in _SIGNATURES:
        if data.startswith(prefix):
            return name
    return None


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except _CORRUPT as exc:
        log.debug("EXIF cannot be parsed, orientation ignored: %s", exc)
        return 1
    return value if isinstance(value, int) else 1
