"""Multi-probe queries: a bounded set of probes per image, each at its own threshold."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from media_factory import jpeg
from PIL import Image, ImageDraw, ImageFont

from hashdb.matching import Matcher, Probe, Query, Via
from hashdb.signals import PDQ
from hashdb.store import Member, NewHash, Role, Store
from hashdb.variants import CONTENT
from ingest.image import hash_image
from ingest.probes import (
    DEFAULT,
    FULL,
    MAX_PROBES,
    PLAIN,
    THRESHOLDS,
    ProbeKind,
    ProbeOptions,
    probe_queries,
    stored_variants,
)
from ingest.records import image_contributions

MAX_PIXELS = 10**8


def captioned(picture: Image.Image, band: int = 120) -> Image.Image:
    out = Image.new("RGB", (picture.width, picture.height + band), "white")
    out.paste(picture, (0, band))
    draw = ImageDraw.Draw(out)
    draw.text((12, band // 4), "NOBODY: ME:", fill="black", font=ImageFont.load_default(size=40))
    return out


def letterboxed(picture: Image.Image) -> Image.Image:
    out = Image.new("RGB", (picture.width, picture.height + 240), "black")
    out.paste(picture, (0, 120))
    return out


def screenshot(picture: Image.Image) -> Image.Image:
    out = Image.new("RGB", (picture.width + 40, picture.height + 200), "white")
    draw = ImageDraw.Draw(out)
    draw.ellipse((20, 10, 64, 54), fill="#1d9bf0")
    draw.text((76, 20), "Some Account @some", fill="black", font=ImageFont.load_default(size=18))
    draw.text((20, 70), "look at this", fill="black", font=ImageFont.load_default(size=18))
    out.paste(picture, (20, 110))
    draw.text((20, picture.height + 130), "12  340  1.2K", fill="grey")
    return out


def crop(picture: Image.Image, keep: float) -> Image.Image:
    w, h = picture.size
    x, y = w * (1 - keep) / 2, h * (1 - keep) / 2
    return picture.crop((round(x), round(y), round(w - x), round(h - y)))


@pytest.fixture
def member(store: Store) -> Member:
    return store.members.create("A", Role.ADMIN)[0]


@pytest.fixture
def matcher(store: Store) -> Matcher:
    return Matcher(store.hashes, store.changes, sync_interval=0.0)


def store_image(store: Store, member: Member, data: bytes, reference: str) -> None:
    """Store an image's PDQ row with its stored variants, as a contribution does."""
    _, rows = image_contributions(data, (), reference, max_pixels=MAX_PIXELS)
    store.hashes.add(member.id, [r for r in rows if r.signal_type == PDQ.name])


def test_the_probe_set_is_bounded_named_and_starts_with_the_whole_image(
    bridge_picture: Image.Image,
) -> None:
    probed = probe_queries(jpeg(captioned(bridge_picture)), FULL)
    names = [p.name for p in probed.probes]
    assert names[0] == "whole"
    assert len(names) == len(set(names)) <= MAX_PROBES
    assert {"content", "flip_y", "rotate90", "content_flip_y", "crop_c90", "crop_br90"} <= set(
        names
    )
    assert probed.content is not None


def test_options_choose_the_probe_kinds(bridge_picture: Image.Image) -> None:
    data = jpeg(captioned(bridge_picture))
    assert [p.name for p in probe_queries(data, PLAIN).probes] == ["whole"]
    default = {p.name for p in probe_queries(data, DEFAULT).probes}
    assert "content" in default and "flip_y" in default
    assert not any(n.startswith("crop_") for n in default)
    only_content = ProbeOptions.of(["content"])
    assert [p.name for p in probe_queries(data, only_content).probes] == ["whole", "content"]
    with pytest.raises(ValueError, match="rotate"):
        ProbeOptions.of(["rotate"])


def test_every_probe_carries_its_own_threshold_into_the_query(bridge_picture: Image.Image) -> None:
    probed = probe_queries(jpeg(captioned(bridge_picture)), FULL)
    query = probed.pdq_query()
    assert query.value == probed.hashes.pdq and query.threshold is None
    for probe in query.probes:
        assert isinstance(probe, Probe)
        assert probe.threshold == THRESHOLDS[probe.name]
    capped = probed.pdq_query(threshold=20)
    assert all(isinstance(v, Probe) and v.threshold == 20 for v in capped.probes)


def test_the_whole_probe_is_the_hash_stored_for_the_same_file(bridge_picture: Image.Image) -> None:
    data = jpeg(bridge_picture)
    probed = probe_queries(data, FULL).hashes
    assert replace(probed, dihedral=()) == hash_image(data)


