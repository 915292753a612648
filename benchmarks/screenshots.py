"""Screenshots of many layouts around a picture, and how often its content region matches.

    .venv/bin/python -m benchmarks.screenshots [--references 40] [--per-family 2]
        [--unrelated 300] [--seed 0] [--families post,phone,...] [--diagnose]
        [--misses FOLDER]

Needs the `bench` extra (scikit-image for the seed photos of quality_corpus).
`--diagnose` prints each miss with the true box and the one found; `--misses`
saves the decoded screenshots that no candidate matched.

Why: benchmarks/quality_transforms.py draws one post canvas, and ingest/canonical.py
was measured on it; a re-uploader's screenshot can be any app, theme, device or page.
This generator draws a wide, seeded variety of them, so that the content region is
measured on layouts it was not tuned to. Families (`FAMILIES`):

- `post`: a feed post. Light, dim, dark or an arbitrary background colour, sometimes
  a subtle gradient or noise; status bar, top app bar, bottom navigation bar; an
  avatar (round or square, 24-72 px, left or right) with a name; 0-10 lines of text
  above and 0-4 below (12-24 px fonts), or beside the picture; picture margins from
  0 (edge to edge) to wide, full width or not (centred or left-aligned), corners
  rounded 0-30 px; like/share rows, buttons, a reply box, dividers, and sometimes
  the post on a card (border or drop shadow) on a page of another colour.
- `phone`: a post inside a phone bezel (body, screen with rounded corners, sometimes
  a notch) on a backdrop.
- `desktop`: a browser window: tab strip, address bar, left and right sidebars,
  the post in a centre column.
- `chat`: a messenger: wallpaper (flat, gradient or noise), header, text bubbles
  left and right, the picture in a bubble (0-8 px padding, sometimes a caption
  under it inside the bubble), an input bar.
- `grid`: a post whose picture is one of 2-4 pictures laid out in rows; each cell
  shows its whole picture (cells follow the pictures' aspect; a grid that crops its
  cells is a crop, left to crop-robust signals).

Every screenshot is then rescaled by 0.6-1.5 and JPEG-compressed at quality 60-95.
Everything is deterministic in the generator passed in.

What the CLI measures, for `--references` pictures of benchmarks/quality_corpus.py
times `--per-family` screenshots of each family: the share whose content probe (the
PDQ ingest/probes.py computes for the "content" probe of the JPEG) is within
THRESHOLD = 31 bits of the reference's own PDQ, per family and per theme/feature
tag; how often a content region is found at all; and the same for the best of the
other candidate regions ingest/probes.py probes (`content_2`...); "all matchable"
leaves out the references no copy can match (PDQ quality below the Matcher's floor
and fewer keypoints than a verdict needs: a flat picture of the corpus). False
matches: plain unrelated pictures and screenshots of unrelated pictures, whose
probes (every candidate) must not come within THRESHOLD of any reference.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from benchmarks import quality_corpus as qc
from benchmarks import quality_transforms as qt
from hashdb.keypoints.index import KeypointIndex, MihSearch
from hashdb.keypoints.verify import MIN_INLIERS
from hashdb.matching.keypoints import search
from hashdb.signals import PDQ
from ingest import canonical
from ingest.decode import decode
from ingest.image import DEFAULT_MAX_PIXELS, hash_image
from ingest.keypoints import keypoints
from ingest.pdq import pdq
from ingest.probes import KeypointProbes, ProbeOptions, probe_queries

THRESHOLD = 31
Colour = tuple[int, int, int]
Box = tuple[int, int, int, int]
Layout = tuple[Image.Image, list[str], Box]


def _moved(box: Box, dx: int, dy: int) -> Box:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


@dataclass(frozen=True)
class Theme:
    name: str
    page: Colour  # behind everything
    surface: Colour  # the post (the same as page unless the post is a card)
    ink: Colour
    muted: Colour
    accent: Colour
    texture: str  # "flat", "gradient" or "noise": how the page is painted


@dataclass(frozen=True)
class Shot:
    image: Image.Image  # as decoded from `data`
    data: bytes  # the JPEG file
    family: str
    tags: tuple[str, ...]
    box: Box  # where the picture is in `image`: left, top, right, bottom


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> Colour:
    r, g, b = (int(c) for c in rng.integers(low, high, 3))
    return (r, g, b)


def _shade(c: Colour, d: int) -> Colour:
    r, g, b = (max(0, min(255, v + d)) for v in c)
    return (r, g, b)


def _luma(c: Colour) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def theme(rng: np.random.Generator) -> Theme:
    kind = str(rng.choice(["light", "dim", "dark", "colour"], p=[0.35, 0.2, 0.25, 0.2]))
    if kind == "light":
        page = (255, 255, 255) if rng.uniform() < 0.6 else _colour(rng, 232, 256)
    elif kind == "dim":
        page = (21, 32, 43) if rng.uniform() < 0.5 else _colour(rng, 20, 60)
    elif kind == "dark":
        page = (0, 0, 0) if rng.uniform() < 0.5 else _colour(rng, 0, 24)
    else:
        page = _colour(rng)
    light = _luma(page) > 128
    ink = (15, 20, 25) if light else (231, 233, 234)
    muted = _shade(ink, 90 if light else -90)
    surface = page
    if rng.uniform() < 0.3:  # a card of another shade
        surface = _shade(page, int(rng.integers(-30, -8)) if light else int(rng.integers(8, 30)))
    texture = str(rng.choice(["flat", "gradient", "noise"], p=[0.7, 0.15, 0.15]))
    return Theme(kind, page, surface, ink, muted, _colour(rng, 30, 230), texture)


def paint(
    rng: np.random.Generator, size: tuple[int, int], colour: Colour, texture: str
) -> Image.Image:
    """A background: flat, a subtle vertical gradient, or subtle noise."""
    w, h = size
    if texture == "flat":
        return Image.new("RGB", size, colour)
    base = np.empty((h, w, 3), np.float32)
    base[:] = colour
    if texture == "gradient":
        span = rng.uniform(6, 20) * (1 if rng.uniform() < 0.5 else -1)
        base += np.linspace(-span / 2, span / 2, h, dtype=np.float32)[:, None, None]
    else:
        base += rng.normal(0, rng.uniform(1, 3), (h, w, 1)).astype(np.float32)
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def text_lines(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    xy: tuple[int, int],
    width: int,
    lines: int,
    size: int,
    fill: Colour,
) -> int:
    """Draws `lines` lines of words from `xy`; returns the height used."""
    x, y = xy
    step = round(size * 1.35)
    for _ in range(lines):
        n = max(1, int(width / (size * 0.55) / 6 * rng.uniform(0.5, 1.0)))
        draw.text((x, y), qt.words(rng, n), fill=fill, font=qt.font(size))
        y += step
    return lines * step


def _icon(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, y: int, s: int, c: Colour
) -> None:
    kind = int(rng.integers(0, 3))
    if kind == 0:
        draw.ellipse((x, y, x + s, y + s), outline=c, width=2)
    elif kind == 1:
        draw.rectangle((x, y, x + s, y + s), outline=c, width=2)
    else:
        draw.polygon([(x, y + s), (x + s // 2, y), (x + s, y + s)], fill=c)


def avatar(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, y: int, s: int) -> None:
    c = _colour(rng)
    if rng.uniform() < 0.6:
        draw.ellipse((x, y, x + s, y + s), fill=c)
    else:
        draw.rounded_rectangle(
            (x, y, x + s, y + s), radius=int(rng.integers(0, s // 4 + 1)), fill=c
        )
    if rng.uniform() < 0.5:  # a face-ish mark, so that the avatar is not flat
        draw.ellipse((x + s // 3, y + s // 4, x + 2 * s // 3, y + s // 2 + 2), fill=_colour(rng))


def place(canvas: Image.Image, picture: Image.Image, at: tuple[int, int], radius: int) -> None:
    """Pastes `picture` at `at` with corners rounded to `radius` (anti-aliased)."""
    if radius <= 0:
        canvas.paste(picture, at)
        return
    w, h = picture.size
    big = Image.new("L", (4 * w, 4 * h), 0)
    ImageDraw.Draw(big).rounded_rectangle((0, 0, 4 * w - 1, 4 * h - 1), radius=4 * radius, fill=255)
    canvas.paste(picture, at, big.resize((w, h), Image.Resampling.LANCZOS))


def status_bar(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, y: int, t: Theme
) -> int:
    h = int(rng.integers(22, 44))
    bg = (0, 0, 0) if rng.uniform() < 0.4 else t.page
    fg = (255, 255, 255) if _luma(bg) < 128 else (0, 0, 0)
    draw.rectangle((0, y, w, y + h), fill=bg)
    draw.text((14, y + h // 4), "9:41", fill=fg, font=qt.font(h // 2))
    draw.text((w - 80, y + h // 4), "5G 87%", fill=fg, font=qt.font(h // 2 - 2))
    return h


def app_bar(
    canvas: Image.Image, rng: np.random.Generator, w: int, y: int, t: Theme, gradient: bool
) -> int:
    h = int(rng.integers(40, 64))
    bg = t.accent if rng.uniform() < 0.4 else _shade(t.page, -8 if _luma(t.page) > 128 else 10)
    canvas.paste(paint(rng, (w, h), bg, "gradient" if gradient else "flat"), (0, y))
    draw = ImageDraw.Draw(canvas)
    fg = (255, 255, 255) if _luma(bg) < 128 else (0, 0, 0)
    _icon(draw, rng, 14, y + h // 3, h // 3, fg)
    draw.text(
        (24 + h // 2, y + h // 4), qt.words(rng, 1).title(), fill=fg, font=qt.font(h // 2 - 2)
    )
    for k in range(int(rng.integers(0, 3))):
        _icon(draw, rng, w - (k + 1) * (h // 2 + 16), y + h // 3, h // 3, fg)
    if rng.uniform() < 0.5:
        draw.line((0, y + h - 1, w, y + h - 1), fill=t.muted, width=1)
    return h


def nav_bar(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, y: int, t: Theme) -> int:
    h = int(rng.integers(44, 64))
    bg = _shade(t.page, -6 if _luma(t.page) > 128 else 8)
    draw.rectangle((0, y, w, y + h), fill=bg)
    draw.line((0, y, w, y), fill=t.muted, width=1)
    n = int(rng.integers(3, 6))
    for k in range(n):
        _icon(draw, rng, round((k + 0.5) * w / n) - 10, y + h // 3, 20, t.ink if k else t.accent)
    return h


def action_row(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, y: int, w: int, t: Theme
) -> int:
    size = int(rng.integers(14, 22))
    n = int(rng.integers(3, 6))
    for k in range(n):
        xx = x + k * (w // n)
        _icon(draw, rng, xx, y + 4, size, t.muted)
        if rng.uniform() < 0.7:
            draw.text(
                (xx + size + 6, y + 4),
                str(int(rng.integers(1, 999))),
                fill=t.muted,
                font=qt.font(size - 2),
            )
    if rng.uniform() < 0.3:  # a solid button
        bw = int(rng.integers(70, 120))
        draw.rounded_rectangle((x + w - bw, y, x + w, y + size + 10), radius=12, fill=t.accent)
        draw.text((x + w - bw + 12, y + 4), "Follow", fill=(255, 255, 255), font=qt.font(size - 2))
    return size + 16


def reply_box(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: int, y: int, w: int, t: Theme
) -> int:
    h = int(rng.integers(34, 50))
    draw.rounded_rectangle((x, y, x + w, y + h), radius=h // 2, outline=t.muted, width=1)
    draw.text((x + 16, y + h // 4), "Post your reply", fill=t.muted, font=qt.font(h // 3 + 2))
    return h + 10


def fit(picture: Image.Image, width: int, max_height: int | None = None) -> Image.Image:
    w, h = picture.size
    scale = width / w
    if max_height is not None and h * scale > max_height:
        scale = max_height / h
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    return picture.resize(size, Image.Resampling.LANCZOS)


def others(rng: np.random.Generator, n: int) -> list[Image.Image]:
    """`n` pictures unrelated to the references, for the other cells of a grid."""
    pictures = []
    for _ in range(n):
        if rng.uniform() < 0.3:
            pictures.append(
                qc.procedural(rng, int(rng.integers(300, 600)), int(rng.integers(300, 600)))
            )
            continue
        seeds = qc.seeds("unrelated")
        seed = seeds[int(rng.integers(0, len(seeds)))]
        w, h = seed.size
        cw, ch = round(w * rng.uniform(0.4, 0.9)), round(h * rng.uniform(0.4, 0.9))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        pictures.append(seed.crop((x, y, x + cw, y + ch)))
    return pictures


def grid(
    rng: np.random.Generator, pictures: list[Image.Image], width: int, gap: int, at: int
) -> tuple[Image.Image, Box]:
    """The pictures in rows (2: one row; 3: one on top, two below; 4: two rows of two),
    each row's pictures at one height filling `width`, each picture whole; and the
    box of picture `at` in it."""
    rows = {2: [[0, 1]], 3: [[0], [1, 2]], 4: [[0, 1], [2, 3]]}[len(pictures)]
    if len(pictures) == 3 and rng.uniform() < 0.5:
        rows = [[0, 1, 2]]
    laid: list[list[Image.Image]] = []
    for row in rows:
        aspects = [pictures[k].width / pictures[k].height for k in row]
        h = (width - gap * (len(row) - 1)) / sum(aspects)
        h = min(h, width * 0.8)
        laid.append(
            [
                pictures[k].resize(
                    (max(16, round(a * h)), max(16, round(h))), Image.Resampling.LANCZOS
                )
                for k, a in zip(row, aspects, strict=True)
            ]
        )
    height = sum(r[0].height for r in laid) + gap * (len(laid) - 1)
    width_used = max(sum(p.width for p in r) + gap * (len(r) - 1) for r in laid)
    out = Image.new("RGBA", (width_used, height), (0, 0, 0, 0))
    y, k, box = 0, 0, (0, 0, 0, 0)
    for r in laid:
        x = 0
        for p in r:
            out.paste(p.convert("RGBA"), (x, y))
            if k == at:
                box = (x, y, x + p.width, y + p.height)
            x += p.width + gap
            k += 1
        y += r[0].height + gap
    return out, box


def post(
    rng: np.random.Generator,
    picture: Image.Image,
    *,
    width: int | None = None,
    cells: int = 1,
    phone_chrome: bool = True,
    beside: bool = True,
) -> Layout:
    """A feed post around `picture` (or a grid of `cells` pictures, it being one);
    `phone_chrome`: status and app bars may be drawn; `beside`: text may sit beside
    the picture."""
    t = theme(rng)
    tags = [t.name]
    w = width or int(rng.integers(380, 820))
    h_max = 3 * w
    canvas = paint(rng, (w, h_max), t.page, t.texture)
    if t.texture != "flat":
        tags.append(t.texture)
    draw = ImageDraw.Draw(canvas)
    y = 0
    if phone_chrome and rng.uniform() < 0.5:
        y += status_bar(draw, rng, w, y, t)
    if phone_chrome and rng.uniform() < 0.5:
        y += app_bar(canvas, rng, w, y, t, gradient=rng.uniform() < 0.3)
        draw = ImageDraw.Draw(canvas)
    if rng.uniform() < 0.3:  # the tail of the previous post
        y += 8 + text_lines(draw, rng, (16, y + 8), w - 32, int(rng.integers(1, 3)), 16, t.ink)
        draw.line((0, y + 6, w, y + 6), fill=t.muted, width=1)
        y += 12
    card = t.surface != t.page or rng.uniform() < 0.15
    pad = int(rng.integers(8, 24)) if card else 0
    top_of_card = y + pad
    x0, x1 = pad, w - pad  # the post's extent
    y = top_of_card + int(rng.integers(6, 16))
    margin = int(
        rng.choice(
            [0, 0, int(rng.integers(4, 12)), int(rng.integers(12, 32)), int(rng.integers(32, 72))]
        )
    )
    if margin == 0:
        tags.append("edge")
    av = int(rng.integers(24, 73))
    right = rng.uniform() < 0.2
    ax = x1 - av - 12 if right else x0 + 12
    avatar(draw, rng, ax, y, av)
    nx = x0 + 12 if right else ax + av + 10
    draw.text((nx, y + 2), "Some Account", fill=t.ink, font=qt.font(int(rng.integers(14, 22))))
    draw.text((nx, y + av // 2 + 2), "@someaccount · 2h", fill=t.muted, font=qt.font(14))
    y += av + 10
    size = int(rng.integers(12, 25))
    above = int(rng.choice([0, 1, 1, 2, 3, int(rng.integers(4, 11))]))
    beside = beside and cells == 1 and rng.uniform() < 0.2
    y += text_lines(draw, rng, (x0 + 12, y), x1 - x0 - 24, above, size, t.ink) + 6
    radius = int(rng.choice([0, int(rng.integers(4, 31))]))
    if radius:
        tags.append("rounded")
    room = x1 - x0 - 2 * margin
    if cells > 1:
        pictures = others(rng, cells - 1)
        at = int(rng.integers(0, cells))
        pictures.insert(at, picture)
        laid, cell = grid(rng, pictures, room, int(rng.integers(2, 9)), at)
        canvas.paste(laid, (x0 + margin, y), laid)
        box = _moved(cell, x0 + margin, y)
        y += laid.height
    elif beside:
        tags.append("beside")
        pw = round(room * rng.uniform(0.5, 0.65))
        shown_pic = fit(picture, pw, round(1.2 * room))
        px = x0 + margin if rng.uniform() < 0.5 else x1 - margin - shown_pic.width
        place(canvas, shown_pic, (px, y), radius)
        box = (px, y, px + shown_pic.width, y + shown_pic.height)
        draw = ImageDraw.Draw(canvas)
        tx = px + shown_pic.width + 12 if px == x0 + margin else x0 + margin
        text_lines(
            draw,
            rng,
            (tx, y),
            room - shown_pic.width - 24,
            min(10, shown_pic.height // 24),
            14,
            t.ink,
        )
        y += shown_pic.height
    else:
        share = 1.0 if rng.uniform() < 0.7 else rng.uniform(0.6, 0.9)
        shown_pic = fit(picture, round(room * share), round(1.3 * room))
        if shown_pic.width < room - 2:
            tags.append("narrow")
        px = x0 + margin + (room - shown_pic.width) // 2
        if rng.uniform() < 0.4:
            px = x0 + margin
        place(canvas, shown_pic, (px, y), radius)
        box = (px, y, px + shown_pic.width, y + shown_pic.height)
        if rng.uniform() < 0.2:  # a thin outline around the picture
            ImageDraw.Draw(canvas).rounded_rectangle(
                (px - 1, y - 1, px + shown_pic.width, y + shown_pic.height),
                radius=radius,
                outline=t.muted,
                width=1,
            )
        y += shown_pic.height
    draw = ImageDraw.Draw(canvas)
    y += 8
    below = int(rng.choice([0, 0, 1, 2, 4]))
    y += text_lines(draw, rng, (x0 + 12, y), x1 - x0 - 24, below, size, t.ink)
    y += action_row(draw, rng, x0 + 12, y, x1 - x0 - 24, t)
    if rng.uniform() < 0.3:
        y += reply_box(draw, rng, x0 + 12, y, x1 - x0 - 24, t)
    y += 8
    if card:
        tags.append("card")
        body = canvas.crop((x0, top_of_card, x1, y))
        if rng.uniform() < 0.5:  # a drop shadow
            shadow = Image.new("L", canvas.size, 0)
            ImageDraw.Draw(shadow).rounded_rectangle(
                (x0 + 2, top_of_card + 3, x1 + 2, y + 3), radius=10, fill=90
            )
            shadow = shadow.filter(ImageFilter.GaussianBlur(4))
            canvas.paste(Image.new("RGB", canvas.size, (0, 0, 0)), (0, 0), shadow)
        else:
            ImageDraw.Draw(canvas).rounded_rectangle(
                (x0 - 1, top_of_card - 1, x1, y), radius=10, outline=t.muted, width=1
            )
        canvas.paste(body, (x0, top_of_card))
        draw = ImageDraw.Draw(canvas)
        y += pad
    draw.line((0, y, w, y), fill=t.muted, width=1)
    if rng.uniform() < 0.4:  # the start of the next post
        avatar(draw, rng, 12, y + 10, 36)
        y += 10 + text_lines(draw, rng, (56, y + 10), w - 70, 2, 15, t.ink)
    y += 12
    if phone_chrome and rng.uniform() < 0.5:
        y += nav_bar(draw, rng, w, y, t)
    return canvas.crop((0, 0, w, min(h_max, y))), tags, box


def phone(rng: np.random.Generator, picture: Image.Image) -> Layout:
    screen, tags, box = post(rng, picture, width=int(rng.integers(360, 520)), beside=False)
    body = _colour(rng, 10, 60) if rng.uniform() < 0.6 else _colour(rng, 180, 240)
    bezel = int(rng.integers(8, 36))
    w, h = screen.width + 2 * bezel, screen.height + 2 * bezel + int(rng.integers(0, 60))
    back = int(rng.integers(20, 120))
    out = paint(
        rng,
        (w + 2 * back, h + 2 * back),
        _colour(rng),
        str(rng.choice(["flat", "gradient", "noise"])),
    )
    draw = ImageDraw.Draw(out)
    draw.rounded_rectangle(
        (back, back, back + w, back + h), radius=int(rng.integers(24, 60)), fill=body
    )
    mask = Image.new("L", screen.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (0, 0, screen.width - 1, screen.height - 1), radius=int(rng.integers(6, 30)), fill=255
    )
    out.paste(screen, (back + bezel, back + bezel), mask)
    box = _moved(box, back + bezel, back + bezel)
    if rng.uniform() < 0.5:  # a notch
        cx = back + w // 2
        draw.rounded_rectangle(
            (cx - 60, back + bezel - 2, cx + 60, back + bezel + 22), radius=10, fill=body
        )
    return out, tags, box


def desktop(rng: np.random.Generator, picture: Image.Image) -> Layout:
    column = int(rng.integers(480, 680))
    main, tags, box = post(rng, picture, width=column, phone_chrome=False, beside=False)
    t = theme(rng)
    left = int(rng.integers(140, 260)) if rng.uniform() < 0.7 else 0
    right = int(rng.integers(160, 340)) if rng.uniform() < 0.7 else 0
    bar = int(rng.integers(60, 100))
    w = left + column + right + 40
    h = max(main.height + bar, int(rng.integers(700, 1000)))
    page_colour = main.getpixel((0, main.height - 1))
    assert isinstance(page_colour, tuple)
    out = Image.new("RGB", (w, h), (int(page_colour[0]), int(page_colour[1]), int(page_colour[2])))
    draw = ImageDraw.Draw(out)
    chrome = _colour(rng, 200, 240) if rng.uniform() < 0.6 else _colour(rng, 30, 70)
    draw.rectangle((0, 0, w, bar), fill=chrome)
    fg = (0, 0, 0) if _luma(chrome) > 128 else (255, 255, 255)
    for k in range(int(rng.integers(1, 5))):  # tabs
        draw.rounded_rectangle(
            (10 + k * 180, 6, 180 + k * 180, bar // 2),
            radius=6,
            fill=_shade(chrome, 18 if k == 0 else -12),
        )
        draw.text((24 + k * 180, 10), qt.words(rng, 2), fill=fg, font=qt.font(12))
    draw.rounded_rectangle(
        (100, bar // 2 + 6, w - 100, bar - 8), radius=12, fill=_shade(chrome, 20)
    )
    draw.text(
        (120, bar // 2 + 10),
        "https://example.social/someaccount/status/12345",
        fill=fg,
        font=qt.font(13),
    )
    out.paste(main, (left + 20, bar))
    box = _moved(box, left + 20, bar)
    ink = (15, 20, 25) if _luma(out.getpixel((2, h - 2))) > 128 else (231, 233, 234)  # type: ignore[arg-type]
    if left:
        for k in range(int(rng.integers(4, 9))):
            _icon(draw, rng, 20, bar + 30 + 50 * k, 22, ink)
            draw.text((52, bar + 32 + 50 * k), qt.words(rng, 1).title(), fill=ink, font=qt.font(18))
    if right:
        x = left + column + 40
        y = bar + 20
        for _ in range(int(rng.integers(1, 4))):
            hh = int(rng.integers(120, 260))
            draw.rounded_rectangle(
                (x, y, x + right - 20, y + hh),
                radius=14,
                fill=_shade(t.page, 0)
                if rng.uniform() < 0.3
                else _shade(
                    (int(page_colour[0]), int(page_colour[1]), int(page_colour[2])),
                    12 if _luma(ink) > 128 else -12,
                ),
            )
            text_lines(draw, rng, (x + 12, y + 12), right - 44, hh // 28, 14, ink)
            y += hh + 16
    tags.append("sidebars" if left and right else "sidebar" if left or right else "column")
    return out, tags, box


def chat(rng: np.random.Generator, picture: Image.Image) -> Layout:
    w = int(rng.integers(360, 560))
    h = int(rng.integers(720, 1100))
    t = theme(rng)
    texture = str(rng.choice(["flat", "gradient", "noise"], p=[0.5, 0.25, 0.25]))
    out = paint(rng, (w, h), t.page, texture)
    tags = [t.name, f"wallpaper-{texture}"]
    draw = ImageDraw.Draw(out)
    y = 0
    if rng.uniform() < 0.6:
        y += status_bar(draw, rng, w, y, t)
    head = int(rng.integers(50, 72))
    draw.rectangle((0, y, w, y + head), fill=_shade(t.page, -10 if _luma(t.page) > 128 else 14))
    avatar(draw, rng, 48, y + 8, head - 16)
    draw.text((48 + head, y + head // 3), "Contact Name", fill=t.ink, font=qt.font(18))
    y += head + 10
    mine, theirs = t.accent, _shade(t.page, -25 if _luma(t.page) > 128 else 30)
    size = int(rng.integers(13, 19))
    picture_at = int(rng.integers(0, 4))
    for k in range(6):
        if k == picture_at:
            out_going = rng.uniform() < 0.5
            pad = int(rng.choice([0, 0, 2, 4, 8]))
            pw = round(w * rng.uniform(0.55, 0.8))
            shown = fit(picture, pw, round(h * 0.5))
            caption = rng.uniform() < 0.3
            bh = shown.height + 2 * pad + (28 if caption else 0)
            bx = w - 12 - shown.width - 2 * pad if out_going else 12
            draw.rounded_rectangle(
                (bx, y, bx + shown.width + 2 * pad, y + bh),
                radius=int(rng.integers(8, 20)),
                fill=mine if out_going else theirs,
            )
            place(out, shown, (bx + pad, y + pad), int(rng.integers(0, 18)))
            box = (bx + pad, y + pad, bx + pad + shown.width, y + pad + shown.height)
            draw = ImageDraw.Draw(out)
            if caption:
                draw.text(
                    (bx + pad + 8, y + pad + shown.height + 6),
                    qt.words(rng, 3),
                    fill=t.ink,
                    font=qt.font(14),
                )
            y += bh + 10
            continue
        if y > h - 140:
            break
        out_going = rng.uniform() < 0.5
        lines = int(rng.integers(1, 4))
        bw = int(w * rng.uniform(0.3, 0.7))
        bh = lines * round(size * 1.35) + 16
        bx = w - 12 - bw if out_going else 12
        draw.rounded_rectangle(
            (bx, y, bx + bw, y + bh), radius=14, fill=mine if out_going else theirs
        )
        fg = (255, 255, 255) if _luma(mine if out_going else theirs) < 128 else (0, 0, 0)
        text_lines(draw, rng, (bx + 10, y + 8), bw - 20, lines, size, fg)
        y += bh + 8
    bottom = max(y + 10, h - 64)
    draw.rectangle(
        (0, bottom, w, bottom + 64), fill=_shade(t.page, -8 if _luma(t.page) > 128 else 10)
    )
    draw.rounded_rectangle(
        (12, bottom + 12, w - 60, bottom + 50), radius=18, outline=t.muted, width=1
    )
    _icon(draw, rng, w - 44, bottom + 20, 24, t.accent)
    return out.crop((0, 0, w, bottom + 64)), tags, box


def grid_post(rng: np.random.Generator, picture: Image.Image) -> Layout:
    cells = int(rng.integers(2, 5))
    image, tags, box = post(rng, picture, cells=cells)
    return image, [*tags, f"cells-{cells}"], box


def plain_post(rng: np.random.Generator, picture: Image.Image) -> Layout:
    return post(rng, picture)


FAMILIES: dict[str, Callable[[np.random.Generator, Image.Image], Layout]] = {
    "post": plain_post,
    "phone": phone,
    "desktop": desktop,
    "chat": chat,
    "grid": grid_post,
}


FAMILIES_INDEX = {name: k for k, name in enumerate(FAMILIES)}  # a seed component


def render(rng: np.random.Generator, picture: Image.Image, family: str) -> Shot:
    """A screenshot of `family` around `picture`, rescaled and JPEG-compressed."""
    image, tags, box = FAMILIES[family](rng, picture.convert("RGB"))
    image_size = image.size
    scale = float(rng.uniform(0.6, 1.5))
    size = (max(32, round(image.width * scale)), max(32, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    quality = int(rng.integers(60, 96))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    tags.append("down" if scale < 1 else "up")
    data = buf.getvalue()
    sx, sy = size[0] / image_size[0], size[1] / image_size[1]
    scaled = (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy))
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return Shot(image, data, family, tuple(tags), scaled)


def screenshot(rng: np.random.Generator, picture: Image.Image) -> Image.Image:
    """A screenshot of a random family around `picture` (see the module docstring)."""
    family = str(rng.choice(list(FAMILIES)))
    return render(rng, picture, family).image


def _jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def content_probes(data: bytes) -> tuple[bytes | None, list[bytes], KeypointProbes | None]:
    """The "content" probe ingest/probes.py builds for the image file `data` (None if
    no region was found), its other candidate regions' probes (`content_2`...) and
    the query's keypoint sets (the whole image's and its first regions')."""
    probed = probe_queries(data, ProbeOptions.of(["content", "keypoints"]))
    first = next((p.pdq for p in probed.probes if p.name == "content"), None)
    others = [p.pdq for p in probed.probes if p.name.startswith("content_")]
    return first, others, probed.keypoints


