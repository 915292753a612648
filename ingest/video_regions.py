"""Probes for a video: its frames hashed again without added bars, and with logos
painted over.

PDQ hashes the whole frame, so an edited copy of a reference drifts away from it
frame for frame when the edit changes the frame's layout rather than its tones:

- bars added around the picture (letterbox, pillarbox, borders; an SD copy of an
  HD reference padded to 4:3 or 3:2) shrink and move the picture inside the frame;
- a logo burnt into a corner replaces part of it.

A re-grade (contrast, gamma, colour, greyscale) moves few bits and needs nothing.
This module gives extra frame hashes ("probes") that undo the two layout edits,
from what the video itself shows. The frames are hashed as before: nothing here
changes the vPDQ frame list (Meta's vPDQ) a video is stored and exported as. A
probe carries its frame's number and timestamp, so matching counts it in its
frame's interval (`hashdb.video_match`): a slot matches if the frame or any of its
probes does. Each probe also has a `variant`, and a query row meets a stored row
only when their variants are equal: "" for frames and for the probes aimed at a
plain frame (content, masked), a corner's name (CORNERS) for the corner set.

**Bars** (`bars_box`): from each edge inwards, rows (columns) of which BAR_SHARE
of the middle MIDDLE_SHARE lie within BAR_TOLERANCE of the edge's level (a logo in
a corner, even on the bar, does not break it), on a strided view, then refined to
the pixel at full resolution; bars are added centred, so a thinner bar opposite a
thicker one is widened to it if LAX_BAR_SHARE of those rows is bar (a logo across
the bar cut it short). Bars are a property of the video or the shot: looked for
at most DETECTIONS_PER_SECOND times a second, and a box is kept only if at least
MIN_BOX_SHARE of the looks found it (within BOX_TOLERANCE): a dark or flat scene
fools one look (its dark edge looks like a bar), never most of them. With bars
both ways, the picture inside only the top and bottom ones, and inside only the
left and right ones, are candidates too (a reference that had bars of its own).
The content probe is the PDQ of the frame cut to a kept box, at full resolution
(PDQ's own downsampling of the cut-out, `ingest.video_pdq`).

**Static overlays** (`overlay_mask`, a broadcaster logo, opaque or nearly so):
cells of PDQ's 64 x 64 buffer whose level barely varies over the video
(STATIC_SPREAD of the typical spread) while the picture moves (MIN_MOTION), in a
corner (CORNER_ZONE), not too large (MAX_OVERLAY_SHARE), with edges that stay
sharp in the mean over time and moving picture right around them (a clear sky
is static too, but blurs in the mean and fades into the motion). Each frame is
then hashed with those cells (grown by one: PDQ's box filter spreads them)
painted over from around them (`paint_over`: a wide smooth guess recovered more
frames than OpenCV's inpainting). Found per region: the whole frame, and the
picture inside each kept box. A static shot gives no motion to tell a logo from
the scene, and gets no masked probe.

What a logo hid is gone, and a guess recovers only part of it. The **corner set**
does better, at a price in stored rows: a reference stores (ProbeSet.REFERENCE)
its frames with each of the 8 standard CORNERS painted over alike, and a query
whose logo one corner holds paints that corner over the same way; the paint is
then drawn from the same picture on both sides, whatever the logo hid.

What this costs and what it recovers: `benchmarks.video_quality` (recall per edit,
false matches, index rows, hashing speed with and without probes).

Memory: the 64 x 64 buffers are kept until the video ends (4 KiB per frame and
region: the whole frame and up to three boxes; 9,000 query frames with bars both
ways: up to about 140 MiB), since a logo is only known once enough frames have
been seen.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from ingest.canonical import Box
from ingest.video_pdq import FramePdq, pdq_buffer, pdq_from_buffers

# Bars: a row is bar while this share of its pixels lie within BAR_TOLERANCE
# levels of the edge's median; thinner than MIN_BAR (share of the side) is none.
BAR_SHARE = 0.9
LAX_BAR_SHARE = 0.5  # where the bar opposite is thicker (see `_symmetric`)
MIDDLE_SHARE = 0.6  # of each row, where bars are looked for (corners may hold a logo)
BAR_TOLERANCE = 10
MIN_BAR = 0.01
# The picture inside must keep this share of each side, or nothing sound was found:
MIN_CONTENT = 0.25  # a 9:16 phone video pillarboxed into 16:9 keeps 32% of the width
# Rows and columns examined on the first pass: about this many along the short side.
_ANALYSIS_SIDE = 180
# Boxes of different frames within this share of the side (at least 2 pixels) agree.
BOX_TOLERANCE = 0.006
# A box is kept when this share of the looks agree on it.
MIN_BOX_SHARE = 0.1
# Frames probed at most: 9,000 is the API's limit on a query's frames; a reference
# sampled at 1 per second reaches it after 2.5 hours (later frames have no probes).
MAX_PROBED_FRAMES = 10_000
DETECTIONS_PER_SECOND = 6.0  # looks for bars, at most, per second of video

# Static overlays, on PDQ's 64 x 64 buffer.
_SIDE = 64
MIN_OVERLAY_FRAMES = 8  # frames of a region needed to tell what moves
MIN_MOTION = 5.0  # median temporal spread (levels) of the region's cells
# Static: spread below this share of the median spread and this many levels (a logo
# 70% opaque still moves with 30% of the picture under it).
STATIC_SPREAD = 0.35
MAX_STATIC_LEVELS = 14.0
CORNER_ZONE = 0.5  # an overlay lies within this share of the side from a corner
MAX_OVERLAY_SHARE = 0.16  # of the buffer's cells
MIN_OVERLAY_CELLS = 4
MIN_EDGE_CONTRAST = 5.0  # an overlay's edges in the mean over time, x its typical gradient
MIN_RING_MOTION = 0.35  # spread right around an overlay, x the typical spread
_GROW = np.ones((3, 3), np.uint8)
FILL_SIGMA = 8.0  # cells: how far around an overlay its fill is drawn from


class ProbeKind(enum.Enum):
    """What a probe hashes of its frame."""

    CONTENT = "content"  # the picture inside the bars
    MASKED = "masked"  # the whole frame, static overlays painted over
    CONTENT_MASKED = "content_masked"  # the picture inside the bars, overlays painted over
    CORNER = "corner"  # a standard corner (`Probe.variant`, CORNERS) painted over


class ProbeSet(enum.Enum):
    """Which probes to compute for a video."""

    NONE = "none"
    # For a query: content probes where it has bars; where it has a static logo, the
    # frames with the logo painted over, and with the standard corner holding it
    # painted over (to meet a reference's stored corner set).
    QUERY = "query"
    # For a reference: content probes where it has bars (to meet a query without
    # them) and the stored corner set: every frame with each of CORNERS painted over.
    REFERENCE = "reference"


def near(a: Box, b: Box, tolerance: int) -> bool:
    """Whether every side of `a` is within `tolerance` pixels of `b`'s."""
    return (
        abs(a.left - b.left) <= tolerance
        and abs(a.top - b.top) <= tolerance
        and abs(a.right - b.right) <= tolerance
        and abs(a.bottom - b.bottom) <= tolerance
    )


