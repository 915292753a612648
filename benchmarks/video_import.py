"""Bulk import speed: videos per minute with 1 and 2 hashing workers.

    .venv/bin/python -m benchmarks.video_import [--videos 200] [--seconds 20]

Generates a collection of short, distinct videos with OpenCV (moving random
pictures, 640x360, 25 frames per second), then imports it twice into fresh SQLite
databases through `ingest.bulk.run_import`, once with a local pool of 1 worker and
once with 2, and prints videos/minute and the speed-up (the pool's start, about a
second of imports in each spawned worker, is timed apart). The coordinator digests,
de-duplicates and writes to the database; the workers decode and hash. On this
2-core machine the coordinator shares a core with a worker, so the ideal is a
little under 2x.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hashdb.consortium import Actor, Consortium
from hashdb.settings import Settings
from hashdb.store import Role, Store
from ingest.bulk import plan_files, run_import
from ingest.media import MediaOptions, hash_media_safely
from ingest.pool import open_pool


def write_collection(root: Path, videos: int, seconds: float) -> None:
    fps, size = 25, (640, 360)
    for v in range(videos):
        rng = np.random.default_rng(v)
        writer = cv2.VideoWriter(
            str(root / f"{v:04}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, size
        )
        base = rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)
        for f in range(int(seconds * fps)):
            shifted = np.roll(base, f // fps, axis=1)  # a new picture every second
            writer.write(cv2.resize(shifted, size, interpolation=cv2.INTER_LINEAR))
        writer.release()


def import_once(root: Path, workers: int, work: Path) -> tuple[float, float, int]:
    """Seconds to start the pool, seconds to import, videos imported."""
    store = Store.open(f"sqlite:///{work / f'import-{workers}.sqlite3'}", migrate_schema=True)
    db = Consortium(Settings(), store)
    try:
        ops = Actor(store.members.create("ops", Role.OPS)[0])
        job = db.imports.start(ops, str(root), (), plan_files(root, (), None))
        with open_pool(workers) as pool:
            # Spawned workers import the hashing stack (PyAV, OpenCV, numba) first:
            # about a second, once per import, so it is timed apart.
            started = time.perf_counter()
            sample = str(next(root.glob("*.mp4")))
            warm = [pool.submit(hash_media_safely, sample, MediaOptions()) for _ in range(workers)]
            for future in warm:
                future.result()
            startup = time.perf_counter() - started
            started = time.perf_counter()
            summary = run_import(db, ops, job, root, pool)
        return startup, time.perf_counter() - started, summary.videos
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each video")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "collection"
        root.mkdir()
        started = time.perf_counter()
        write_collection(root, args.videos, args.seconds)
        print(
            f"generated {args.videos} videos of {args.seconds:.0f} s in "
            f"{time.perf_counter() - started:.0f} s"
        )
        rates = {}
        for workers in (1, 2):
            startup, elapsed, videos = import_once(root, workers, work)
            rates[workers] = videos / elapsed * 60
            print(
                f"{workers} worker(s): {videos} videos in {elapsed:6.1f} s = "
                f"{rates[workers]:7.0f} videos/minute (pool started in {startup:.1f} s)"
            )
        print(f"speed-up 1 -> 2 workers: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
