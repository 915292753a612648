"""The wire form of a keypoint set: what a member shares instead of the media.

A keypoint set is at most `MAX_KEYPOINTS` keypoints of one picture, each a 256-bit
binary descriptor (ORB's rBRIEF, 32 bytes) and its coarse geometry: the position
quantised to 1/256 of the picture's width and height, the pyramid level it was
found at and its orientation in 1/256 of a turn. The picture's working size (width
and height, long side at most `MAX_SIDE`) gives the positions their aspect ratio,
which geometric verification needs (a similarity in normalised coordinates is not
one once the aspect differs).

Bytes (big-endian), version 1:

    offset  size     field
    0       1        version (1)
    1       2        width of the working picture, 1-MAX_SIDE
    3       2        height of the working picture, 1-MAX_SIDE
    5       2        n, the number of keypoints, 0-MAX_KEYPOINTS
    7       4n       per keypoint: x, y (0-255, of width / height), level (0-7), angle
    7 + 4n  32n      per keypoint: descriptor

so 7 + 36 n bytes: 4,615 for 128 keypoints. Text is the standard base64 of those
bytes (RFC 4648, with padding, no line breaks): 6,156 characters for 128 keypoints.
Positions at 1/256 of a side err by at most 0.2% of it, well inside the tolerance
verification allows (hashdb/keypoints/verify.py).

Parsing is strict: a wrong version, a length that disagrees with n, a size out of
range, a level past the pyramid or base64 with stray characters is `InvalidInput`
naming the field, never a partial set.
"""

from __future__ import annotations

import binascii
import re
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hashdb.errors import InvalidInput

