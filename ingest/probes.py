"""A bounded set of PDQ probes for one query image, each with its own threshold.

Our lookups cost well under a millisecond, so one query image can afford several:
the whole picture, its content region (ingest/canonical.py: without borders,
caption bars or the screenshot around it), its 7 other dihedral forms (a mirrored
copy is about 128 bits away otherwise), the dihedral forms of the content region,
and a few centred and corner crops (for a query that shows more than the stored
picture). Every added probe widens the net, so each kind has its own threshold in
THRESHOLDS, set from the distances of unrelated pictures measured by
benchmarks/quality.py (see there and the report it prints), and the set is bounded
(at most MAX_PROBES = 21 probes: 1 whole + 7 dihedral + 1 content + 7 content
dihedral + 5 crops).

Low detail never matches loosely: a probe whose own PDQ quality is below 50 (a
near-uniform crop, a flat content region) is left out, and a threshold above
PDQ's default 31 is only used for probes of quality at least LOOSE_MIN_QUALITY = 80;
others are held to 31. The image as a whole is still gated by the Matcher (whole
quality below 50: answered `low_quality`, nothing matched).

Probes are hashed on a working copy whose long side is at most WORK_SIDE = 512
CROP_SIDE = 256
pixels (the scale at which the reduced decode keeps PDQ within a few bits, see
ingest/decode.py); the whole image and its dihedral forms are hashed as
`ingest.image.hash_image` does, from the decoded picture.

The store side (`content_contribution`) hashes the content region of a contributed
image the same way, so that a clean query matches a stored meme or screenshot too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from PIL import Image

from hashdb.matching import Probe, Query
from hashdb.signals import MD5, PDQ, PHASH, SHA256
from hashdb.signals.pdq_dihedral import DIHEDRAL_FORMS
from hashdb.store import NewHash
from ingest.canonical import Box, content_box
from ingest.decode import decode
from ingest.image import DEFAULT_MAX_PIXELS, ImageHashes, hash_decoded
from ingest.pdq import pdq

WORK_SIDE = 512
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

# Per-probe thresholds (bits of 256). Measured by benchmarks/quality.py
# (`--references 80 --unrelated 12000`): the nearest any unrelated probe came to any
# of the 81 stored hashes was whole 86 bits (12,000 probes), content 88 (3,381),
# dihedral 76 (80,255), content dihedral 76 (23,667), crops 84 (56,747); none within
# 40, and no false match for any kind at these thresholds. So 31 holds for the kinds
# that carry recall; content dihedral forms and crops add 7 and 5 probes per query
# each and recover few edits, so they are kept 3 bits tighter.
THRESHOLDS: dict[str, int] = {
    "whole": PDQ.default_threshold or 31,
    "content": 31,
    **{name: 31 for name in DIHEDRAL_FORMS},
    **{f"content_{name}": 28 for name in DIHEDRAL_FORMS},
    **{name: 28 for name in CROPS},
}

MAX_PROBES = 1 + 2 * (1 + len(DIHEDRAL_FORMS)) - 1 + len(CROPS)


class ProbeKind(StrEnum):
    """Families of probes a request may ask for (the whole image is always probed)."""

    DIHEDRAL = "dihedral"  # the 7 other rotations and flips of the whole image
    CONTENT = "content"  # the content region, when ingest.canonical finds one
    CONTENT_DIHEDRAL = "content_dihedral"  # its 7 other rotations and flips
    CROPS = "crops"  # centred and corner crops keeping 90% of each side


@dataclass(frozen=True)
class ProbeOptions:
    """Which probes to build and their thresholds; `thresholds` overrides THRESHOLDS."""

    kinds: frozenset[ProbeKind] = frozenset(
        {ProbeKind.DIHEDRAL, ProbeKind.CONTENT, ProbeKind.CONTENT_DIHEDRAL}
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
class ProbedImage:
    """An uploaded image's hashes, and the PDQ probes to look up for it."""

    hashes: ImageHashes
    content: Box | None  # in the decoded (upright, reduced) picture's pixels
    probes: tuple[ProbeHash, ...]  # every usable probe, "whole" first

    def pdq_query(self, threshold: int | None = None) -> Query:
        """The PDQ query: the whole image plus every other probe as a variant.

        A request threshold applies to the whole image and caps every probe."""
        whole, *others = self.probes
        cap = whole.threshold if threshold is None else threshold
        variants = tuple(Probe(p.name, p.pdq, min(p.threshold, cap)) for p in others)
        return Query(PDQ, whole.pdq, threshold, self.hashes.pdq_quality, variants)

    def queries(
        self, *, pdq_threshold: int | None = None, phash_threshold: int | None = None
    ) -> list[Query]:
        """What ingest.records.queries gives, with the PDQ query carrying the probes."""
        h = self.hashes
        return [
            self.pdq_query(pdq_threshold),
            Query(PHASH, h.phash, phash_threshold, h.pdq_quality),
            Query(MD5, h.md5),
            Query(SHA256, h.sha256),
        ]


