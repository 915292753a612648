"""Find the picture inside the frame a re-uploader put around it.

People who re-upload propaganda rarely change the picture itself; they put things
around it: black letterbox or pillarbox bars, a coloured frame, white meme caption
bands with text above and below, or a whole social-media post around it (a
screenshot: avatar, name, caption, counters, status bar). Every one of these moves
PDQ far away (the hash is of the whole 64 x 64 downsample: 20% padding leaves
about 1% recall in Thorn's published PDQ benchmark), yet the picture is still
there, axis-aligned, on a canvas of one colour. `content_box` finds it, so that the
caller can hash the content region as well as the whole image.

How (on a copy whose long side is at most ANALYSIS_SIDE = 256 pixels; the box is
scaled back to the caller's picture):

1. **Background colour.** An edge of the picture (its outer EDGE_ROWS = 2 rows or
   columns) is uniform when at least EDGE_UNIFORM = 90% of its pixels are within
   TOLERANCE = 20 (largest channel difference, 0-255) of its median colour. Only
   the colours of uniform edges are candidate backgrounds; with no uniform edge,
   there is nothing to strip (the common case: a photo bleeds off all four edges).
2. **Solid content.** Pixels further than TOLERANCE from the background are
   content. A morphological opening with a square of KERNEL = 6% of the short side
   erases what is thin: text strokes (even meme-sized caption text), icons, rules,
   JPEG ringing along the bars, and avatars smaller than the square. What survives
   is the picture (and other solid blocks); the largest connected block and any
   block at least MERGE = 20% of its size make the box.
3. **Soundness checks**, each of which turns a plain photo's sky or dark corner
   into "nothing found" (None) rather than a wrong crop:
   - the box keeps at least MIN_SIDE = 25% of each side and MIN_AREA = 10% of
     the area (smaller blocks are a detail of the picture, not the picture);
   - it is inset by at least MIN_INSET = 2% of a side somewhere (else the whole
     image is the content and a second probe would add nothing);
   - every inset side is a straight edge: at least EDGE_FILL = 70% of the pixels
     in the STRIP = 3 rows just inside it are content. A pasted picture meets
     the bars along a straight line; a horizon or an object against the sky does
     not, so a landscape with a uniform overcast sky is left alone;
   - at least OUTSIDE_BACKGROUND = 50% of the pixels outside the box are
     background (caption bands: about 85%; screenshots: 75-90%).
4. **Nesting.** A frame around a captioned meme is stripped in one round and the
   caption band in the next; at most ROUNDS = 3 rounds.
5. **To the pixel.** The analysis copy places an edge only to within one of its
   pixels (3 or more of a large picture's), and PDQ moves by 10-30 bits when the
   region it is taken of shifts by a pixel or two. So each stripped edge is then
   moved, within that uncertainty, to the first line of the full-size picture (from
   outside in) of which at least REFINE_FILL = 50% is not that side's background.
6. **Rounded corners.** A post shows its picture with rounded corners, so the
   background shows in the region's corners, and that alone moved PDQ by 20-40 bits
   (benchmarks/quality_transforms.py screenshots, radius 14 px on 530-730 px).
   `content_region` paints over background-coloured pixels outside a quarter
   circle of radius CORNER = 5% of the short side, at corners where both sides
   were stripped (OpenCV's Telea inpainting from the picture around them).
7. **Dark pictures in bars.** A picture that is itself near the bar colour along
   its edges (a starfield in black letterbox bars) has no solid block. When steps
   1-4 find nothing, two opposite edges are checked for bars: runs of lines of which
   at least BAR_UNIFORM = 99% of the pixels are within BAR_TOLERANCE = 12 of the
   edge colour, equally long on both sides (within 1% of the side, plus a pixel),
   each at least MIN_INSET, leaving at least BAR_MIN_SIDE = 10% of the side. A
   uniform sky ends at a horizon, not at a line mirrored on the other side, so a
   plain photo is left alone.

Measured with benchmarks/quality.py (`--references 80 --unrelated 12000`: 75
usable references, crops of scikit-image and PDQ test photos plus procedural
pictures), recall at 31 bits, almost all through the content probe: caption above
97%, below 96%, both 97%, border 99%, letterbox 100%, pillarbox 100%, screenshot
89% (plain PDQ: 0% on all; before the pixel refinement, the corner fill and the
bars rule: 96, 96, 92, 93, 85, 84 and 77%). The screenshot misses are pictures as
dark as the post around them (a night photo or a starfield on the dark theme),
where no box or a wrong one is found, and a few upscaled pictures left 32-38 bits
away. On the 80 plain reference pictures a box was found 6 times (a dark or pale
band along one edge of the picture itself, which steps 1-4 take for a bar); the
content rows stored for them matched no unrelated picture.
"""

