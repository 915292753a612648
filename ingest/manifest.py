"""The import manifest: a CSV naming the files of a collection and what to label them.

Columns (header required; only `path` is mandatory):

    path,labels,reference,notes
    videos/0001.mp4,attack_footage;glorification,EUIF-2024-0001,received 2024-05-02

`path` is relative to the imported folder or archive; `labels` are separated by `;`
and added to the labels given on the command line; `reference` is the source
reference stored with every hash of the file; `notes` stay with the import record.

A manifest is read whole and checked before any job is created: bytes that are
not UTF-8, a NUL anywhere, malformed quoting (the reader is strict), a header
naming a column twice or an unknown one, a row with more (non-empty) fields than
the header, a field longer than the csv module's limit (`csv.field_size_limit`,
left at its default) or a path leaving the collection are InvalidInput naming
the line, never a failure half way through planning.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePosixPath

from hashdb.consortium import PlannedFile
from hashdb.errors import InvalidInput

COLUMNS = ("path", "labels", "reference", "notes")


def read_manifest(path: Path, labels: tuple[str, ...] = ()) -> list[PlannedFile]:
    """The manifest's files, or InvalidInput naming the line that is wrong."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read manifest {path}: {exc.strerror}", field="manifest"
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput("manifest must be UTF-8 CSV", field="manifest") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InvalidInput(
            f"manifest line {line}: a NUL byte (not a CSV file?)", field="manifest", line=line
        )
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        return _rows(reader, labels)
    except csv.Error as exc:
        line = reader.line_num + 1  # the line being read is not counted yet
        raise InvalidInput(f"manifest line {line}: {exc}", field="manifest", line=line) from None


def _rows(reader: csv.DictReader[str], labels: tuple[str, ...]) -> list[PlannedFile]:
    header = reader.fieldnames or []
    if "path" not in header:
        raise InvalidInput("manifest needs a header with a `path` column", field="manifest")
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        raise InvalidInput(f"manifest has unknown columns: {', '.join(unknown)}", field="manifest")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise InvalidInput(f"manifest names columns twice: {', '.join(twice)}", field="manifest")
    planned: list[PlannedFile] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        surplus = row.get(None) or []  # DictReader puts extra fields under None
        if any(str(value).strip() for value in surplus):  # trailing empty fields are harmless
            raise InvalidInput(
                f"manifest line {line}: more fields than the header has columns",
                field="manifest",
                line=line,
            )
        raw = (row.get("path") or "").strip()
        if not raw:
            raise InvalidInput(f"manifest line {line}: empty path", field="manifest", line=line)
        rel = PurePosixPath(raw.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise InvalidInput(
                f"manifest line {line}: path must stay inside the collection",
                field="manifest",
                line=line,
            )
        if str(rel) in seen:
            continue
        seen.add(str(rel))
        extra = tuple(x.strip() for x in (row.get("labels") or "").split(";") if x.strip())
        planned.append(
            PlannedFile(
                path=str(rel),
                labels=tuple(dict.fromkeys(labels + extra)),
                reference=(row.get("reference") or "").strip() or None,
                notes=(row.get("notes") or "").strip() or None,
            )
        )
    return planned
