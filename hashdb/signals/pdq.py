"""PDQ: Meta's 256-bit perceptual image hash.

Threshold 31 is the distance the PDQ authors recommend for matching (about 12% of
the bits; see the PDQ paper in facebook/ThreatExchange, `pdq/README.md`). The
quality score runs 0-100; below 50 the image is too featureless (flat colour, a
gradient) for its hash to mean anything, so such hashes never match.
"""

from hashdb.signals.base import Matching, SignalType

PDQ = SignalType(
    name="pdq",
    bits=256,
    matching=Matching.HAMMING,
    default_threshold=31,
    min_quality=50,
    description="Meta's PDQ image hash (256 bits, Hamming distance)",
)
