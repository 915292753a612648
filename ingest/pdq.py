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

A picture decoded at reduced size (`full_size`, see ingest/decode.py) is hashed as
its full-resolution self would be. PDQ's own filter adapts its window to the size
it is given (ceil(side / 128) pixels), so handing it the small picture would filter
differently, and PDQ's bits are sensitive to that. So `pdq` builds the 64 x 64
picture PDQ would take from the full-resolution one (two passes of its box filter,
window ceil(full side / 128), cut and renormalised at the edges, then the pixel at
the centre of each of the 64 cells), with the weights mapped onto the decoded
pixels, each standing for a block of full-resolution ones; the reference code then
hashes that 64 x 64 picture, at which size its own filter is the identity. The
mirrored forms use mirrored weights, so they stay the hashes of the full-resolution
picture really turned. What is lost: the decoder's reduction (bounded by the rule
in decode.py) and rounding the 64 x 64 luminance to 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
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
SIDE = 64  # PDQ's downsampled picture is SIDE x SIDE
_BOX_PASSES = 2  # PDQ filters each direction twice with its box (a tent)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # as in ingest/pixels.py


@dataclass(frozen=True)
class PdqResult:
    hash: bytes  # 32 bytes
    quality: int  # 0-100
    dihedral: tuple[tuple[str, bytes], ...]  # named as DIHEDRAL_FORMS, or ()


def pdq(
    image: Image.Image, *, dihedral: bool = False, full_size: tuple[int, int] | None = None
) -> PdqResult:
    """PDQ hash and quality of an "RGB" or "L" picture; its 7 other forms if asked.

    `full_size`: the (width, height) of the full-resolution picture that `image` is
    a reduced decode of; it is hashed as that picture would be (module docstring)."""
    if full_size is not None and full_size != image.size:
        return _pdq_of_reduced(image, full_size, dihedral=dihedral)
    return _pdq_of_array(_rgb_array(image), dihedral=dihedral)


def _pdq_of_array(array: npt.NDArray[np.uint8], *, dihedral: bool) -> PdqResult:
    if not dihedral:
        vector, quality = pdqhash.compute(array)
        return PdqResult(hash=_pack(vector), quality=int(quality), dihedral=())
    vectors, quality = pdqhash.compute_dihedral(array)
    hashed = {(False, False): vectors}
    for rows, cols in ((True, False), (False, True), (True, True)):
        mirrored = array[:: -1 if rows else 1, :: -1 if cols else 1]
        hashed[rows, cols], _ = pdqhash.compute_dihedral(np.ascontiguousarray(mirrored))
    return _with_forms(hashed, int(quality))


def _pdq_of_reduced(image: Image.Image, full_size: tuple[int, int], *, dihedral: bool) -> PdqResult:
    luma = _luma(image)
    height, width = luma.shape
    full_width, full_height = full_size
    mirrors = ((False, False), (True, False), (False, True), (True, True))
    hashed = {}
    quality = 0
    for rows, cols in mirrors if dihedral else mirrors[:1]:
        down = _apply(_weights(height, full_height, rows), luma)  # SIDE x width
        down = _apply(_weights(width, full_width, cols), down.T).T  # SIDE x SIDE
        # C order: the binding hands its luminance buffer to C++ as row-major
        grey = np.ascontiguousarray(np.clip(np.rint(down), 0, 255), dtype=np.uint8)
        small = np.broadcast_to(grey[:, :, np.newaxis], (SIDE, SIDE, 3))
        if not dihedral:
            vector, found = pdqhash.compute(small)
            return PdqResult(hash=_pack(vector), quality=int(found), dihedral=())
        hashed[rows, cols], found = pdqhash.compute_dihedral(small)
        if (rows, cols) == (False, False):
            quality = int(found)
    return _with_forms(hashed, quality)


def _with_forms(hashed: dict[tuple[bool, bool], Any], quality: int) -> PdqResult:
    forms = []
    for name in DIHEDRAL_FORMS:
        rows, cols, transposed = FORM_OF[name]
        forms.append((name, _pack(hashed[rows, cols][_TRANSPOSE if transposed else 0])))
    original = _pack(hashed[False, False][0])
    return PdqResult(hash=original, quality=quality, dihedral=tuple(forms))


