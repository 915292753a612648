"""Videos: a `vpdq` hash row plus its shape and sampled frames, written together.

The hash row carries what every hash has (labels, status, contributor, change-log
entries); `videos` and `video_frames` carry what only a video has. Frames are
immutable once written: a video re-added by the same contributor is the same row
(idempotent), and its frames are written only the first time.

Frames share the PDQ index with image hashes; the matcher files them there as
entries of kind FRAME (hashdb/index/entries.py), so a hit names the frame's row
here, and `frame_owners` gives its video and time.

Keyframes (`video_keyframes`): the keypoint set (wire form, hashdb/keypoints/codec.py)
of a frame every few seconds, written with the video and immutable as its frames
are; the matcher keeps them in a keypoint index of their own
(hashdb/matching/keyframes.py). A video contributed as a frame list alone (vPDQ
text) has none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, Select, Table, insert, select
from sqlalchemy.engine import Connection

from hashdb.signals.vpdq import VPDQ, Frame, frames_digest
from hashdb.store.hashes import CHUNK, MATCHABLE, Added, HashStore, NewHash, Status
from hashdb.store.schema import hashes, video_frames, video_keyframes, videos

# The most keyframes a video stores (ingest/video.py spaces them wider to stay within
# it; a follower refuses a feed entry with more).
MAX_KEYFRAMES = 300


class Keyframe(NamedTuple):
    """A frame's keypoint set (wire form) and its time in the video."""

    timestamp: float
    data: bytes


class StoredKeyframe(NamedTuple):
    """A keyframe as stored: its row id and its video's hash id."""

    id: int
    hash_id: int
    timestamp: float
    data: bytes


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
    keyframes: tuple[Keyframe, ...] = ()  # in time order

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
    keyframes: tuple[Keyframe, ...] = ()  # in time order, when asked for (`info`)

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
        """`add` inside the caller's transaction (ValueError with more than
        MAX_KEYFRAMES keyframes)."""
        if len(video.keyframes) > MAX_KEYFRAMES:
            raise ValueError(f"a video stores at most {MAX_KEYFRAMES} keyframes")
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
            if video.keyframes:
                conn.execute(
                    insert(video_keyframes),
                    [
                        {"hash_id": added.id, "ts": k.timestamp, "data": k.data}
                        for k in video.keyframes
                    ],
                )
        return added

    def info(
        self, hash_ids: Iterable[int], *, with_keyframes: bool = False
    ) -> dict[int, VideoInfo]:
        """Shape and frames of each video, by hash id (unknown ids are left out), and
        `with_keyframes` its keyframes: a few KB each, read only where they are sent
        on (the feed), not by every video match."""
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
                keyframes: dict[int, list[Keyframe]] = {}
                if with_keyframes:
                    k = video_keyframes.c
                    query = (
                        select(k.hash_id, k.ts, k.data)
                        .where(k.hash_id.in_(part))
                        .order_by(k.hash_id, k.ts, k.id)
                    )
                    for hash_id, ts, data in conn.execute(query):
                        keyframes.setdefault(hash_id, []).append(Keyframe(ts, bytes(data)))
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
                        tuple(keyframes.get(v["hash_id"], ())),
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
        query = _of_videos(
            select(video_frames.c.id, video_frames.c.value), video_frames, hash_ids, statuses
        ).execution_options(yield_per=chunk)
        with self._engine.connect() as conn:
            for part in conn.execute(query).partitions(chunk):
                ids = np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part))
                blob = b"".join(bytes(r[1]) for r in part)
                yield ids, np.frombuffer(blob, dtype=np.uint8).reshape(len(part), 32)

    def iter_keyframes(
        self,
        statuses: Iterable[Status] = MATCHABLE,
        hash_ids: Sequence[int] | None = None,
        chunk: int = 2_000,
    ) -> Iterator[list[StoredKeyframe]]:
        """The keyframes of matchable videos (or of all the videos among `hash_ids`,
        whatever their status), in chunks, in row order."""
        k = video_keyframes.c
        query = _of_videos(
            select(k.id, k.hash_id, k.ts, k.data), video_keyframes, hash_ids, statuses
        ).execution_options(yield_per=chunk)
        with self._engine.connect() as conn:
            for part in conn.execute(query).partitions(chunk):
                yield [StoredKeyframe(r[0], r[1], r[2], bytes(r[3])) for r in part]


def _of_videos(
    query: Select[Any], table: Table, hash_ids: Sequence[int] | None, statuses: Iterable[Status]
) -> Select[Any]:
    """`query` of the rows of `table` (frames or keyframes) of the videos among
    `hash_ids`, whatever their status, or else of the matchable videos; in row order."""
    query = query.join(hashes, hashes.c.id == table.c.hash_id).order_by(table.c.id)
    if hash_ids is not None:
        return query.where(table.c.hash_id.in_(list(hash_ids)))
    return query.where(hashes.c.status.in_([s.value for s in statuses]))
