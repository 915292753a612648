"""vPDQ: a video as the PDQ hashes of frames sampled at a fixed rate, with timestamps.

Following Meta's vPDQ (facebook/ThreatExchange, `vpdq/README.md`), a video is not one
hash but a list of frame hashes; two videos match when enough frames of each match
frames of the other. Each frame is compared as PDQ (threshold 31, frames of quality
below 50 dropped). The stored row of a video carries, as its value, the SHA-256 of
its canonical frame list (`frames_digest`), which identifies it for idempotent adds;
the frames themselves live beside it and go into the PDQ index, tagged with their
video, so an image query can also hit a frame of a video.

The text form of a frame list is vPDQ's own: one line per frame,
`frame_number,quality,pdq_hex,timestamp_seconds`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from hashdb.errors import InvalidInput
from hashdb.signals.base import Matching, SignalType
from hashdb.signals.pdq import PDQ

VPDQ = SignalType(
    name="vpdq",
    bits=256,
    matching=Matching.VIDEO,
    default_threshold=31,
    min_quality=50,
    description="A video: PDQ of frames sampled at a fixed rate (share of frames matched)",
)


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its position, time, PDQ hash (32 bytes) and quality."""

    index: int
    timestamp: float
    pdq: bytes
    quality: int


def frames_digest(frames: Sequence[Frame]) -> bytes:
    """SHA-256 over the canonical frame list: the identity of a video's hash."""
    digest = hashlib.sha256()
    for f in frames:
        digest.update(f"{f.index},{f.quality},{f.pdq.hex()},{f.timestamp:.3f}\n".encode())
    return digest.digest()


def parse_frames(text: object, field: str = "frames", index: int | None = None) -> list[Frame]:
    """vPDQ text (`frame_number,quality,pdq_hex,timestamp` lines) to frames."""
    if not isinstance(text, str):
        raise InvalidInput("vpdq frames must be text", field=field, index=index)
    frames = []
    for line_no, line in enumerate(text.strip().splitlines(), start=1):
        parts = line.strip().split(",")
        where = f"{field} line {line_no}"
        if len(parts) != 4:
            raise InvalidInput(
                f"{where}: expected frame_number,quality,pdq_hex,timestamp",
                field=field,
                index=index,
            )
        try:
            number, quality, timestamp = int(parts[0]), int(parts[1]), float(parts[3])
        except ValueError:
            raise InvalidInput(f"{where}: numbers expected", field=field, index=index) from None
        if number < 0 or not 0 <= quality <= 100 or not math.isfinite(timestamp) or timestamp < 0:
            raise InvalidInput(f"{where}: value out of range", field=field, index=index)
        frames.append(Frame(number, timestamp, PDQ.parse(parts[2], field, index), quality))
    if not frames:
        raise InvalidInput("a video needs at least one frame", field=field, index=index)
    return frames


def format_frames(frames: Sequence[Frame]) -> str:
    return "".join(f"{f.index},{f.quality},{f.pdq.hex()},{f.timestamp:.3f}\n" for f in frames)
