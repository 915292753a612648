"""Turning command-line arguments into work items: files, walked folders, or hashes.

An argument that names an existing file or folder is media (folders are walked,
sorted, hidden files skipped); otherwise it must be a hash written `TYPE:HEX`
(`pdq:...`, `phash:...`, `md5:...`, `sha256:...`), or bare hex of 64 digits,
which is read as PDQ; or a keypoint set written `keypoints:BASE64`, the text
`hashdb hash` prints for an image (hashdb/signals/keypoints.py). An argument too
long to be a file name (a keypoint set is about 6,000 characters) is not one.

A parsed hash (`HashArg`) is turned into what the consortium takes by its own
methods, so every command stores and looks it up alike: `new_hash` (a keypoint
set's row is its digest, with the set beside it: hashdb.consortium.keypoints) and
`query` (a keypoint set is searched as given: its mirror image cannot be derived
from it, and it takes no threshold).

The argument `-` is standard input, and may be given once (InvalidInput, exit 2,
otherwise). Its bytes are copied to a temporary file, at most `limit` bytes
(HASHDB_MAX_UPLOAD_BYTES, what an upload may weigh; beyond it the command is
refused with exit 2 before anything is done), and never held whole in memory. Then:

- if they are text (UTF-8 without a NUL byte) they are a list of hashes, one per
  line as above, blank lines and lines starting with `#` ignored; a line that is
  not a hash is reported like a bad argument. No image or video format this
  project reads is such text (each has a binary signature or NUL bytes in its
  header), so the test cannot take a picture for a list;
- otherwise they are one media file, named `-` in the output and sniffed by
  content as files are (image or video).

Empty standard input is refused (exit 2): a pipe that produced nothing is more
likely a mistake upstream than a request to do nothing.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hashdb.consortium import NewHash, Query
from hashdb.consortium import keypoints as keypoint_sets
from hashdb.errors import InvalidInput
from hashdb.keypoints.codec import KeypointSet
from hashdb.settings import load_settings
from hashdb.signals import KEYPOINTS, PDQ, SignalType, get_signal_type

STDIN = "-"

# Standard input is copied in pieces of this size.
CHUNK = 1 << 16


@dataclass(frozen=True)
class BadArg:
    text: str
    message: str


@dataclass(frozen=True)
class HashArg:
    """A hash given as text (`text`, as given), parsed: its type and raw value. A
    keypoint set's raw value is its wire form, and `keypoints` the set itself."""

    text: str
    signal_type: SignalType
    value: bytes
    keypoints: KeypointSet | None = None

    @property
    def canonical(self) -> str:
        """The value as hashdb writes it: lower-case hex, or a keypoint set's base64."""
        if self.keypoints is not None:
            return self.keypoints.to_text()
        return self.signal_type.format(self.value)

    def new_hash(self, labels: tuple[str, ...], reference: str | None) -> NewHash:
        """The contribution of this hash, with `labels` and `reference`."""
        if self.keypoints is not None:
            return keypoint_sets.new_hash(self.keypoints, labels, reference)
        return NewHash(self.signal_type.name, self.value, labels, None, reference)

    def query(
        self, threshold: int | None = None, probes: tuple[tuple[str, bytes], ...] = ()
    ) -> Query:
        """The lookup of this hash at `threshold` with `probes` (forms of it, such as
        PDQ's dihedral ones); a keypoint set takes neither (see the module docstring)."""
        if self.keypoints is not None:
            return keypoint_sets.query(self.keypoints)
        return Query(self.signal_type, self.value, threshold, None, probes)


@dataclass(frozen=True)
class FileArg:
    """A media file to read, and the name the output gives it (the path as walked,
    or `-` for standard input)."""

    path: Path
    name: str


Item = FileArg | HashArg | BadArg


def walk(path: Path) -> Iterator[Path]:
    """The files of `path`: itself, or those of the folder it names (see the module
    docstring). A path the system cannot look up is yielded as is, for its reader to
    report."""
    if _is(path, Path.is_dir):
        for child in sorted(path.rglob("*")):
            if child.is_file() and not any(p.startswith(".") for p in child.parts[-1:]):
                yield child
    else:
        yield path


