"""MD5 of the file bytes: exact matches only, for byte-identical re-uploads."""

from hashdb.signals.base import Matching, SignalType

MD5 = SignalType(
    name="md5",
    bits=128,
    matching=Matching.EXACT,
    default_threshold=0,
    description="MD5 digest of the file bytes (exact match)",
)
