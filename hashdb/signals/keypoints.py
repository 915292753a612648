"""Keypoints: a picture as a bounded set of local binary features (hashdb/keypoints/).

A keypoint set finds a picture again where a whole-image hash does not: in a crop,
under a logo, after a small rotation, inside a screenshot. It is shared as text
(base64 of its wire form, hashdb/keypoints/codec.py: 7 + 36 n bytes), so a member
that cannot share the media shares it as it shares a PDQ hash.

A stored row's `value` is the SHA-256 of the set's wire form (`digest`): that
identifies it for idempotent adds and fits the store's indexes (a set of 128
keypoints is 4,615 bytes, above what a B-tree entry may hold); the set itself lives
beside it (`keypoint_sets`), as a video's frames do. Its `quality` is the number of
keypoints: below `KEYPOINTS.min_quality` a picture is too featureless to verify a
match (verification needs `hashdb.keypoints.verify.MIN_INLIERS` agreeing keypoints).

Matching takes no threshold: a stored set matches when geometric verification
accepts it (hashdb/keypoints/verify.py); a query set is searched with the set of its
mirror image as a probe, when it has one.
"""

from __future__ import annotations

import hashlib

from hashdb.keypoints.codec import KeypointSet
from hashdb.signals.base import Matching, SignalType

KEYPOINTS = SignalType(
    name="keypoints",
    bits=256,
    matching=Matching.LOCAL,
    default_threshold=0,
    min_quality=24,
    description="Local binary features (ORB) with coarse positions, base64 text; "
    "matched by geometric verification (crops, logos, small rotations)",
)

# A query's mirrored set is searched as a probe of this name.
MIRROR = "mirror"


def digest(wire: bytes) -> bytes:
    """The stored value of a keypoint set: SHA-256 of its wire form."""
    return hashlib.sha256(wire).digest()


def parse_set(text: object, field: str = "value", index: int | None = None) -> KeypointSet:
    """A keypoint set from its base64 text, or InvalidInput naming the field."""
    return KeypointSet.from_text(text, field=field, index=index)
