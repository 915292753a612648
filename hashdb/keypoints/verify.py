"""Geometric verification: descriptor agreement counts only when the agreeing
keypoints sit where one similarity transform (scale, rotation, shift) puts them.

Near descriptors alone prove little: flat or repetitive patches give descriptors
that are near many others (one such "hub" keypoint of a reference can be the
nearest neighbour of dozens of query keypoints), and any two photos share some
corners by chance. So a candidate reference is accepted only when

1. RANSAC over two-point similarity hypotheses (positions as complex numbers,
   r = a q + b, in units of each picture's diagonal; deterministic: a fixed seed),
   drawn from each query keypoint's `PAIRS_PER_KEYPOINT` nearest reference
   keypoints (the true partner is not always the nearest), finds at least
   `MIN_INLIERS` pairs that land within `TOLERANCE` of where the transform predicts
   *and* whose orientations differ by the transform's rotation within
   `ANGLE_TOLERANCE` (ORB measures each keypoint's orientation, so a chance
   agreement must also agree in angle);
2. inliers are counted one-to-one (each query keypoint and each reference keypoint
   used once, the nearest pairs first; the `RECOUNTED` best hypotheses are
   re-counted so), which removes hubs;
3. the transform is plausible: its scale `|a|` between `MIN_SCALE` and `MAX_SCALE`
   (a query that is a 1/16 crop of the reference, up to a reference shrunk to 1/16 of
   the query);
4. the inliers are not bunched in a small patch of both pictures: their convex hull
   covers at least `MIN_HULL_SHARE` of the reference or of the query. Two unrelated
   pictures that show the same word in the same font, or the same small logo, agree
   on a dozen keypoints within a patch; a copy, even a small crop (the query then
   is mostly reference) or a reference shrunk into a screenshot (the reference then
   is mostly covered), spreads its inliers over one of the two.

A similarity covers crops, resizing, the 90/180/270 rotations and small tilts; a
mirrored copy is found by verifying the keypoints of the mirrored query (the
descriptors themselves are not mirror-invariant), as `ingest.keypoints` provides.

What the verdict reports besides the inliers: `frame_share`, the share of the
reference's area that the query's frame covers once mapped into it (about 0.64
for a central crop keeping 80% of each side, 1.0 when the query shows all of it,
in a screenshot or with borders), and `hull_share`, the share the inliers' convex
hull covers (always smaller: keypoints keep clear of the picture's edges). A match
with a small `frame_share` is a crop of the reference, a part of it: the caller
decides whether a part counts as a copy (`MIN_COPY_SHARE` is the default line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hashdb.keypoints.codec import KeypointSet

# Chance agreement between unrelated pictures stays well below this
# (benchmarks/local_features.py prints the most inliers any unrelated query reached).
MIN_INLIERS = 12
TOLERANCE = 0.015  # of the reference's diagonal: about 8 pixels of a 512-pixel picture
ANGLE_TOLERANCE = 2 * math.pi * 24 / 256  # 24/256 of a turn, about 34 degrees
MIN_SCALE, MAX_SCALE = 1 / 16, 16.0
# Inliers bunched in a small patch of both pictures (a word in the same font, a
# shared logo) are no evidence of a copy: they must cover this share of one of them.
MIN_HULL_SHARE = 0.05
MIN_COPY_SHARE = 0.25  # a query covering less of the reference is reported as a part
HYPOTHESES = 256
RECOUNTED = 8  # best hypotheses re-counted one-to-one
PAIRS_PER_KEYPOINT = 3  # nearest reference keypoints tried per query keypoint
REFINEMENTS = 2
SEED = 20260401

Ints = npt.NDArray[np.int64]
Complex = npt.NDArray[np.complex128]


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one query against one reference."""

    matched: bool
    inliers: int
    candidates: int  # one-to-one correspondences RANSAC was given
    scale: float  # |a|: reference diagonals per query diagonal
    rotation: float  # degrees, counter-clockwise in image coordinates
    frame_share: float  # share of the reference covered by the query's frame, 0-1
    hull_share: float  # share of the reference covered by the inliers' hull, 0-1
    query_hull_share: float  # share of the query covered by the inliers' hull, 0-1

    @property
    def is_part(self) -> bool:
        """A match that covers too little of the reference to call it a copy."""
        return self.matched and self.frame_share < MIN_COPY_SHARE


def one_to_one(
    query_rows: Ints, reference_rows: Ints, distances: npt.NDArray[np.int32]
) -> npt.NDArray[np.int64]:
    """Positions of a one-to-one subset of the pairs (query_rows[i], reference_rows[i]):
    each query and each reference keypoint used once, the nearest (then lowest rows)
    kept first; in ascending order."""
    order = np.lexsort((reference_rows, query_rows, distances))
    _, first = np.unique(query_rows[order], return_index=True)
    order = np.sort(order[first])  # the nearest pair of each query keypoint
    order = order[np.lexsort((query_rows[order], distances[order]))]
    _, first = np.unique(reference_rows[order], return_index=True)
    return np.sort(order[first])