def _is(path: Path, test: Callable[[Path], bool]) -> bool:
    """`test(path)`, False where the path cannot be looked up (a name too long)."""
    try:
        return test(path)
    except OSError:
        return False


def parse_hash_arg(text: str) -> HashArg:
    """`TYPE:HEX`, `keypoints:BASE64` or 64 hex digits (PDQ); InvalidInput otherwise."""
    name, sep, hex_value = text.partition(":")
    if sep:
        signal = get_signal_type(name, field="argument")
        if signal is KEYPOINTS:
            kps = keypoint_sets.read(hex_value, field="argument")
            return HashArg(text, signal, kps.to_bytes(), kps)
    else:
        signal, hex_value = PDQ, text
    if not sep and len(text) != PDQ.hex_length:
        raise InvalidInput(
            f"{text!r} is neither an existing file nor a hash (write TYPE:HEX, e.g. pdq:…)",
            field="argument",
        )
    return HashArg(text, signal, signal.parse(hex_value, field="argument"))


def _hash_or_bad(text: str) -> HashArg | BadArg:
    try:
        return parse_hash_arg(text)
    except InvalidInput as exc:
        return BadArg(text, exc.message)


def expand(args: tuple[str, ...]) -> Iterator[FileArg | HashArg | BadArg]:
    """Each argument as files, a parsed hash, or the error that says why it is neither
    (`-` is not special here: see `arguments`)."""
    for arg in args:
        path = Path(arg)
        if _is(path, Path.exists):
            yield from (FileArg(f, str(f)) for f in walk(path))
            continue
        yield _hash_or_bad(arg)


def check_stdin_once(args: tuple[str, ...]) -> bool:
    """Whether `-` is among the arguments; InvalidInput if it is there twice."""
    count = args.count(STDIN)
    if count > 1:
        raise InvalidInput("`-` (standard input) may be given only once", field="argument")
    return count == 1


def upload_limit(args: tuple[str, ...]) -> int:
    """HASHDB_MAX_UPLOAD_BYTES when `-` is among `args` (settings are read only then:
    a command that needs none does not fail on a bad unrelated variable), else 0."""
    return load_settings().max_upload_bytes if STDIN in args else 0


@contextmanager
def arguments(
    args: tuple[str, ...],
    limit: int,
    *,
    expander: Callable[[tuple[str, ...]], Iterator[Item]] = expand,
) -> Iterator[list[Item]]:
    """The work items of `args` (each through `expander`), `-` read from standard
    input (see the module's docstring); the temporary copy of standard input is
    removed when the block ends."""
    if not check_stdin_once(args):
        yield list(expander(args))
        return
    folder = Path(tempfile.mkdtemp(prefix="hashdb-stdin-"))
    try:
        spooled = spool_stdin(folder / "stdin", limit)
        from_stdin = read_spooled(spooled)
        items: list[Item] = []
        for arg in args:
            items.extend(from_stdin if arg == STDIN else expander((arg,)))
        yield items
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def spool_stdin(target: Path, limit: int, *, setting: str = "HASHDB_MAX_UPLOAD_BYTES") -> Path:
    """Copy standard input to `target`, refusing it (InvalidInput) past `limit` bytes
    or when it is empty."""
    source: IO[bytes] = sys.stdin.buffer
    written = 0
    with target.open("xb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise InvalidInput(
                    f"standard input is larger than {limit} bytes ({setting})",
                    field="argument",
                )
            out.write(chunk)
    if written == 0:
        raise InvalidInput("standard input is empty", field="argument")
    return target


def read_spooled(path: Path) -> list[Item]:
    """A spooled standard input as a list of hashes (text) or one media file."""
    text = _as_text(path)
    if text is None:
        return [FileArg(path, STDIN)]
    items: list[Item] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            items.append(_hash_or_bad(stripped))
    return items


def _as_text(path: Path) -> str | None:
    """The file's content as text, or None if it is binary (a NUL byte, or not UTF-8)."""
    data = path.read_bytes()  # bounded by the spool's limit
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