@pytest.mark.parametrize(
    ("form", "transpose"),
    [
        ("flip_x", Image.Transpose.FLIP_TOP_BOTTOM),
        ("rotate180", Image.Transpose.ROTATE_180),
        ("rotate270", Image.Transpose.ROTATE_270),
        ("transverse", Image.Transpose.TRANSVERSE),
        ("flip_y", Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_a_dihedral_probe_is_within_a_few_bits_of_the_turned_picture(
    testdata: Path, form: str, transpose: Image.Transpose
) -> None:
    """pdqhash derives the forms from one downsample that is not symmetric top to
    bottom; the forms that flip vertically come from the flipped picture instead."""
    bridge_picture = Image.open(testdata / "pdq" / "bridge-mods" / "aaa-orig.jpg").convert("RGB")
    odd = bridge_picture.crop((81, 64, 1509, 817)).resize(
        (351, 185)
    )  # pdqhash's forms: 34 bits off
    probes = {p.name: p.pdq for p in probe_queries(jpeg(odd), FULL).probes}
    turned = hash_image(jpeg(odd.transpose(transpose))).pdq
    distance = (int.from_bytes(probes[form]) ^ int.from_bytes(turned)).bit_count()
    assert distance <= 16


def test_low_detail_probes_are_left_out_and_never_loose() -> None:
    """A near-uniform picture inside a caption: its content region has no detail."""
    flat = Image.new("RGB", (400, 300), (120, 130, 140))
    ImageDraw.Draw(flat).rectangle((0, 0, 399, 299), outline=(60, 60, 60), width=3)
    data = jpeg(captioned(flat))
    probed = probe_queries(data, FULL)
    assert all(p.quality >= 50 for p in probed.probes[1:])
    assert "content" not in {p.name for p in probed.probes}
    assert "content" not in {v.kind for v in stored_variants(captioned(flat), b"")}


def test_a_threshold_above_31_only_applies_to_detailed_probes(bridge_picture: Image.Image) -> None:
    loose = ProbeOptions(frozenset(ProbeKind), thresholds=dict.fromkeys(THRESHOLDS, 45))
    for probe in probe_queries(jpeg(captioned(bridge_picture)), loose).probes[1:]:
        assert probe.threshold == (45 if probe.quality >= 80 else 31)


def test_the_matcher_honours_per_probe_thresholds_and_plain_pairs(
    store: Store, member: Member, matcher: Matcher
) -> None:
    stored = bytes(range(32))
    store.hashes.add(member.id, [NewHash(PDQ.name, stored)])
    near = bytearray(stored)
    for bit in range(35):  # 35 bits away
        near[bit // 8] ^= 0x80 >> (bit % 8)
    unrelated = bytes(255 - b for b in stored)
    wide, tight, pair = matcher.match(
        [
            Query(PDQ, unrelated, probes=(Probe("wide", bytes(near), 40),)),
            Query(PDQ, unrelated, probes=(Probe("tight", bytes(near), 31),)),
            Query(PDQ, unrelated, threshold=40, probes=(("pair", bytes(near)),)),
        ]
    )
    assert [(m.distance, m.how) for m in wide.matches] == [(35, "wide")]
    assert tight.matches == []
    assert [m.how for m in pair.matches] == ["pair"]


@pytest.mark.parametrize(
    ("edit", "probes"),
    [
        (letterboxed, {"content"}),
        (captioned, {"content"}),
        (screenshot, {"content"}),
        (lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {"flip_y"}),
        (lambda im: im.transpose(Image.Transpose.ROTATE_90), {"rotate270"}),
        (lambda im: captioned(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), {"content_flip_y"}),
    ],
    ids=["letterboxed", "captioned", "screenshot", "mirrored", "rotated-90", "captioned-mirror"],
)
def test_an_edited_copy_matches_the_stored_original_and_names_the_probe(
    store: Store,
    member: Member,
    matcher: Matcher,
    bridge_picture: Image.Image,
    edit: Callable[[Image.Image], Image.Image],
    probes: set[str],
) -> None:
    store_image(store, member, jpeg(bridge_picture), "original")
    plain, full = matcher.match(
        [
            probe_queries(jpeg(edit(bridge_picture)), PLAIN).pdq_query(),
            probe_queries(jpeg(edit(bridge_picture))).pdq_query(),
        ]
    )
    assert plain.matches == []  # plain PDQ misses it
    assert [m.record.reference for m in full.matches] == ["original"]
    assert full.matches[0].how in probes


def test_a_copy_showing_10_percent_more_than_the_stored_crop_matches_by_a_crop_probe(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image
) -> None:
    store_image(store, member, jpeg(crop(bridge_picture, 0.9)), "cropped")
    plain, full = matcher.match(
        [
            probe_queries(jpeg(bridge_picture), PLAIN).pdq_query(),
            probe_queries(jpeg(bridge_picture), FULL).pdq_query(),
        ]
    )
    assert plain.matches == []
    assert [(m.record.reference, m.how) for m in full.matches] == [("cropped", "crop_c90")]


def test_a_stored_meme_matches_the_clean_picture_through_its_stored_content_region(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image
) -> None:
    store_image(store, member, jpeg(captioned(bridge_picture)), "meme")
    (result,) = matcher.match([probe_queries(jpeg(bridge_picture), PLAIN).pdq_query()])
    assert [(m.record.reference, m.via) for m in result.matches] == [("meme", Via(None, CONTENT))]
    assert result.matches[0].how == "stored:content"  # as the API reports it


def test_unrelated_pictures_do_not_match(
    store: Store, member: Member, matcher: Matcher, bridge_picture: Image.Image, testdata: Path
) -> None:
    store_image(store, member, jpeg(captioned(bridge_picture)), "meme")
    others = sorted((testdata / "pdq" / "reference" / "labelme-subset").glob("*.jpg"))
    results = matcher.match([probe_queries(p.read_bytes(), FULL).pdq_query() for p in others])
    assert [r.matches for r in results] == [[] for _ in others]
