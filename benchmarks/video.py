"""Video hashing speed, in times real time per core, and conformance with Meta's vPDQ.

    .venv/bin/python -m benchmarks.video [--repeat N]

For each sample video in ../shared/testdata/video, three ways to hash it:

- ours, 1 frame per second: `ingest.video.hash_video_file` (PyAV, only the packets
  the sampled frames need, PDQ from the luma plane; digests included);
- ours, every frame: the same with `EVERY_FRAME`, the rate recommended for queries;
- naive: OpenCV reads every frame, and every round(fps)-th one is converted to RGB
  and hashed with `pdqhash.compute`, the plain decode-every-frame loop.

Speed is video seconds / CPU seconds of this process (`time.process_time`, all
threads counted), so it is per core whatever threads a decoder starts; each
figure is the median of N runs after one warm-up (the best run in brackets).
Conformance: for the frames ours samples at 1 per second, the Hamming distance
to the reference frame at the same frame number in vpdq-expected/, where the
reference's quality is >= 50.

Measured (2 shared cores, other jobs running; medians of 9 runs, two runs of
the whole benchmark each, old and new code alternating):

    taskset -c 0 .venv/bin/python -m benchmarks.video --repeat 9

    video (size)                 ours 1/s        naive 1/s  ours every  dist med/max
    doorknob-hd-no-bar (720p)    49-50x (51)     9x         14x         1 / 2
    chair-* (480x720)            81-84x          21x        23-26x      2 / 4
    pattern-sd-* (480x720)       69x             19-20x     21-22x      2 / 4
    test-padded-dim (1080x1080)  81-83x          9-10x      22x         2 / 4

The same runs of the code before its last change (the probe decoding the first
frames, pass 2 seeking back and reading the file again, PDQ's downsampling as
numpy einsums) gave 41-43x on the 720p sample, 74-77x on chair, 62x on pattern,
64-67x on the padded one, 12-13x every frame at 720p. At 720p about 88% of the
CPU is now FFmpeg decoding the 37 frames the sampled ones need
(`ingest.video_decode`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pdqhash

from ingest.video import EVERY_FRAME, MIN_QUALITY, VideoHashes, hash_video_file

VIDEOS = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata" / "video"


@dataclass(frozen=True)
class Timing:
    median_s: float
    best_s: float


@dataclass(frozen=True)
class Row:
    name: str
    size: str
    duration: float
    ours: Timing
    every_frame: Timing
    naive: Timing
    distances: list[int]


def naive(path: Path) -> list[bytes]:
    """Decode every frame with OpenCV, hash one per second with pdqhash on full RGB."""
    capture = cv2.VideoCapture(str(path))
    step = max(1, round(capture.get(cv2.CAP_PROP_FPS)))
    hashes, number = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if number % step == 0:
            bits, _ = pdqhash.compute(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            hashes.append(np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes())
        number += 1
    capture.release()
    return hashes


def cpu_time(run: Callable[[], object], repeat: int) -> Timing:
    run()  # warm-up: imports, caches
    times = []
    for _ in range(repeat):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return Timing(statistics.median(times), min(times))


def reference_frames(path: Path) -> dict[int, tuple[int, bytes]]:
    rows = {}
    for line in (VIDEOS / "vpdq-expected" / f"{path.stem}.txt").read_text().split():
        frame, quality, pdq_hex, _ = line.split(",")
        rows[int(frame)] = (int(quality), bytes.fromhex(pdq_hex))
    return rows


def distances(hashes: VideoHashes, path: Path) -> list[int]:
    expected = reference_frames(path)
    out = []
    for frame in hashes.frames:
        quality, reference = expected[frame.index]
        if quality >= MIN_QUALITY:
            out.append(
                (int.from_bytes(frame.pdq, "big") ^ int.from_bytes(reference, "big")).bit_count()
            )
    return out


def measure(path: Path, repeat: int) -> Row:
    hashes = hash_video_file(path)
    return Row(
        name=path.stem,
        size=f"{hashes.width}x{hashes.height}",
        duration=hashes.duration,
        ours=cpu_time(lambda: hash_video_file(path), repeat),
        every_frame=cpu_time(lambda: hash_video_file(path, frames_per_second=EVERY_FRAME), repeat),
        naive=cpu_time(lambda: naive(path), repeat),
        distances=distances(hashes, path),
    )


def speed(row: Row, timing: Timing) -> str:
    return f"{row.duration / timing.median_s:5.0f}x ({row.duration / timing.best_s:3.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement")
    args = parser.parse_args()
    if not VIDEOS.is_dir():
        raise SystemExit(f"test data not found at {VIDEOS}")
    rows = [measure(path, args.repeat) for path in sorted(VIDEOS.glob("*.mp4"))]
    print(f"x real time per core, median of {args.repeat} runs (best); vPDQ distance in bits")
    print(
        f"{'video':34} {'size':>9} {'secs':>5} {'ours 1/s':>12} {'naive 1/s':>12} "
        f"{'ours every':>12} {'dist med':>8} {'max':>4}"
    )
    for row in rows:
        print(
            f"{row.name:34} {row.size:>9} {row.duration:5.1f} {speed(row, row.ours):>12} "
            f"{speed(row, row.naive):>12} {speed(row, row.every_frame):>12} "
            f"{statistics.median(row.distances):8.1f} {max(row.distances):4d}"
        )


if __name__ == "__main__":
    main()
