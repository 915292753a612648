"""Stored variants: the extra PDQ hashes kept for a contributed image, and their thresholds.

A query that shows *more* than a stored picture (a caption bar, a border, a
screenshot around it) is recovered on the query side: ingest/probes.py hashes the
query's content region. A query that shows *less* (a crop) cannot be: the missing
part is gone. So the store keeps hashes of what a cropped re-upload could show,
computed from the contributed image (ingest/probes.py `stored_variants`), each as a
row derived from the image's PDQ row (hashdb/store/hashes.py):

- `content`: the content region of the contributed image (ingest/canonical.py),
  when it has one (a meme stored with its caption bars still matches the bare
  picture);
- crop windows `crop<keep>_<column>_<row>`: the window keeping `keep`% of each side
  at each point of an n x n grid of positions (WINDOW_GRIDS), so that a re-upload
  cropped by a few percent, split any way between opposite sides, lands near one.

A window whose own PDQ quality is below 50 is not stored (it would match
featureless pictures), nor one whose hash equals the image's own. A bare hash
(contributed without its image) has no variants.

The matcher reports a hit on a derived row as a match of its parent, within
STORED_THRESHOLDS[kind] (and the probe's own threshold). These are measured by
benchmarks/quality.py, see there for the command and the numbers.
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
# = 74 windows, so an image holds up to 76 PDQ rows (index memory and rows grow in
# proportion). PDQ moves fast as a window slides: crop_10 queries (10% of each side
# cut, split at random) were within 31 bits of the nearest 90% window for 20% of
# references with a 3 x 3 grid, 63% with 5 x 5, 92% with 7 x 7; crop_5 needs the 95%
# windows (96% with 5 x 5; under 10% from the 90% ones). 80% windows for crop_20
# would be 25 more rows for 13% recall, so they are not stored. See ingest/probes.py.
WINDOW_GRIDS: dict[int, int] = {90: 7, 95: 5}


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

# The largest distance (bits of 256) at which a hit on a stored variant counts as a
# match of its parent, by variant name. In benchmarks/quality.py (`--references 80
# --unrelated 12000`) the nearest any probe of the 12,000 unrelated pictures came
# to any of the 5,550 stored windows was 52 bits (whole-image probes: 72), to a
# content region 92, and no unrelated query matched; the windows' recall barely
# moves between 28 and 31 (crop_10: 91% and 92% of references, window by window),
# so both kinds keep PDQ's 31. The matcher also holds each probe to its own
# threshold (ingest.probes.THRESHOLDS).
CONTENT_THRESHOLD = 31
WINDOW_THRESHOLD = 31
STORED_THRESHOLDS: dict[str, int] = {
    CONTENT: CONTENT_THRESHOLD,
    **{name: WINDOW_THRESHOLD for name in CROP_WINDOWS},
}
