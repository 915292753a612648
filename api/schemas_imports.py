"""Request and response bodies of imports over HTTP (see `api.import_runner`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from api.schemas import MAX_LABELS, Label, PageOut, Request, Response


class ImportRequest(Request):
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="Folder or archive (.zip, .tar, .tar.gz) to import, relative to the "
        "server's HASHDB_IMPORT_ROOT (or absolute, inside it); `..` is refused.",
    )
    labels: list[Label] = Field(
        default_factory=list, max_length=MAX_LABELS, description="Labels for every file."
    )
    manifest: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="CSV of path,labels,reference,notes under the import root: only the "
        "files it names are imported.",
    )


class ImportFailure(Response):
    path: str = Field(description="Relative to the imported folder.")
    error: str


class ImportOut(Response):
    id: int
    member_id: int
    source: str = Field(description="The imported path, relative to the import root.")
    labels: list[str]
    status: str = Field(
        description="queued (waiting for a `hashdb worker`), running (claimed by one) or done."
    )
    running_here: bool = Field(
        description="A worker holds the job now (its lease is live) and is hashing it."
    )
    total: int = Field(description="Files planned.")
    done: int
    failed: int
    duplicates: int = Field(description="Same bytes as another file of the job, or stored.")
    pending: int
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ImportDetail(ImportOut):
    images: int = Field(description="Files stored as images.")
    videos: int = Field(description="Files stored as videos.")
    frames: int = Field(description="Video frames stored.")
    errors: list[ImportFailure] = Field(description="Every failed file and why.")


class ImportList(PageOut):
    imports: list[ImportOut] = Field(description="By id (oldest first).")
