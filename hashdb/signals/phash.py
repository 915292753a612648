"""pHash: the 64-bit DCT perceptual hash of `imagehash`.

Threshold 4 of 64 bits: pHash is far less discriminating than PDQ, so it only
matches near-duplicates. At 10 (a share of the bits close to PDQ's 31 of 256) it
matched crops of textured photos to crops of other photos: of about 280,000 pairs of
crops (10-35% of a side) of different seed photos of benchmarks/quality_corpus.py,
the nearest came 8 bits apart on one seed and 12 on another, where PDQ kept every
such pair at least 74 bits apart; an independent test set found such a pair within
10. At 4 no pair came near; pHash alone then finds 3 of the 6-8 edited copies that
nothing else found in `benchmarks/quality.py` (text overlays), and every other copy
it finds is found by PDQ or keypoints as well (docs/measurements.md, "pHash
threshold").
"""

from hashdb.signals.base import Matching, SignalType

PHASH = SignalType(
    name="phash",
    bits=64,
    matching=Matching.HAMMING,
    default_threshold=4,
    description="DCT perceptual hash from imagehash (64 bits, Hamming distance)",
)