@dataclass(frozen=True)
class _Weights:
    """PDQ's SIDE samples along one direction, as weighted sums of decoded pixels:
    sample i reads pixels start[i] to start[i] + len(weights[i]) - 1 (a short run:
    PDQ's filter spans two windows), so no dense product, and no BLAS threads."""

    start: npt.NDArray[np.int64]  # SIDE
    weights: npt.NDArray[np.float32]  # SIDE x run


def _apply(weights: _Weights, picture: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """SIDE rows: each sample's weighted sum of `picture`'s rows."""
    run = weights.weights.shape[1]
    rows = picture[weights.start[:, np.newaxis] + np.arange(run)]  # SIDE x run x width
    summed: npt.NDArray[np.float32] = np.einsum("ir,irw->iw", weights.weights, rows)
    return summed


@lru_cache(maxsize=256)
def _weights(side: int, full: int, mirrored: bool) -> _Weights:
    """What each decoded pixel along one direction contributes to each of PDQ's SIDE
    samples of the full-resolution picture (`full` pixels that way, reversed if
    `mirrored`); decoded pixel i covers full-resolution pixels i x scale to
    (i + 1) x scale - 1, as libjpeg's scaling and Pillow's reduce do."""
    scale = max(1, round(full / side))
    window = -(-full // (2 * SIDE))  # PDQ's Jarosz window: ceil(full / 128)
    centres = ((np.arange(SIDE) + 0.5) * full / SIDE).astype(np.int64)
    kernel = np.zeros((SIDE, full))
    kernel[np.arange(SIDE), centres] = 1.0
    for _ in range(_BOX_PASSES):
        kernel = _through_box(kernel, window)
    if mirrored:
        kernel = kernel[:, ::-1]
    owner = np.minimum(np.arange(full) // scale, side - 1)  # the decoded pixel of each
    reduced = np.zeros((side, SIDE))
    np.add.at(reduced, owner, kernel.T)
    dense = reduced.T
    used = dense != 0
    first = used.argmax(axis=1)
    run = int((side - used[:, ::-1].argmax(axis=1) - first).max())
    start = np.minimum(first, side - run)
    taken = dense[np.arange(SIDE)[:, np.newaxis], start[:, np.newaxis] + np.arange(run)]
    start.flags.writeable = False  # cached and shared
    weights = taken.astype(np.float32)
    weights.flags.writeable = False
    return _Weights(start, weights)


def _through_box(kernel: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """The weights on the input of PDQ's box filter, given `kernel`, the weights on
    its output (one row per sample). Output o of the box averages inputs
    o - (window - half) to o + half - 1, half = (window + 2) // 2, cut at the ends
    and renormalised there; both ends move forward with o, so the outputs that read
    input x are a contiguous run, summed from prefix sums."""
    length = kernel.shape[1]
    half = (window + 2) // 2
    out = np.arange(length)
    low = np.maximum(out - (window - half), 0)
    high = np.minimum(out + half, length)
    share = kernel / (high - low)
    prefix = np.zeros((kernel.shape[0], length + 1))
    np.cumsum(share, axis=1, out=prefix[:, 1:])
    first = np.searchsorted(high, out, side="right")  # first output whose range passes x
    last = np.searchsorted(low, out, side="right")  # one past the last that starts by x
    return prefix[:, last] - prefix[:, first]


def _luma(image: Image.Image) -> npt.NDArray[np.float32]:
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(_rgb_array(image), dtype=np.float32) @ _LUMA


def _rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    array = np.asarray(image, dtype=np.uint8)
    if image.mode == "L":
        return np.broadcast_to(array[:, :, np.newaxis], (*array.shape, 3))
    if image.mode == "RGB":
        return array
    raise ValueError(f"pdq needs an RGB or L picture, got mode {image.mode!r}")


def _pack(vector: Any) -> bytes:
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes()
