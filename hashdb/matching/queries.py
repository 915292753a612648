"""What a match is asked and what it answers: queries, their probes, matches.

Three words, three things. A *probe* is an extra form of the QUERY searched along
with it (ingest/probes.py: its content region, its dihedral forms, its crops), each
with a name and its own threshold. A *stored variant* is a crop or content region
of a REFERENCE kept with it (hashdb/variants.py). `Via` says which of them found a
match: the probe that was searched (None: the query as given) and the stored
variant it landed on (None: the stored hash itself); its text form is the one the
API reports (`str(via)`: "flip_x", "stored:crop90_3_3", "content+stored:content").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from hashdb.signals import PDQ, Matching, SignalType
from hashdb.signals.keypoints import digest
from hashdb.store import HashRecord
from hashdb.video_match import VideoScore


class Probe(NamedTuple):
    """An extra probe of a query with its own threshold (None: the query's)."""

    name: str
    value: bytes
    threshold: int | None = None


class Query(NamedTuple):
    """One hash to look up. `quality` is the PDQ quality (0-100) of the image the
    hash came from, when known; it gates every perceptual hash of that image.
    `probes` are extra forms of the same content (for example the dihedral forms
    of an image), each with a name: a `(name, value)` pair is probed at the query's
    threshold, a `Probe` at its own (ingest/probes.py measures one per kind). A
    named tuple, as `Match` is: a batch makes thousands."""

    signal_type: SignalType
    value: bytes
    threshold: int | None = None
    quality: int | None = None
    probes: tuple[tuple[str, bytes] | Probe, ...] = ()

    @property
    def shown(self) -> str:
        """The value as results show it: hex; for a keypoint set, its digest's (as
        its stored row's value)."""
        if self.signal_type.matching is Matching.LOCAL:
            return self.signal_type.format(digest(self.value))
        return self.signal_type.format(self.value)

    @property
    def effective_threshold(self) -> int:
        return self.signal_type.default_threshold if self.threshold is None else self.threshold

    @property
    def low_quality(self) -> bool:
        """Below the quality floor of its signal type (keypoints: too few keypoints),
        or, for a pHash without one of its own, PDQ's."""
        if self.signal_type.matching is Matching.EXACT or self.quality is None:
            return False
        floor = self.signal_type.min_quality
        if floor is None:
            floor = PDQ.min_quality
        return floor is not None and self.quality < floor


@dataclass(frozen=True)
class Via:
    """How a match was found, when not by the query as given against the stored hash
    itself: the query's probe that was searched and the stored variant it hit."""

    probe: str | None = None
    stored: str | None = None

    def __str__(self) -> str:
        stored = None if self.stored is None else f"stored:{self.stored}"
        return "+".join(part for part in (self.probe, stored) if part is not None)

    @classmethod
    def of(cls, probe: str | None, stored: str | None) -> Via | None:
        """None when neither a probe nor a stored variant was involved."""
        return None if probe is None and stored is None else cls(probe, stored)


class Match(NamedTuple):
    """A stored hash a query matched. A named tuple, not a dataclass: a batch makes
    thousands, and a tuple is made several times faster than a frozen dataclass."""

    record: HashRecord
    distance: int
    via: Via | None = None  # None: the query as given hit the stored hash itself
    # When the match is a frame of a stored video: that frame's time in the video.
    frame_at: float | None = None
    # Keypoint matches: the keypoints verification found in agreement, and the
    # share of the stored picture's area the query shows (below
    # hashdb.keypoints.verify.MIN_COPY_SHARE it shows a part of it, a small crop).
    inliers: int | None = None
    share: float | None = None

    @property
    def how(self) -> str | None:
        """`via` as the API and the CLI write it (the `variant` field); None for the
        query as given."""
        return None if self.via is None else str(self.via)


class QueryResult(NamedTuple):
    """A query and its matches, closest first (a named tuple, as `Match` is)."""

    query: Query
    matches: list[Match]

    @property
    def low_quality(self) -> bool:
        return self.query.low_quality


@dataclass(frozen=True)
class VideoMatch:
    record: HashRecord  # the stored video's vpdq hash
    score: VideoScore
