"""Canonicalisation: the picture inside borders, caption bars and screenshots, or None."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from media_factory import hamming, jpeg
from PIL import Image, ImageDraw, ImageFont

from ingest.canonical import MAX_REGIONS, Box, Region, content_box, content_region, content_regions
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
    name = testdata / "pdq" / "reference" / "labelme-subset" / "q0291.jpg"
    photo = Image.open(name).convert("RGB")
    photo.thumbnail((480, 480))
    for gain in (0.3, 0.22):
        night = toned(photo, gain, (10, 18, 28))
        assert content_box(night) is None, gain


def test_rounded_corners_are_painted_over_to_their_rim(testdata: Path) -> None:
    """A post shows its picture with rounded corners; the region's corners, rim and
    all, are painted over from the picture, so its PDQ stays near the picture's."""
    name = testdata / "pdq" / "reference" / "labelme-subset" / "q0004.jpg"
    photo = Image.open(name).convert("RGB")
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


# Layouts beyond one post canvas: content_regions offers up to MAX_REGIONS candidate
# boxes (content_region's own first), one of which must be the picture.


def found_among(regions: list[Region], expected: Box, picture: Image.Image) -> Region:
    """The region at `expected` (within 4 px) whose PDQ is within 31 bits of `picture`'s."""
    assert len(regions) <= MAX_REGIONS
    near = [
        r for r in regions if all(abs(f - e) <= 4 for f, e in zip(r.box, expected, strict=True))
    ]
    assert near, f"none of {[r.box for r in regions]} is {expected}"
    assert min(hamming(pdq(r.picture).hash, pdq(picture).hash) for r in near) <= 31
    return near[0]


def post_around(picture: Image.Image, bg: str, ink: str, margin: int, avatar: int) -> Image.Image:
    """A post: a large square avatar at the right, 5 lines above, a row of buttons below."""
    w, h = picture.size
    out = Image.new("RGB", (w + 2 * margin, h + 330), bg)
    draw = ImageDraw.Draw(out)
    draw.rectangle(
        (w + 2 * margin - avatar - 12, 12, w + 2 * margin - 12, 12 + avatar), fill="#c04"
    )
    for i in range(5):
        draw.text((12, 100 + 24 * i), TEXT.lower(), fill=ink, font=font(18))
    out.paste(picture, (margin, 230))
    for i in range(4):
        draw.rounded_rectangle(
            (12 + 90 * i, h + 250, 80 + 90 * i, h + 280), radius=10, fill="#1d9bf0"
        )
    return out


def test_a_dark_theme_post_with_a_large_avatar_is_found(photo: Image.Image) -> None:
    w, h = photo.size
    image = jpeg_picture(post_around(photo, "black", "#e7e9ea", 36, 72), 80)
    found_among(content_regions(image), Box(36, 230, 36 + w, 230 + h), photo)


def test_an_edge_to_edge_picture_is_found(photo: Image.Image) -> None:
    w, h = photo.size
    image = jpeg_picture(post_around(photo, "white", "#0f1419", 0, 48))
    found_among(content_regions(image), Box(0, 230, w, 230 + h), photo)


def test_a_post_in_a_phone_frame_is_found(photo: Image.Image) -> None:
    w, h = photo.size
    screen = post_around(photo, "#15202b", "#e7e9ea", 16, 48)
    out = Image.new("RGB", (screen.width + 140, screen.height + 160), (70, 140, 200))
    draw = ImageDraw.Draw(out)
    draw.rounded_rectangle(
        (40, 40, screen.width + 100, screen.height + 120), radius=40, fill="#222"
    )
    out.paste(screen, (70, 70))
    found_among(content_regions(jpeg_picture(out)), Box(86, 300, 86 + w, 300 + h), photo)


def test_each_picture_of_a_grid_is_a_region(photo: Image.Image, testdata: Path) -> None:
    name = testdata / "pdq" / "reference" / "labelme-subset" / "q0004.jpg"
    other = Image.open(name).convert("RGB").resize(photo.size)
    w, h = photo.size
    out = Image.new("RGB", (2 * w + 4 + 40, h + 200), "white")
    ImageDraw.Draw(out).text((20, 40), TEXT, fill="black", font=font(20))
    out.paste(other, (20, 120))
    out.paste(photo, (20 + w + 4, 120))
    regions = content_regions(jpeg_picture(out))
    found_among(regions, Box(24 + w, 120, 24 + 2 * w, 120 + h), photo)
    found_among(regions, Box(20, 120, 20 + w, 120 + h), other)


def test_a_picture_in_a_chat_bubble_is_found(photo: Image.Image) -> None:
    w, h = photo.size
    out = Image.new("RGB", (w + 160, h + 420), (236, 229, 221))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, w + 160, 60), fill=(0, 128, 105))
    draw.rounded_rectangle((12, 80, 300, 140), radius=14, fill="white")
    draw.text((24, 96), "did you see this", fill="black", font=font(16))
    draw.rounded_rectangle((140, 160, 148 + w + 6, 166 + h + 6), radius=12, fill=(220, 248, 198))
    out.paste(photo, (146, 166))
    draw.rounded_rectangle((12, h + 200, 260, h + 250), radius=14, fill="white")
    draw.text((24, h + 214), "they will delete it", fill="black", font=font(16))
    found_among(content_regions(jpeg_picture(out)), Box(146, 166, 146 + w, 166 + h), photo)


def test_content_regions_start_with_the_content_region(photo: Image.Image) -> None:
    image = screenshot(photo, dark=True)
    first = content_region(image)
    assert first is not None
    assert content_regions(image)[0].box == first.box


def test_no_region_is_found_on_a_plain_photo(photo: Image.Image, testdata: Path) -> None:
    assert content_regions(photo) == []
    for name in ("blur-a-little.jpg", "high-contrast.jpg", "square-512x512.jpg"):
        edit = Image.open(testdata / "pdq" / "bridge-mods" / name).convert("RGB")
        assert content_regions(edit) == [], name


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    left=st.integers(0, 120),
    top=st.integers(0, 200),
    right=st.integers(0, 120),
    bottom=st.integers(0, 200),
    colour=st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
)
def test_regions_are_boxes_inside_the_image_content_region_first(
    photo: Image.Image,
    left: int,
    top: int,
    right: int,
    bottom: int,
    colour: tuple[int, int, int],
) -> None:
    w, h = photo.size
    image = on_canvas(photo, (left + w + right, top + h + bottom), (left, top), colour)
    regions = content_regions(image)
    assert len(regions) <= MAX_REGIONS
    for region in regions:
        box = region.box
        assert 0 <= box.left < box.right <= image.width
        assert 0 <= box.top < box.bottom <= image.height
        assert region.picture.size == (box.width, box.height)
    first = content_region(image)
    if first is not None:
        assert regions[0].box == first.box
