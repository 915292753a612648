"""Where an import's files come from: a folder tree, or an archive unpacked safely.

An archive (.zip, .tar, .tar.gz, .tgz; a .tar may also be bzip2 or xz compressed)
is hostile input until proven otherwise. `unpack` writes it into a fresh work
folder under these contracts, and refuses the whole archive (removing whatever it
wrote) at the first breach:

- names: absolute, containing `..`, a NUL or bytes that are not UTF-8, deeper
  than `max_depth` folders, or naming one file twice are refused
  (InvalidInput); nothing is ever written outside the work folder, and every file
  is created with O_EXCL | O_NOFOLLOW, so no name can be made to land through a link;
- kinds: only regular files and folders are unpacked; links (symbolic or hard),
  devices and FIFOs are refused (InvalidInput), in tar headers and in the Unix
  mode bits a zip records;
- size: the bytes actually written are counted while streaming, never the sizes
  the archive declares, and unpacking stops when they pass `max_bytes` or
  `max_ratio` times the archive's own size (MediaError: a decompression bomb);
  `max_entries` bounds the member count (MediaError);
- content: encrypted members and compression methods zipfile cannot read are
  UnsupportedMedia; a bad CRC, a truncated or corrupt stream is MediaError.

Every refusal names the limit and the setting that raises it. Work folders live
under `<data_dir>/imports/`, one per run, named after the host and process that
made it (`work_folder`), so a folder left by a process that died is recognised
and removed the next time one is made; callers remove their own when the run
ends, whatever the outcome (`remove_work_folder`).

Folders are read as they are: hidden files (a name starting with `.`) are
skipped, and paths are recorded relative to the collection root with `/`
separators. Whether a listed file may be read (it must resolve inside the import
root) is decided when it is opened, in `open_inside`.
"""

from __future__ import annotations

import errno
import lzma
import os
import shutil
import socket
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from hashdb.errors import InvalidInput, MediaError, OutsideFailure, UnsupportedMedia

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")

