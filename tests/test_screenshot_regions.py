"""Screenshots of a reference picture: the candidate regions a query offers and the
keypoint sets it carries for them (ingest/canonical.py, ingest/probes.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

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
    full = small_picture_screenshot.crop(tuple(2 * v for v in box))
    expected = keypoints(full, limit=QUERY_LIMIT)
    reduced = keypoints(decoded.image.crop(box), limit=QUERY_LIMIT)
    assert name == "content"
    assert np.array_equal(found.descriptors, expected.descriptors)
    assert not np.array_equal(found.descriptors, reduced.descriptors)
