"""Canonicalisation: the picture inside borders, caption bars and screenshots, or None."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from media_factory import hamming, jpeg
from PIL import Image, ImageDraw, ImageFont

from ingest.canonical import Box, content_box, content_region
from ingest.pdq import pdq

TEXT = "WHEN THEY SAY IT CANNOT HAPPEN HERE"


@pytest.fixture(scope="module")
def photo(testdata: Path) -> Image.Image:
    """A natural photo, small enough to keep the tests fast."""
    image = Image.open(testdata / "pdq" / "bridge-mods" / "aaa-orig.jpg").convert("RGB")
    image.thumbnail((480, 480))
    return image


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def on_canvas(
    picture: Image.Image, size: tuple[int, int], at: tuple[int, int], colour: str | tuple[int, ...]
) -> Image.Image:
    canvas = Image.new("RGB", size, colour)
    canvas.paste(picture, at)
    return canvas


def captioned(picture: Image.Image, top: int, bottom: int) -> Image.Image:
    out = on_canvas(picture, (picture.width, picture.height + top + bottom), (0, top), "white")
    draw = ImageDraw.Draw(out)
    if top:
        draw.text((12, top // 4), TEXT, fill="black", font=font(top // 3))
    if bottom:
        draw.text((12, top + picture.height + bottom // 4), TEXT, fill="black", font=font(28))
    return out


def screenshot(picture: Image.Image, dark: bool, status_bar: bool = True) -> Image.Image:
    bg, ink = ("#15202b", "#e7e9ea") if dark else ("white", "#0f1419")
    width, margin = picture.width + 40, 20
    out = Image.new("RGB", (width, picture.height + 220), bg)
    draw = ImageDraw.Draw(out)
    if status_bar:
        draw.rectangle((0, 0, width, 36), fill="black")  # phone status bar
    draw.text((14, 8), "9:41", fill="white", font=font(18))
    draw.ellipse((margin, 46, margin + 44, 90), fill="#1d9bf0")  # avatar
    draw.text((margin + 56, 50), "Some Account @some · 2h", fill=ink, font=font(18))
    draw.text((margin, 104), "you will not believe what happened", fill=ink, font=font(18))
    out.paste(picture, (margin, 140))
    draw.text((margin, 150 + picture.height), "12   340   1.2K", fill=ink, font=font(16))
    return out


def assert_near(found: Box | None, expected: Box, tolerance: int = 4) -> None:
    assert found is not None, "no content box found"
    assert all(abs(f - e) <= tolerance for f, e in zip(found, expected, strict=True)), (
        f"{found} is not within {tolerance} px of {expected}"
    )


def test_black_letterbox_bars_are_stripped(photo: Image.Image) -> None:
    w, h = photo.size
    image = on_canvas(photo, (w, h + 200), (0, 100), "black")
    assert_near(content_box(image), Box(0, 100, w, 100 + h))


def test_black_pillarbox_bars_are_stripped(photo: Image.Image) -> None:
    w, h = photo.size
    image = on_canvas(photo, (w + 300, h), (150, 0), "black")
    assert_near(content_box(image), Box(150, 0, 150 + w, h))


def test_a_coloured_frame_is_stripped(photo: Image.Image) -> None:
    w, h = photo.size
    image = on_canvas(photo, (w + 60, h + 60), (30, 30), (200, 40, 120))
    assert_near(content_box(image), Box(30, 30, 30 + w, 30 + h))


def test_meme_caption_bands_with_text_are_stripped(photo: Image.Image) -> None:
    w, h = photo.size
    assert_near(content_box(captioned(photo, 110, 90)), Box(0, 110, w, 110 + h))
    assert_near(content_box(captioned(photo, 120, 0)), Box(0, 120, w, 120 + h))


def test_a_frame_around_a_captioned_meme_is_stripped_in_two_rounds(photo: Image.Image) -> None:
    w, h = photo.size
    meme = captioned(photo, 0, 100)
    image = on_canvas(meme, (meme.width + 50, meme.height + 50), (25, 25), (90, 160, 90))
    assert_near(content_box(image), Box(25, 25, 25 + w, 25 + h))


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_the_picture_in_a_screenshot_of_a_post_is_found(photo: Image.Image, dark: bool) -> None:
    w, h = photo.size
    assert_near(content_box(screenshot(photo, dark)), Box(20, 140, 20 + w, 140 + h))


def test_the_box_is_in_the_callers_pixels_at_any_size(photo: Image.Image) -> None:
    w, h = photo.size
    big = on_canvas(photo, (w, h + 200), (0, 100), "black").resize((2 * w, 2 * h + 400))
    assert_near(content_box(big), Box(0, 200, 2 * w, 200 + 2 * h), tolerance=8)


def test_nothing_is_found_on_a_plain_photo(photo: Image.Image, testdata: Path) -> None:
    assert content_box(photo) is None
    for name in ("blur-a-little.jpg", "high-contrast.jpg", "square-512x512.jpg"):
        edit = Image.open(testdata / "pdq" / "bridge-mods" / name).convert("RGB")
        assert content_box(edit) is None, name


def test_nothing_is_found_on_flat_or_tiny_pictures() -> None:
    assert content_box(Image.new("RGB", (300, 200), "white")) is None
    assert content_box(Image.new("RGB", (12, 12), "black")) is None


def test_a_uniform_sky_over_an_uneven_skyline_is_not_cut_off(photo: Image.Image) -> None:
    """A uniform top edge alone is not enough: the picture must start along a straight line."""
    w, h = photo.size
    sky = np.asarray(photo).copy()
    rng = np.random.default_rng(3)
    skyline = (h * 0.3 + np.cumsum(rng.normal(0, 6, w))).clip(10, h * 0.6).astype(int)
    for x, top in enumerate(skyline):
        sky[:top, x] = (200, 210, 225)
    assert content_box(Image.fromarray(sky)) is None


def test_greyscale_pictures_are_handled(photo: Image.Image) -> None:
    w, h = photo.size
    image = on_canvas(photo, (w, h + 200), (0, 100), "black").convert("L")
    assert_near(content_box(image), Box(0, 100, w, 100 + h))


def starfield(width: int, height: int, seed: int = 5) -> Image.Image:
    """A dark picture with small bright dots: no solid block for the opening to keep."""
    rng = np.random.default_rng(seed)
    sky = rng.integers(0, 18, (height, width, 3)).astype(np.uint8)
    for y, x in zip(rng.integers(0, height, 400), rng.integers(0, width, 400), strict=True):
        sky[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = rng.integers(120, 256, 3)
    return Image.fromarray(sky)


@pytest.mark.parametrize("pillarbox", [False, True], ids=["letterbox", "pillarbox"])
def test_a_dark_picture_in_bars_of_its_own_colour_is_found_by_its_bars(pillarbox: bool) -> None:
    stars = starfield(420, 300)
    if pillarbox:
        image, expected = on_canvas(stars, (740, 300), (160, 0), "black"), Box(160, 0, 580, 300)
    else:
        image, expected = on_canvas(stars, (420, 760), (0, 230), "black"), Box(0, 230, 420, 530)
    assert_near(content_box(image), expected, tolerance=1)


def test_dark_bars_on_one_side_only_are_not_taken_for_a_letterbox() -> None:
    stars = starfield(420, 300)
    assert content_box(on_canvas(stars, (420, 500), (0, 200), "black")) is None


def test_edges_are_found_to_the_pixel_on_a_large_picture(photo: Image.Image) -> None:
    """The analysis copy is 256 pixels; the box is placed on the full-size picture."""
    w, h = photo.size
    big = photo.resize((3 * w, 3 * h))
    image = on_canvas(big, (3 * w + 2 * 157, 3 * h), (157, 0), "black")
    assert_near(content_box(image), Box(157, 0, 157 + 3 * w, 3 * h), tolerance=1)


def toned(picture: Image.Image, gain: float, towards: tuple[int, int, int]) -> Image.Image:
    """`picture` with its contrast cut to `gain`, the rest of the way to `towards`."""
    pixels = np.asarray(picture, dtype=np.float32) * gain + (1 - gain) * np.array(towards)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def jpeg_picture(image: Image.Image, quality: int = 85) -> Image.Image:
    return Image.open(io.BytesIO(jpeg(image, quality))).convert("RGB")


@pytest.mark.parametrize("status_bar", [True, False], ids=["status-bar", "no-status-bar"])
@pytest.mark.parametrize("compressed", [False, True], ids=["png", "jpeg"])
def test_a_picture_as_dark_as_the_post_around_it_is_found(
    photo: Image.Image, status_bar: bool, compressed: bool
) -> None:
    """Along its edges a quarter of the way from the dark theme's canvas, the picture
    breaks up at the coarse tolerance (and a black status bar would join the canvas
    to it); a drawn canvas is flat, so the picture is found at the fine one."""
    night = toned(photo, 0.25, (21, 32, 43))  # the dark theme's #15202b
    image = screenshot(night, dark=True, status_bar=status_bar)
    if compressed:
        image = jpeg_picture(image)
    w, h = night.size
    assert_near(content_box(image), Box(20, 140, 20 + w, 140 + h), tolerance=2)


def test_a_night_photo_with_flat_dark_edges_is_not_cut(testdata: Path) -> None:
    """Flat dark edges on a photo are not a canvas: the fine tolerance is only for a
    colour flat on three edges or more, else the photo's dark band is cut off."""
    photo = Image.open(testdata / "pdq" / "reference" / "labelme-subset" / "q0291.jpg")
    photo = photo.convert("RGB")
    photo.thumbnail((480, 480))
    for gain in (0.3, 0.22):
        night = toned(photo, gain, (10, 18, 28))
        assert content_box(night) is None, gain


def test_rounded_corners_are_painted_over_to_their_rim(testdata: Path) -> None:
    """A post shows its picture with rounded corners; the region's corners, rim and
    all, are painted over from the picture, so its PDQ stays near the picture's."""
    photo = Image.open(testdata / "pdq" / "reference" / "labelme-subset" / "q0004.jpg")
    photo = photo.convert("RGB")
    photo.thumbnail((480, 480))
    w, h = photo.size
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, w - 1, h - 1), radius=14, fill=255)
    post = Image.new("RGB", (w + 48, h + 200), "white")
    ImageDraw.Draw(post).text((24, 40), "you will not believe what happened", fill="black")
    post.paste(photo, (24, 110), mask)
    region = content_region(jpeg_picture(post))
    assert region is not None
    assert_near(region.box, Box(24, 110, 24 + w, 110 + h), tolerance=1)
    assert hamming(pdq(region.picture).hash, pdq(photo).hash) <= 20
