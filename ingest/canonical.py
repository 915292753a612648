"""Find the picture inside the frame a re-uploader put around it.

People who re-upload propaganda rarely change the picture itself; they put things
around it: black letterbox or pillarbox bars, a coloured frame, white meme caption
bands with text above and below, or a whole social-media post around it (a
screenshot: avatar, name, caption, counters, status bar). Every one of these moves
PDQ far away (the hash is of the whole 64 x 64 downsample: in Thorn's published
PDQ benchmark 20% padding leaves almost nothing of recall), yet the picture is still
there, axis-aligned, on a canvas of one colour. `content_box` finds it, so that the
caller can hash the content region as well as the whole image.

How (on a copy whose long side is at most ANALYSIS_SIDE = 256 pixels; the box is
scaled back to the caller's picture):

1. **Background colour.** An edge of the picture (its outer EDGE_ROWS = 2 rows or
   columns) is uniform when at least EDGE_UNIFORM = 90% of its pixels are within
   TOLERANCE = 20 (largest channel difference, 0-255) of its median colour. Only
   the colours of uniform edges are candidate backgrounds; with no uniform edge,
   there is nothing to strip (the common case: a photo bleeds off all four edges).
   A uniform edge is also *flat* when at least FLAT_SHARE = 95% of its pixels of
   that colour are within FLAT = 4 of it: drawn by software, not a photographed
   sky (on benchmarks/quality.py's screenshots and plain photos this separates
   the two cleanly; docs/measurements.md, "Content region"). A colour flat on at
   least CANVAS_EDGES = 3 edges is a *canvas* around the picture (a post, a
   frame), not a band along one side.
2. **Solid content.** Pixels further than TOLERANCE from the background are
   content. A morphological opening with a square of KERNEL = 6% of the short side
   erases what is thin: text strokes (even meme-sized caption text), icons, rules,
   JPEG ringing along the bars, and avatars smaller than the square. What survives
   is the picture (and other solid blocks); the largest connected block and any
   block at least MERGE = 20% of its size make the box. When that is not sound
   (step 3) and the background is a canvas, the round is tried again with content
   further than FINE_TOLERANCE = 8 from it. A picture as dark as the post around
   it (a night photo on the dark theme) has many pixels within 20 of the canvas,
   so its block breaks up along its dark edges, yet almost none within 6 (a JPEG
   of a drawn canvas stays within a few levels of its colour); a black status
   bar above the post is then a block apart from the picture's, not one the dark
   canvas joins to it. TOLERANCE is tried first: at 8, JPEG's colour bleed from a
   saturated frame widens the block by a pixel and spoils the next round's edges
   (a frame around a captioned meme loses recall with 8 tried first). A canvas,
   not any flat edge: a night photo can have flat dark edges, and a dark band
   along one of them was cut off at 8 (darkened copies of the plain references;
   none when three edges are asked for). Figures: docs/measurements.md, "Content
   region".
3. **Soundness checks**, each of which turns a plain photo's sky or dark corner
   into "nothing found" (None) rather than a wrong crop:
   - the box keeps at least MIN_SIDE = 25% of each side and MIN_AREA = 10% of
     the area (smaller blocks are a detail of the picture, not the picture);
   - it is inset by at least MIN_INSET = 2% of a side somewhere (else the whole
     image is the content and a second probe would add nothing);
   - every inset side is a straight edge: at least EDGE_FILL = 50% of the pixels
     in the STRIP = 3 rows just inside it are content (NESTED_EDGE_FILL = 90% in
     the rounds after the first). A pasted picture meets the bars along a
     straight line; a horizon or an object against the sky does not, so a
     landscape with a uniform overcast sky is left alone;
   - at least OUTSIDE_BACKGROUND = 50% of the pixels outside the box are
     background (caption bands: about 85%; screenshots: 75-90%).
4. **Nesting.** A frame around a captioned meme is stripped in one round and the
   caption band in the next; at most ROUNDS = 3 rounds.
5. **To the pixel.** The analysis copy places an edge only to within one of its
   pixels (3 or more of a large picture's), and PDQ moves by 10-30 bits when the
   region it is taken of shifts by a pixel or two. So each stripped edge is then
   moved, within that uncertainty, to the middle of the step from background to
   picture on the full-size picture: the first line (from outside in) whose median
   distance from that side's background is at least REFINE_STEP = half the
   largest such median there, and at least the tolerance the background was
   stripped at. Resampling and JPEG blur a pasted edge over a line or two, and at
   FINE_TOLERANCE that blur alone counts as content: a line taken as picture once
   half its pixels were content put such edges a line outside the picture.
6. **Rounded corners.** A post shows its picture with rounded corners, so the
   background shows in the region's corners, and that alone moved PDQ by a large
   part of the match threshold (benchmarks/quality_transforms.py screenshots).
   `content_region` paints over background-coloured pixels outside a quarter
   circle of radius CORNER = 5% of the short side, at corners where both sides
   were stripped, and the CORNER_RIM = 2 pixels around them, since the rounding's
   rim is a blend of picture and background (anti-aliased on screen, blurred by
   JPEG); OpenCV's Telea inpainting fills them from the picture around them. With
   the rim filled, the content region of a screenshot cut at its true box comes
   about as close to the stored hash as the picture merely resized to the post's
   size; with the rim left in, beyond the threshold.
7. **Dark pictures in bars.** A picture that is itself near the bar colour along
   its edges (a starfield in black letterbox bars) has no solid block. When steps
   1-4 find nothing, two opposite edges are checked for bars: runs of lines of which
   at least BAR_UNIFORM = 99% of the pixels are within BAR_TOLERANCE = 12 of the
   edge colour, equally long on both sides (within 1% of the side, plus a pixel),
   each at least MIN_INSET, leaving at least BAR_MIN_SIDE = 10% of the side. A
   uniform sky ends at a horizon, not at a line mirrored on the other side, so a
   plain photo is left alone.

8. **Candidate regions** (`content_regions`). One box cannot serve every layout: a
   grid of pictures, a picture in a chat bubble among text bubbles, a post inside a
   phone bezel on a backdrop, a page with sidebars. `content_regions` returns
   `content_region`'s own region first (so the "content" probe is unchanged), then
   further candidates, at most MAX_REGIONS in all, each meant as a probe:
   - every solid block of steps 1-2, not merged with others (edge uniformity is
     measured leaving out CORNER_TRIM = 15% of each edge at either end: the rounded
     corners of a card or a phone body), and the union of any two blocks stacked
     with the same left and right sides or side by side with the same top and
     bottom (within ALIGN = 2 pixels: a picture a band of the background's colour
     broke in two), that keeps BLOCK_MIN_SIDE = 12% of each side and
     BLOCK_MIN_AREA = 2% of the image, fills at least BLOCK_FILL = 50% of its box,
     and meets its background along straight edges (EDGE_FILL);
   - and, DEPTH = 3 levels down, the blocks inside each such block against its own
     edge colour (bezel, screen, card, bubble);
   - a block whose most common colour (quantised) covers PLAIN_SHARE = 60% or more
     of it is a drawn surface (bubble, card, button, screen): recursed into, not
     offered. The rest are offered most picture-like first (that share, in steps of
     0.1), then the more deeply nested (tighter), then the larger;
   - each box is placed to the pixel (step 5), less lines of its background along
     its sides, and cut along lines of its background running right across it (at
     least GAP_SHARE = 95% of the line: the gaps of a grid) into parts of at least
     PART_MIN = 15% of the side, columns then rows, twice over;
   - a box (content_region's own, or a block no gap of the background cut) is
     also cut along seams, into cells offered with it: lines across it where the
     picture steps by SEAM_STEP = 24 grey levels or more between the lines
     SEAM_GAP = 2 either side, along SEAM_SHARE = 90% of the line (a grid's gutter
     a pixel or two wide after resampling and JPEG no longer has the background's
     colour), across the axis with the strongest seam first (a grid's rows may be
     split at different places), twice over; cells ranked as blocks, before them at
     equal picture-likeness;
   - a thin frame inside a box (a bubble's padding, an outline) is dropped: lines
     with FRAME_UNIFORM = 80% of their pixels within FINE_TOLERANCE of their median,
     up to FRAME_MAX = 4% of the side, on sides whose frame colour another side
     shares (a picture's own sky along one edge stays);
   - a box overlapping one already offered by SAME_BOX = 90% (intersection over
     union) is dropped; rounded corners are filled as in step 6 with a quarter
     circle of BLOCK_CORNER = 10% of the short side (apps round small pictures
     more).
   On a plain photo it finds nothing, as `content_region` does.

What it buys, on benchmarks/quality.py's corpus (`--references 80 --unrelated
12000`): nearly every caption, border, letterbox, pillarbox and screenshot edit is
recovered at 31 bits, almost all through the content probe, where plain PDQ
recovers none; screenshot boxes are found to the pixel in all but a few cases; and
the content rows stored for plain pictures in which a box is found match no
unrelated picture. The figures, their history and the known misses are in
docs/measurements.md, "Content region".
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

ANALYSIS_SIDE = 256
EDGE_ROWS = 2
EDGE_UNIFORM = 0.9
TOLERANCE = 20
FINE_TOLERANCE = 8
FLAT = 4
FLAT_SHARE = 0.95
CANVAS_EDGES = 3
CORNER_RIM = 2
KERNEL = 0.06
MERGE = 0.2
MIN_SIDE = 0.25
MIN_AREA = 0.10
MIN_INSET = 0.02
STRIP = 3
EDGE_FILL = 0.5
NESTED_EDGE_FILL = 0.9
OUTSIDE_BACKGROUND = 0.5
ROUNDS = 3
REFINE_STEP = 0.5
BAR_TOLERANCE = 12
BAR_UNIFORM = 0.99
BAR_SYMMETRY = 0.01
BAR_MIN_SIDE = 0.1
CORNER = 0.05
MAX_REGIONS = 5  # content_region's own region and up to 4 candidates
CORNER_TRIM = 0.15
GAP_SHARE = 0.95
PART_MIN = 0.15
ALIGN = 2
BLOCK_CORNER = 0.1
FRAME_UNIFORM = 0.8
FRAME_MAX = 0.04
BLOCK_FILL = 0.5
BLOCK_MIN_SIDE = 0.12
BLOCK_MIN_AREA = 0.02
DEPTH = 3
PLAIN_SHARE = 0.6
SAME_BOX = 0.9
SEAM_STEP = 24
SEAM_GAP = 2
SEAM_SHARE = 0.9


_Pixels = npt.NDArray[np.int16]


class Background(NamedTuple):
    """A colour stripped from a side, and how far from it a pixel counted as content."""

    colour: _Pixels
    tolerance: int


class Box(NamedTuple):
    """A region of a picture in pixels: left and top inclusive, right and bottom not."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