def probe_queries(
    data: bytes, options: ProbeOptions = DEFAULT, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ProbedImage:
    """Hash the image file `data` and build its probes (errors as ingest.image.hash_image)."""
    decoded = decode(data, max_pixels=max_pixels)
    picture = decoded.image
    hashes = hash_decoded(data, decoded, dihedral=ProbeKind.DIHEDRAL in options.kinds)
    raw: list[tuple[str, bytes, int]] = [("whole", hashes.pdq, hashes.pdq_quality)]
    raw += [(name, code, hashes.pdq_quality) for name, code in hashes.dihedral]
    work = _working_copy(picture)
    box = None
    if options.kinds & {ProbeKind.CONTENT, ProbeKind.CONTENT_DIHEDRAL}:
        box = content_box(picture)
    if box is not None:
        region = pdq(_crop(work, box, picture.size), dihedral=True)
        if ProbeKind.CONTENT in options.kinds:
            raw.append(("content", region.hash, region.quality))
        if ProbeKind.CONTENT_DIHEDRAL in options.kinds:
            raw += [(f"content_{n}", code, region.quality) for n, code in region.dihedral]
    if ProbeKind.CROPS in options.kinds:
        small = _working_copy(work, CROP_SIDE)
        for name, (fx, fy) in CROPS.items():
            crop = pdq(_window(small, fx, fy))
            raw.append((name, crop.hash, crop.quality))
    name, code, quality = raw[0]
    first = ProbeHash(name, code, quality, options.threshold(name))  # gated by the Matcher
    others = (_probe(options, *r) for r in raw[1:])
    return ProbedImage(hashes, box, (first, *(p for p in others if p is not None)))


def content_contribution(
    data: bytes, labels: tuple[str, ...], reference: str | None, *, max_pixels: int
) -> NewHash | None:
    """The extra PDQ row to store for a contributed image: the hash of its content
    region, when one is found, differs from the whole image's hash and is usable
    (quality >= 50). Same labels and reference as the image's own rows."""
    decoded = decode(data, max_pixels=max_pixels)
    box = content_box(decoded.image)
    if box is None:
        return None
    region = pdq(_crop(_working_copy(decoded.image), box, decoded.image.size))
    if region.quality < (PDQ.min_quality or 0):
        return None
    if region.hash == pdq(decoded.image).hash:
        return None
    return NewHash(PDQ.name, region.hash, labels, region.quality, reference)


def _probe(options: ProbeOptions, name: str, code: bytes, quality: int) -> ProbeHash | None:
    if quality < (PDQ.min_quality or 0):
        return None
    threshold = options.threshold(name)
    default = PDQ.default_threshold or 31
    if threshold > default and quality < LOOSE_MIN_QUALITY:
        threshold = default
    return ProbeHash(name, code, quality, threshold)


def _working_copy(picture: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    scale = side / max(picture.size)
    if scale >= 1:
        return picture
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BOX)


def _crop(work: Image.Image, box: Box, size: tuple[int, int]) -> Image.Image:
    sx, sy = work.width / size[0], work.height / size[1]
    return work.crop(
        (round(box.left * sx), round(box.top * sy), round(box.right * sx), round(box.bottom * sy))
    )


def _window(work: Image.Image, fx: float, fy: float) -> Image.Image:
    w, h = work.size
    cw, ch = w * CROP_KEEP, h * CROP_KEEP
    x, y = (w - cw) * fx, (h - ch) * fy
    return work.crop((round(x), round(y), round(x + cw), round(y + ch)))
