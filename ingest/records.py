"""From the hashes of one file to what the database takes: contributions and queries.

One image yields up to five hashes (PDQ, pHash, keypoints, MD5, SHA-256). Perceptual
hashes of a low-quality image (PDQ quality < 50) are left out of contributions, since
they would match unrelated featureless images; the digests still identify the file.
So is a keypoint set with too few keypoints to verify a match (below
`KEYPOINTS.min_quality`), and one that was not computed (`hash_with_variants`
computes it; the member client computes its own).
A video yields one vpdq hash (its frames) plus its two digests.

A contributed image also stores its variants (hashdb/variants.py: content region,
crop windows) with its PDQ row (never as hashes of their own); `image_contributions`
hashes a file and computes them from one decode.
"""

from __future__ import annotations

from dataclasses import replace

from hashdb.consortium import Keyframe, NewHash, NewVariant, NewVideo, Query
from hashdb.consortium.keypoints import new_hash as keypoint_hash
from hashdb.signals import KEYPOINTS, MD5, PDQ, PHASH, SHA256
from hashdb.signals.vpdq import Frame
from ingest.decode import decode
from ingest.image import DEFAULT_MAX_PIXELS, ImageHashes, hash_decoded
from ingest.keypoints import keypoints
from ingest.probes import stored_variants
from ingest.video import VideoHashes

# A picture with at least this many keypoints stores no crop windows: its keypoint
# set finds its crops (5-20% cut) and small rotations, for about 5.7 KB of index
# against the windows' 9 KB; one with fewer (flat, low-detail pictures) keeps them.
# docs/measurements.md, "Crop windows or keypoints".
WINDOWS_BELOW_KEYPOINTS = 64


def usable_perceptual(h: ImageHashes) -> bool:
    return PDQ.min_quality is None or h.pdq_quality >= PDQ.min_quality


def contributions(
    h: ImageHashes,
    labels: tuple[str, ...],
    reference: str | None,
    variants: tuple[NewVariant, ...] = (),
) -> list[NewHash]:
    """The hashes of an image to store, digests always, perceptual ones if usable; the
    PDQ row carries `variants` (see `image_contributions`)."""
    items = []
    if usable_perceptual(h):
        items.append(NewHash(PDQ.name, h.pdq, labels, h.pdq_quality, reference, variants=variants))
        items.append(NewHash(PHASH.name, h.phash, labels, None, reference))
        if h.keypoints is not None and len(h.keypoints) >= (KEYPOINTS.min_quality or 0):
            items.append(keypoint_hash(h.keypoints, labels, reference))
    items.append(NewHash(MD5.name, h.md5, labels, None, reference))
    items.append(NewHash(SHA256.name, h.sha256, labels, None, reference))
    return items


def hash_with_variants(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[ImageHashes, tuple[NewVariant, ...]]:
    """Hash the image file `data` (errors as ingest.image.hash_image) with its keypoint
    set, and compute the stored variants of its PDQ row, from one decode (neither for
    a low-quality image)."""
    decoded = decode(data, max_pixels=max_pixels)
    h = hash_decoded(data, decoded)
    if not usable_perceptual(h):
        return h, ()
    kps = keypoints(decoded.image)
    h = replace(h, keypoints=kps)
    windows = len(kps) < WINDOWS_BELOW_KEYPOINTS
    return h, stored_variants(decoded.image, h.pdq, decoded.scale, windows=windows)


def image_contributions(
    data: bytes,
    labels: tuple[str, ...],
    reference: str | None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[ImageHashes, list[NewHash]]:
    """Hash the image file `data` and give the rows to store for it: `contributions`
    with the PDQ row's stored variants."""
    h, variants = hash_with_variants(data, max_pixels=max_pixels)
    return h, contributions(h, labels, reference, variants)


def queries(
    h: ImageHashes, *, pdq_threshold: int | None = None, phash_threshold: int | None = None
) -> list[Query]:
    """One query per signal of the image, PDQ probing its dihedral forms if computed."""
    return [
        Query(PDQ, h.pdq, pdq_threshold, h.pdq_quality, h.dihedral),
        # pHash has no quality score of its own; the image's PDQ quality gates it.
        Query(PHASH, h.phash, phash_threshold, h.pdq_quality),
        Query(MD5, h.md5),
        Query(SHA256, h.sha256),
    ]


def video_frames(v: VideoHashes) -> tuple[Frame, ...]:
    """A hashed video's matchable frames, as hashdb stores and matches them."""
    return tuple(Frame(f.index, f.timestamp, f.pdq, f.quality) for f in v.frames)


def video_probes(v: VideoHashes) -> tuple[Frame, ...]:
    """A hashed query video's frame probes (ingest/video_regions.py) as frames to
    search beside its own: those that undo a layout edit (bars, a static logo). The
    probes meant for a stored corner set are left out: no reference stores one."""
    return tuple(Frame(p.index, p.timestamp, p.pdq, p.quality) for p in v.probes if not p.variant)


def video_contributions(
    v: VideoHashes, labels: tuple[str, ...], reference: str | None
) -> tuple[NewVideo, list[NewHash]]:
    """A video to store: its frame list (as one vpdq hash) with its keyframes, and its
    file digests."""
    video = NewVideo(
        frames=video_frames(v),
        duration=v.duration,
        fps=v.fps,
        width=v.width,
        height=v.height,
        low_quality_frames=v.low_quality_frames,
        labels=labels,
        reference=reference,
        keyframes=tuple(Keyframe(k.timestamp, k.keypoints.to_bytes()) for k in v.keyframes),
    )
    digests = [
        NewHash(MD5.name, v.md5, labels, None, reference),
        NewHash(SHA256.name, v.sha256, labels, None, reference),
    ]
    return video, digests
