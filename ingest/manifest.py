"""The import manifest: a CSV naming the files of a collection and what to label them.

Columns (header required; only `path` is mandatory):

    path,labels,reference,notes
    videos/0001.mp4,attack_footage;glorification,EUIF-2024-0001,received 2024-05-02

`path` is relative to the imported folder or archive; `labels` are separated by `;`
and added to the labels given on the command line; `reference` is the source
reference stored with every hash of the file; `notes` stay with the import record.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from hashdb.errors import InvalidInput
from hashdb.store import PlannedFile

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
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    if "path" not in header:
        raise InvalidInput("manifest needs a header with a `path` column", field="manifest")
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        raise InvalidInput(f"manifest has unknown columns: {', '.join(unknown)}", field="manifest")
    planned: list[PlannedFile] = []
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            raise InvalidInput(f"manifest line {line}: empty path", field="manifest", line=line)
        rel = PurePosixPath(raw.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            raise InvalidInput(
                f"manifest line {line}: path must stay inside the collection", field="manifest"
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
