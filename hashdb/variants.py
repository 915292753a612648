"""Stored variants: the extra PDQ hashes kept for a contributed image, and their thresholds.

A query that shows *more* than a stored picture (a caption bar, a border, a
screenshot around it) is recovered on the query side: ingest/probes.py hashes the
query's content region. A query that shows *less* (a crop) cannot be: the missing
part is gone. So the store keeps hashes of what a cropped re-upload could show,
computed from the contributed image (ingest/probes.py `stored_variants`) and kept
with the image's PDQ row in `hash_variants` (hashdb/store/hashes.py):

- `content`: the content region of the contributed image (ingest/canonical.py),
  when it has one (a meme stored with its caption bars still matches the bare
  picture);
- crop windows `crop<keep>_<column>_<row>`: the window keeping `keep`% of each side
  at each point of an n x n grid of positions (WINDOW_GRIDS), so that a re-upload
  cropped by a few percent, split any way between opposite sides, lands near one.
  Only for a picture with too few keypoints (ingest/records.py,
  WINDOWS_BELOW_KEYPOINTS): any other stores its keypoint set
  (hashdb/signals/keypoints.py), which finds crops of 5-20% and small rotations
  for about 5.7 KB of index against the windows' 9 KB.

A window whose own PDQ quality is below 50 is not stored (it would match
featureless pictures), nor one whose hash equals the image's own. A bare hash
(contributed without its image) has no variants.

The matcher files each variant in the PDQ index under its image's id and its
kind's slot (SLOTS; hashdb/index/entries.py), and reports a hit on it as a match of
the image, within STORED_THRESHOLDS[kind] (and the probe's own threshold). They
rest on benchmarks/quality.py (docs/measurements.md, "Probes and stored-variant
thresholds").
A stored kind that is no longer in STORED_KINDS has no slot: it is not indexed.
"""

from __future__ import annotations

from typing import NamedTuple

CONTENT = "content"


class Window(NamedTuple):
    """A crop window: the share of each side kept, and where the window sits
    (0 = left/top, 1 = right/bottom)."""

    keep: float
    x: float
    y: float


# Window sizes stored (percent of each side kept) -> grid points per side: 49 + 25
# + 25 = 99 windows, so a low-detail image holds up to 101 PDQ rows (only such
# pictures store windows: ingest/records.py). PDQ moves fast as a window slides, so
# a coarser grid of 90% windows misses most crop_10 queries (10% of each side cut,
# split at random) and 7 x 7 is where recall levels off; crop_5 needs the 95%
# windows. The 80% windows are for 80% crops of low-detail pictures, which their few
# keypoints do not find (when every image stored windows, they cost 25 rows an
# image for little recall: the keypoint set now finds the crops of the others).
# Appended last, so the older kinds keep their slots. See docs/measurements.md,
# "Probes and stored-variant thresholds" and "Crop windows or keypoints".
WINDOW_GRIDS: dict[int, int] = {90: 7, 95: 5, 80: 5}


def _windows() -> dict[str, Window]:
    out: dict[str, Window] = {}
    for keep, n in WINDOW_GRIDS.items():
        for row in range(n):
            for col in range(n):
                out[f"crop{keep}_{col}_{row}"] = Window(keep / 100, col / (n - 1), row / (n - 1))
    return out


# "crop90_3_3" is the centred 90% window, "crop90_0_0" the top-left one.
CROP_WINDOWS: dict[str, Window] = _windows()

STORED_KINDS: tuple[str, ...] = (CONTENT, *CROP_WINDOWS)

# Each kind's number inside an index entry id (hashdb/index/entries.py). Index
# snapshots record a digest of STORED_KINDS, so changing it rebuilds them.
SLOTS: dict[str, int] = {kind: slot for slot, kind in enumerate(STORED_KINDS)}

# The largest distance (bits of 256) at which a hit on a stored variant counts as a
# match of its parent, by variant name. Unrelated pictures stay far beyond PDQ's 31
# from the stored windows and content regions, and the windows' recall barely moves
# between 28 and 31, so both kinds keep PDQ's 31 (see docs/measurements.md, "Probes
# and stored-variant thresholds"). The matcher also holds each probe to its own
# threshold (ingest.probes.THRESHOLDS).
CONTENT_THRESHOLD = 31
WINDOW_THRESHOLD = 31
STORED_THRESHOLDS: dict[str, int] = {
    CONTENT: CONTENT_THRESHOLD,
    **{name: WINDOW_THRESHOLD for name in CROP_WINDOWS},
}
