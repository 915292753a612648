"""Videos: a `vpdq` hash row plus its shape and sampled frames, written together.

The hash row carries what every hash has (labels, status, contributor, change-log
entries); `videos` and `video_frames` carry what only a video has. Frames are
immutable once written: a video re-added by the same contributor is the same row
(idempotent), and its frames are written only the first time.

Frames share the PDQ index with image hashes; the matcher files them there as
entries of kind FRAME (hashdb/index/entries.py), so a hit names the frame's row
here, and `frame_owners` gives its video and time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import Connection

from hashdb.signals.vpdq import VPDQ, Frame, frames_digest
from hashdb.store.hashes import CHUNK, MATCHABLE, Added, HashStore, NewHash, Status
from hashdb.store.schema import hashes, video_frames, videos


@dataclass(frozen=True)
class NewVideo:
    frames: tuple[Frame, ...]  # matchable frames (quality >= 50), in time order
    duration: float
    fps: float
    width: int
    height: int
    low_quality_frames: int = 0
    labels: tuple[str, ...] = ()
    reference: str | None = None

    def as_hash(self) -> NewHash:
        return NewHash(VPDQ.name, frames_digest(self.frames), self.labels, None, self.reference)


@dataclass(frozen=True)
class VideoInfo:
    hash_id: int
    duration: float
    fps: float
    width: int
    height: int
    low_quality_frames: int
    frames: tuple[Frame, ...]  # in time order
    frame_ids: tuple[int, ...]  # row id of each frame, same order

    def position(self, frame_row_id: int) -> int:
        return self.frame_ids.index(frame_row_id)


class VideoStore:
    def __init__(self, engine: Engine, hash_store: HashStore) -> None:
        self._engine = engine
        self._hashes = hash_store

    def add(self, contributor_id: int, video: NewVideo, status: Status = Status.ACTIVE) -> Added:
        with self._engine.begin() as conn:
            return self.add_in(conn, contributor_id, video, status)

    def add_in(
        self,
        conn: Connection,
        contributor_id: int,
        video: NewVideo,
        status: Status = Status.ACTIVE,
    ) -> Added:
        """`add` inside the caller's transaction."""
        (added,) = self._hashes.add_in(conn, contributor_id, [video.as_hash()], status)
        if added.created:
            conn.execute(
                insert(videos).values(
                    hash_id=added.id,
                    duration=video.duration,
                    fps=video.fps,
                    width=video.width,
                    height=video.height,
                    low_quality_frames=video.low_quality_frames,
                )
            )
            if video.frames:
                conn.execute(
                    insert(video_frames),
                    [
                        {
                            "hash_id": added.id,
                            "idx": f.index,
                            "ts": f.timestamp,
                            "value": f.pdq,
                            "quality": f.quality,
                        }
                        for f in video.frames
                    ],
                )
        return added

    def info(self, hash_ids: Iterable[int]) -> dict[int, VideoInfo]:
        """Shape and frames of each video, by hash id (unknown ids are left out)."""
        wanted = sorted(set(hash_ids))
        out: dict[int, VideoInfo] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), CHUNK):
                part = wanted[start : start + CHUNK]
                frames: dict[int, list[Frame]] = {}
                frame_ids: dict[int, list[int]] = {}
                rows = conn.execute(
                    select(video_frames)
                    .where(video_frames.c.hash_id.in_(part))
                    .order_by(video_frames.c.hash_id, video_frames.c.ts, video_frames.c.id)
                ).mappings()
                for r in rows:
                    frames.setdefault(r["hash_id"], []).append(
                        Frame(r["idx"], r["ts"], bytes(r["value"]), r["quality"])
                    )
                    frame_ids.setdefault(r["hash_id"], []).append(r["id"])
                for v in conn.execute(select(videos).where(videos.c.hash_id.in_(part))).mappings():
                    out[v["hash_id"]] = VideoInfo(
                        v["hash_id"],
                        v["duration"],
                        v["fps"],
                        v["width"],
                        v["height"],
                        v["low_quality_frames"],
                        tuple(frames.get(v["hash_id"], ())),
                        tuple(frame_ids.get(v["hash_id"], ())),
                    )
        return out

    def frame_owners(self, frame_row_ids: Iterable[int]) -> dict[int, tuple[int, float]]:
        """For each frame row id: (video hash id, timestamp of the frame in its video)."""
        wanted = sorted(set(frame_row_ids))
        out: dict[int, tuple[int, float]] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), CHUNK):
                part = wanted[start : start + CHUNK]
                rows = conn.execute(
                    select(video_frames.c.id, video_frames.c.hash_id, video_frames.c.ts).where(
                        video_frames.c.id.in_(part)
                    )
                )
                for frame_id, hash_id, ts in rows:
                    out[frame_id] = (hash_id, ts)
        return out

    def iter_frame_codes(
        self,
        hash_ids: Sequence[int] | None = None,
        statuses: Iterable[Status] = MATCHABLE,
        chunk: int = 100_000,
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]]:
        """(frame row ids, codes) of the frames of matchable videos (or of all the
        videos among `hash_ids`, whatever their status), in chunks."""
        query = (
            select(video_frames.c.id, video_frames.c.value)
            .join(hashes, hashes.c.id == video_frames.c.hash_id)
            .order_by(video_frames.c.id)
            .execution_options(yield_per=chunk)
        )
        if hash_ids is not None:
            query = query.where(video_frames.c.hash_id.in_(list(hash_ids)))
        else:
            query = query.where(hashes.c.status.in_([s.value for s in statuses]))
        with self._engine.connect() as conn:
            for part in conn.execute(query).partitions(chunk):
                ids = np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part))
                blob = b"".join(bytes(r[1]) for r in part)
                yield ids, np.frombuffer(blob, dtype=np.uint8).reshape(len(part), 32)
