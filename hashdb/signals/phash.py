"""pHash: the 64-bit DCT perceptual hash of `imagehash`.

Threshold 10 of 64 bits (about 16%) is the working default: close to PDQ's share of
bits, to be tuned by measurement on the quality benchmark.
"""

from hashdb.signals.base import Matching, SignalType

PHASH = SignalType(
    name="phash",
    bits=64,
    matching=Matching.HAMMING,
    default_threshold=10,
    description="DCT perceptual hash from imagehash (64 bits, Hamming distance)",
)