@dataclass(frozen=True)
class Probe:
    """One probe: which frame, what of it was hashed, and the hash."""

    index: int  # the frame's number
    timestamp: float  # the frame's time, seconds
    kind: ProbeKind
    result: FramePdq
    variant: str = ""  # for CORNER: which of CORNERS


def _corners() -> dict[str, tuple[slice, slice]]:
    out = {}
    for side in CORNER_SIDES:
        far = _SIDE - side
        for name, (top, left) in {
            "tl": (0, 0),
            "tr": (0, far),
            "bl": (far, 0),
            "br": (far, far),
        }.items():
            out[f"{name}{side}"] = (slice(top, top + side), slice(left, left + side))
    return out


# Standard corners of PDQ's 64 x 64 buffer, painted over alike on both sides: a
# reference stores its frames so (ProbeSet.REFERENCE), a query with a logo paints
# over the smallest one that holds it; the fill is then drawn from the same picture
# on both sides. Sides 24 and 32 cells (37.5% and 50% of each side) hold corner logos
# up to about 12% of the frame with their margin.
CORNER_SIDES = (24, 32)
CORNERS: dict[str, tuple[slice, slice]] = _corners()


def bars_box(luma: npt.NDArray[np.uint8]) -> Box | None:
    """The picture inside bars or borders added around a frame (luma plane, any
    strides); None when the frame has none. Bars on two opposite sides that would
    leave less than MIN_CONTENT of the side between them are not bars (a flat or
    dark picture) and are dropped."""
    height, width = luma.shape
    if min(height, width) < 16:
        return None
    step = max(1, min(height, width) // _ANALYSIS_SIDE)
    top, bottom = _pair(*_symmetric(luma, step), height)
    rows = luma[top : height - bottom]  # side bars are looked for beside the picture
    left, right = _pair(*_symmetric(rows.T, step), width)
    if not (top or bottom or left or right):
        return None
    return Box(left, top, width - right, height - bottom)


def candidate_boxes(box: Box | None, width: int, height: int) -> list[Box]:
    """The pictures a frame with bars `box` may have been made from: inside all its
    bars, and, when it has bars both ways, inside only the top and bottom ones or
    only the left and right ones (a reference that had bars of its own)."""
    if box is None:
        return []
    out = [box]
    if (box.top or box.bottom < height) and (box.left or box.right < width):
        out.append(Box(0, box.top, width, box.bottom))
        out.append(Box(box.left, 0, box.right, height))
    return out


def _pair(start: int, end: int, side: int) -> tuple[int, int]:
    """Thicknesses of the bars at both ends of a side, thin ones dropped, both
    dropped if they leave too little between them."""
    thin = max(2, round(MIN_BAR * side))
    start, end = (start if start >= thin else 0), (end if end >= thin else 0)
    if side - start - end < MIN_CONTENT * side:
        return 0, 0
    return start, end


def _symmetric(lines: npt.NDArray[np.uint8], step: int) -> tuple[int, int]:
    """The bars at the start and the end of `lines` (rows). Bars are added centred, so
    where both are there and one is thinner, the rows up to the other's thickness
    are taken as bar too if at least LAX_BAR_SHARE of each is: a logo across one
    bar cuts it short (its margin above the logo still shows as bar)."""
    middle = _middle(lines)
    start, end = _thickness(middle, step), _thickness(middle[::-1], step)
    if start != end and min(start, end) >= max(2, MIN_BAR * len(lines)):
        thin, thick = (lines, start) if start < end else (lines[::-1], end)
        width = max(start, end)
        level = float(np.median(_middle(thin)[0, ::step]))
        if (_bar_share(thin[thick:width:step, ::step], level) >= LAX_BAR_SHARE).all():
            start = end = width
    return start, end


def _middle(lines: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The middle MIDDLE_SHARE of each row: logos sit in corners, on a bar maybe."""
    width = lines.shape[1]
    cut = round(width * (1 - MIDDLE_SHARE) / 2)
    return lines[:, cut : width - cut]


def _thickness(lines: npt.NDArray[np.uint8], step: int) -> int:
    """How many leading rows of `lines` (a frame turned so the edge is row 0) are bar:
    on every `step`-th row and column first, then to the row at full resolution."""
    level = float(np.median(lines[0, ::step]))
    bar = _bar_lines(lines[::step, ::step], level)
    count = int(bar.argmin()) if not bar.all() else len(bar)
    if count == 0:
        return 0
    # Rows [0, (count - 1) * step] are bar; row count * step (if any) is not.
    first, last = (count - 1) * step + 1, min(len(lines), count * step)
    if first >= last:
        return min(first, len(lines))
    between = _bar_lines(lines[first:last, ::step], level)
    return first + (int(between.argmin()) if not between.all() else len(between))


def _bar_share(lines: npt.NDArray[np.uint8], level: float) -> npt.NDArray[np.float64]:
    """The share of each row of `lines` within BAR_TOLERANCE of `level`."""
    near = np.abs(lines.astype(np.int16) - np.int16(round(level))) <= BAR_TOLERANCE
    return np.asarray(near.mean(axis=1), dtype=np.float64)


def _bar_lines(lines: npt.NDArray[np.uint8], level: float) -> npt.NDArray[np.bool_]:
    """Which rows of `lines` are bar at `level`."""
    return np.asarray(_bar_share(lines, level) >= BAR_SHARE, dtype=np.bool_)


@dataclass
class _Region:
    """Frames hashed on one region: their buffers, for the overlay pass."""

    frames: list[tuple[int, float]] = field(default_factory=list)
    buffers: list[npt.NDArray[np.uint8]] = field(default_factory=list)


class ProbeCollector:
    """Folds over a video's sampled frames (`add`), then gives its probes (`probes`).

    Bars are looked for at most DETECTIONS_PER_SECOND times a second of video (they
    belong to the video or the shot, not the frame); each frame is cut to the
    candidate boxes of the latest look, and only the boxes that enough looks agree
    on give probes at the end.
    """

    def __init__(self, which: ProbeSet = ProbeSet.QUERY) -> None:
        self._which = which
        self._added = 0
        self._corners: list[Probe] = []  # the corner set of a reference
        self._seen: list[Box | None] = []  # per look
        self._candidates: list[Box] = []
        self._last_look = -np.inf
        self._size: tuple[int, int] | None = None
        self._whole = _Region()
        self._cuts: dict[Box, _Region] = {}

    def add(
        self,
        index: int,
        timestamp: float,
        luma: npt.NDArray[np.uint8],
        limited_range: bool,
        whole: npt.NDArray[np.uint8] | None,
    ) -> None:
        """One sampled frame: its luma plane and `whole`, its PDQ buffer (`pdq_buffer`).
        Frames past MAX_PROBED_FRAMES get no probes (the buffers kept are bounded)."""
        self._added += 1
        if self._added > MAX_PROBED_FRAMES:
            return
        height, width = luma.shape
        if self._size != (width, height):  # the first frame, or a new size mid-stream
            self._size, self._last_look = (width, height), -np.inf
        if timestamp - self._last_look >= 1.0 / DETECTIONS_PER_SECOND:
            box = bars_box(luma)
            self._seen.append(box)
            self._candidates = candidate_boxes(box, width, height)
            self._last_look = timestamp
        if whole is not None and self._which is ProbeSet.QUERY:
            self._whole.frames.append((index, timestamp))
            self._whole.buffers.append(whole)
        elif whole is not None:  # the corner set needs no other frame: hashed at once
            painted = np.stack([paint_over(whole, mask) for mask in _CORNER_MASKS.values()])
            self._corners += [
                Probe(index, timestamp, ProbeKind.CORNER, result, corner)
                for corner, result in zip(_CORNER_MASKS, pdq_from_buffers(painted), strict=True)
            ]
        for box in self._candidates:
            cut = pdq_buffer(
                luma[box.top : box.bottom, box.left : box.right], limited_range=limited_range
            )
            if cut is not None:
                region = self._cuts.setdefault(box, _Region())
                region.frames.append((index, timestamp))
                region.buffers.append(cut)

    def probes(self) -> list[Probe]:
        """The probes of every frame, grouped by kind and region, in frame order."""
        kept = self._kept_boxes()
        content = _Region()
        for box, region in self._cuts.items():
            if any(near(box, k, t) for k, t in kept):
                content.frames += region.frames
                content.buffers += region.buffers
        out = _hashed(content.frames, content.buffers, ProbeKind.CONTENT)
        # Overlays are looked for in each kept box (frames in a tolerance of it) and
        # in the whole frame.
        for box, tolerance in kept if self._which is ProbeSet.QUERY else []:
            region = _Region()
            for cut_box, cut in self._cuts.items():
                if near(box, cut_box, tolerance):
                    region.frames += cut.frames
                    region.buffers += cut.buffers
            out += _masked(region, ProbeKind.CONTENT_MASKED)
        out += _masked(self._whole, ProbeKind.MASKED)  # empty for a reference
        return out + self._corners

    def _kept_boxes(self) -> list[tuple[Box, int]]:
        """Boxes enough looks agree on, each with its tolerance in pixels."""
        if self._size is None:
            return []
        width, height = self._size
        tolerance = max(2, round(BOX_TOLERANCE * max(width, height)))
        boxes = [c for b in self._seen for c in candidate_boxes(b, width, height)]
        needed = max(2, MIN_BOX_SHARE * len(self._seen))
        kept: list[tuple[Box, int]] = []
        for box in _by_frequency(boxes):
            if any(near(box, k, tolerance) for k, _ in kept):
                continue
            if sum(near(box, b, tolerance) for b in boxes) >= needed:
                kept.append((box, tolerance))
        return kept


def overlay_mask(buffers: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8] | None:
    """Cells (64 x 64, 1 = overlay) of static overlays in corners of these buffers of
    one region over time; None when there are none or the picture hardly moves.

    Static alone is not enough: a clear sky or a wall stays put too. An overlay
    also keeps its edges (the plate's rim, the glyph) sharp in the mean over time,
    which the moving picture blurs (`MIN_EDGE_CONTRAST` times the mean's typical
    gradient), and the picture right around it moves as much as anywhere
    (`MIN_RING_MOTION` of the typical spread), where a flat part of the scene
    fades into moving parts gradually.
    """
    if len(buffers) < MIN_OVERLAY_FRAMES:
        return None
    stack = np.stack(buffers).astype(np.float32)
    spread = stack.std(axis=0)
    typical = float(np.median(spread))
    if typical < MIN_MOTION:
        return None
    mean = stack.mean(axis=0)
    gradient = np.hypot(cv2.Sobel(mean, cv2.CV_32F, 1, 0), cv2.Sobel(mean, cv2.CV_32F, 0, 1))
    typical_gradient = float(np.median(gradient))
    static = (spread < min(MAX_STATIC_LEVELS, STATIC_SPREAD * typical)).astype(np.uint8)
    # Rows and columns static end to end are bars (left in the whole frame), not logos;
    # left in, they would join a logo next to them into one component.
    static[static.all(axis=1)] = 0
    static[:, static.all(axis=0)] = 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(static, connectivity=4)
    zone = round(CORNER_ZONE * _SIDE)
    mask = np.zeros((_SIDE, _SIDE), dtype=np.uint8)
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        in_corner = (x + w <= zone or x >= _SIDE - zone) and (y + h <= zone or y >= _SIDE - zone)
        if not (in_corner and MIN_OVERLAY_CELLS <= area <= MAX_OVERLAY_SHARE * _SIDE * _SIDE):
            continue
        component = (labels == label).astype(np.uint8)
        around = np.asarray(cv2.dilate(component, _GROW)) > 0
        ring = around & (component == 0)
        edges = float(np.percentile(gradient[around], 90))
        if (
            edges >= MIN_EDGE_CONTRAST * max(typical_gradient, 1.0)
            and float(np.median(spread[ring])) >= MIN_RING_MOTION * typical
        ):
            mask |= component
    if not mask.any():
        return None
    grown: npt.NDArray[np.uint8] = np.asarray(cv2.dilate(mask, _GROW))
    return grown


def paint_over(
    buffers: npt.NDArray[np.uint8], mask: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """`buffers` (64 x 64, or N of them) with the cells under `mask` replaced by the
    picture around them: a normalised convolution (a Gaussian of FILL_SIGMA cells,
    borders reflected, over the unmasked cells), the smooth guess PDQ's low
    frequencies want."""
    keep = (mask == 0).astype(np.float32)
    grey = buffers.astype(np.float32)
    total = _BLUR @ (grey * keep) @ _BLUR.T
    weight = _BLUR @ keep @ _BLUR.T
    guess = total / np.maximum(weight, np.float32(1e-3))
    out = np.where(mask > 0, guess, grey)
    return np.asarray(np.clip(np.rint(out), 0, 255), dtype=np.uint8)


def _blur_matrix(sigma: float) -> npt.NDArray[np.float32]:
    """A Gaussian blur along one axis of 64 cells as a matrix, borders reflected."""
    radius = int(3 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    matrix = np.zeros((_SIDE, _SIDE), dtype=np.float64)
    for row in range(_SIDE):
        for offset, tap in zip(range(-radius, radius + 1), taps, strict=True):
            column = row + offset
            while not 0 <= column < _SIDE:  # reflect about the edge cells
                column = -column if column < 0 else 2 * (_SIDE - 1) - column
            matrix[row, column] += tap
    return matrix.astype(np.float32)


def corner_of(mask: npt.NDArray[np.uint8]) -> str | None:
    """The smallest of CORNERS that holds every cell of `mask`; None if none does."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    for name, (rows, cols) in CORNERS.items():  # smaller sides first
        inside_rows = rows.start <= ys.min() and ys.max() < rows.stop
        if inside_rows and cols.start <= xs.min() and xs.max() < cols.stop:
            return name
    return None


def _masked(region: _Region, kind: ProbeKind) -> list[Probe]:
    """The region's frames with its overlays painted over, and with the standard
    corner holding them painted over."""
    mask = overlay_mask(region.buffers)
    if mask is None:
        return []
    stack = np.stack(region.buffers)
    out = _hashed(region.frames, paint_over(stack, mask), kind)
    corner = corner_of(mask)
    if corner is not None:
        painted = paint_over(stack, _CORNER_MASKS[corner])
        out += _hashed(region.frames, painted, ProbeKind.CORNER, corner)
    return out


def _hashed(
    frames: list[tuple[int, float]],
    buffers: list[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8],
    kind: ProbeKind,
    variant: str = "",
) -> list[Probe]:
    """The probes of these frames' buffers, hashed together (`pdq_from_buffers`)."""
    if not len(buffers):
        return []
    results = pdq_from_buffers(np.asarray(buffers, dtype=np.uint8))
    return [
        Probe(i, t, kind, result, variant) for (i, t), result in zip(frames, results, strict=True)
    ]


def _corner_mask(rows: slice, cols: slice) -> npt.NDArray[np.uint8]:
    mask = np.zeros((_SIDE, _SIDE), dtype=np.uint8)
    mask[rows, cols] = 1
    return mask


_CORNER_MASKS = {name: _corner_mask(rows, cols) for name, (rows, cols) in CORNERS.items()}
_BLUR = _blur_matrix(FILL_SIGMA)


def _by_frequency(boxes: Iterable[Box]) -> list[Box]:
    counts: dict[Box, int] = {}
    for box in boxes:
        counts[box] = counts.get(box, 0) + 1
    return sorted(counts, key=lambda b: -counts[b])