# Compression methods zipfile reads; anything else (deflate64, PPMd, AES, ...) is
# refused before a byte is written.
ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
ZIP_ENCRYPTED = 0x1  # general purpose flag bit 0
CHUNK = 1 << 20
WORK_PARENT = "imports"


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one archive may unpack to (HASHDB_IMPORT_MAX_*)."""

    max_bytes: int
    max_ratio: float
    max_entries: int
    max_depth: int

    @classmethod
    def of(cls, settings: _LimitSettings) -> ArchiveLimits:
        return cls(
            max_bytes=settings.import_max_unpacked_bytes,
            max_ratio=settings.import_max_compression_ratio,
            max_entries=settings.import_max_entries,
            max_depth=settings.import_max_depth,
        )


class _LimitSettings(Protocol):
    @property
    def import_max_unpacked_bytes(self) -> int: ...
    @property
    def import_max_compression_ratio(self) -> float: ...
    @property
    def import_max_entries(self) -> int: ...
    @property
    def import_max_depth(self) -> int: ...


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def list_files(root: Path) -> list[str]:
    """Every visible file under `root`, as sorted relative POSIX paths.

    Links to files are listed like files (`open_inside` decides whether they may be
    read); links to folders are not descended into."""
    out = []
    for child in root.rglob("*"):
        rel = child.relative_to(root)
        if child.is_file() and not any(part.startswith(".") for part in rel.parts):
            name = rel.as_posix()
            _check_utf8(name)
            out.append(name)
    return sorted(out)


def open_inside(root: Path, within: Path, rel: str) -> tuple[int, Path]:
    """Open `root/rel` for reading if it resolves inside `within`: (fd, resolved path).

    The path is resolved first (following every link) and checked against the
    resolved `within`; the resolved path is then opened with O_NOFOLLOW (a last
    component swapped for a link after the check is not followed) and O_NONBLOCK
    (a FIFO cannot stall the import), and must be a regular file. Raises
    InvalidInput with the reason otherwise; the file is never read in that case.
    """
    base = Path(os.path.realpath(within))
    real = Path(os.path.realpath(root / rel))
    if not real.is_relative_to(base):
        raise InvalidInput("is a link that leads outside the import root; not read")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(f"cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidInput("is not a regular file; not read")
    os.set_blocking(fd, True)
    return fd, real


# ---- work folders ---------------------------------------------------------------------


def work_folder(data_dir: Path) -> Path:
    """A fresh, empty work folder for one run under `<data_dir>/imports/`; folders
    left there by dead processes of this host are removed first."""
    parent = (data_dir / WORK_PARENT).resolve()
    parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace("-", "_")
    for stale in parent.iterdir():
        parts = stale.name.split("-")
        mine = len(parts) == 3 and parts[0] == host and parts[1].isdigit()
        if mine and not _alive(int(parts[1])):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{host}-{os.getpid()}-", dir=parent))


def remove_work_folder(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- unpacking ------------------------------------------------------------------------


def unpack(archive: Path, into: Path, limits: ArchiveLimits) -> Path:
    """Unpack `archive` into the empty (or absent) folder `into` and return it.

    On any refusal or error, `into` is removed before the error propagates."""
    into.mkdir(parents=True, exist_ok=True)
    if any(into.iterdir()):
        raise ValueError(f"{into} is not empty")
    writer = _Writer(into.resolve(), archive, limits)
    try:
        if archive.name.lower().endswith(".zip"):
            _unpack_zip(archive, writer)
        else:
            _unpack_tar(archive, writer)
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise
    return into


class _Writer:
    """Creates members under `root`, counting entries and bytes against the limits."""

    def __init__(self, root: Path, archive: Path, limits: ArchiveLimits) -> None:
        self.root = root
        self.archive = archive.name
        self.limits = limits
        self.entries = 0
        self.written = 0
        self.ratio_cap = limits.max_ratio * max(archive.stat().st_size, 1)

    def count(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise MediaError(
                f"{self.archive} has more than {self.limits.max_entries} members "
                "(HASHDB_IMPORT_MAX_ENTRIES)",
                setting="HASHDB_IMPORT_MAX_ENTRIES",
            )

    def target(self, name: str) -> PurePosixPath | None:
        """The member's checked relative path; None for the archive's root entry."""
        rel = member_path(name, self.limits.max_depth)
        return rel if rel.parts else None

    def declared(self, size: int) -> None:
        """Refuse early when the archive itself declares too much (the bytes written
        are counted all the same: a declaration can lie)."""
        if size > self.limits.max_bytes:
            self.written = size
            self._check_size()

    def folder(self, rel: PurePosixPath) -> None:
        path = self.root.joinpath(*rel.parts)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise _clash(rel) from None
        except OSError as exc:
            raise _unwritable(rel, exc) from None
        self._check_inside(path, rel)

    def file(self, rel: PurePosixPath, source: IO[bytes]) -> None:
        path = self.root.joinpath(*rel.parts)
        if rel.parent.parts:
            self.folder(rel.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            raise _clash(rel) from None
        except OSError as exc:
            raise _unwritable(rel, exc) from None
        try:
            # Reading `source` may raise the decompressor's errors: they propagate.
            for block in iter(lambda: source.read(CHUNK), b""):
                self.written += len(block)
                self._check_size()
                _write_all(fd, block, rel)
        finally:
            os.close(fd)

    def _check_size(self) -> None:
        if self.written > self.limits.max_bytes:
            raise MediaError(
                f"{self.archive} unpacks to more than {self.limits.max_bytes} bytes "
                "(HASHDB_IMPORT_MAX_UNPACKED_BYTES)",
                setting="HASHDB_IMPORT_MAX_UNPACKED_BYTES",
            )
        if self.written > self.ratio_cap:
            raise MediaError(
                f"{self.archive} unpacks to more than {self.limits.max_ratio:g} times its "
                "size, like a decompression bomb (HASHDB_IMPORT_MAX_COMPRESSION_RATIO)",
                setting="HASHDB_IMPORT_MAX_COMPRESSION_RATIO",
            )

    def _check_inside(self, path: Path, rel: PurePosixPath) -> None:
        if not Path(os.path.realpath(path)).is_relative_to(self.root):
            raise InvalidInput(
                f"archive member {rel.as_posix()!r} would land outside the import folder",
                field="path",
            )


def _write_all(fd: int, block: bytes, rel: PurePosixPath) -> None:
    view = memoryview(block)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError as exc:
            raise _unwritable(rel, exc) from None


def _unwritable(rel: PurePosixPath, exc: OSError) -> InvalidInput | OutsideFailure:
    """A name too long for the file system is the archive's fault; anything else
    (a full disk, permissions) is the server's."""
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidInput(
            f"archive member {rel.as_posix()!r} has a name too long to create", field="path"
        )
    return OutsideFailure(f"cannot write the import work folder: {exc.strerror}")