class Region(NamedTuple):
    """The picture found inside an image: its box, and its pixels with any rounded
    corners filled in (see the module docstring)."""

    box: Box
    picture: Image.Image


def content_box(image: Image.Image) -> Box | None:
    """The box of the picture inside `image`'s borders, caption bars or canvas; None
    when nothing sound was found (see the module docstring for the rules)."""
    found = _find(image)
    return None if found is None else found[0]


def content_region(image: Image.Image, pixels: _Pixels | None = None) -> Region | None:
    """The picture inside `image`'s borders, caption bars or canvas, cut out to the
    pixel, its rounded corners filled in; None when nothing sound was found.
    `pixels`: `image`'s analysis copy, when the caller has made it already."""
    found = _find(image, pixels)
    if found is None:
        return None
    box, colours = found
    return Region(box, _fill_corners(image.crop(box).convert("RGB"), colours))


def _fill_corners(
    region: Image.Image, colours: dict[str, Background], corner: float = CORNER
) -> Image.Image:
    """`region` with the background showing in its corners (a picture pasted with
    rounded corners, as social-media posts show them) painted over from the picture
    around it. Only where both sides meeting at the corner were stripped, only
    outside a quarter circle of radius CORNER of the short side, and only pixels of
    the background colour and the CORNER_RIM around them (the anti-aliased edge of
    the rounding): a square corner of the picture itself is left as it is."""
    w, h = region.size
    r = max(2, round(corner * min(w, h)))
    if min(w, h) < 4 * r:
        return region
    yy, xx = np.mgrid[0:r, 0:r]
    outside = (r - 0.5 - xx) ** 2 + (r - 0.5 - yy) ** 2 > r**2  # the top-left corner
    pixels = np.asarray(region, dtype=np.int16)
    mask = np.zeros((h, w), dtype=np.uint8)
    corners = {
        ("top", "left"): (slice(0, r), slice(0, r), outside),
        ("top", "right"): (slice(0, r), slice(w - r, w), outside[:, ::-1]),
        ("bottom", "left"): (slice(h - r, h), slice(0, r), outside[::-1, :]),
        ("bottom", "right"): (slice(h - r, h), slice(w - r, w), outside[::-1, ::-1]),
    }
    for (a, b), (ys, xs, shape) in corners.items():
        if a not in colours or b not in colours:
            continue
        colour, tolerance = colours[a]
        background = np.abs(pixels[ys, xs] - colour).max(axis=2) <= tolerance
        mask[ys, xs] = (shape & background).astype(np.uint8)
    if not mask.any():
        return region
    rim = np.ones((2 * CORNER_RIM + 1, 2 * CORNER_RIM + 1), np.uint8)
    squares = np.zeros_like(mask)  # the rim stays inside the corners' squares
    for ys, xs, _ in corners.values():
        squares[ys, xs] = 1
    mask = np.asarray(cv2.dilate(mask, rim), dtype=np.uint8) & squares
    filled = cv2.inpaint(np.asarray(region), mask, 3, cv2.INPAINT_TELEA)
    return Image.fromarray(filled)


