"""Is this upload a video? A look at the container's magic bytes, nothing decoded.

Callers route an upload to image or video hashing with `is_video`, so it must be
cheap (the first 512 bytes) and must not claim pictures: HEIF and AVIF images live
in the same ISO box format as MP4 and are told apart by their `ftyp` brand, and
animated GIF and WebP stay with the image path (Pillow reads them).

A yes means "a video container we decode"; the file may still hold no video
stream (an M4A-like MP4, an audio-only Ogg or Matroska file), which video hashing
then reports as UnsupportedMedia. Signatures are those of the container
specifications (ISO/IEC 14496-12 `ftyp`, EBML, RIFF AVI, MPEG-TS/PS, FLV, ASF, Ogg).
"""

from __future__ import annotations

from pathlib import Path

SNIFF_BYTES = 512

# ISO base media brands that are still pictures or audio, not video.
_NOT_VIDEO_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis", b"avci",
     b"jpeg", b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
)  # fmt: skip
# Top-level boxes that may open a QuickTime file written before `ftyp` existed.
_QUICKTIME_BOXES = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_PREFIXES = (
    b"\x1a\x45\xdf\xa3",  # EBML: Matroska, WebM
    b"FLV\x01",
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF: WMV
    b"\x00\x00\x01\xba",  # MPEG program stream
    b"\x00\x00\x01\xb3",  # MPEG-1/2 elementary video sequence header
    b"OggS",
)
_TS_PACKET = 188


def is_video(data_or_path: bytes | Path) -> bool:
    """True if the bytes (or the file's first bytes) look like a video container."""
    if isinstance(data_or_path, Path):
        with data_or_path.open("rb") as file:
            head = file.read(SNIFF_BYTES)
    else:
        head = bytes(data_or_path[:SNIFF_BYTES])
    return _looks_like_video(head)


def _looks_like_video(head: bytes) -> bool:
    if head.startswith(_PREFIXES):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    box_type = head[4:8]
    if box_type == b"ftyp":
        return head[8:12] not in _NOT_VIDEO_BRANDS
    if box_type in _QUICKTIME_BOXES:
        return True
    # MPEG transport stream: a sync byte at the start of three consecutive packets.
    return len(head) > 2 * _TS_PACKET and all(head[i * _TS_PACKET] == 0x47 for i in range(3))
