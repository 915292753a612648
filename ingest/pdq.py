"""PDQ of a decoded picture, through `pdqhash` (Meta's C++ reference, bound for Python).

Using the reference code rather than a port keeps us within the PDQ authors'
conformance bar (quality >= 80: within 10 bits of the C++ hash) by construction;
what differs from the C++ tool is only the decoder and the reduced decode (see
ingest/decode.py).

`pdqhash` returns 256 ints, first the bit the C++ reference prints first; packing
them most-significant-bit first gives bytes in the order of that hex, the layout
`hashdb.signals.PDQ` parses and formats. It takes an H x W x 3 uint8 array and
computes luminance itself, so a greyscale picture is passed as a broadcast view of
its single channel (no copy; the luminance of (v, v, v) is v).

Dihedral forms are the hashes of the picture turned, not forms derived from one
hash. `pdqhash.compute_dihedral` can derive all 8 from the DCT of one 64 x 64
downsample, but that downsample is not symmetric: PDQ's box filter has a window of
ceil(side / 128) pixels, and an even window sits half a pixel off centre, so a form
that mirrors the picture along such a side is not the hash of the picture really
mirrored. On the reference photos of the test data (quality >= 80) the derived
forms came out up to 100 bits from the hash of the turned picture (median 6; 24 of
175 beyond the match threshold of 31). Transposing is exact (each side keeps its
own window), so `pdq` hashes the picture mirrored four ways (as it is, top to
bottom, left to right, both) and takes each one's own hash and transposed form:
all 8 exact, at the cost of four downsamples instead of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image

from hashdb.signals.pdq_dihedral import DIHEDRAL_FORMS

# Each dihedral form as (rows reversed, columns reversed, transposed after) of the
# picture: PIL's rotations are counter-clockwise, flip_x is top to bottom.
FORM_OF: dict[str, tuple[bool, bool, bool]] = {
    "rotate90": (False, True, True),
    "rotate180": (True, True, False),
    "rotate270": (True, False, True),
    "flip_x": (True, False, False),
    "flip_y": (False, True, False),
    "transpose": (False, False, True),
    "transverse": (True, True, True),
}
_TRANSPOSE = 1 + DIHEDRAL_FORMS.index("transpose")  # its place in compute_dihedral's list


@dataclass(frozen=True)
class PdqResult:
    hash: bytes  # 32 bytes
    quality: int  # 0-100
    dihedral: tuple[tuple[str, bytes], ...]  # named as DIHEDRAL_FORMS, or ()


def pdq(image: Image.Image, *, dihedral: bool = False) -> PdqResult:
    """PDQ hash and quality of an "RGB" or "L" picture; its 7 other forms if asked."""
    array = _rgb_array(image)
    if not dihedral:
        vector, quality = pdqhash.compute(array)
        return PdqResult(hash=_pack(vector), quality=int(quality), dihedral=())
    vectors, quality = pdqhash.compute_dihedral(array)
    hashed = {(False, False): vectors}
    for rows, cols in ((True, False), (False, True), (True, True)):
        mirrored = array[:: -1 if rows else 1, :: -1 if cols else 1]
        hashed[rows, cols], _ = pdqhash.compute_dihedral(np.ascontiguousarray(mirrored))
    forms = []
    for name in DIHEDRAL_FORMS:
        rows, cols, transposed = FORM_OF[name]
        forms.append((name, _pack(hashed[rows, cols][_TRANSPOSE if transposed else 0])))
    return PdqResult(hash=_pack(vectors[0]), quality=int(quality), dihedral=tuple(forms))


def _rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    array = np.asarray(image, dtype=np.uint8)
    if image.mode == "L":
        return np.broadcast_to(array[:, :, np.newaxis], (*array.shape, 3))
    if image.mode == "RGB":
        return array
    raise ValueError(f"pdq needs an RGB or L picture, got mode {image.mode!r}")


def _pack(vector: Any) -> bytes:
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes()