def _analysis_copy(image: Image.Image) -> _Pixels:
    """`image` as RGB with its long side at most ANALYSIS_SIDE."""
    width, height = image.size
    scale = min(1.0, ANALYSIS_SIDE / max(width, height))
    small = image.convert("RGB")
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = small.resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.int16)


def _find(
    image: Image.Image, pixels: _Pixels | None = None
) -> tuple[Box, dict[str, Background]] | None:
    """The content box and, for each stripped side, the background it was stripped of;
    `pixels`: `_analysis_copy(image)` if already made."""
    width, height = image.size
    if pixels is None:
        pixels = _analysis_copy(image)
    top, left = 0, 0
    bottom, right = pixels.shape[:2]
    colours: dict[str, Background] = {}  # side -> the background it was stripped of
    for round_ in range(ROUNDS):
        fill = EDGE_FILL if round_ == 0 else NESTED_EDGE_FILL
        stripped = _strip_once(pixels[top:bottom, left:right], fill)
        if stripped is None:
            break
        inner, background = stripped
        h, w = bottom - top, right - left
        moved = {
            "top": inner.top > 0,
            "bottom": inner.bottom < h,
            "left": inner.left > 0,
            "right": inner.right < w,
        }
        colours.update((side, background) for side, on in moved.items() if on)
        top, left, bottom, right = (
            top + inner.top,
            left + inner.left,
            top + inner.bottom,
            left + inner.right,
        )
    sx, sy = width / pixels.shape[1], height / pixels.shape[0]
    if not colours:
        bars = _bars(image, pixels, math.ceil(max(sx, sy)) + 1)
        return None if bars is None else (bars, {})
    rough = Box(
        max(0, round(left * sx)),
        max(0, round(top * sy)),
        min(width, round(right * sx)),
        min(height, round(bottom * sy)),
    )
    return _refine(image, rough, colours, math.ceil(max(sx, sy)) + 1), colours