VERSION = 1
MAX_KEYPOINTS = 256
MAX_SIDE = 4096
LEVELS = 8  # pyramid levels a keypoint may come from (ORB's default)
DESCRIPTOR_BYTES = 32
_HEADER = struct.Struct(">BHHH")
GEOMETRY_BYTES = 4
# The longest text form: base64 of the largest set (7 + 36 x MAX_KEYPOINTS bytes).
MAX_TEXT_CHARS = 4 * -(-(_HEADER.size + (GEOMETRY_BYTES + DESCRIPTOR_BYTES) * MAX_KEYPOINTS) // 3)
_BASE64 = re.compile(r"\A[A-Za-z0-9+/]*={0,2}\Z")

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class KeypointSet:
    """Keypoints of one picture: parallel arrays, one row per keypoint.

    `x`, `y`: position in 1/256 of `width` / `height` (the cell's lower edge);
    `level`: pyramid level (0 is the working picture); `angle`: orientation in 1/256
    of a turn; `descriptors`: (n, 32) uint8. Built by `ingest.keypoints` or parsed."""

    width: int
    height: int
    x: U8
    y: U8
    level: U8
    angle: U8
    descriptors: U8

    def __post_init__(self) -> None:
        n = len(self.descriptors)
        if self.descriptors.shape != (n, DESCRIPTOR_BYTES) or self.descriptors.dtype != np.uint8:
            raise ValueError(f"descriptors must be uint8 (n, {DESCRIPTOR_BYTES})")
        for name in ("x", "y", "level", "angle"):
            column = getattr(self, name)
            if column.shape != (n,) or column.dtype != np.uint8:
                raise ValueError(f"{name} must be uint8 of shape ({n},)")
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise ValueError(f"width and height must be 1-{MAX_SIDE}")
        if n > MAX_KEYPOINTS:
            raise ValueError(f"at most {MAX_KEYPOINTS} keypoints, got {n}")
        if n and int(self.level.max()) >= LEVELS:
            raise ValueError(f"levels must be below {LEVELS}")

    def __len__(self) -> int:
        return len(self.descriptors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeypointSet):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def points(self) -> npt.NDArray[np.complex128]:
        """Positions as complex numbers in units of the picture's diagonal (the
        centre of each quantisation cell), the frame verification works in."""
        diagonal = float(np.hypot(self.width, self.height))
        xs = (self.x.astype(np.float64) + 0.5) * (self.width / 256 / diagonal)
        ys = (self.y.astype(np.float64) + 0.5) * (self.height / 256 / diagonal)
        return xs + 1j * ys

    def frame(self) -> tuple[float, float]:
        """The picture's width and height in units of its diagonal."""
        diagonal = float(np.hypot(self.width, self.height))
        return self.width / diagonal, self.height / diagonal

    def to_bytes(self) -> bytes:
        geometry = np.stack([self.x, self.y, self.level, self.angle], axis=1)
        return (
            _HEADER.pack(VERSION, self.width, self.height, len(self))
            + geometry.tobytes()
            + np.ascontiguousarray(self.descriptors).tobytes()
        )

    def to_text(self) -> str:
        return binascii.b2a_base64(self.to_bytes(), newline=False).decode("ascii")

    @classmethod
    def from_bytes(cls, raw: bytes, field: str = "value", index: int | None = None) -> KeypointSet:
        """Parse the wire bytes, or InvalidInput naming `field`."""

        def bad(message: str) -> InvalidInput:
            return InvalidInput(f"keypoints: {message}", field=field, index=index)

        if len(raw) < _HEADER.size:
            raise bad(f"{len(raw)} bytes is shorter than the {_HEADER.size}-byte header")
        version, width, height, n = _HEADER.unpack_from(raw)
        if version != VERSION:
            raise bad(f"unknown version {version} (this server reads version {VERSION})")
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise bad(f"picture size {width} x {height} is outside 1-{MAX_SIDE}")
        if n > MAX_KEYPOINTS:
            raise bad(f"{n} keypoints is more than the limit of {MAX_KEYPOINTS}")
        expected = _HEADER.size + n * (GEOMETRY_BYTES + DESCRIPTOR_BYTES)
        if len(raw) != expected:
            raise bad(f"{n} keypoints take {expected} bytes, got {len(raw)}")
        body = np.frombuffer(raw, dtype=np.uint8, offset=_HEADER.size)
        geometry = body[: n * GEOMETRY_BYTES].reshape(n, GEOMETRY_BYTES)
        descriptors = body[n * GEOMETRY_BYTES :].reshape(n, DESCRIPTOR_BYTES)
        if n and int(geometry[:, 2].max()) >= LEVELS:
            raise bad(
                f"a keypoint's pyramid level is {int(geometry[:, 2].max())}, past {LEVELS - 1}"
            )
        return cls(
            width=width,
            height=height,
            x=geometry[:, 0].copy(),
            y=geometry[:, 1].copy(),
            level=geometry[:, 2].copy(),
            angle=geometry[:, 3].copy(),
            descriptors=descriptors.copy(),
        )

    @classmethod
    def from_text(cls, text: object, field: str = "value", index: int | None = None) -> KeypointSet:
        """Parse the base64 text form, or InvalidInput naming `field`."""
        if not isinstance(text, str):
            raise InvalidInput("keypoints must be a base64 string", field=field, index=index)
        value = text.strip()
        if len(value) % 4 or not _BASE64.match(value):
            raise InvalidInput(
                "keypoints must be standard base64 (A-Z a-z 0-9 + /, padded with =)",
                field=field,
                index=index,
            )
        try:
            raw = binascii.a2b_base64(value, strict_mode=True)
        except binascii.Error as exc:
            raise InvalidInput(
                f"keypoints are not valid base64: {exc}", field=field, index=index
            ) from exc
        return cls.from_bytes(raw, field=field, index=index)


def empty(width: int, height: int) -> KeypointSet:
    """The set of a picture with no keypoint (featureless: it matches nothing)."""
    none = np.empty(0, dtype=np.uint8)
    return KeypointSet(width, height, none, none, none, none, np.empty((0, 32), np.uint8))
