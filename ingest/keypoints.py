"""The keypoint set of a picture (hashdb/keypoints/codec.py): ORB on a small working
copy, a bounded and well-spread selection, coarse positions.

Why these choices:

- **Working copy**: the picture is resized (area averaging down, bilinear up) so its
  long side is `WORKING_SIDE` pixels. Every picture is looked at at the same size,
  so a re-encoded or resized copy's keypoints land at the reference's pyramid
  levels, and the cost of a picture does not grow with its resolution.
- **ORB** (OpenCV's oriented FAST + rotated BRIEF, 256-bit descriptors): binary, so
  stored and compared as Hamming codes like PDQ; rotation-invariant, so a tilted copy
  keeps its descriptors; an 8-level pyramid at 1.2 per level, so a crop shown larger
  (up to 3.6 times) still meets the reference's keypoints at a coarser level.
  `CANDIDATES` keypoints are detected with a low FAST threshold, so that
  low-contrast pictures still yield some.
- **Selection**: per pyramid level a quota of the `limit` (`LEVEL_SHARES`, ORB's
  own split), filled with the level's strongest keypoints by Harris response, each
  at least `SPACING` pixels (scaled to the level) from every stronger one kept.
  The quotas keep coarse keypoints in every set, which a copy shown smaller (in a
  screenshot, letterboxed, resized) needs: its finest level meets the reference's
  coarser ones, and a selection by response alone takes mostly the finest level.
  Suppression spreads the set over the picture (a crop keeps a share of the
  keypoints in proportion to its area; a logo over a corner takes only its share),
  and it depends on the neighbourhood only, not on where the picture's edges are,
  so a crop keeps the reference's choice inside it.
- **Sizes**: a stored picture keeps `DEFAULT_LIMIT` keypoints (its cost in the
  index); a query keeps `QUERY_LIMIT`, as text, captions and UI around a copy take
  their share of a query's keypoints, and a query costs no memory.
- **Mirrors**: ORB's descriptors are not mirror-invariant; a query that may be
  mirrored is also described mirrored (`query_sets`), as PDQ's dihedral forms are.

Deterministic: the same pixels give the same bytes (ties in response are broken by
position).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from hashdb.keypoints.codec import LEVELS, MAX_KEYPOINTS, KeypointSet, empty

WORKING_SIDE = 512
DEFAULT_LIMIT = 128  # per stored picture: what a reference costs in the index
QUERY_LIMIT = 256  # per query picture: text and UI around a copy take their share
CANDIDATES = 1000
FAST_THRESHOLD = 10
SPACING = 10.0  # pixels of the working copy between kept keypoints
SCALE_FACTOR = 1.2
# Share of the keypoints taken from each pyramid level, finest first (ORB's own
# split: in proportion to the level's side).
LEVEL_SHARES = tuple(SCALE_FACTOR**-k for k in range(8))

Picture = Image.Image | npt.NDArray[np.uint8]


def grey_working_copy(picture: Picture) -> npt.NDArray[np.uint8]:
    """`picture` as an 8-bit grey array whose long side is WORKING_SIDE pixels."""
    if isinstance(picture, Image.Image):
        grey = np.asarray(picture.convert("L"), dtype=np.uint8)
    else:
        array = np.asarray(picture)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError("a picture array must be uint8, (h, w) grey or (h, w, 3) RGB")
        if array.ndim == 3:
            if array.shape[2] != 3:
                raise ValueError("a picture array must be uint8, (h, w) grey or (h, w, 3) RGB")
            grey = np.asarray(
                cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY), dtype=np.uint8
            )
        else:
            grey = np.asarray(array, dtype=np.uint8)
    height, width = grey.shape
    if width < 1 or height < 1:
        raise ValueError("a picture must have at least one pixel")
    scale = WORKING_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(grey, size, interpolation=method))


def keypoints(picture: Picture, *, limit: int = DEFAULT_LIMIT) -> KeypointSet:
    """The keypoint set of `picture` (PIL Image, or uint8 array: grey or RGB)."""
    return describe(grey_working_copy(picture), limit=limit)


def query_sets(picture: Picture, *, limit: int = QUERY_LIMIT) -> tuple[KeypointSet, KeypointSet]:
    """The keypoint sets of `picture` and of its mirror image, for a query that may be
    a mirrored copy (a vertical flip is a mirror turned 180 degrees, which the
    verification's similarity covers)."""
    grey = grey_working_copy(picture)
    return describe(grey, limit=limit), describe(np.ascontiguousarray(grey[:, ::-1]), limit=limit)


def describe(grey: npt.NDArray[np.uint8], *, limit: int = DEFAULT_LIMIT) -> KeypointSet:
    """The keypoint set of a grey working copy (see `grey_working_copy`)."""
    if not 0 <= limit <= MAX_KEYPOINTS:
        raise ValueError(f"limit must be 0-{MAX_KEYPOINTS}")
    height, width = grey.shape
    orb = cv2.ORB.create(
        nfeatures=CANDIDATES,
        scaleFactor=SCALE_FACTOR,
        nlevels=LEVELS,
        fastThreshold=FAST_THRESHOLD,
    )
    found, descriptors = orb.detectAndCompute(grey, None)
    if descriptors is None or not found:
        return empty(width, height)
    xs = np.array([k.pt[0] for k in found], dtype=np.float64)
    ys = np.array([k.pt[1] for k in found], dtype=np.float64)
    response = np.array([k.response for k in found], dtype=np.float64)
    octave = np.array([k.octave for k in found], dtype=np.int64)
    angle = np.array([k.angle for k in found], dtype=np.float64)
    keep = _spread(xs, ys, response, np.clip(octave, 0, LEVELS - 1), limit)
    qx = np.clip(np.floor(xs[keep] / width * 256), 0, 255).astype(np.uint8)
    qy = np.clip(np.floor(ys[keep] / height * 256), 0, 255).astype(np.uint8)
    turn = (np.round(angle[keep] / 360 * 256).astype(np.int64) % 256).astype(np.uint8)
    return KeypointSet(
        width=width,
        height=height,
        x=qx,
        y=qy,
        level=np.clip(octave[keep], 0, LEVELS - 1).astype(np.uint8),
        angle=turn,
        descriptors=np.ascontiguousarray(descriptors[keep], dtype=np.uint8),
    )


def _spread(
    xs: npt.NDArray[np.float64],
    ys: npt.NDArray[np.float64],
    response: npt.NDArray[np.float64],
    level: npt.NDArray[np.int64],
    limit: int,
) -> npt.NDArray[np.int64]:
    """Rows of at most `limit` keypoints: per pyramid level a quota (LEVEL_SHARES),
    filled with the level's strongest keypoints, each at least SPACING (scaled to the
    level) from every stronger one kept; quota a level cannot fill goes to the
    strongest keypoints left over, of any level."""
    quotas = _quotas(limit)
    orders = []
    for lv in range(LEVELS):
        rows = np.flatnonzero(level == lv)
        orders.append(rows[np.lexsort((xs[rows], ys[rows], -response[rows]))])
    kept = [
        _suppress(xs, ys, orders[lv], SPACING * SCALE_FACTOR**lv, quotas[lv])
        for lv in range(LEVELS)
    ]
    short = limit - sum(len(k) for k in kept)
    chosen = [row for k in kept for row in k]
    if short > 0:  # rare: levels without enough keypoints; the rest from any level
        left: list[int] = []
        for lv in range(LEVELS):
            if len(kept[lv]) == quotas[lv]:
                spacing = SPACING * SCALE_FACTOR**lv
                left += _suppress(xs, ys, orders[lv], spacing, quotas[lv] + short)[quotas[lv] :]
        if left:
            spare = np.array(left, dtype=np.int64)
            spare = spare[np.lexsort((xs[spare], ys[spare], -response[spare]))]
            chosen += spare[:short].tolist()
    return np.array(sorted(chosen), dtype=np.int64)


def _quotas(limit: int) -> list[int]:
    weights = np.array(LEVEL_SHARES[:LEVELS], dtype=np.float64)
    raw = limit * weights / weights.sum()
    quotas = np.floor(raw).astype(np.int64)
    for k in np.argsort(-(raw - quotas), kind="stable")[: limit - int(quotas.sum())]:
        quotas[k] += 1
    return [int(q) for q in quotas]


def _suppress(
    xs: npt.NDArray[np.float64],
    ys: npt.NDArray[np.float64],
    order: npt.NDArray[np.int64],
    spacing: float,
    want: int,
) -> list[int]:
    """Greedy non-maximum suppression of `order` (strongest first) at `spacing`: the
    first `want` rows kept."""
    if want <= 0:
        return []
    grid: dict[tuple[int, int], list[int]] = {}
    kept: list[int] = []
    reach = spacing * spacing
    for row in order.tolist():
        x, y = float(xs[row]), float(ys[row])
        cx, cy = math.floor(x / spacing), math.floor(y / spacing)
        if any(
            (xs[other] - x) ** 2 + (ys[other] - y) ** 2 < reach
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
            for other in grid.get((cx + dx, cy + dy), ())
        ):
            continue
        grid.setdefault((cx, cy), []).append(row)
        kept.append(row)
        if len(kept) == want:
            break
    return kept