def _clash(rel: PurePosixPath) -> InvalidInput:
    return InvalidInput(
        f"archive member {rel.as_posix()!r} names a file twice or clashes with a folder",
        field="path",
    )


def member_path(name: str, max_depth: int) -> PurePosixPath:
    """An archive member's name as a relative path that stays inside its folder."""
    if "\x00" in name:
        raise InvalidInput(f"archive member {name!r} has a NUL in its name", field="path")
    _check_utf8(name)
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and rel.parts[0].endswith(":")):
        raise InvalidInput(
            f"archive member {name!r} would land outside the import folder", field="path"
        )
    if len(rel.parts) > max_depth:
        raise InvalidInput(
            f"archive member {name!r} is nested deeper than {max_depth} folders "
            "(HASHDB_IMPORT_MAX_DEPTH)",
            field="path",
            setting="HASHDB_IMPORT_MAX_DEPTH",
        )
    return rel


def _check_utf8(name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        raise InvalidInput(
            f"file name {shown!r} is not valid UTF-8; rename it", field="path"
        ) from None


def _link_refused(name: str, kind: str) -> InvalidInput:
    return InvalidInput(
        f"archive member {name!r} is a {kind}; only files and folders are unpacked",
        field="path",
    )


# Errors the decompressors and readers raise on corrupt input; an OSError while
# reading the archive is one too (bz2's "Invalid data stream", a seek to a bad
# offset): errors writing the work folder are turned into HashdbErrors where they
# happen (`_unwritable`).
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


def _unpack_zip(archive: Path, writer: _Writer) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (*_CORRUPT, UnicodeDecodeError, ValueError, OSError) as exc:
        raise MediaError(f"cannot unpack {archive.name}: {exc}") from None
    with zf:
        members = zf.infolist()
        if len(members) > writer.limits.max_entries:
            writer.entries = len(members) - 1
            writer.count()
        names: set[PurePosixPath] = set()
        for info in members:  # every name and kind checked before anything is written
            rel = writer.target(info.orig_filename)
            _check_zip_member(archive, info)
            if rel is not None and not info.is_dir():
                if rel in names:
                    raise InvalidInput(
                        f"archive member {info.filename!r} appears twice", field="path"
                    )
                names.add(rel)
        writer.declared(sum(info.file_size for info in members))
        for info in members:
            writer.count()
            rel = writer.target(info.orig_filename)
            if rel is None:
                continue
            if info.is_dir():
                writer.folder(rel)
                continue
            try:
                with zf.open(info) as source:
                    writer.file(rel, source)
            except (RuntimeError, NotImplementedError) as exc:  # encryption, method
                raise UnsupportedMedia(f"cannot unpack {archive.name}: {exc}") from None
            except (*_CORRUPT, ValueError, OSError) as exc:
                raise MediaError(
                    f"cannot unpack {archive.name}: member {info.filename!r}: {exc}"
                ) from None


def _check_zip_member(archive: Path, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & ZIP_ENCRYPTED:
        raise UnsupportedMedia(
            f"{archive.name}: member {info.filename!r} is encrypted; unpack it first"
        )
    if info.compress_type not in ZIP_METHODS:
        raise UnsupportedMedia(
            f"{archive.name}: member {info.filename!r} uses compression method "
            f"{info.compress_type}, which cannot be read (stored, deflate, bzip2, lzma can)"
        )
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # Unix mode bits recorded
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise _link_refused(info.filename, "link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _link_refused(info.filename, "device, FIFO or socket")


def _unpack_tar(archive: Path, writer: _Writer) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in _tar_members(tf, writer):
                rel = writer.target(member.name)
                if member.issym() or member.islnk():
                    raise _link_refused(member.name, "link")
                if not (member.isreg() or member.isdir()):
                    raise _link_refused(member.name, "device, FIFO or socket")
                if rel is None:
                    continue
                if member.isdir():
                    writer.folder(rel)
                    continue
                source = tf.extractfile(member)
                if source is None:  # a regular member always has content
                    raise MediaError(f"cannot unpack {archive.name}: member {member.name!r}")
                with source:
                    writer.file(rel, source)
    except (*_CORRUPT, UnicodeDecodeError, OSError) as exc:
        raise MediaError(f"cannot unpack {archive.name}: {exc}") from None


def _tar_members(tf: tarfile.TarFile, writer: _Writer) -> Iterator[tarfile.TarInfo]:
    """Members in order, counted as they are read (a tar has no central list)."""
    while (member := tf.next()) is not None:
        writer.count()
        yield member
