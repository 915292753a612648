"""The edits re-uploaders make, as seeded functions from one picture to another.

Each transform takes a random generator and an RGB picture and returns the edited
RGB picture; the harness then saves it as JPEG (quality 85 unless the transform
is about JPEG itself), the way a platform would receive it. Parameters are drawn
per call, inside the ranges named below, so every reference gets its own variant.

Definitions (what "a 10% crop" means here):

- `crop_N`: N% of the width and N% of the height are cut away, each split at a
  random point between the two opposite sides (so about 81% of the area stays for
  N = 10; a centred crop and a corner crop are both possible).
- `caption_*`: a white band of 15-30% of the picture height with 1-3 lines of
  black text, above, below or both (the meme format).
- `letterbox` / `pillarbox`: black bars that bring the picture to 9:16 portrait /
  16:9 landscape (at least 15% of the side each way).
- `border`: a uniform frame of a random colour, 3-10% of the side.
- `screenshot`: the picture scaled into a social-media post on a white or dark
  canvas, with an avatar, a name, caption text above and a row of counters below,
  sometimes a phone status bar; 16-32 px margins beside the picture.
- `rotate_N`: N degrees (random sign), then the largest upright rectangle inside
  the rotated picture (no filled corners).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Transform = Callable[[np.random.Generator, Image.Image], Image.Image]

_TEXT = (
    "when the the moment you realise this is why we cannot have nice things again "
    "nobody me literally every monday breaking news share before they delete it "
    "look at this the truth about what they do not want you to see today"
)
WORDS = _TEXT.split()


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def words(rng: np.random.Generator, n: int) -> str:
    return " ".join(str(w) for w in rng.choice(WORDS, n))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _jpeg(quality: int) -> Transform:
    return lambda rng, im: jpeg(im, quality)


def resize(rng: np.random.Generator, im: Image.Image, scale: float = 0.5) -> Image.Image:
    w, h = im.size
    return im.resize(
        (max(16, round(w * scale)), max(16, round(h * scale))), Image.Resampling.LANCZOS
    )


def _gamma(g: float) -> Transform:
    def apply(rng: np.random.Generator, im: Image.Image) -> Image.Image:
        a = np.asarray(im, dtype=np.float32) / 255.0
        return Image.fromarray(np.clip(255 * a**g, 0, 255).astype(np.uint8))

    return apply


def blur(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(im.size) / 200)))


def noise(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    a = np.asarray(im, dtype=np.float32) + rng.normal(0, 10, (im.height, im.width, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def text_overlay(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    size = max(10, im.height // 14)
    for _ in range(int(rng.integers(1, 4))):
        x = int(rng.integers(0, max(1, im.width // 3)))
        y = int(rng.integers(0, max(1, im.height - size)))
        draw.text(
            (x, y),
            words(rng, 4),
            fill="white",
            font=font(size),
            stroke_width=2,
            stroke_fill="black",
        )
    return out


def logo_overlay(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    out = im.convert("RGBA")
    w, h = max(24, im.width // 5), max(12, im.height // 10)
    logo = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=h // 4, fill=(*colour, 170))
    draw.text((w // 10, h // 5), "NEWS24", fill=(255, 255, 255, 230), font=font(h // 2))
    corner = int(rng.integers(0, 4))
    x = 8 if corner % 2 == 0 else im.width - w - 8
    y = 8 if corner < 2 else im.height - h - 8
    out.alpha_composite(logo, (max(0, x), max(0, y)))
    return out.convert("RGB")


def _band(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    band = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(band)
    lines = int(rng.integers(1, 4))
    size = max(10, min(height // (lines + 1), width // 14))
    for i in range(lines):
        y = (height - lines * size * 1.2) / 2 + i * size * 1.2
        draw.text((width // 20, y), words(rng, 5).upper(), fill="black", font=font(size))
    return band


def _caption(top: bool, bottom: bool) -> Transform:
    def apply(rng: np.random.Generator, im: Image.Image) -> Image.Image:
        bands = [
            _band(rng, im.width, int(im.height * rng.uniform(0.15, 0.3))) if on else None
            for on in (top, bottom)
        ]
        heights = [b.height if b else 0 for b in bands]
        out = Image.new("RGB", (im.width, im.height + sum(heights)), "white")
        if bands[0]:
            out.paste(bands[0], (0, 0))
        out.paste(im, (0, heights[0]))
        if bands[1]:
            out.paste(bands[1], (0, heights[0] + im.height))
        return out

    return apply


def _pad(im: Image.Image, size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    out = Image.new("RGB", size, colour)
    out.paste(im, ((size[0] - im.width) // 2, (size[1] - im.height) // 2))
    return out


def letterbox(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    height = max(round(im.width * 16 / 9), round(im.height * 1.3))
    return _pad(im, (im.width, height), (0, 0, 0))


def pillarbox(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    width = max(round(im.height * 16 / 9), round(im.width * 1.3))
    return _pad(im, (width, im.height), (0, 0, 0))


def border(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    side = max(2, round(min(im.size) * rng.uniform(0.03, 0.1)))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    return _pad(im, (im.width + 2 * side, im.height + 2 * side), colour)  # type: ignore[arg-type]


def _crop(percent: float) -> Transform:
    def apply(rng: np.random.Generator, im: Image.Image) -> Image.Image:
        w, h = im.size
        cut_w, cut_h = w * percent / 100, h * percent / 100
        left, top = cut_w * rng.uniform(), cut_h * rng.uniform()
        return im.crop((round(left), round(top), round(left + w - cut_w), round(top + h - cut_h)))

    return apply


def _rotate(degrees: float) -> Transform:
    def apply(rng: np.random.Generator, im: Image.Image) -> Image.Image:
        angle = degrees if rng.uniform() < 0.5 else -degrees
        w, h = im.size
        a = math.radians(abs(angle))
        # the largest upright rectangle of the original's aspect inside the rotation
        scale = 1 / (math.cos(a) + math.sin(a) * max(w / h, h / w))
        turned = im.rotate(angle, resample=Image.Resampling.BICUBIC)
        iw, ih = w * scale, h * scale
        return turned.crop(
            (round((w - iw) / 2), round((h - ih) / 2), round((w + iw) / 2), round((h + ih) / 2))
        )

    return apply


def _transpose(method: Image.Transpose) -> Transform:
    return lambda rng, im: im.transpose(method)


def screenshot(rng: np.random.Generator, im: Image.Image) -> Image.Image:
    dark = rng.uniform() < 0.4
    bg, ink = ((21, 32, 43), (231, 233, 234)) if dark else ((255, 255, 255), (15, 20, 25))
    width = int(rng.integers(560, 760))
    margin = int(rng.integers(16, 33))
    pic_w = width - 2 * margin
    pic_h = max(16, round(im.height * pic_w / im.width))
    picture = im.resize((pic_w, pic_h), Image.Resampling.LANCZOS)
    status = 40 if rng.uniform() < 0.5 else 0
    header, caption_lines = 64, int(rng.integers(1, 4))
    caption = caption_lines * 26 + 12
    footer = 56
    height = status + header + caption + pic_h + footer
    out = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(out)
    if status:
        draw.rectangle((0, 0, width, status), fill=(0, 0, 0))
        draw.text((16, 10), "9:41", fill="white", font=font(18))
        draw.text((width - 90, 10), "5G 87%", fill="white", font=font(16))
    y = status + 10
    avatar = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw.ellipse((margin, y, margin + 44, y + 44), fill=avatar)
    draw.text((margin + 56, y + 2), "Some Account", fill=ink, font=font(18))
    draw.text((margin + 56, y + 24), "@someaccount · 2h", fill=(110, 118, 125), font=font(15))
    y = status + header
    for i in range(caption_lines):
        draw.text((margin, y + i * 26), words(rng, 7), fill=ink, font=font(18))
    y += caption
    mask = Image.new("L", picture.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, pic_w - 1, pic_h - 1), radius=14, fill=255)
    out.paste(picture, (margin, y), mask)
    y += pic_h + 16
    for i, label in enumerate(("12", "340", "1.2K", "")):
        draw.text((margin + i * (pic_w // 4), y), f"o {label}", fill=(110, 118, 125), font=font(16))
    return out


def chain(*steps: Transform) -> Transform:
    def apply(rng: np.random.Generator, im: Image.Image) -> Image.Image:
        for step in steps:
            im = step(rng, im)
        return im

    return apply


# name -> (transform, JPEG quality the result is saved at)
TRANSFORMS: dict[str, tuple[Transform, int]] = {
    "identity": (lambda rng, im: im, 90),
    "jpeg_q30": (lambda rng, im: im, 30),
    "resize_50": (resize, 85),
    "gamma_0.6": (_gamma(0.6), 85),
    "gamma_1.6": (_gamma(1.6), 85),
    "blur": (blur, 85),
    "noise": (noise, 85),
    "text_overlay": (text_overlay, 85),
    "logo_overlay": (logo_overlay, 85),
    "caption_top": (_caption(True, False), 85),
    "caption_bottom": (_caption(False, True), 85),
    "caption_both": (_caption(True, True), 85),
    "letterbox": (letterbox, 85),
    "pillarbox": (pillarbox, 85),
    "border": (border, 85),
    "screenshot": (screenshot, 85),
    "crop_5": (_crop(5), 85),
    "crop_10": (_crop(10), 85),
    "crop_20": (_crop(20), 85),
    "rotate_2": (_rotate(2), 85),
    "rotate_4": (_rotate(4), 85),
    "mirror": (_transpose(Image.Transpose.FLIP_LEFT_RIGHT), 85),
    "flip_vertical": (_transpose(Image.Transpose.FLIP_TOP_BOTTOM), 85),
    "rotate_90": (_transpose(Image.Transpose.ROTATE_90), 85),
    "rotate_180": (_transpose(Image.Transpose.ROTATE_180), 85),
    "caption+resize+jpeg": (chain(_caption(True, False), resize), 60),
    "letterbox+mirror": (chain(letterbox, _transpose(Image.Transpose.FLIP_LEFT_RIGHT)), 85),
    "border+caption": (chain(_caption(False, True), border), 85),
    "screenshot+jpeg": (screenshot, 60),
    "screenshot+mirror": (chain(_transpose(Image.Transpose.FLIP_LEFT_RIGHT), screenshot), 85),
    "crop_10+jpeg": (_crop(10), 50),
    "crop_5+mirror": (chain(_crop(5), _transpose(Image.Transpose.FLIP_LEFT_RIGHT)), 85),
    "text+gamma+resize": (chain(text_overlay, _gamma(1.3), resize), 85),
}

# The transforms held to recall >= 95% (BAR_95) and >= 80% (BAR_80).
BAR_95 = (
    "caption_top",
    "caption_bottom",
    "caption_both",
    "letterbox",
    "pillarbox",
    "border",
    "screenshot",
    "mirror",
    "flip_vertical",
    "rotate_90",
    "rotate_180",
)
BAR_80 = ("crop_10",)


def apply(name: str, rng: np.random.Generator, image: Image.Image) -> bytes:
    """`image` edited by transform `name`, as the JPEG file a platform would receive."""
    transform, quality = TRANSFORMS[name]
    out = transform(rng, image.convert("RGB"))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
