"""Screenshots of a reference picture: the candidate regions a query offers and the
keypoint sets it carries for them (ingest/canonical.py, ingest/probes.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ingest.canonical import content_regions
from ingest.decode import decode
from ingest.keypoints import QUERY_LIMIT, keypoints
from ingest.probes import ProbeOptions, probe_queries

MAX_PIXELS = 10**8


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def small_picture_screenshot(bridge_picture: Image.Image) -> Image.Image:
    """A 800 x 1400 page (decoded at half size) showing the bridge at 300 pixels wide."""
    page = Image.new("RGB", (800, 1400), "white")
    draw = ImageDraw.Draw(page)
    for y in range(40, 300, 40):
        draw.text((40, y), "some words of a post above the picture", fill="black")
    w, h = bridge_picture.size
    picture = bridge_picture.resize((300, round(300 * h / w)))
    page.paste(picture, (60, 360))
    return page


def test_a_small_region_keypoint_set_is_cut_from_twice_the_decoded_resolution(
    small_picture_screenshot: Image.Image,
) -> None:
    data = png(small_picture_screenshot)
    decoded = decode(data, max_pixels=MAX_PIXELS)
    assert decoded.scale == 2
    probed = probe_queries(data, ProbeOptions.of(["content", "keypoints"]))
    assert probed.keypoints is not None and probed.content is not None
    name, found = probed.keypoints.regions[0]
    box = probed.content
    full = small_picture_screenshot.crop((2 * box.left, 2 * box.top, 2 * box.right, 2 * box.bottom))
    expected = keypoints(full, limit=QUERY_LIMIT)
    reduced = keypoints(decoded.image.crop(box), limit=QUERY_LIMIT)
    assert name == "content"
    assert np.array_equal(found.descriptors, expected.descriptors)
    assert not np.array_equal(found.descriptors, reduced.descriptors)


@pytest.fixture
def grid_screenshot(
    bridge_picture: Image.Image, testdata: Path
) -> tuple[Image.Image, list[tuple[int, ...]]]:
    """A post on a white page whose grid shows the bridge and the pen, 240 x 180
    each, side by side with a grey gutter a pixel wide (not the page's colour, so it
    is no gap of the background), and the cells' boxes."""
    cell = bridge_picture.resize((240, 180))
    pen = Image.open(testdata / "pdq" / "reference" / "pen-and-coaster.png").convert("RGB")
    page = Image.new("RGB", (560, 420), "white")
    draw = ImageDraw.Draw(page)
    draw.text((30, 30), "two pictures in one post", fill="black")
    draw.rectangle((39, 99, 521, 280), fill=(128, 128, 128))
    page.paste(cell, (40, 100))
    page.paste(pen.resize((240, 180)), (281, 100))
    return page, [(40, 100, 280, 280), (281, 100, 521, 280)]


def test_the_cells_of_a_grid_with_a_thin_gutter_are_candidate_regions(
    grid_screenshot: tuple[Image.Image, list[tuple[int, ...]]],
) -> None:
    page, cells = grid_screenshot
    boxes = [r.box for r in content_regions(page)]
    for cell in cells:  # placed within 2% of a side
        assert any(max(abs(a - b) for a, b in zip(box, cell, strict=True)) <= 5 for box in boxes)


def test_a_plain_photo_has_no_seams_to_cut(bridge_picture: Image.Image) -> None:
    assert content_regions(bridge_picture) == []
