"""PDQ hashing speed: ours against python-threatexchange's hasher, on the same files.

    .venv/bin/python -m benchmarks.hashing [--repeat N]

Both sides start from the file bytes in memory and end with a PDQ hash: ours is
`ingest.decode.decode` + `ingest.pdq.pdq` (reduced JPEG decode, then Meta's C++
PDQ through pdqhash); theirs is `threatexchange.signal_type.pdq.pdq_hasher.
pdq_from_bytes` (full decode, then the same C++ PDQ). Two sets: the 12-megapixel
camera photo, and ordinary photos (the PDQ reference images and the bridge
edits). Every file is timed N times after one warm-up; per-file times and
per-set images/second are medians over the N runs. The Hamming distance between
the two hashes of each file shows what the reduced decode costs in accuracy.
The rate of `ingest.image.hash_image` (PDQ + pHash + MD5 + SHA-256) is printed
for context. threatexchange is the optional `bench` dependency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.decode import decode
from ingest.image import DEFAULT_MAX_PIXELS, hash_image
from ingest.pdq import pdq

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata" / "pdq"

Hasher = Callable[[bytes], bytes]


@dataclass(frozen=True)
class FileResult:
    name: str
    size: str
    ours_s: float  # median seconds per hash
    theirs_s: float
    all_signals_s: float
    distance: int


def ours(data: bytes) -> bytes:
    return pdq(decode(data, max_pixels=DEFAULT_MAX_PIXELS).image).hash


def all_signals(data: bytes) -> bytes:
    return hash_image(data).pdq


def threatexchange_hasher() -> Hasher:
    try:
        from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes
    except ImportError:
        sys.exit("threatexchange is not installed (pip install -e '.[bench]')")

    def theirs(data: bytes) -> bytes:
        hex_hash, _quality = pdq_from_bytes(data)
        return bytes.fromhex(hex_hash)

    return theirs


def median_seconds(hasher: Hasher, data: bytes, repeat: int) -> float:
    hasher(data)  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        hasher(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hamming(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def measure(path: Path, theirs: Hasher, repeat: int) -> FileResult:
    data = path.read_bytes()
    decoded = decode(data, max_pixels=DEFAULT_MAX_PIXELS)
    return FileResult(
        name=str(path.relative_to(TESTDATA)),
        size=f"{decoded.width}x{decoded.height}",
        ours_s=median_seconds(ours, data, repeat),
        theirs_s=median_seconds(theirs, data, repeat),
        all_signals_s=median_seconds(all_signals, data, repeat),
        distance=hamming(ours(data), theirs(data)),
    )


def photo_sets() -> dict[str, list[Path]]:
    reference = TESTDATA / "reference"
    ordinary = [
        *sorted(reference.rglob("*.jpg")),
        *sorted(reference.rglob("*.png")),
        *sorted((TESTDATA / "bridge-mods").glob("*.jpg")),
    ]
    return {"12 MP photo": [TESTDATA / "large" / "photo-12mp.jpg"], "ordinary photos": ordinary}


def report(sets: dict[str, list[FileResult]], repeat: int) -> None:
    print(f"PDQ from file bytes in memory; medians of {repeat} runs after a warm-up.")
    print("ours = ingest.decode + ingest.pdq; theirs = threatexchange pdq_from_bytes\n")
    print(f"{'file':<42}{'size':>11}{'ours ms':>10}{'theirs ms':>11}{'speed-up':>10}{'bits':>6}")
    for results in sets.values():
        for r in results:
            print(
                f"{r.name:<42}{r.size:>11}{r.ours_s * 1e3:>10.1f}{r.theirs_s * 1e3:>11.1f}"
                f"{r.theirs_s / r.ours_s:>9.1f}x{r.distance:>6}"
            )
    print(
        f"\n{'set':<17}{'images':>7}{'ours img/s':>12}{'theirs img/s':>14}{'speed-up':>10}"
        f"{'max bits':>10}{'hash_image img/s':>18}"
    )
    for name, results in sets.items():
        ours_rate = len(results) / sum(r.ours_s for r in results)
        theirs_rate = len(results) / sum(r.theirs_s for r in results)
        all_rate = len(results) / sum(r.all_signals_s for r in results)
        print(
            f"{name:<17}{len(results):>7}{ours_rate:>12.1f}{theirs_rate:>14.1f}"
            f"{ours_rate / theirs_rate:>9.1f}x{max(r.distance for r in results):>10}"
            f"{all_rate:>18.1f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per file (default 5)")
    args = parser.parse_args(argv)
    if not TESTDATA.is_dir():
        sys.exit(f"test data not found at {TESTDATA}")
    theirs = threatexchange_hasher()
    sets = {
        name: [measure(path, theirs, args.repeat) for path in paths]
        for name, paths in photo_sets().items()
    }
    report(sets, args.repeat)


if __name__ == "__main__":
    main()