from __future__ import annotations

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
REFINE_FILL = 0.5
BAR_TOLERANCE = 12
BAR_UNIFORM = 0.99
BAR_SYMMETRY = 0.01
BAR_MIN_SIDE = 0.1
CORNER = 0.05

_Pixels = npt.NDArray[np.int16]


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


def content_region(image: Image.Image) -> Region | None:
    """The picture inside `image`'s borders, caption bars or canvas, cut out to the
    pixel, its rounded corners filled in; None when nothing sound was found."""
    found = _find(image)
    if found is None:
        return None
    box, colours = found
    return Region(box, _fill_corners(image.crop(box).convert("RGB"), colours))


def _fill_corners(region: Image.Image, colours: dict[str, _Pixels]) -> Image.Image:
    """`region` with the background showing in its corners (a picture pasted with
    rounded corners, as social-media posts show them) painted over from the picture
    around it. Only where both sides meeting at the corner were stripped, only
    outside a quarter circle of radius CORNER of the short side, and only pixels of
    the background colour: a square corner of the picture itself is left as it is."""
    w, h = region.size
    r = max(2, round(CORNER * min(w, h)))
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
        colour = colours[a]
        background = np.abs(pixels[ys, xs] - colour).max(axis=2) <= TOLERANCE
        mask[ys, xs] = (shape & background).astype(np.uint8)
    if not mask.any():
        return region
    filled = cv2.inpaint(np.asarray(region), mask, 3, cv2.INPAINT_TELEA)
    return Image.fromarray(filled)


def _find(image: Image.Image) -> tuple[Box, dict[str, _Pixels]] | None:
    """The content box and, for each stripped side, its background colour."""
    width, height = image.size
    scale = min(1.0, ANALYSIS_SIDE / max(width, height))
    small = image.convert("RGB")
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = small.resize(size, Image.Resampling.BOX)
    pixels: _Pixels = np.asarray(small, dtype=np.int16)
    top, left = 0, 0
    bottom, right = pixels.shape[:2]
    colours: dict[str, _Pixels] = {}  # side -> the background it was stripped of
    for round_ in range(ROUNDS):
        fill = EDGE_FILL if round_ == 0 else NESTED_EDGE_FILL
        stripped = _strip_once(pixels[top:bottom, left:right], fill)
        if stripped is None:
            break
        inner, colour = stripped
        h, w = bottom - top, right - left
        moved = {
            "top": inner.top > 0,
            "bottom": inner.bottom < h,
            "left": inner.left > 0,
            "right": inner.right < w,
        }
        colours.update((side, colour) for side, on in moved.items() if on)
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


def _refine(image: Image.Image, box: Box, colours: dict[str, _Pixels], margin: int) -> Box:
    """`box` with each stripped side moved, within `margin` pixels, to the first line
    of the full-size picture (from outside in) of which at least REFINE_FILL is not
    that side's background. The analysis copy places an edge only to within one of
    its pixels (3 or more of a large picture's), and a PDQ hash moves by 30 bits and
    more when the region it is taken of is shifted by 1% of a side."""
    width, height = image.size
    edges = {"left": box.left, "top": box.top, "right": box.right, "bottom": box.bottom}
    for side, colour in colours.items():
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
        content = (np.abs(rgb - colour).max(axis=2) > TOLERANCE).mean(axis=axis)
        lines = np.flatnonzero(content >= REFINE_FILL)
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


def _strip_once(pixels: _Pixels, fill: float) -> tuple[Box, _Pixels] | None:
    """The content box inside `pixels` and the background colour stripped, or None."""
    h, w = pixels.shape[:2]
    if min(h, w) < 8 * STRIP:
        return None
    for colour in _background_candidates(pixels):
        content = (np.abs(pixels - colour).max(axis=2) > TOLERANCE).astype(np.uint8)
        box = _solid_block(content)
        if box is not None and _sound(content, box, fill):
            return box, colour
    return None


def _background_candidates(pixels: _Pixels) -> list[_Pixels]:
    """Colours of the uniform edges, the most shared first."""
    edges = (
        pixels[1 : 1 + EDGE_ROWS].reshape(-1, 3),
        pixels[-1 - EDGE_ROWS : -1].reshape(-1, 3),
        pixels[:, 1 : 1 + EDGE_ROWS].reshape(-1, 3),
        pixels[:, -1 - EDGE_ROWS : -1].reshape(-1, 3),
    )
    colours: list[tuple[_Pixels, int]] = []
    for edge in edges:
        median = np.median(edge, axis=0).astype(np.int16)
        if (np.abs(edge - median).max(axis=1) <= TOLERANCE).mean() < EDGE_UNIFORM:
            continue
        for i, (seen, count) in enumerate(colours):
            if np.abs(seen - median).max() <= TOLERANCE:
                colours[i] = (seen, count + 1)
                break
        else:
            colours.append((median, 1))
    return [c for c, _ in sorted(colours, key=lambda item: -item[1])]


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