def nearest_per_query(
    query_rows: Ints, reference_rows: Ints, distances: npt.NDArray[np.int32], keep: int
) -> npt.NDArray[np.int64]:
    """Positions of at most `keep` pairs per query keypoint, its nearest, nearest first."""
    order = np.lexsort((reference_rows, distances, query_rows))
    q = query_rows[order]
    starts = np.searchsorted(q, q, side="left")
    rank = np.arange(len(q)) - starts
    kept = order[rank < keep]
    return kept[np.lexsort((reference_rows[kept], query_rows[kept], distances[kept]))]


def verify(
    query: KeypointSet,
    reference: KeypointSet,
    query_rows: Ints,
    reference_rows: Ints,
    distances: npt.NDArray[np.int32],
) -> Verdict:
    """Verify the correspondences (query_rows[i] ~ reference_rows[i] at distances[i])."""
    query_rows = np.asarray(query_rows, np.int64)
    reference_rows = np.asarray(reference_rows, np.int64)
    distances = np.asarray(distances, np.int32)
    pick = nearest_per_query(query_rows, reference_rows, distances, PAIRS_PER_KEYPOINT)
    q_rows, r_rows, dist = query_rows[pick], reference_rows[pick], distances[pick]
    n = min(len(np.unique(q_rows)), len(np.unique(r_rows)))
    if n < MIN_INLIERS:
        return Verdict(False, 0, n, 0.0, 0.0, 0.0, 0.0, 0.0)
    q = query.points()[q_rows]
    r = reference.points()[r_rows]
    turn = np.exp(
        1j
        * (reference.angle[r_rows].astype(np.float64) - query.angle[q_rows])
        * (2 * math.pi / 256)
    )
    a, b, inliers = _ransac(q, r, turn, q_rows, r_rows, dist)
    count = int(inliers.sum())
    if count < MIN_INLIERS or not (MIN_SCALE <= abs(a) <= MAX_SCALE):
        return Verdict(False, count, n, abs(a), _degrees(a), 0.0, 0.0, 0.0)
    hull = min(1.0, _area(_hull(r[inliers])) / _frame_area(reference))
    query_hull = min(1.0, _area(_hull(q[inliers])) / _frame_area(query))
    frame = _frame_share(query, reference, a, b)
    matched = max(hull, query_hull) >= MIN_HULL_SHARE
    return Verdict(matched, count, n, abs(a), _degrees(a), frame, hull, query_hull)


def _degrees(a: complex) -> float:
    return math.degrees(math.atan2(a.imag, a.real))


def _inliers(
    a: Complex, b: Complex, q: Complex, r: Complex, turn: Complex
) -> npt.NDArray[np.bool_]:
    """(hypotheses, pairs): whether each pair agrees with each hypothesis r = a q + b,
    in position and in orientation (`turn`: each pair's turn as a unit complex)."""
    miss = a[:, None] * q[None, :] + b[:, None] - r[None, :]
    near = miss.real**2 + miss.imag**2 < TOLERANCE**2
    rotation = a / np.maximum(np.abs(a), 1e-12)
    along = (turn[None, :] * np.conj(rotation)[:, None]).real  # cos(turn - rotation)
    agree: npt.NDArray[np.bool_] = near & (along > math.cos(ANGLE_TOLERANCE))
    return agree


def _distinct(
    agree: npt.NDArray[np.bool_], q_rows: Ints, r_rows: Ints, dist: npt.NDArray[np.int32]
) -> npt.NDArray[np.bool_]:
    """Of the agreeing pairs, a one-to-one subset (nearest pairs first)."""
    where = np.flatnonzero(agree)
    out = np.zeros(len(agree), dtype=bool)
    out[where[one_to_one(q_rows[where], r_rows[where], dist[where])]] = True
    return out


