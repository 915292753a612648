"""PDQ probes for one query image, each with its own threshold, and the stored
variants of a contributed image: the two halves of matching re-uploads.

**Query side.** Our lookups cost well under a millisecond, so one query image can
afford several probes: the whole picture, its content region (ingest/canonical.py:
without borders, caption bars or the screenshot around it), its 7 other dihedral
forms (a mirrored copy is about 128 bits away otherwise), the dihedral forms of the
content region, and a few centred and corner crops (for a query that shows more
than the stored picture). A screenshot may hold its picture inside a phone frame, a
chat bubble, a card or a grid of several pictures, where one box is not enough:
`canonical.content_regions` offers up to MAX_REGIONS candidates, the first being
the content region above, the others probed as `content_2`... at the content
probe's threshold (benchmarks/screenshots.py measures them; none brought an
unrelated picture near a reference). Every added probe widens the net, so each kind
has its own threshold in THRESHOLDS, set from the distances of unrelated pictures in
benchmarks/quality.py (docs/measurements.md, "Probes and stored-variant
thresholds"), and the set is bounded (at most MAX_PROBES = 25 probes: 1 whole + 7
dihedral + 5 content regions + 7 content dihedral + 5 crops).

**Keypoints.** With `ProbeKind.KEYPOINTS` (every lookup of the API, the console
and the CLI) the query also carries its keypoint set (256 keypoints,
ingest/keypoints.py), and with DIHEDRAL the set of its mirror image: matched by
geometric verification against stored keypoint sets (hashdb/signals/keypoints.py),
it finds crops, corner logos and small tilts that no PDQ probe reaches. The
keypoint sets of the first KEYPOINT_REGIONS content regions go with it: in a
screenshot the picture holds few of the whole image's keypoints, and a region's own
set finds it even where the region's box is too rough for its PDQ. A region smaller
than the keypoint working side is cut from the file decoded again at twice the
reduced decode's resolution (only when such a region's set is carried, so a plain
photo pays nothing): a grid cell or a chat picture a hundred decoded pixels wide, enlarged
from the reduced picture, has lost the detail its keypoints are found at.

**Store side.** A query that shows *less* than the stored picture (a crop) cannot
be recovered by probing the query: the missing part is gone. A detailed picture's
keypoint set finds its crops; one with too few keypoints (ingest/records.py,
WINDOWS_BELOW_KEYPOINTS) instead stores, with its PDQ row (`hash_variants`,
hashdb/store/hashes.py), the hashes of what a cropped re-upload could show
(`stored_variants`, names and thresholds in hashdb/variants.py): windows keeping
90% of each side at a 7 x 7 grid of positions, 95% and 80% at 5 x 5 grids (99 windows). PDQ
moves fast as a window slides, so the grid must be fine for a crop_10 query (10% of
each side cut, split at random between opposite sides) to land within 31 bits of a
stored 90% window, and 7 x 7 is where that levels off; crop_5 needs the 95% windows,
an 80% crop the 80% ones (few keypoints do not find it). Every
contributed image, detailed or not, also stores the PDQ of its content region
when it has one. The figures, from benchmarks/quality.py's corpus and edits: docs/measurements.md,
"Probes and stored-variant thresholds".

Low detail never matches loosely: a probe or stored window whose own PDQ quality is
below 50 (a near-uniform crop, a flat content region) is left out, and a threshold
above PDQ's default 31 is only used for probes of quality at least
LOOSE_MIN_QUALITY = 80; others are held to 31. The image as a whole is still gated
by the Matcher (whole quality below 50: answered `low_quality`, nothing matched).

Sizes, because PDQ is not scale-free at the precision we need: the whole image is
hashed from the decoded picture, as `ingest.image.hash_image` does; the content
region is cut from the decoded picture to the pixel and hashed at that size (cut
from a reduced copy, its hash moved nearly a whole threshold away from the stored
hash; docs/measurements.md); the crop probes and the stored windows are hashed from
a working copy whose long side is at most WORK_SIDE = 512 pixels (CROP_SIDE = 256
for the query's crop probes). The dihedral forms are those `ingest.pdq.pdq` gives
for the decoded picture and for the content region at their own size: the hashes
of those pictures really turned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from PIL import Image

from hashdb.consortium import NewVariant, Probe, Query
from hashdb.consortium.keypoints import query as keypoint_query
from hashdb.errors import HashdbError
from hashdb.keypoints.codec import KeypointSet
from hashdb.signals import MD5, PDQ, PHASH, SHA256
from hashdb.signals.pdq_dihedral import DIHEDRAL_FORMS
from hashdb.variants import CONTENT, CROP_WINDOWS
from ingest.canonical import MAX_REGIONS, Box, Region, content_region, content_regions
from ingest.decode import Decoded, decode
from ingest.image import DEFAULT_MAX_PIXELS, ImageHashes, hash_decoded
from ingest.keypoints import QUERY_LIMIT, WORKING_SIDE, keypoints, query_sets
from ingest.pdq import pdq

log = logging.getLogger(__name__)

WORK_SIDE = 512
# Content regions whose keypoint sets a query also carries: all of them. Each set
# searched costs as much as the whole image's, but only a screenshot has regions,
# and a grid's cells, offered after the grid and the blocks around it, are often
# found by their own sets only (benchmarks/screenshots.py; docs/measurements.md,
# "Screenshots with keypoints").
KEYPOINT_REGIONS = MAX_REGIONS
CROP_SIDE = 256
LOOSE_MIN_QUALITY = 80
CROP_KEEP = 0.9

# Crop probes: name -> where the kept 90% window sits (0 = left/top, 1 = right/bottom).
CROPS: dict[str, tuple[float, float]] = {
    "crop_c90": (0.5, 0.5),
    "crop_tl90": (0.0, 0.0),
    "crop_tr90": (1.0, 0.0),
    "crop_bl90": (0.0, 1.0),
    "crop_br90": (1.0, 1.0),
}

# Per-probe thresholds (bits of 256), set from benchmarks/quality.py: no probe kind
# brought an unrelated picture anywhere near these thresholds of a stored row (see
# docs/measurements.md, "Probes and stored-variant thresholds"). So 31 holds for the
# kinds that carry recall; content dihedral forms and crops add 7 and 5 probes per
# query each and recover few edits, so they are kept 3 bits tighter.
THRESHOLDS: dict[str, int] = {
    "whole": PDQ.default_threshold or 31,
    "content": 31,
    **{f"content_{i}": 31 for i in range(2, MAX_REGIONS + 1)},
    **{name: 31 for name in DIHEDRAL_FORMS},
    **{f"content_{name}": 28 for name in DIHEDRAL_FORMS},
    **{name: 28 for name in CROPS},
}

MAX_PROBES = 1 + 2 * (1 + len(DIHEDRAL_FORMS)) - 1 + (MAX_REGIONS - 1) + len(CROPS)


class ProbeKind(StrEnum):
    """Families of probes a request may ask for (the whole image is always probed)."""

    DIHEDRAL = "dihedral"  # the 7 other rotations and flips of the whole image
    CONTENT = "content"  # the content region, when ingest.canonical finds one
    CONTENT_DIHEDRAL = "content_dihedral"  # its 7 other rotations and flips
    CROPS = "crops"  # centred and corner crops keeping 90% of each side
    # The image's keypoint set (hashdb/signals/keypoints.py), matched by verification:
    # crops, logos, small tilts; with DIHEDRAL also its mirror image's set.
    KEYPOINTS = "keypoints"


@dataclass(frozen=True)
class ProbeOptions:
    """Which probes to build and their thresholds; `thresholds` overrides THRESHOLDS."""

    kinds: frozenset[ProbeKind] = frozenset(
        {ProbeKind.DIHEDRAL, ProbeKind.CONTENT, ProbeKind.CONTENT_DIHEDRAL, ProbeKind.KEYPOINTS}
    )
    thresholds: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, kinds: Iterable[str]) -> ProbeOptions:
        """Options from kind names ("dihedral", "content", ...); ValueError if unknown."""
        return cls(frozenset(ProbeKind(k) for k in kinds))

    def threshold(self, name: str) -> int:
        return self.thresholds.get(name, THRESHOLDS[name])


DEFAULT = ProbeOptions()
PLAIN = ProbeOptions(frozenset())
FULL = ProbeOptions(frozenset(ProbeKind))


@dataclass(frozen=True)
class ProbeHash:
    name: str  # "whole", "content", a dihedral form, "content_<form>", a crop name
    pdq: bytes  # 32 bytes
    quality: int  # PDQ quality of the probed picture, 0-100
    threshold: int  # after the low-detail rule


@dataclass(frozen=True)
class KeypointProbes:
    """A query image's keypoint sets: the whole picture's, its mirror image's (with
    ProbeKind.DIHEDRAL) and those of its first KEYPOINT_REGIONS content regions
    (named as their PDQ probes: "content", "content_2", ...)."""

    whole: KeypointSet
    mirrored: KeypointSet | None
    regions: tuple[tuple[str, KeypointSet], ...]


@dataclass(frozen=True)
class ProbedImage:
    """An uploaded image's hashes, and the PDQ probes to look up for it."""

    hashes: ImageHashes
    content: Box | None  # in the decoded (upright, reduced) picture's pixels
    probes: tuple[ProbeHash, ...]  # every usable probe, "whole" first
    # With ProbeKind.KEYPOINTS: the query's keypoint sets.
    keypoints: KeypointProbes | None = None

    def pdq_query(self, threshold: int | None = None) -> Query:
        """The PDQ query: the whole image, carrying every other probe.

        A request threshold applies to the whole image and caps every probe."""
        whole, *others = self.probes
        cap = whole.threshold if threshold is None else threshold
        probes = tuple(Probe(p.name, p.pdq, min(p.threshold, cap)) for p in others)
        return Query(PDQ, whole.pdq, threshold, self.hashes.pdq_quality, probes)

    def queries(
        self, *, pdq_threshold: int | None = None, phash_threshold: int | None = None
    ) -> list[Query]:
        """What ingest.records.queries gives, with the PDQ query carrying the probes."""
        h = self.hashes
        found = [
            self.pdq_query(pdq_threshold),
            Query(PHASH, h.phash, phash_threshold, h.pdq_quality),
            Query(MD5, h.md5),
            Query(SHA256, h.sha256),
        ]
        local = self.keypoint_query()
        return found if local is None else [*found, local]

    def keypoint_query(self) -> Query | None:
        """The keypoints query, carrying the mirrored and region sets as probes (None
        without ProbeKind.KEYPOINTS)."""
        k = self.keypoints
        return None if k is None else keypoint_query(k.whole, k.mirrored, k.regions)