def _refine(image: Image.Image, box: Box, colours: dict[str, Background], margin: int) -> Box:
    """`box` with each stripped side moved, within `margin` pixels, to the middle of
    the step from that side's background to the picture on the full-size picture
    (step 5 of the module docstring). The analysis copy places an edge only to
    within one of its pixels (3 or more of a large picture's), and a PDQ hash moves
    by 30 bits and more when the region it is taken of is shifted by 1% of a side."""
    width, height = image.size
    edges = {"left": box.left, "top": box.top, "right": box.right, "bottom": box.bottom}
    for side, (colour, tolerance) in colours.items():
        if side in ("top", "bottom"):
            at = box.top if side == "top" else box.bottom - 1
            lo, hi = max(0, at - margin), min(height, at + margin + 1)
            band = image.crop((box.left, lo, box.right, hi))
            axis = 1
        else:
            at = box.left if side == "left" else box.right - 1
            lo, hi = max(0, at - margin), min(width, at + margin + 1)
            band = image.crop((lo, box.top, hi, box.bottom))
            axis = 0
        if band.width == 0 or band.height == 0:
            continue
        rgb = np.asarray(band.convert("RGB"), dtype=np.int16)
        profile = np.median(np.abs(rgb - colour).max(axis=2), axis=axis)  # per line
        lines = np.flatnonzero(profile >= max(tolerance, REFINE_STEP * profile.max()))
        if len(lines) == 0:
            continue
        if side in ("top", "left"):
            edges[side] = lo + int(lines[0])
        else:
            edges[side] = lo + int(lines[-1]) + 1
    refined = Box(edges["left"], edges["top"], edges["right"], edges["bottom"])
    return refined if refined.width > 0 and refined.height > 0 else box


def _bars(image: Image.Image, pixels: _Pixels, margin: int) -> Box | None:
    """Letterbox or pillarbox bars around a picture too dark (or too pale) along its
    edges for the solid-block rule: equal runs of uniform lines at two opposite
    edges, in one colour (see the module docstring). The box in `image`'s pixels,
    its edges found on `image` itself; None if there are no such bars."""
    for axis in (0, 1):  # 0: rows (letterbox), 1: columns (pillarbox)
        lines = pixels if axis == 0 else pixels.transpose(1, 0, 2)
        n = lines.shape[0]
        colour = np.median(lines[:EDGE_ROWS].reshape(-1, 3), axis=0).astype(np.int16)
        uniform = _uniform_lines(lines, colour)
        if uniform.all() or not (uniform[0] and uniform[-1]):
            continue
        first, last = int(np.argmin(uniform)), int(np.argmin(uniform[::-1]))
        if min(first, last) < MIN_INSET * n or abs(first - last) > 1 + BAR_SYMMETRY * n:
            continue
        if n - first - last < BAR_MIN_SIDE * n:
            continue
        full = np.asarray(image.convert("RGB"), dtype=np.int16)
        full_lines = full if axis == 0 else full.transpose(1, 0, 2)
        scale = full_lines.shape[0] / n
        rough = (round(first * scale), round((n - last) * scale))
        inside = np.flatnonzero(~_uniform_lines(full_lines, colour))
        start, end = (int(inside[0]), int(inside[-1]) + 1) if len(inside) else rough
        if abs(start - rough[0]) > margin or abs(end - rough[1]) > margin:
            start, end = rough
        if axis == 0:
            return Box(0, start, image.width, end)
        return Box(start, 0, end, image.height)
    return None


