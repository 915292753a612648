"""Reference pictures and unrelated pictures for the matching-quality harness.

Seeds are real photos that ship with installed packages and the project's test
data: scikit-image's sample images (`skimage.data`, the `bench` extra) and the
PDQ test photos in ../shared/testdata. They are split into two disjoint pools,
so that no unrelated picture shares content with a reference:

- references: astronaut, chelsea, coffee, rocket, the motorcycle stereo pair,
  Hubble deep field, the bridge photo and two labelme photos, plus procedural
  pictures. A reference is a random crop (50-100% of each side) of a seed, colour
  jittered, resized to 400-900 px on its long side.
- unrelated: camera, coins, immunohistochemistry, moon, retina, cell, clock,
  brick, grass, gravel, three labelme photos and pen-and-coaster, plus procedural
  pictures of other seeds. An unrelated picture is one of: a random crop (20-80%
  of each side) of a seed, flipped, colour jittered and re-toned; a 2 x 2 or 3 x 1
  collage of such crops; or a procedural picture. A third of them then get one of
  the structural edits of quality_transforms (caption bars, borders, letterbox,
  screenshot, text), so that the loose probes meet the layouts they look for.

Procedural pictures are gradients, 3-12 ellipses, rectangles and polygons of random
colours, a band-limited noise texture and sometimes a line of text: structured
enough to pass the PDQ quality gate, unlike random noise.

Everything is deterministic in the seed; unrelated pictures are made on demand by
index (`unrelated(i)`), so worker processes can make their share without any
being shipped between them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageOps

from benchmarks import quality_transforms as qt

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata" / "pdq"

REFERENCE_SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")
REFERENCE_FILES = (
    "bridge-mods/aaa-orig.jpg",
    "reference/labelme-subset/q0122.jpg",
    "reference/labelme-subset/q0291.jpg",
)
UNRELATED_SKIMAGE = (
    "camera",
    "coins",
    "immunohistochemistry",
    "moon",
    "retina",
    "cell",
    "clock",
    "brick",
    "grass",
    "gravel",
)
UNRELATED_FILES = (
    "reference/labelme-subset/q0746.jpg",
    "reference/labelme-subset/q1050.jpg",
    "reference/labelme-subset/q2821.jpg",
    "reference/pen-and-coaster.png",
)
STRUCTURAL = (
    "caption_top",
    "caption_both",
    "letterbox",
    "pillarbox",
    "border",
    "screenshot",
    "text_overlay",
)


def _skimage(name: str) -> Image.Image:
    try:
        import skimage.data
    except ImportError as exc:
        raise SystemExit("scikit-image is not installed (pip install -e '.[bench]')") from exc
    loader: Callable[[], npt.NDArray[np.uint8]] = getattr(skimage.data, name)
    return Image.fromarray(loader()).convert("RGB")


@functools.cache
def seeds(pool: str) -> tuple[Image.Image, ...]:
    """The seed photos of `pool` ("reference" or "unrelated"), at most 1024 px."""
    names: tuple[str, ...]
    files: tuple[str, ...]
    if pool == "reference":
        import skimage.data

        names, files = REFERENCE_SKIMAGE, REFERENCE_FILES
        left, right = skimage.data.stereo_motorcycle()[:2]  # type: ignore[no-untyped-call]
        extra = [Image.fromarray(left), Image.fromarray(right)]
    else:
        names, files, extra = UNRELATED_SKIMAGE, UNRELATED_FILES, []
    photos = [_skimage(n) for n in names] + [Image.open(TESTDATA / f).convert("RGB") for f in files]
    photos += [e.convert("RGB") for e in extra]
    for p in photos:
        p.thumbnail((1024, 1024))
    return tuple(photos)


def procedural(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    base = rng.uniform(30, 220, 3)
    slope = rng.uniform(-120, 120, 3)
    ramp = (np.cos(angle) * x / width + np.sin(angle) * y / height)[..., None]
    arr = base + slope * ramp
    small = rng.normal(0, 1, (8, 8, 3)).astype(np.float32)
    texture = np.asarray(
        Image.fromarray(
            ((small - small.min()) / (np.ptp(small) + 1e-6) * 255).astype(np.uint8)
        ).resize((width, height), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    arr = np.clip(arr + (texture - 128) * rng.uniform(0, 0.6), 0, 255)
    im = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 13))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, x1 = sorted(rng.integers(-width // 4, width + width // 4, 2).tolist())
        y0, y1 = sorted(rng.integers(-height // 4, height + height // 4, 2).tolist())
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x0, y0, x1 + 4, y1 + 4), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1 + 4, y1 + 4), fill=colour)
        else:
            points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(4)]
            draw.polygon(points, fill=colour)
    if rng.uniform() < 0.3:
        size = max(10, height // 12)
        draw.text(
            (int(rng.integers(0, width // 3)), int(rng.integers(0, height - size))),
            qt.words(rng, 3),
            fill=tuple(int(c) for c in rng.integers(0, 256, 3)),
            font=qt.font(size),
        )
    return im


def _jitter(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    a = np.asarray(im, dtype=np.float32)
    gain = rng.uniform(0.8, 1.2, 3)
    out = a * gain + rng.uniform(-20, 20)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _crop(rng: np.random.Generator, im: Image.Image, low: float, high: float) -> Image.Image:
    w, h = im.size
    cw, ch = round(w * rng.uniform(low, high)), round(h * rng.uniform(low, high))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch))


def _fit(im: Image.Image, long_side: int) -> Image.Image:
    scale = long_side / max(im.size)
    size = (max(16, round(im.width * scale)), max(16, round(im.height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS)


def reference(i: int, seed: int = 0) -> Image.Image:
    """Reference picture number `i`: a crop of a reference seed, or procedural (1 in 4)."""
    rng = np.random.default_rng([seed, 1, i])
    long_side = int(rng.integers(400, 901))
    if i % 4 == 3:
        aspect = rng.uniform(0.6, 1.7)
        w = long_side if aspect >= 1 else round(long_side * aspect)
        h = long_side if aspect < 1 else round(long_side / aspect)
        return procedural(rng, w, h)
    photos = seeds("reference")
    photo = photos[int(rng.integers(0, len(photos)))]
    return _fit(_jitter(rng, _crop(rng, photo, 0.5, 1.0)), long_side)


def unrelated(i: int, seed: int = 0) -> Image.Image:
    """Unrelated picture number `i` (see the module docstring), 160-400 px."""
    rng = np.random.default_rng([seed, 2, i])
    long_side = int(rng.integers(160, 401))
    kind = i % 4
    photos = seeds("unrelated")
    if kind == 0:
        im = procedural(rng, long_side, int(long_side * rng.uniform(0.6, 1.4)))
    elif kind == 3:
        tiles = [
            _jitter(rng, _crop(rng, photos[int(rng.integers(0, len(photos)))], 0.2, 0.6))
            for _ in range(4)
        ]
        t = long_side // 2
        im = Image.new("RGB", (2 * t, 2 * t))
        for k, tile in enumerate(tiles):
            im.paste(tile.resize((t, t)), ((k % 2) * t, (k // 2) * t))
    else:
        im = _fit(
            _jitter(rng, _crop(rng, photos[int(rng.integers(0, len(photos)))], 0.2, 0.8)), long_side
        )
        if rng.uniform() < 0.5:
            im = ImageOps.mirror(im)
        if rng.uniform() < 0.3:
            im = ImageOps.autocontrast(im)
    if rng.uniform() < 1 / 3:
        name = STRUCTURAL[int(rng.integers(0, len(STRUCTURAL)))]
        im = qt.TRANSFORMS[name][0](rng, im)
    return im
