"""The 7 other dihedral forms of a PDQ hash, derived from its 256 bits alone.

A member may send a PDQ hash instead of an image and ask for a dihedral query
(find the picture also when rotated or mirrored). Without the image we cannot
hash its rotations, but we can approximate them from the bits.

Why it works: PDQ keeps the 16 x 16 DCT coefficients of frequencies 1-16 of a
64 x 64 luminance image and sets a bit where a coefficient exceeds their median.
Mirroring an image multiplies the coefficient of frequency k along the mirrored
axis by (-1)^k; transposing it transposes the coefficient matrix; every rotation
and flip is a composition of the two. Meta's C++ reference computes the dihedral
hashes of an image exactly this way from the float coefficients (the
`dct16OriginalTo*` functions in facebook/ThreatExchange
`pdq/cpp/hashing/pdqhashing.cpp`). With bits only, negating a coefficient
becomes inverting its bit, which is exact only for coefficients not between the
old and the new median; those few bits are the error.

How close the derived forms come (see docs/measurements.md, "Dihedral forms'
distances"): within a few bits of the forms computed from the float coefficients
and of the hashes of the turned pictures at full size; on small pictures (512 x
512 and below) the hash of the turned picture can differ much more, because PDQ's
box filter is off centre where its window (ceil(side / 128) pixels) is even, so
hashing the turned picture and turning the coefficients of the picture differ. A
media query does not have that error (ingest.pdq hashes the picture turned); a
hash-only one does, and most but not all of its derived forms stay within the
match threshold of the turned picture's hash.

`transpose` is exact (no coefficient changes sign). The forms compose exactly:
rotate90 applied twice is rotate180, flip_x then flip_y is rotate180, and so on.

Bit layout: raw bytes in the order of the hex the C++ reference prints; the first
(most significant) bit is coefficient (15, 15), the last is (0, 0), where
(i, j) = (vertical, horizontal) frequency minus one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Names of the 7 non-identity forms, in the order of the C++ reference's
# pdqDihedralHash256esFromFloatLuma, with the Pillow transpose each one hashes.
DIHEDRAL_FORMS: tuple[str, ...] = (
    "rotate90",  # Image.Transpose.ROTATE_90: 90 degrees counter-clockwise
    "rotate180",  # Image.Transpose.ROTATE_180
    "rotate270",  # Image.Transpose.ROTATE_270: 90 degrees clockwise
    "flip_x",  # Image.Transpose.FLIP_TOP_BOTTOM: mirrored across the x axis
    "flip_y",  # Image.Transpose.FLIP_LEFT_RIGHT: mirrored across the y axis
    "transpose",  # Image.Transpose.TRANSPOSE: mirrored across the main diagonal
    "transverse",  # Image.Transpose.TRANSVERSE: mirrored across the anti-diagonal
)

_Bits = npt.NDArray[np.uint8]

_I, _J = np.indices((16, 16))
_ODD_I = (_I % 2 == 0).astype(np.uint8)  # index i holds frequency i + 1
_ODD_J = (_J % 2 == 0).astype(np.uint8)
_ODD_SUM = ((_I + _J) % 2 == 1).astype(np.uint8)  # frequencies of odd sum
_NONE = np.zeros((16, 16), dtype=np.uint8)

# form -> (bits to invert, in the original's coordinates; transpose afterwards?)
_FORMS: dict[str, tuple[_Bits, bool]] = {
    "rotate90": (_ODD_J, True),
    "rotate180": (_ODD_SUM, False),
    "rotate270": (_ODD_I, True),
    "flip_x": (_ODD_I, False),
    "flip_y": (_ODD_J, False),
    "transpose": (_NONE, True),
    "transverse": (_ODD_SUM, True),
}


def dihedral_probes(value: bytes) -> tuple[tuple[str, bytes], ...]:
    """The 7 other dihedral forms of the 32-byte PDQ hash `value`, named as DIHEDRAL_FORMS."""
    if len(value) != 32:
        raise ValueError(f"pdq hash must be 32 bytes, got {len(value)}")
    coefficients = np.unpackbits(np.frombuffer(value, dtype=np.uint8))[::-1].reshape(16, 16)
    variants = []
    for name in DIHEDRAL_FORMS:
        invert, transpose = _FORMS[name]
        bits = coefficients ^ invert
        if transpose:
            bits = bits.T
        variants.append((name, np.packbits(bits.reshape(-1)[::-1]).tobytes()))
    return tuple(variants)
