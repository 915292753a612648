"""pHash: the 64-bit DCT perceptual hash of `imagehash`.

Threshold 6 of 64 bits, so that a pHash match is about as safe as a PDQ one. At 10
(a share of the bits close to PDQ's 31 of 256) pHash matched crops of textured
photos to crops of other photos: on 941 crops (10-35% of a side) of the 24 seed
photos of benchmarks/quality_corpus.py, two photos' crops came 12 bits apart and
more of them within 14, where PDQ kept every pair of different photos at least 88
bits apart; an independent test set found such a pair within 10. At 6, a pHash
query finds 6 of the 8 edited copies that only pHash found in
`benchmarks/quality.py` (text overlays; their distances 0-10), and every other copy
it finds is found by PDQ or keypoints as well (docs/measurements.md, "pHash
threshold").
"""

from hashdb.signals.base import Matching, SignalType

PHASH = SignalType(
    name="phash",
    bits=64,
    matching=Matching.HAMMING,
    default_threshold=6,
    description="DCT perceptual hash from imagehash (64 bits, Hamming distance)",
)
