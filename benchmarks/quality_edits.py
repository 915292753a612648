"""Edits whole-image hashes miss, for benchmarks/local_features.py: crops, opaque
corner logos, small tilts with black corners, mirror + crop; and harder unrelated
pictures (screenshots and logo-stamped copies of unrelated photos).

Each edit takes a random generator and an RGB picture and returns the edited RGB
picture (saved as JPEG by `apply`, quality 85); parameters are drawn per call.

- `crop_central_80`: the centre, 78-82% of each side (about 64% of the area).
- `crop_offcentre_85`: 84-86% of each side, placed at a random off-centre point (at
  least a third of the slack on one side, in each direction independently).
- `logo_corner_10`: an opaque logo covering 8-12% of the picture, in a random
  corner, 0-3% from the edges: a random mix of a coloured box, rounded or not,
  with a few letters, a circle or a stripe, in random colours.
- `rotate_3`: 3 degrees either way, the canvas unchanged (corners cut off, black
  wedges in the corners); `rotate_2_4`: 2-4 degrees, the same way.
- `mirror_crop`: mirrored, then an off-centre crop keeping 85-92% of each side.
- `logo+crop`: a corner logo on an off-centre 90% crop.
"""

from __future__ import annotations

import functools
import io
import string

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from benchmarks import quality_corpus as qc
from benchmarks import quality_transforms as qt

Transform = qt.Transform


def _keep(im: Image.Image, share_w: float, share_h: float, fx: float, fy: float) -> Image.Image:
    """Crop keeping `share_*` of each side, the cut split fx : (1 - fx) left/right."""
    w, h = im.size
    cw, ch = round(w * share_w), round(h * share_h)
    x, y = round((w - cw) * fx), round((h - ch) * fy)
    return im.crop((x, y, x + cw, y + ch))


