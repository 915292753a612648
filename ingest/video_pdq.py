"""PDQ of a video frame's luma plane, without building a full-size RGB picture.

Why not hand each frame to `pdqhash.compute` as RGB: at 1280x720 that costs more
than decoding a second of video (colour conversion to RGB, then PDQ's luminance and
two box-filter passes over every pixel). Downscaling first is cheap but changes the
hash: a 512-pixel copy landed past the match threshold from Meta's vPDQ output on
the sample videos (docs/measurements.md, "Video decoding speed").

What we do instead rests on two facts about PDQ (Meta's `hashing.pdf` and the C++
reference in facebook/ThreatExchange, `pdq/cpp/hashing/pdqhashing.cpp`):

1. Everything before the DCT is linear. PDQ takes luminance Y = 0.299 R + 0.587 G +
   0.114 B, runs a box filter of width ceil(n / 128) twice along each axis ("Jarosz
   filter"; near the edges the window is cut and the mean taken over what is
   left), then keeps 64 x 64 samples, at input index floor((i + 0.5) * n / 64).
   Per axis that is a 64 x n matrix with at most 2 * ceil(n / 128) - 1 non-zero
   taps per row, so the whole 64 x 64 buffer is `rows @ luma @ cols.T`, computed
   here by a compiled loop (`_downsample`, numba) over the few rows and columns
   that matter, straight from the uint8 plane: a fraction of the time of the same
   sums as numpy gathers and einsums (identical float32 results).
2. The decoder's Y plane already is that luminance. Converting limited-range
   BT.601 YUV to RGB and back with the same weights gives Y' = (Y - 16) * 255 /
   219, the identity for full-range ("J") formats; only pixels whose RGB would
   clip differ. The affine map is applied to the 64 x 64 buffer.

The buffer is then rounded to 8 bits and hashed by `pdqhash` itself (DCT, median,
quality), so quality and bit order are the reference's. On the sample videos the
result stays within a few bits of `pdqhash.compute` on the full RGB frame, and
quality agrees (tests/test_video_hashing.py; docs/measurements.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pdqhash
from numba import njit

_SIDE = 64  # PDQ's downsampled buffer is 64 x 64
_PASSES = 2  # box-filter passes per axis in the reference
# The reference hashes nothing smaller than this on either side: all-zero hash, quality 0.
_MIN_HASHABLE_SIDE = 5


@dataclass(frozen=True)
class _AxisFilter:
    """PDQ's downsampling along one axis of length n, as 64 rows of taps."""

    index: npt.NDArray[np.intp]  # (64, taps): input positions
    weight: npt.NDArray[np.float32]  # (64, taps): their weights (each row sums to 1)


@dataclass(frozen=True)
class FramePdq:
    hash: bytes  # 32 bytes, the reference's hex order
    quality: int  # 0-100


def pdq_from_luma(luma: npt.NDArray[np.uint8], *, limited_range: bool) -> FramePdq:
    """PDQ of a frame given its 8-bit luma plane (height x width, any row stride).

    `limited_range` is true for video-range Y (16-235), the usual case; false for
    full-range planes (JPEG-range YUV, or luma computed from RGB).
    """
    grey = pdq_buffer(luma, limited_range=limited_range)
    return FramePdq(bytes(32), 0) if grey is None else pdq_from_buffer(grey)


def pdq_buffer(luma: npt.NDArray[np.uint8], *, limited_range: bool) -> npt.NDArray[np.uint8] | None:
    """PDQ's 64 x 64 downsampled luminance of a frame (full range, rounded to 8 bits),
    the input of its DCT; None for a frame too small to hash (all-zero hash,
    quality 0). A cut-out (`luma[top:bottom, left:right]`) is a frame of its own."""
    height, width = luma.shape
    if min(height, width) < _MIN_HASHABLE_SIDE:
        return None
    rows, cols = _axis_filter(height), _axis_filter(width)
    buffer: npt.NDArray[np.float32] = _downsample(
        luma, rows.index, rows.weight, cols.index, cols.weight
    )
    if limited_range:
        buffer = (buffer - 16.0) * np.float32(255.0 / 219.0)
    # C order matters: pdqhash reads its luminance buffer as C-contiguous memory and
    # silently hashes the transpose of a Fortran-ordered array.
    return np.ascontiguousarray(np.clip(np.rint(buffer), 0, 255), dtype=np.uint8)


def pdq_from_buffer(grey: npt.NDArray[np.uint8]) -> FramePdq:
    """PDQ hash and quality of a 64 x 64 buffer from `pdq_buffer` (or one edited after)."""
    if grey.shape != (_SIDE, _SIDE):
        raise ValueError("a PDQ buffer is 64 x 64")
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    # pdqhash wants H x W x 3 and takes the luminance itself; that of (v, v, v) is v.
    bits, quality = pdqhash.compute(np.broadcast_to(grey[:, :, np.newaxis], (_SIDE, _SIDE, 3)))
    return FramePdq(np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes(), int(quality))


