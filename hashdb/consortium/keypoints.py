"""Keypoint sets as the edges hand them in: one contribution, one query.

Every edge that takes a keypoints hash (the API's contributions and lookups, the
CLI, imports of hash lists, the feed) builds it here, so the stored value is always
the SHA-256 of the set's wire form, the quality its keypoint count and the set
itself travels with it (hashdb/signals/keypoints.py); and a query always carries
its mirrored set as the probe `mirror`, and the sets of the content regions
found in it as probes named as the PDQ probes of those regions are.
"""

from __future__ import annotations

from collections.abc import Sequence

from hashdb.keypoints.codec import KeypointSet
from hashdb.matching import Query
from hashdb.signals.keypoints import KEYPOINTS, MIRROR, digest, parse_set
from hashdb.store import NewHash


def read(text: object, field: str = "value", index: int | None = None) -> KeypointSet:
    """A set from its base64 text, or InvalidInput naming the field and item."""
    return parse_set(text, field, index)


def new_hash(
    kps: KeypointSet, labels: tuple[str, ...] = (), reference: str | None = None
) -> NewHash:
    """The contribution of a keypoint set."""
    wire = kps.to_bytes()
    return NewHash(KEYPOINTS.name, digest(wire), labels, len(kps), reference, keypoint_set=wire)


def query(
    kps: KeypointSet,
    mirrored: KeypointSet | None = None,
    regions: Sequence[tuple[str, KeypointSet]] = (),
) -> Query:
    """The lookup of a keypoint set, and of its mirror image's when given, and of
    named parts of the picture (the content regions of a screenshot: a picture that
    fills a small part of the query is found from the keypoints of that part)."""
    probes = [] if mirrored is None else [(MIRROR, mirrored.to_bytes())]
    probes += [(name, part.to_bytes()) for name, part in regions]
    return Query(KEYPOINTS, kps.to_bytes(), quality=len(kps), probes=tuple(probes))
