"""Turning command-line arguments into work items: files, walked folders, or hashes.

An argument that names an existing file or folder is media (folders are walked,
sorted, hidden files skipped); otherwise it must be a hash written `TYPE:HEX`
(`pdq:...`, `phash:...`, `md5:...`, `sha256:...`), or bare hex of 64 digits,
which is read as PDQ.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hashdb.errors import InvalidInput
from hashdb.signals import PDQ, SignalType, get_signal_type


@dataclass(frozen=True)
class BadArg:
    text: str
    message: str


@dataclass(frozen=True)
class HashArg:
    text: str
    signal_type: SignalType
    value: bytes


def walk(path: Path) -> Iterator[Path]:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and not any(p.startswith(".") for p in child.parts[-1:]):
                yield child
    else:
        yield path


def parse_hash_arg(text: str) -> HashArg:
    name, sep, hex_value = text.partition(":")
    if sep:
        signal = get_signal_type(name, field="argument")
    else:
        signal, hex_value = PDQ, text
    if not sep and len(text) != PDQ.hex_length:
        raise InvalidInput(
            f"{text!r} is neither an existing file nor a hash (write TYPE:HEX, e.g. pdq:…)",
            field="argument",
        )
    return HashArg(text, signal, signal.parse(hex_value, field="argument"))


def expand(args: tuple[str, ...]) -> Iterator[Path | HashArg | BadArg]:
    """Each argument as files, a parsed hash, or the error that says why it is neither."""
    for arg in args:
        path = Path(arg)
        if path.exists():
            yield from walk(path)
            continue
        try:
            yield parse_hash_arg(arg)
        except InvalidInput as exc:
            yield BadArg(arg, exc.message)