def _uniform_lines(lines: _Pixels, colour: _Pixels) -> npt.NDArray[np.bool_]:
    close = np.abs(lines - colour).max(axis=2) <= BAR_TOLERANCE
    return np.asarray(close.mean(axis=1) >= BAR_UNIFORM)


def _strip_once(pixels: _Pixels, fill: float) -> tuple[Box, Background] | None:
    """The content box inside `pixels` and the background stripped, or None."""
    h, w = pixels.shape[:2]
    if min(h, w) < 8 * STRIP:
        return None
    for background in _backgrounds(pixels):
        distance = np.abs(pixels - background.colour).max(axis=2)
        content = (distance > background.tolerance).astype(np.uint8)
        box = _solid_block(content)
        if box is not None and _sound(content, box, fill):
            return box, background
    return None


def _backgrounds(pixels: _Pixels, trim: float = 0.0) -> list[Background]:
    """The backgrounds to try, in order: the colours of the uniform edges, the most
    shared first, each at TOLERANCE and then, if it is a canvas (flat on at least
    CANVAS_EDGES edges), at FINE_TOLERANCE. `trim`: the share of each edge's length
    left out at either end (the rounded corners of a card or a phone)."""
    h, w = pixels.shape[:2]
    ty, tx = round(trim * h), round(trim * w)
    edges = (
        pixels[1 : 1 + EDGE_ROWS, tx : w - tx].reshape(-1, 3),
        pixels[-1 - EDGE_ROWS : -1, tx : w - tx].reshape(-1, 3),
        pixels[ty : h - ty, 1 : 1 + EDGE_ROWS].reshape(-1, 3),
        pixels[ty : h - ty, -1 - EDGE_ROWS : -1].reshape(-1, 3),
    )
    colours: list[tuple[_Pixels, int, bool]] = []  # colour, edges sharing it, all flat
    for edge in edges:
        median = np.median(edge, axis=0).astype(np.int16)
        distance = np.abs(edge - median).max(axis=1)
        near = distance <= TOLERANCE
        if near.mean() < EDGE_UNIFORM:
            continue
        # measured among the edge's pixels of its colour: a status bar or an avatar
        # crossing the edge is not noise in the canvas
        flat = bool((distance[near] <= FLAT).mean() >= FLAT_SHARE)
        for i, (seen, count, all_flat) in enumerate(colours):
            if np.abs(seen - median).max() <= TOLERANCE:
                colours[i] = (seen, count + 1, all_flat and flat)
                break
        else:
            colours.append((median, 1, flat))
    found: list[Background] = []
    for colour, shared, flat in sorted(colours, key=lambda item: -item[1]):
        found.append(Background(colour, TOLERANCE))
        if flat and shared >= CANVAS_EDGES:
            found.append(Background(colour, FINE_TOLERANCE))
    return found


