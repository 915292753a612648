"""What every signal type declares, and the one tested pair of hex conversions.

Hashes are raw bytes everywhere inside hashdb (database, index, change log); hex
text appears only at the edges (API, CLI, files) and passes through `parse` and
`format` here, so there is exactly one place that can get the conversion wrong.
"""

from __future__ import annotations

import binascii
import enum
import re
from dataclasses import dataclass

from hashdb.errors import InvalidInput

_HEX = re.compile(r"\A[0-9a-fA-F]*\Z")


class Matching(enum.Enum):
    """How two hashes of one type are compared."""

    HAMMING = "hamming"  # near-duplicates: bit distance <= threshold
    EXACT = "exact"  # digests: equal or not
    VIDEO = "video"  # frame lists: per-frame PDQ, then the share of frames matched
    LOCAL = "local"  # keypoint sets: descriptor votes, then geometric verification


@dataclass(frozen=True)
class SignalType:
    """A kind of hash: its name, size, how it matches and how it is validated."""

    name: str
    bits: int
    matching: Matching
    default_threshold: int
    description: str
    # Below this quality a hash is too featureless to match on (PDQ: its quality
    # score; keypoints: how many keypoints the set holds).
    min_quality: int | None = None

    @property
    def nbytes(self) -> int:
        return self.bits // 8

    @property
    def hex_length(self) -> int:
        return self.bits // 4

    @property
    def max_threshold(self) -> int:
        """The largest threshold that still means anything (half the bits); digests
        and keypoint sets take none (a keypoint match is decided by verification)."""
        return 0 if self.matching in (Matching.EXACT, Matching.LOCAL) else self.bits // 2

    def parse(self, text: object, field: str = "value", index: int | None = None) -> bytes:
        """Hex text to raw bytes, or InvalidInput naming the field."""
        if isinstance(text, str) and len(text) == self.hex_length:
            # The usual case, without the checks below: exactly as many characters as
            # digits, and bytes.fromhex makes a byte of every two (a space or any
            # non-hex character among them fails it, or leaves it short of nbytes).
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                pass
            else:
                if len(raw) == self.nbytes:
                    return raw
        if not isinstance(text, str):
            raise InvalidInput(f"{self.name} hash must be a hex string", field=field, index=index)
        value = text.strip()
        if len(value) != self.hex_length:
            raise InvalidInput(
                f"{self.name} hash must be {self.hex_length} hex digits, got {len(value)}",
                field=field,
                index=index,
            )
        if not _HEX.match(value):
            raise InvalidInput(
                f"{self.name} hash must contain only hex digits 0-9a-f",
                field=field,
                index=index,
            )
        return binascii.unhexlify(value)

    def format(self, raw: bytes) -> str:
        """Raw bytes to lower-case hex, the only text form hashdb emits."""
        if len(raw) != self.nbytes:
            raise ValueError(f"{self.name} hash must be {self.nbytes} bytes, got {len(raw)}")
        return raw.hex()
