"""SHA-256 of the file bytes: exact matches only, and the key for de-duplicating files."""

from hashdb.signals.base import Matching, SignalType

SHA256 = SignalType(
    name="sha256",
    bits=256,
    matching=Matching.EXACT,
    default_threshold=0,
    description="SHA-256 digest of the file bytes (exact match)",
)
