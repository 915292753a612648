"""Where an import's files come from: a folder tree, or an archive unpacked safely.

Archives (.zip, .tar, .tar.gz, .tgz) are unpacked into a work folder first, refusing
members that would land outside it (absolute paths, `..`, links), so a hostile
archive cannot write anywhere else. Hidden files (a name starting with `.`) are
skipped; paths are recorded relative to the collection root, with `/` separators.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from hashdb.errors import InvalidInput, MediaError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def list_files(root: Path) -> list[str]:
    """Every visible file under `root`, as sorted relative POSIX paths."""
    out = []
    for child in root.rglob("*"):
        rel = child.relative_to(root)
        if child.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def unpack(archive: Path, into: Path) -> Path:
    """Unpack `archive` into the folder `into` (emptied first) and return it."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member(name)
                zf.extractall(into)  # noqa: S202 - every member checked above
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise MediaError(f"cannot unpack {archive.name}: {exc}") from None
    return into


def _check_member(name: str) -> None:
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise InvalidInput(f"archive member {name!r} would land outside the import folder")
