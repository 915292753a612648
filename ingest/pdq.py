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

Dihedral forms come from `pdqhash.compute_dihedral`, which hashes the image once
and derives the 7 other forms from the float DCT coefficients (exact for the
coefficients, unlike hashdb.signals.pdq_dihedral, which only has the bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image

from hashdb.signals.pdq_dihedral import DIHEDRAL_FORMS


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
    original, *others = vectors
    forms = tuple(zip(DIHEDRAL_FORMS, (_pack(v) for v in others), strict=True))
    return PdqResult(hash=_pack(original), quality=int(quality), dihedral=forms)


def _rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    array = np.asarray(image, dtype=np.uint8)
    if image.mode == "L":
        return np.broadcast_to(array[:, :, np.newaxis], (*array.shape, 3))
    if image.mode == "RGB":
        return array
    raise ValueError(f"pdq needs an RGB or L picture, got mode {image.mode!r}")


def _pack(vector: Any) -> bytes:
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes()
