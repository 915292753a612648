"""PDQ hashing speed: ours against python-threatexchange's hasher, on the same files.

    .venv/bin/python -m benchmarks.hashing [--repeat N]

Both sides start from the file bytes in memory and end with a PDQ hash: ours is
`ingest.decode.decode` + `ingest.pdq.pdq` (reduced JPEG decode, then Meta's C++
PDQ through pdqhash); theirs is `threatexchange.signal_type.pdq.pdq_hasher.
pdq_from_bytes` (full decode, then the same C++ PDQ). Size classes: the bridge
set (the bridge photo, its dihedral reference files and its edits), the small
reference images (256 x 256 and the 924 x 735 PNG), 1-2 MP photos made from the
test data's photos (`generated_photos`: crops of the 12 MP and bridge photos,
resized to 1-2 MP with Lanczos and saved as JPEG at quality 75-95), and the 12 MP
camera photo. Every file is timed N times after one warm-up; per-file times are
medians over the N runs, and each class reports the median of its files' ratios
(theirs / ours). Theirs is PDQ of the full-resolution pixels, so the Hamming
distance between the two hashes of each file is what the reduced decode costs
in accuracy. The rate of `ingest.image.hash_image` (PDQ + pHash + MD5 + SHA-256)
is printed for context. threatexchange is the optional `bench` dependency.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ingest.decode import decode
from ingest.image import DEFAULT_MAX_PIXELS, hash_image
from ingest.pdq import pdq

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata" / "pdq"

Hasher = Callable[[bytes], bytes]


# (width, height) of the generated 1-2 MP photos, cycled through
PHOTO_SIZES = (
    (1200, 900),
    (1280, 960),
    (1600, 1200),
    (1920, 1080),
    (1080, 1350),
    (1024, 1024),
    (1440, 1080),
    (1000, 1500),
    (1280, 720),
    (1632, 1224),
)


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes


@dataclass(frozen=True)
class FileResult:
    name: str
    size: str
    ours_s: float  # median seconds per hash
    theirs_s: float
    all_signals_s: float
    distance: int


def ours(data: bytes) -> bytes:
    decoded = decode(data, max_pixels=DEFAULT_MAX_PIXELS)
    return pdq(decoded.image, full_size=decoded.full_size).hash


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


def measure(sample: Sample, theirs: Hasher, repeat: int) -> FileResult:
    data = sample.data
    decoded = decode(data, max_pixels=DEFAULT_MAX_PIXELS)
    return FileResult(
        name=sample.name,
        size=f"{decoded.width}x{decoded.height}",
        ours_s=median_seconds(ours, data, repeat),
        theirs_s=median_seconds(theirs, data, repeat),
        all_signals_s=median_seconds(all_signals, data, repeat),
        distance=hamming(ours(data), theirs(data)),
    )


def generated_photos(count: int = 20, seed: int = 18) -> list[Sample]:
    """`count` photo-like 1-2 MP JPEGs: crops of the 12 MP and bridge photos (natural
    image statistics), resized with Lanczos, saved at quality 75-95."""
    sources = [
        Image.open(TESTDATA / "large" / "photo-12mp.jpg").convert("RGB"),
        Image.open(TESTDATA / "bridge-mods" / "aaa-orig.jpg").convert("RGB"),
    ]
    rng = np.random.default_rng(seed)
    photos = []
    for i in range(count):
        source = sources[0] if i % 3 else sources[1]
        width, height = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        fit = min(source.width / width, source.height / height) * rng.uniform(0.55, 1.0)
        cut_w, cut_h = int(width * fit), int(height * fit)
        x = int(rng.integers(0, source.width - cut_w + 1))
        y = int(rng.integers(0, source.height - cut_h + 1))
        photo = source.crop((x, y, x + cut_w, y + cut_h))
        photo = photo.resize((width, height), Image.Resampling.LANCZOS)
        quality = int(rng.integers(75, 96))
        out = io.BytesIO()
        photo.save(out, "JPEG", quality=quality)
        photos.append(Sample(f"photo-{i:02d}-{width}x{height}-q{quality}.jpg", out.getvalue()))
    return photos


def _samples(paths: list[Path]) -> list[Sample]:
    return [Sample(str(p.relative_to(TESTDATA)), p.read_bytes()) for p in paths]


def photo_sets(count: int) -> dict[str, list[Sample]]:
    reference = TESTDATA / "reference"
    return {
        "bridge set": _samples(
            [
                *sorted((reference / "dih").glob("*.jpg")),
                *sorted((TESTDATA / "bridge-mods").glob("*.jpg")),
            ]
        ),
        "small reference": _samples(
            [
                *sorted((reference / "labelme-subset").glob("*.jpg")),
                reference / "pen-and-coaster.png",
            ]
        ),
        "1-2 MP photos": generated_photos(count),
        "12 MP photo": _samples([TESTDATA / "large" / "photo-12mp.jpg"]),
    }


def report(sets: dict[str, list[FileResult]], repeat: int) -> None:
    print(f"PDQ from file bytes in memory; medians of {repeat} runs after a warm-up.")
    print("ours = ingest.decode + ingest.pdq; theirs = threatexchange pdq_from_bytes")
    print("bits = Hamming distance to theirs, the PDQ of the full-resolution pixels\n")
    print(f"{'file':<42}{'size':>11}{'ours ms':>10}{'theirs ms':>11}{'speed-up':>10}{'bits':>6}")
    for results in sets.values():
        for r in results:
            print(
                f"{r.name:<42}{r.size:>11}{r.ours_s * 1e3:>10.1f}{r.theirs_s * 1e3:>11.1f}"
                f"{r.theirs_s / r.ours_s:>9.1f}x{r.distance:>6}"
            )
    print(
        f"\n{'class':<17}{'images':>7}{'median speed-up':>17}{'min':>7}"
        f"{'max bits':>10}{'hash_image ms':>15}"
    )
    for name, results in sets.items():
        ratios = [r.theirs_s / r.ours_s for r in results]
        all_ms = statistics.median(r.all_signals_s for r in results) * 1e3
        print(
            f"{name:<17}{len(results):>7}{statistics.median(ratios):>16.1f}x{min(ratios):>6.1f}x"
            f"{max(r.distance for r in results):>10}{all_ms:>15.1f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per file (default 5)")
    parser.add_argument(
        "--photos", type=int, default=20, help="generated 1-2 MP photos (default 20)"
    )
    args = parser.parse_args(argv)
    if not TESTDATA.is_dir():
        sys.exit(f"test data not found at {TESTDATA}")
    theirs = threatexchange_hasher()
    sets = {
        name: [measure(sample, theirs, args.repeat) for sample in samples]
        for name, samples in photo_sets(args.photos).items()
    }
    report(sets, args.repeat)


if __name__ == "__main__":
    main()
