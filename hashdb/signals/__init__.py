"""The registry of signal types: look one up by name, or list them all."""

from __future__ import annotations

from hashdb.errors import InvalidInput
from hashdb.signals.base import Matching, SignalType
from hashdb.signals.keypoints import KEYPOINTS
from hashdb.signals.md5 import MD5
from hashdb.signals.pdq import PDQ
from hashdb.signals.phash import PHASH
from hashdb.signals.sha256 import SHA256
from hashdb.signals.vpdq import VPDQ

SIGNAL_TYPES: dict[str, SignalType] = {
    s.name: s for s in (PDQ, PHASH, MD5, SHA256, VPDQ, KEYPOINTS)
}


def get_signal_type(
    name: object, field: str = "signal_type", index: int | None = None
) -> SignalType:
    """The signal type called `name`, or InvalidInput naming the field."""
    if not isinstance(name, str) or name not in SIGNAL_TYPES:
        known = ", ".join(sorted(SIGNAL_TYPES))
        raise InvalidInput(
            f"unknown signal type {name!r}; expected one of {known}", field=field, index=index
        )
    return SIGNAL_TYPES[name]


__all__ = [
    "KEYPOINTS",
    "MD5",
    "PDQ",
    "PHASH",
    "SHA256",
    "SIGNAL_TYPES",
    "Matching",
    "SignalType",
    "get_signal_type",
]
