"""Synthetic media for tests: detailed images and short videos, made on the spot."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def hamming(a: bytes, b: bytes) -> int:
    """Bits that differ between two hashes of the same length."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """`image` as the JPEG file a platform would receive."""
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def jpeg_copy(image: Image.Image, quality: int = 85) -> Image.Image:
    """`image` after a round trip through JPEG at `quality`, as a re-upload arrives."""
    return Image.open(io.BytesIO(jpeg(image, quality))).convert("RGB")


def keep(image: Image.Image, share: float, fx: float = 0.5, fy: float = 0.5) -> Image.Image:
    """The crop of `image` keeping `share` of each side, placed at (fx, fy) of the
    room left (0.5, 0.5: central)."""
    w, h = image.size
    cw, ch = round(w * share), round(h * share)
    x, y = round((w - cw) * fx), round((h - ch) * fy)
    return image.crop((x, y, x + cw, y + ch))


# The PIL transpose that turns a picture into each dihedral form of its PDQ hash
# (hashdb.signals.pdq_dihedral.DIHEDRAL_FORMS).
TURN_INTO_FORM = {
    "rotate90": Image.Transpose.ROTATE_90,
    "rotate180": Image.Transpose.ROTATE_180,
    "rotate270": Image.Transpose.ROTATE_270,
    "flip_x": Image.Transpose.FLIP_TOP_BOTTOM,
    "flip_y": Image.Transpose.FLIP_LEFT_RIGHT,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}


def detailed_image(seed: int, size: int = 256) -> Image.Image:
    """A random blocky picture: enough structure for PDQ quality well above 50."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BILINEAR)


def letterboxed(picture: Image.Image) -> Image.Image:
    """`picture` with black bars above and below, a quarter of its height each, as
    re-uploaders pad it."""
    bar = picture.height // 4
    canvas = Image.new("RGB", (picture.width, picture.height + 2 * bar), "black")
    canvas.paste(picture, (0, bar))
    return canvas


def write_image(path: Path, seed: int, size: int = 256) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    detailed_image(seed, size).save(path)
    return path


def write_video(path: Path, seed: int, seconds: float = 3.0, fps: float = 10.0) -> Path:
    """An mp4 whose content changes every second (a new random picture per second)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 120))
    frames = int(seconds * fps)
    for i in range(frames):
        picture = np.asarray(detailed_image(seed * 1000 + int(i // fps), 160))[:120]
        writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