def _ransac(
    q: Complex,
    r: Complex,
    turn: Complex,
    q_rows: Ints,
    r_rows: Ints,
    dist: npt.NDArray[np.int32],
) -> tuple[complex, complex, npt.NDArray[np.bool_]]:
    """The best similarity and its inliers: hypotheses from pairs of pairs, ranked by
    the pairs they agree with; the best few re-counted one-to-one, then refined."""
    n = len(q)
    rng = np.random.default_rng(SEED)
    if n * (n - 1) // 2 <= HYPOTHESES:
        i, j = np.triu_indices(n, 1)
    else:
        i = rng.integers(0, n, HYPOTHESES)
        j = (i + rng.integers(1, n, HYPOTHESES)) % n
    dq = q[j] - q[i]
    usable = (np.abs(dq) > TOLERANCE) & (q_rows[i] != q_rows[j]) & (r_rows[i] != r_rows[j])
    i, j, dq = i[usable], j[usable], dq[usable]
    if len(i) == 0:
        return 0j, 0j, np.zeros(n, dtype=bool)
    a = (r[j] - r[i]) / dq
    b = r[i] - a * q[i]
    votes = _inliers(a, b, q, r, turn)
    best_count, a1, b1, inliers = -1, 0j, 0j, np.zeros(n, dtype=bool)
    for h in np.argsort(-votes.sum(axis=1), kind="stable")[:RECOUNTED].tolist():
        distinct = _distinct(votes[h], q_rows, r_rows, dist)
        if distinct.sum() > best_count:
            best_count, a1, b1, inliers = (
                int(distinct.sum()),
                complex(a[h]),
                complex(b[h]),
                distinct,
            )
    for _ in range(REFINEMENTS):
        if inliers.sum() < 2:
            break
        qi, ri = q[inliers], r[inliers]
        qc, rc = qi - qi.mean(), ri - ri.mean()
        spread = float(np.sum(np.abs(qc) ** 2))
        if spread == 0:
            break
        fit_a = complex(np.sum(rc * np.conj(qc)) / spread)
        fit_b = complex(ri.mean() - fit_a * qi.mean())
        agree = _inliers(np.array([fit_a]), np.array([fit_b]), q, r, turn)[0]
        refit = _distinct(agree, q_rows, r_rows, dist)
        if refit.sum() < inliers.sum():
            break
        a1, b1, inliers = fit_a, fit_b, refit
    return a1, b1, inliers


def _frame_area(kps: KeypointSet) -> float:
    w, h = kps.frame()
    return w * h


def _frame_share(query: KeypointSet, reference: KeypointSet, a: complex, b: complex) -> float:
    """Area of (query frame mapped by r = a q + b) ∩ (reference frame) / reference area."""
    qw, qh = query.frame()
    corners = [a * c + b for c in (0j, complex(qw, 0), complex(qw, qh), complex(0, qh))]
    rw, rh = reference.frame()
    clipped = _clip(corners, rw, rh)
    return min(1.0, _area(clipped) / (rw * rh)) if len(clipped) >= 3 else 0.0


def _clip(polygon: list[complex], width: float, height: float) -> list[complex]:
    """Sutherland-Hodgman: the convex `polygon` clipped to [0, width] x [0, height]."""
    out = polygon
    # each edge of the rectangle as (axis: 0 = x, 1 = y, bound, keep the side above it)
    for axis, bound, above in (
        (0, 0.0, True),
        (0, width, False),
        (1, 0.0, True),
        (1, height, False),
    ):
        if not out:
            break
        points, out = out, []
        for k, current in enumerate(points):
            previous = points[k - 1]
            inside_now = _inside(current, axis, bound, above)
            if inside_now != _inside(previous, axis, bound, above):
                out.append(_crossing(previous, current, axis, bound))
            if inside_now:
                out.append(current)
    return out


def _coordinate(p: complex, axis: int) -> float:
    return p.real if axis == 0 else p.imag


def _inside(p: complex, axis: int, bound: float, above: bool) -> bool:
    value = _coordinate(p, axis)
    return value >= bound if above else value <= bound


def _crossing(p: complex, s: complex, axis: int, bound: float) -> complex:
    """Where the segment p-s crosses the line coordinate[axis] == bound."""
    t = (bound - _coordinate(p, axis)) / (_coordinate(s, axis) - _coordinate(p, axis))
    return p + (s - p) * t


def _hull(points: Complex) -> list[complex]:
    """Convex hull (Andrew's monotone chain), counter-clockwise."""
    unique = sorted({(float(p.real), float(p.imag)) for p in points})
    if len(unique) < 3:
        return [complex(x, y) for x, y in unique]

    def cross(o: tuple[float, float], p: tuple[float, float], s: tuple[float, float]) -> float:
        return (p[0] - o[0]) * (s[1] - o[1]) - (p[1] - o[1]) * (s[0] - o[0])

    lower: list[tuple[float, float]] = []
    upper: list[tuple[float, float]] = []
    for p in unique:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(unique):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return [complex(x, y) for x, y in lower[:-1] + upper[:-1]]


def _area(polygon: list[complex]) -> float:
    """Shoelace area of a simple polygon (either orientation)."""
    if len(polygon) < 3:
        return 0.0
    xs = np.array([p.real for p in polygon])
    ys = np.array([p.imag for p in polygon])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)