def probe_queries(
    data: bytes, options: ProbeOptions = DEFAULT, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ProbedImage:
    """Hash the image file `data` and build its probes (errors as ingest.image.hash_image)."""
    decoded = decode(data, max_pixels=max_pixels)
    picture = decoded.image
    hashes = hash_decoded(data, decoded, dihedral=ProbeKind.DIHEDRAL in options.kinds)
    raw: list[tuple[str, bytes, int]] = [("whole", hashes.pdq, hashes.pdq_quality)]
    raw += [(name, code, hashes.pdq_quality) for name, code in hashes.dihedral]
    regions = []
    if options.kinds & {ProbeKind.CONTENT, ProbeKind.CONTENT_DIHEDRAL}:
        regions = content_regions(picture)
    box = regions[0].box if regions else None
    for i, found in enumerate(regions):
        cropped = found.picture
        region = pdq(
            cropped,
            dihedral=i == 0 and ProbeKind.CONTENT_DIHEDRAL in options.kinds,
            full_size=_full_size(cropped, decoded.scale),
        )
        if ProbeKind.CONTENT in options.kinds:
            name = "content" if i == 0 else f"content_{i + 1}"
            raw.append((name, region.hash, region.quality))
        if i == 0 and ProbeKind.CONTENT_DIHEDRAL in options.kinds:
            raw += [(f"content_{n}", code, region.quality) for n, code in region.dihedral]
    if ProbeKind.CROPS in options.kinds:
        small = _working_copy(_working_copy(picture), CROP_SIDE)
        for name, (fx, fy) in CROPS.items():
            crop = pdq(_window(small, fx, fy))
            raw.append((name, crop.hash, crop.quality))
    sets: KeypointProbes | None = None
    if ProbeKind.KEYPOINTS in options.kinds:
        if ProbeKind.DIHEDRAL in options.kinds:
            whole_set, mirrored = query_sets(picture)
        else:
            whole_set, mirrored = keypoints(picture, limit=QUERY_LIMIT), None
        carried = regions[:KEYPOINT_REGIONS]
        finer = _finer(data, decoded, max_pixels) if any(map(_small, carried)) else None
        parts = tuple(
            (
                "content" if i == 0 else f"content_{i + 1}",
                keypoints(_sharper(r, picture, finer), limit=QUERY_LIMIT),
            )
            for i, r in enumerate(carried)
        )
        sets = KeypointProbes(whole_set, mirrored, parts)
    name, code, quality = raw[0]
    first = ProbeHash(name, code, quality, options.threshold(name))  # gated by the Matcher
    others = (_probe(options, *r) for r in raw[1:])
    return ProbedImage(hashes, box, (first, *(p for p in others if p is not None)), sets)


def stored_variants(
    picture: Image.Image, whole: bytes, scale: int = 1, *, windows: bool = True
) -> tuple[NewVariant, ...]:
    """The stored variants of a contributed picture (hashdb/variants.py): the PDQ of its
    content region, when one is found (hashed as the query's content probe is: as at
    full resolution, `scale` being the decode's reduction), and, with `windows`, of
    each crop window in CROP_WINDOWS (cut from the working copy); those of quality
    below 50 or equal to `whole` (the picture's own PDQ) are left out."""
    work = _working_copy(picture)
    found: list[NewVariant] = []
    content = content_region(picture)
    if content is not None:
        region = pdq(content.picture, full_size=_full_size(content.picture, scale))
        found.append(NewVariant(CONTENT, region.hash, region.quality))
    for name, window in CROP_WINDOWS.items() if windows else ():
        crop = pdq(_window(work, window.x, window.y, window.keep))
        found.append(NewVariant(name, crop.hash, crop.quality))
    floor = PDQ.min_quality or 0
    return tuple(
        v for v in found if v.quality is not None and v.quality >= floor and v.value != whole
    )


def _probe(options: ProbeOptions, name: str, code: bytes, quality: int) -> ProbeHash | None:
    if quality < (PDQ.min_quality or 0):
        return None
    threshold = options.threshold(name)
    default = PDQ.default_threshold or 31
    if threshold > default and quality < LOOSE_MIN_QUALITY:
        threshold = default
    return ProbeHash(name, code, quality, threshold)


def _finer(data: bytes, decoded: Decoded, max_pixels: int) -> Image.Image | None:
    """`decoded`'s picture decoded again at twice its resolution (None when it was not
    reduced, or the second decode does not line up with the first): the pixels a
    small region's keypoint set is cut from (see `_sharper`)."""
    if decoded.scale < 2:
        return None
    try:
        again = decode(data, max_pixels=max_pixels, finer=2)
    except HashdbError as exc:  # decoded once already: only finer pixels are lost
        log.debug("finer decode failed, regions cut from the reduced picture: %s", exc)
        return None
    w, h = decoded.image.size
    if abs(again.image.width - 2 * w) > 2 or abs(again.image.height - 2 * h) > 2:
        return None
    return again.image


def _small(region: Region) -> bool:
    """Whether `region`'s long side is below the keypoint working side: a grid cell or
    a chat picture a few hundred decoded pixels wide loses the detail its keypoints
    are found at when it is cut from the reduced picture and enlarged
    (benchmarks/screenshots.py)."""
    return max(region.box.width, region.box.height) < WORKING_SIDE


def _sharper(region: Region, picture: Image.Image, finer: Image.Image | None) -> Image.Image:
    """`region` cut from `finer` (twice `picture`'s resolution) when it is `_small`."""
    box = region.box
    if finer is None or not _small(region):
        return region.picture
    sx, sy = finer.width / picture.width, finer.height / picture.height
    return finer.crop(
        (round(box.left * sx), round(box.top * sy), round(box.right * sx), round(box.bottom * sy))
    ).convert("RGB")


def _full_size(picture: Image.Image, scale: int) -> tuple[int, int]:
    """The size `picture`, cut from a decode reduced `scale` times, has at full
    resolution: PDQ hashes it as that picture (ingest/pdq.py)."""
    return (picture.width * scale, picture.height * scale)


def _working_copy(picture: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    scale = side / max(picture.size)
    if scale >= 1:
        return picture
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BOX)


def _window(work: Image.Image, fx: float, fy: float, keep: float = CROP_KEEP) -> Image.Image:
    w, h = work.size
    cw, ch = w * keep, h * keep
    x, y = (w - cw) * fx, (h - ch) * fy
    return work.crop((round(x), round(y), round(x + cw), round(y + ch)))