def pdq_from_buffers(buffers: npt.NDArray[np.uint8]) -> list[FramePdq]:
    """`pdq_from_buffer` of many 64 x 64 buffers (N x 64 x 64) at once, in numpy.

    PDQ's last steps (Meta's `hashing.pdf`): the 16 x 16 DCT coefficients 1-16 of
    each axis (D[i, j] = sqrt(2 / 64) cos(pi / 128 (i + 1)(2 j + 1))), one bit per
    coefficient above their median, the last coefficient first in the 32 bytes;
    quality the sum over neighbouring buffer cells of trunc(|difference| * 100 / 255),
    divided by 90, at most 100. What `pdqhash` gives for the same buffers
    (tests/test_video_regions.py), bit for bit but where two coefficients tie at the
    median within float32 rounding (its sums and numpy's run in different orders, so
    such a pair's two bits may swap), in a third of its time per buffer: for the
    probes (`ingest.video_regions`), several per frame.
    """
    if buffers.ndim != 3 or buffers.shape[1:] != (_SIDE, _SIDE):
        raise ValueError("PDQ buffers are N x 64 x 64")
    if not len(buffers):
        return []
    grey = buffers.astype(np.float32)
    coefficients = (_DCT @ grey @ _DCT.T).reshape(len(grey), -1)
    median = np.median(coefficients, axis=1, keepdims=True)
    hashes = np.packbits((coefficients > median)[:, ::-1], axis=1)
    down = np.trunc((grey[:, :-1, :] - grey[:, 1:, :]) * np.float32(100.0 / 255.0))
    across = np.trunc((grey[:, :, :-1] - grey[:, :, 1:]) * np.float32(100.0 / 255.0))
    gradient = np.abs(down).sum(axis=(1, 2)) + np.abs(across).sum(axis=(1, 2))
    quality = np.minimum(100, gradient.astype(np.int64) // 90)
    return [FramePdq(h.tobytes(), int(q)) for h, q in zip(hashes, quality, strict=True)]


def _dct_matrix() -> npt.NDArray[np.float32]:
    i = np.arange(1, 17, dtype=np.float64)[:, np.newaxis]
    j = np.arange(_SIDE, dtype=np.float64)[np.newaxis, :]
    return np.asarray(
        np.sqrt(2 / _SIDE) * np.cos(np.pi / (2 * _SIDE) * i * (2 * j + 1)), np.float32
    )


_DCT = _dct_matrix()


def luma_from_rgb(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """PDQ's luminance of an RGB picture, rounded to 8 bits (for non-YUV frames)."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    luma: npt.NDArray[np.float32] = rgb.astype(np.float32) @ weights
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)
def _axis_filter(n: int) -> _AxisFilter:
    """Composite of PDQ's box passes and its decimation along an axis of length n."""
    if n < 1:
        raise ValueError("a frame needs at least one row and one column")
    window = (n + 2 * _SIDE - 1) // (2 * _SIDE)  # ceil(n / 128)
    half = (window + 2) // 2
    # Output o of one box pass is the mean of input [lo[o], hi[o]).
    out = np.arange(n)
    lo = np.maximum(0, out - (window - half))
    hi = np.minimum(n, out + half)
    matrix = np.zeros((_SIDE, n), dtype=np.float64)
    matrix[np.arange(_SIDE), ((np.arange(_SIDE) + 0.5) * n / _SIDE).astype(np.intp)] = 1.0
    for _ in range(_PASSES):  # matrix <- matrix @ box, one column band at a time
        composed = np.zeros_like(matrix)
        for o in np.flatnonzero(matrix.any(axis=0)):
            composed[:, lo[o] : hi[o]] += matrix[:, o : o + 1] / (hi[o] - lo[o])
        matrix = composed
    nonzero = matrix != 0
    first = nonzero.argmax(axis=1)
    last = n - 1 - nonzero[:, ::-1].argmax(axis=1)
    taps = int((last - first).max()) + 1
    start = np.minimum(first, n - taps)
    index = start[:, np.newaxis] + np.arange(taps)
    weight = np.take_along_axis(matrix, index, axis=1).astype(np.float32)
    return _AxisFilter(index=index, weight=weight)


@njit(nogil=True, cache=True)
def _downsample(
    luma: Any, row_index: Any, row_weight: Any, col_index: Any, col_weight: Any
) -> Any:  # pragma: no cover - compiled
    """(64, 64) float32: for output row i, the weighted sum of its taps' rows of
    `luma` (uint8, any strides), then for column j that of the sum's taps."""
    width = luma.shape[1]
    out = np.empty((row_index.shape[0], col_index.shape[0]), dtype=np.float32)
    line = np.empty(width, dtype=np.float32)
    for i in range(row_index.shape[0]):
        line[:] = 0
        for t in range(row_index.shape[1]):
            weight = row_weight[i, t]
            row = luma[row_index[i, t]]
            for x in range(width):
                line[x] += weight * np.float32(row[x])
        for j in range(col_index.shape[0]):
            total = np.float32(0)
            for t in range(col_index.shape[1]):
                total += col_weight[j, t] * line[col_index[j, t]]
            out[i, j] = total
    return out