def crop_central_80(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    return _keep(im, rng.uniform(0.78, 0.82), rng.uniform(0.78, 0.82), 0.5, 0.5)


def _offcentre(rng: np.random.Generator) -> float:
    side = rng.uniform(0.0, 1 / 6)
    return side if rng.uniform() < 0.5 else 1 - side


def crop_offcentre_85(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    return _keep(
        im, rng.uniform(0.84, 0.86), rng.uniform(0.84, 0.86), _offcentre(rng), _offcentre(rng)
    )


def logo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A random opaque logo of `width` x `height`."""
    background = tuple(int(c) for c in rng.integers(0, 256, 3))
    ink = tuple(255 - c for c in background)
    out = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(out)
    if rng.uniform() < 0.5:
        accent = tuple(int(c) for c in rng.integers(0, 256, 3))
        d = min(width, height)
        draw.ellipse((2, 2, d - 3, d - 3), fill=accent)
    if rng.uniform() < 0.5:
        stripe = max(2, height // 6)
        draw.rectangle((0, height - stripe, width, height), fill=ink)
    letters = "".join(
        rng.choice(list(string.ascii_uppercase + string.digits), int(rng.integers(2, 7)))
    )
    size = max(8, int(height * rng.uniform(0.3, 0.6)))
    draw.text(
        (int(width * rng.uniform(0.05, 0.3)), int(height * 0.15)),
        letters,
        fill=ink,
        font=qt.font(size),
    )
    if rng.uniform() < 0.5:
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).rounded_rectangle(
            (0, 0, width - 1, height - 1), radius=height // 4, fill=255
        )
        out.putalpha(mask)
    return out


def logo_corner(
    rng: np.random.Generator, im: Image.Image, area: tuple[float, float] = (0.08, 0.12)
) -> Image.Image:
    w, h = im.size
    share = rng.uniform(*area)
    aspect = rng.uniform(1.0, 2.5)  # logo width / height
    lh = max(8, round(np.sqrt(share * w * h / aspect)))
    lw = max(8, min(w - 2, round(lh * aspect)))
    mark = logo(rng, lw, lh)
    mx, my = round(w * rng.uniform(0, 0.03)), round(h * rng.uniform(0, 0.03))
    corner = int(rng.integers(0, 4))
    x = mx if corner % 2 == 0 else w - lw - mx
    y = my if corner < 2 else h - lh - my
    out = im.copy()
    out.paste(mark.convert("RGB"), (x, y), mark if mark.mode == "RGBA" else None)
    return out


def _tilt(low: float, high: float) -> Transform:
    def apply(rng: np.random.Generator, im: Image.Image) -> Image.Image:
        angle = rng.uniform(low, high) * (1 if rng.uniform() < 0.5 else -1)
        return im.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))

    return apply


def mirror_crop(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    share = rng.uniform(0.85, 0.92)
    return _keep(ImageOps.mirror(im), share, share, rng.uniform(), rng.uniform())


def logo_crop(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    return logo_corner(rng, _keep(im, 0.9, 0.9, rng.uniform(), rng.uniform()))


EDITS: dict[str, tuple[Transform, int]] = {
    "crop_central_80": (crop_central_80, 85),
    "crop_offcentre_85": (crop_offcentre_85, 85),
    "logo_corner_10": (logo_corner, 85),
    "rotate_3": (_tilt(3, 3), 85),
    "rotate_2_4": (_tilt(2, 4), 85),
    "mirror_crop": (mirror_crop, 85),
    "logo+crop": (logo_crop, 85),
}
# The edits held to recall >= 90% (the quality target for crops, logos and tilts).
BAR_90 = ("crop_central_80", "crop_offcentre_85", "logo_corner_10", "rotate_3", "mirror_crop")


def all_edits() -> dict[str, tuple[Transform, int]]:
    """These edits and every edit of quality_transforms, by name."""
    return {**qt.TRANSFORMS, **EDITS}


def apply(name: str, rng: np.random.Generator, image: Image.Image) -> bytes:
    transform, quality = all_edits()[name]
    out = transform(rng, image.convert("RGB"))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def unrelated(i: int, seed: int = 0) -> Image.Image:
    """Unrelated picture `i`: quality_corpus's (crops and collages of other photos,
    textures, procedural pictures, a third with framing edits), and one in five of
    them turned into a screenshot or stamped with a corner logo, as queries are."""
    im = qc.unrelated(i, seed)
    rng = np.random.default_rng([seed, 7, i])
    if i % 5 == 2:
        im = qt.screenshot(rng, im) if rng.uniform() < 0.5 else logo_corner(rng, im)
    return im


# Seeds of the distractor pool: pictures in neither quality_corpus pool, so that a
# distractor shares content with no reference and no unrelated picture.
DISTRACTOR_FILES = (
    "pdq/reference/labelme-subset/q0003.jpg",
    "pdq/reference/labelme-subset/q0004.jpg",
    "pdq/large/photo-12mp.jpg",
)
DISTRACTOR_SKIMAGE = ("page", "text", "logo", "colorwheel")
DISTRACTOR_VIDEOS = ("video/doorknob-hd-no-bar.mp4", "video/chair-orig-22-sd-bar.mp4")


@functools.cache
def distractor_seeds() -> tuple[Image.Image, ...]:
    """The distractor pool's seed pictures (at most 1024 px): photos, pages of text,
    a logo, and frames of the test videos (three of each)."""
    import av
    import skimage.data

    root = qc.TESTDATA.parent
    photos = [Image.open(root / f).convert("RGB") for f in DISTRACTOR_FILES]
    photos += [
        Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in DISTRACTOR_SKIMAGE
    ]
    for name in DISTRACTOR_VIDEOS:
        with av.open(str(root / name)) as container:
            frames: list[Image.Image] = [
                f.to_image()  # type: ignore[no-untyped-call]
                for f in container.decode(video=0)
            ]
        photos += [frames[k * len(frames) // 3].convert("RGB") for k in range(3)]
    for p in photos:
        p.thumbnail((1024, 1024))
    return tuple(photos)


def distractor(i: int, seed: int = 0) -> Image.Image:
    """Distractor picture `i`, made as quality_corpus.reference makes references (a
    crop of 40-100% of each side, colour jittered, 400-900 px; one in four
    procedural) but from the distractor pool's seeds."""
    rng = np.random.default_rng([seed, 9, i])
    long_side = int(rng.integers(400, 901))
    if i % 4 == 3:
        return qc.procedural(rng, long_side, int(long_side * rng.uniform(0.6, 1.0)))
    photos = distractor_seeds()
    photo = photos[int(rng.integers(0, len(photos)))]
    w, h = photo.size
    cw, ch = round(w * rng.uniform(0.4, 1.0)), round(h * rng.uniform(0.4, 1.0))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = photo.crop((x, y, x + cw, y + ch))
    scale = long_side / max(crop.size)
    crop = crop.resize(
        (max(16, round(cw * scale)), max(16, round(ch * scale))), Image.Resampling.LANCZOS
    )
    gain = rng.uniform(0.8, 1.2, 3)
    arr = np.asarray(crop, dtype=np.float32) * gain + rng.uniform(-20, 20)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
