"""Storage: one facade over the SQL database (SQLite or PostgreSQL).

`Store.open(url)` connects and migrates; its parts (`members`, `hashes`, `changes`)
each own one table family, so code that only reads hashes can take `HashStore`
alone rather than the whole store.
"""

from __future__ import annotations

from sqlalchemy import Engine

from hashdb.store.changes import Change, ChangeLog
from hashdb.store.engine import migrate, open_engine
from hashdb.store.hashes import MATCHABLE, Added, ChangeOp, HashRecord, HashStore, NewHash, Status
from hashdb.store.heads import HeadReader, Heads
from hashdb.store.imports import (
    FileState,
    ImportCounts,
    ImportFile,
    ImportJob,
    ImportStore,
    JobStatus,
    PlannedFile,
)
from hashdb.store.members import ApiKey, Member, MemberStore, NewKey, Principal, Role
from hashdb.store.videos import NewVideo, VideoInfo, VideoStore, frame_index_id


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.members = MemberStore(engine)
        self.hashes = HashStore(engine)
        self.changes = ChangeLog(engine)
        self.videos = VideoStore(engine, self.hashes)
        self.imports = ImportStore(engine)
        self._heads = HeadReader(engine)

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> Store:
        engine = open_engine(url)
        if migrate_schema:
            migrate(engine)
        return cls(engine)

    def heads(self) -> Heads:
        """Where the hash and auth change logs end (one round trip)."""
        return self._heads.read()

    def close(self) -> None:
        self._heads.close()
        self.engine.dispose()


__all__ = [
    "MATCHABLE",
    "Added",
    "ApiKey",
    "Change",
    "ChangeLog",
    "ChangeOp",
    "FileState",
    "HashRecord",
    "HashStore",
    "Heads",
    "ImportCounts",
    "ImportFile",
    "ImportJob",
    "ImportStore",
    "JobStatus",
    "Member",
    "MemberStore",
    "NewHash",
    "NewKey",
    "NewVideo",
    "PlannedFile",
    "Principal",
    "Role",
    "Status",
    "Store",
    "VideoInfo",
    "VideoStore",
    "frame_index_id",
]