def _solid_block(content: npt.NDArray[np.uint8]) -> Box | None:
    h, w = content.shape
    k = max(3, round(KERNEL * min(h, w))) | 1  # odd: OpenCV shifts even kernels by a pixel
    opened = cv2.morphologyEx(content, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if count <= 1:
        return None
    blocks = stats[1:]
    areas = blocks[:, cv2.CC_STAT_AREA]
    kept = blocks[areas >= MERGE * areas.max()]
    left = int(kept[:, cv2.CC_STAT_LEFT].min())
    top = int(kept[:, cv2.CC_STAT_TOP].min())
    right = int((kept[:, cv2.CC_STAT_LEFT] + kept[:, cv2.CC_STAT_WIDTH]).max())
    bottom = int((kept[:, cv2.CC_STAT_TOP] + kept[:, cv2.CC_STAT_HEIGHT]).max())
    return Box(left, top, right, bottom)


def _sound(content: npt.NDArray[np.uint8], box: Box, fill: float) -> bool:
    h, w = content.shape
    if box.width < MIN_SIDE * w or box.height < MIN_SIDE * h:
        return False
    if box.width * box.height < MIN_AREA * w * h:
        return False
    insets = {
        "top": (box.top, h),
        "bottom": (h - box.bottom, h),
        "left": (box.left, w),
        "right": (w - box.right, w),
    }
    stripped = {side for side, (inset, extent) in insets.items() if inset >= MIN_INSET * extent}
    if not stripped:
        return False
    inside = content[box.top : box.bottom, box.left : box.right]
    strips = {
        "top": inside[:STRIP],
        "bottom": inside[-STRIP:],
        "left": inside[:, :STRIP],
        "right": inside[:, -STRIP:],
    }
    if any(strips[side].mean() < fill for side in stripped):
        return False
    outside = int(content.sum()) - int(inside.sum())
    outside_area = h * w - box.width * box.height
    return bool(1 - outside / outside_area >= OUTSIDE_BACKGROUND)


def content_regions(image: Image.Image) -> list[Region]:
    """Candidate pictures inside `image`: `content_region`'s first when it finds one,
    then the blocks of step 8 of the module docstring, most picture-like first; at
    most MAX_REGIONS, [] when nothing sound was found."""
    width, height = image.size
    pixels = _analysis_copy(image)
    h, w = pixels.shape[:2]
    found: list[tuple[tuple[float, int, int], Box, dict[str, Background]]] = []
    _blocks(pixels, Box(0, 0, w, h), (w, h), DEPTH, found)
    sx, sy = width / w, height / h
    margin = math.ceil(max(sx, sy)) + 1
    first = content_region(image, pixels)
    regions = [] if first is None else [first]
    candidates: list[tuple[tuple[float, int, int], Box, dict[str, Background]]] = []
    grey: _Grey | None = None
    if first is not None:
        grey = _grey(image)
        candidates += _cells(grey, pixels, first.box, (sx, sy))
    for rank, box, colours in found:
        rough = Box(
            max(0, round(box.left * sx)),
            max(0, round(box.top * sy)),
            min(width, round(box.right * sx)),
            min(height, round(box.bottom * sy)),
        )
        fine = _refine(image, rough, colours, margin)
        parts = _split(image, fine, colours)
        candidates += [(rank, part, colours) for part in parts]
        if len(parts) == 1:
            grey = _grey(image) if grey is None else grey
            candidates += _cells(grey, pixels, parts[0], (sx, sy))
    for _, part, colours in sorted(candidates, key=lambda item: item[0], reverse=True):
        part = _unframe(image, part)
        if any(_overlap(part, r.box) >= SAME_BOX for r in regions):
            continue
        picture = _fill_corners(image.crop(part).convert("RGB"), colours, BLOCK_CORNER)
        regions.append(Region(part, picture))
        if len(regions) >= MAX_REGIONS:
            break
    return regions[:MAX_REGIONS]


_Grey = npt.NDArray[np.int16]


def _grey(image: Image.Image) -> _Grey:
    return np.asarray(image.convert("L"), dtype=np.int16)


def _cells(
    grey: _Grey, pixels: _Pixels, box: Box, scale: tuple[float, float]
) -> list[tuple[tuple[float, int, int], Box, dict[str, Background]]]:
    """The parts of `box` between seams (step 8 of the module docstring), ranked as
    blocks are, tightest: the cells of a grid whose gutters are too thin to keep
    the background's colour. `pixels` is the analysis copy, `scale` its pixels per
    pixel of `grey` (the picture)."""
    parts = _seam_cut(grey, box, 2)
    if len(parts) < 2:
        return []
    sx, sy = scale
    found: list[tuple[tuple[float, int, int], Box, dict[str, Background]]] = []
    for part in parts:
        block = pixels[
            int(part.top / sy) : max(int(part.top / sy) + 1, int(part.bottom / sy)),
            int(part.left / sx) : max(int(part.left / sx) + 1, int(part.right / sx)),
        ]
        plain = _plain_share(block)
        if plain < PLAIN_SHARE:
            found.append(((round(1 - plain, 1), 0, part.width * part.height), part, {}))
    return found


def _seam_cut(grey: _Grey, box: Box, depth: int) -> list[Box]:
    """`box` cut along seams: lines across it where the picture steps by SEAM_STEP
    grey levels or more between the lines SEAM_GAP either side, along SEAM_SHARE of
    the line; across the axis with the strongest seam, each part again `depth` - 1
    times (the rows of a grid first, where its rows are split at other places)."""
    within = grey[box.top : box.bottom, box.left : box.right]
    best: tuple[float, int, npt.NDArray[np.float64]] | None = None
    for axis in (0, 1):  # 0: cut into columns, 1: into rows
        lines = within if axis == 1 else within.T  # lines[k]: the k-th row or column
        if lines.shape[0] < 4 * SEAM_GAP + 2:
            continue
        step = np.abs(lines[2 * SEAM_GAP :] - lines[: -2 * SEAM_GAP]) >= SEAM_STEP
        share = np.asarray(step.mean(axis=1), dtype=np.float64)
        if best is None or share.max() > best[0]:
            best = (float(share.max()), axis, share)
    if best is None or best[0] < SEAM_SHARE:
        return [box]
    _, axis, share = best
    n = len(share) + 2 * SEAM_GAP
    seam = np.zeros(n, dtype=bool)
    seam[SEAM_GAP : n - SEAM_GAP] = share >= SEAM_SHARE
    runs = [  # a seam is flagged SEAM_GAP lines either side of the step
        (a - SEAM_GAP if a > 0 else a, b + SEAM_GAP if b < n else b) for a, b in _runs(~seam, n)
    ]
    if len(runs) < 2:
        return [box]
    cuts = _spans(box, runs, axis)
    if depth <= 1:
        return cuts
    return [part for cut in cuts for part in _seam_cut(grey, cut, depth - 1)]


def _unframe(image: Image.Image, box: Box) -> Box:
    """`box` less a thin frame inside it: the padding of a chat bubble, a card's
    outline. Lines along a side are dropped while at least FRAME_UNIFORM of their
    pixels are within FINE_TOLERANCE of the line's median colour, up to FRAME_MAX of
    the side; only the sides whose frame shares its colour with another side's, so
    that a picture's own uniform sky along one edge is kept."""
    rgb = np.asarray(image.crop(box).convert("RGB"), dtype=np.int16)
    h, w = rgb.shape[:2]
    cap = max(1, round(FRAME_MAX * min(w, h)))
    lines = {
        "top": rgb[:cap],
        "bottom": rgb[::-1][:cap],
        "left": rgb[:, :cap].transpose(1, 0, 2),
        "right": rgb[:, ::-1][:, :cap].transpose(1, 0, 2),
    }
    frames: dict[str, tuple[int, _Pixels]] = {}
    for side, stack in lines.items():
        depth, colour = 0, None
        for line in stack:
            median = np.median(line, axis=0)
            if (np.abs(line - median).max(axis=1) <= FINE_TOLERANCE).mean() < FRAME_UNIFORM:
                break
            if colour is not None and np.abs(median - colour).max() > FINE_TOLERANCE:
                break
            colour = median if colour is None else colour
            depth += 1
        if depth and colour is not None:
            frames[side] = (depth, colour.astype(np.int16))
    cut = {side: 0 for side in lines}
    for side, (depth, colour) in frames.items():
        shared = any(
            np.abs(colour - other).max() <= FINE_TOLERANCE
            for name, (_, other) in frames.items()
            if name != side
        )
        if shared:
            cut[side] = depth
    if cut["left"] + cut["right"] >= w or cut["top"] + cut["bottom"] >= h:
        return box
    return Box(
        box.left + cut["left"],
        box.top + cut["top"],
        box.right - cut["right"],
        box.bottom - cut["bottom"],
    )


def _split(image: Image.Image, box: Box, colours: dict[str, Background]) -> list[Box]:
    """`box` less any lines of its background along its sides, cut along lines of
    its background running right across it (a grid of pictures): columns, then
    rows, each part again down to two cuts."""
    if not colours:
        return [box]
    colour, tolerance = next(iter(colours.values()))
    rgb = np.asarray(image.crop(box).convert("RGB"))
    fill = tuple(int(c) for c in colour)
    diff = cv2.absdiff(rgb, np.full_like(rgb, fill))
    distance = np.asarray(cv2.max(cv2.max(diff[..., 0], diff[..., 1]), diff[..., 2]), np.uint8)
    return [
        Box(box.left + p.left, box.top + p.top, box.left + p.right, box.top + p.bottom)
        for p in _cut(distance, tolerance, Box(0, 0, box.width, box.height), 2)
    ]


def _cut(distance: npt.NDArray[np.uint8], tolerance: int, box: Box, depth: int) -> list[Box]:
    """`_split` on `distance` (of the pixels from the background) within `box`."""
    for axis in (0, 1):  # 0: cut into columns, 1: into rows
        within = distance[box.top : box.bottom, box.left : box.right]
        extent = within.shape[1 - axis]
        runs = _runs((within <= tolerance).mean(axis=axis) < GAP_SHARE, extent)
        if not runs:
            return [box]
        cuts = _spans(box, runs, axis)
        if len(cuts) == 1:
            box = cuts[0]
            continue
        if depth == 0:
            return [box]
        return [part for cut in cuts for part in _cut(distance, tolerance, cut, depth - 1)]
    return [box]


def _spans(box: Box, runs: list[tuple[int, int]], axis: int) -> list[Box]:
    """`box` cut into the spans `runs` (offsets from its left edge along axis 0,
    columns; from its top along axis 1, rows)."""
    return [
        Box(box.left + a, box.top, box.left + b, box.bottom)
        if axis == 0
        else Box(box.left, box.top + a, box.right, box.top + b)
        for a, b in runs
    ]


def _runs(content: npt.NDArray[np.bool_], extent: int) -> list[tuple[int, int]]:
    """The runs of True in `content` at least PART_MIN of `extent` long."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], content.astype(np.int8), [0]))))
    runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return [(a, b) for a, b in runs if b - a >= PART_MIN * extent]


def _overlap(a: Box, b: Box) -> float:
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def _blocks(
    pixels: _Pixels,
    at: Box,
    whole: tuple[int, int],
    depth: int,
    found: list[tuple[tuple[float, int, int], Box, dict[str, Background]]],
) -> None:
    """Adds to `found` (score, box in the analysis copy, backgrounds) every solid,
    straight-edged block inside `at` and, `depth` levels down, inside those blocks."""
    region = pixels[at.top : at.bottom, at.left : at.right]
    h, w = region.shape[:2]
    if min(h, w) < 8 * STRIP:
        return
    for background in _backgrounds(region, CORNER_TRIM):
        distance = np.abs(region - background.colour).max(axis=2)
        content = (distance > background.tolerance).astype(np.uint8)
        k = max(3, round(KERNEL * min(h, w))) | 1
        opened = cv2.morphologyEx(content, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
        _, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
        boxes = [
            (Box(int(x), int(y), int(x + bw), int(y + bh)), int(area))
            for x, y, bw, bh, area in stats[1:]
        ]
        boxes += _aligned(boxes)
        added = False
        for box, area in boxes:
            bw, bh = box.width, box.height
            if bw < BLOCK_MIN_SIDE * whole[0] or bh < BLOCK_MIN_SIDE * whole[1]:
                continue
            if bw * bh < BLOCK_MIN_AREA * whole[0] * whole[1] or area < BLOCK_FILL * bw * bh:
                continue
            inside = content[box.top : box.bottom, box.left : box.right]
            edges = {
                "top": (box.top > 0, inside[:STRIP]),
                "bottom": (box.bottom < h, inside[-STRIP:]),
                "left": (box.left > 0, inside[:, :STRIP]),
                "right": (box.right < w, inside[:, -STRIP:]),
            }
            if not any(inset for inset, _ in edges.values()):
                continue
            if any(inset and strip.mean() < EDGE_FILL for inset, strip in edges.values()):
                continue
            colours = {side: background for side, (inset, _) in edges.items() if inset}
            moved = Box(
                at.left + box.left, at.top + box.top, at.left + box.right, at.top + box.bottom
            )
            block = pixels[moved.top : moved.bottom, moved.left : moved.right]
            plain = _plain_share(block)
            if plain < PLAIN_SHARE:
                rank = (round(1 - plain, 1), -depth, int(bw * bh))  # nested first: tighter
                found.append((rank, moved, colours))
            added = True
            if depth > 1:
                _blocks(pixels, moved, whole, depth - 1, found)
        if added:
            return


def _aligned(boxes: list[tuple[Box, int]]) -> list[tuple[Box, int]]:
    """The union of each two blocks stacked with the same left and right sides (or
    side by side with the same top and bottom), within ALIGN pixels: a picture that
    a band of the background's colour across it broke in two."""
    unions = []
    for (a, area_a), (b, area_b) in itertools.combinations(boxes, 2):
        columns = abs(a.left - b.left) <= ALIGN and abs(a.right - b.right) <= ALIGN
        rows = abs(a.top - b.top) <= ALIGN and abs(a.bottom - b.bottom) <= ALIGN
        if columns or rows:
            union = Box(
                min(a.left, b.left),
                min(a.top, b.top),
                max(a.right, b.right),
                max(a.bottom, b.bottom),
            )
            gap = union.width * union.height - a.width * a.height - b.width * b.height
            unions.append((union, area_a + area_b + max(0, gap)))
    return unions


def _plain_share(block: _Pixels) -> float:  # quantised to 11 levels per channel
    """The share of `block`'s pixels in its most common colour (quantised): high for
    a drawn surface with text on it, low for a picture."""
    q = (block // 24).reshape(-1, 3)
    codes = q[:, 0] * 121 + q[:, 1] * 11 + q[:, 2]
    return float(np.bincount(codes).max() / len(codes))