def _verified(index: KeypointIndex, kps: KeypointProbes | None) -> set[int]:
    """The references whose stored keypoint sets verify against the query's sets."""
    if kps is None:
        return set()
    return {h.hash_id for h in search(index, [(None, kps.whole), *kps.regions])}


def _distance(a: bytes, b: bytes) -> int:
    return int(
        np.unpackbits(
            np.frombuffer(bytes(x ^ y for x, y in zip(a, b, strict=True)), np.uint8)
        ).sum()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--references", type=int, default=40)
    parser.add_argument("--per-family", type=int, default=2)
    parser.add_argument("--unrelated", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--misses", default="", help="a folder to save missed screenshots in")
    parser.add_argument("--diagnose", action="store_true", help="print each miss")
    args = parser.parse_args()
    families = args.families.split(",")
    files = [_jpeg_bytes(qc.reference(i, args.seed)) for i in range(args.references)]
    hashed = [hash_image(data) for data in files]
    stored = [h.pdq for h in hashed]
    local = KeypointIndex(MihSearch())  # the references' keypoint sets, as stored
    # References no copy can match: PDQ quality below the Matcher's floor and fewer
    # keypoints than a verdict needs (a flat, blurred picture of the corpus).
    flat: set[int] = set()
    for i, data in enumerate(files):
        reference = keypoints(decode(data, max_pixels=DEFAULT_MAX_PIXELS).image)
        local.add(i, reference)
        if hashed[i].pdq_quality < (PDQ.min_quality or 0) and len(reference.x) < MIN_INLIERS:
            flat.add(i)
    kp_hit: dict[str, list[bool]] = defaultdict(list)  # ... by the keypoint set
    either: dict[str, list[bool]] = defaultdict(list)  # ... by any candidate or keypoints
    hit: dict[str, list[bool]] = defaultdict(list)  # family or tag -> content probe hits
    any_hit: dict[str, list[bool]] = defaultdict(list)  # ... by any candidate
    found: dict[str, list[bool]] = defaultdict(list)
    ceiling: dict[str, list[bool]] = defaultdict(list)  # the picture cut at its true box
    distances: list[int] = []
    cost: list[float] = []
    cost_all: list[float] = []
    for i in range(args.references):
        picture = qc.reference(i, args.seed)
        for family in families:
            for k in range(args.per_family):
                rng = np.random.default_rng([args.seed, 17, i, FAMILIES_INDEX[family], k])
                shot = render(rng, picture, family)
                decoded = decode(shot.data, max_pixels=DEFAULT_MAX_PIXELS).image
                start = time.perf_counter()
                canonical.content_region(decoded)
                cost.append((time.perf_counter() - start) * 1e3)
                start = time.perf_counter()
                canonical.content_regions(decoded)
                cost_all.append((time.perf_counter() - start) * 1e3)
                probe, cands, kps = content_probes(shot.data)
                by_keypoints = i in _verified(local, kps)
                near = probe is not None and _distance(probe, stored[i]) <= THRESHOLD
                near_any = near or any(_distance(c, stored[i]) <= THRESHOLD for c in cands)
                if probe is not None:
                    distances.append(_distance(probe, stored[i]))
                true = _distance(pdq(shot.image.crop(shot.box)).hash, stored[i])
                if args.diagnose and not near_any:
                    got = canonical.content_box(decoded)
                    f = shot.image.width / decoded.width
                    at = [round(v / f) for v in shot.box]
                    print(
                        f"miss {family} {i} {k} {shot.tags} true {at} d={true} found {got} "
                        f"d={None if probe is None else _distance(probe, stored[i])}"
                    )
                keys = (family, *(f"{family}/{t}" for t in shot.tags), "all")
                for key in (*keys, *(() if i in flat else ("all matchable",))):
                    hit[key].append(near)
                    any_hit[key].append(near_any)
                    found[key].append(probe is not None)
                    kp_hit[key].append(by_keypoints)
                    either[key].append(near_any or by_keypoints)
                    ceiling[key].append(true <= THRESHOLD)
                if args.misses and not near_any:
                    tags = "-".join(shot.tags)
                    decoded.save(f"{args.misses}/{family}-{i}-{k}-{tags}.png")
    print(
        f"{args.references} references x {args.per_family} per family; "
        f"content probe within {THRESHOLD}"
    )
    print(
        f"{'family/tag':28} {'n':>5} {'found':>7} {'content':>8} {'any cand':>9} {'true box':>9}"
        f" {'keypoints':>9} {'either':>7}"
    )
    for key in sorted(hit, key=lambda k: (k.startswith("all"), k)):
        n = len(hit[key])
        print(
            f"{key:28} {n:5} {100 * np.mean(found[key]):6.1f}% {100 * np.mean(hit[key]):7.1f}% "
            f"{100 * np.mean(any_hit[key]):8.1f}% {100 * np.mean(ceiling[key]):8.1f}%"
            f" {100 * np.mean(kp_hit[key]):8.1f}% {100 * np.mean(either[key]):6.1f}%"
        )
    print(f"unmatchable references (PDQ quality and keypoints too low): {sorted(flat)}")
    if distances:
        print(f"content probe distance: median {statistics.median(distances)}")
    print(f"content_region: median {statistics.median(cost):.1f} ms per decoded screenshot")
    print(f"content_regions: median {statistics.median(cost_all):.1f} ms per decoded screenshot")
    false_plain = false_shot = false_keypoints = 0
    nearest = 256
    for i in range(args.unrelated):
        picture = qc.unrelated(i, args.seed)
        rng = np.random.default_rng([args.seed, 18, i])
        shot = render(rng, picture, families[i % len(families)])
        for data, is_shot in ((_jpeg_bytes(picture), False), (shot.data, True)):
            first, others, kps = content_probes(data)
            false_keypoints += bool(_verified(local, kps))
            probes = [p for p in (first, *others) if p is not None]
            best = min((_distance(p, s) for p in probes for s in stored), default=256)
            nearest = min(nearest, best)
            if best <= THRESHOLD:
                if is_shot:
                    false_shot += 1
                else:
                    false_plain += 1
    print(
        f"false matches: {false_plain} of {args.unrelated} unrelated pictures, "
        f"{false_shot} of {args.unrelated} screenshots of them; nearest {nearest} bits; "
        f"by keypoints {false_keypoints} of {2 * args.unrelated}"
    )


if __name__ == "__main__":
    main()
