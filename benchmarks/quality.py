"""Matching quality: recall per re-upload edit and false matches, ours vs python-threatexchange.

    .venv/bin/python -m benchmarks.quality [--references 150] [--unrelated 30000]
        [--workers 2] [--seed 0] [--hash-only | --bare-hashes] [--scale 100000]

Needs the `bench` extra (python-threatexchange, scikit-image for the seed photos).
With `--references 80 --unrelated 12000` it runs in about 10 minutes on 2 cores.

What it does:

1. Makes `--references` reference pictures (benchmarks/quality_corpus.py), saves
   each as a JPEG and adds it through `hashdb.consortium.core.Consortium.contribute` (the
   service the HTTP API wraps; a fresh SQLite file) with the rows
   `ingest.records.image_contributions` gives, as `POST /v1/media` does: the
   image's hashes (its keypoint set among them), its PDQ row carrying its stored
   variants (content region; crop windows for a picture with few keypoints;
   hashdb/variants.py). With `--hash-only` they travel as `hashdb remote contribute
   --hash-only` sends them, without the image (`POST /v1/hashes` items, read back by
   the API's own `to_new_hashes`). With `--bare-hashes` it stores the image's hashes
   and keypoint set alone, no stored variants: what a member contributes from the
   lines `hashdb hash` prints.
   python-threatexchange gets the same files: `pdq_hasher.pdq_from_bytes` into a
   `PDQIndex2` at threshold 31.
2. Queries every reference after every edit of benchmarks/quality_transforms.py
   and benchmarks/quality_edits.py (central and off-centre crops, opaque corner
   logos of about 10% of the picture, 3-degree tilts with black corners, mirror +
   crop) and counts it found when the query matches that reference, three ways:
   python-threatexchange (hasher + index at 31), our plain PDQ at 31
   (`ingest.image.hash_image`, no query probes; stored variants still answer it),
   and our full probe set (`ingest.probes.probe_queries` with every probe kind,
   per-probe thresholds, and the keypoint query it carries). "matched by" names
   the probe and, for a hit on a stored variant, `stored:<variant>` (the Matcher
   reports it as its parent, within hashdb.variants.STORED_THRESHOLDS).
   The pHash query a media lookup makes (`pHash`) is counted apart: the copies it
   finds, and those only it finds.
3. Hashes `--unrelated` pictures that share no content with any reference
   (benchmarks/quality_edits.py `unrelated`: a fifth of them screenshots or
   logo-stamped, as queries are) and
   counts the queries with any match, each way and by pHash (false matches), and
   prints how close edited copies and unrelated pictures came in pHash bits. For each kind of
   query probe and each kind of stored row (the image's own, content region, crop
   windows) it also prints the smallest distance any unrelated probe came and how
   many came within 28, 31, 36 and 40: the measurements behind
   ingest.probes.THRESHOLDS and hashdb.variants.STORED_THRESHOLDS.
4. Times `probe_queries` + `Consortium.match` for a 1-megapixel JPEG (p50 of 50).
5. Crops of 10-35% of different seed photos (textures among them): how near they
   come by pHash and by PDQ, the measurement behind pHash's threshold.
6. Index memory per image at `--scale` images (default 100,000): the references'
   stored rows copied with a few bits flipped until there are that many, in the
   indexes the service builds (see `_memory_at`).

Measurements (dated, with the machine's state): docs/measurements.md, "Probes and
stored-variant thresholds", "Keypoints in the service", "Crop windows or keypoints".
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from api import schemas as s
from api.contributing import to_new_hashes
from benchmarks import quality_corpus as qc
from benchmarks import quality_edits as qe
from benchmarks import quality_transforms as qt
from hashdb.cli.remote import contribution
from hashdb.consortium.core import Consortium
from hashdb.consortium.keypoints import query as keypoint_query
from hashdb.index import MIHIndex, make_index
from hashdb.keypoints.codec import KeypointSet, empty
from hashdb.keypoints.index import KeypointIndex, search_for
from hashdb.matching import Match, Query, QueryResult
from hashdb.settings import Settings
from hashdb.signals import PDQ, PHASH
from hashdb.store import MATCHABLE, Role, Store
from hashdb.variants import CONTENT, STORED_THRESHOLDS
from ingest.image import hash_image
from ingest.probes import FULL, ProbeOptions, probe_queries
from ingest.records import contributions, image_contributions


@dataclass(frozen=True)
class Hashed:
    """One query file, hashed the three ways."""

    tx: str  # python-threatexchange's hex
    plain: Query
    full: Query
    probe_names: tuple[str, ...]
    probe_codes: bytes
    keypoints: Query | None  # the keypoint query the full probe set carries
    phash: Query  # the pHash query a media lookup makes


def _tx() -> tuple[Any, Any]:
    try:
        from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes
        from threatexchange.signal_type.pdq.pdq_index2 import PDQIndex2
    except ImportError:
        sys.exit("threatexchange is not installed (pip install -e '.[bench]')")
    return pdq_from_bytes, PDQIndex2


def hash_query(data: bytes, options: ProbeOptions = FULL) -> Hashed:
    pdq_from_bytes, _ = _tx()
    plain = hash_image(data)
    probed = probe_queries(data, options)
    return Hashed(
        tx=pdq_from_bytes(data)[0],
        plain=Query(PDQ, plain.pdq, None, plain.pdq_quality),
        full=probed.pdq_query(),
        probe_names=tuple(p.name for p in probed.probes),
        probe_codes=b"".join(p.pdq for p in probed.probes),
        keypoints=probed.keypoint_query(),
        phash=next(q for q in probed.queries() if q.signal_type is PHASH),
    )


def _local(h: Hashed) -> list[Query]:
    """The keypoint query of `h`, or a query that matches nothing (a set of no
    keypoints is answered low quality), so results line up with queries."""
    return [h.keypoints or keypoint_query(empty(1, 1))]


def _unrelated_job(args: tuple[int, int]) -> Hashed:
    i, seed = args
    return hash_query(
        qt.apply("identity", np.random.default_rng([seed, 3, i]), qe.unrelated(i, seed))
    )


def _how(m: Match) -> str | None:
    if m.inliers is not None:
        return "keypoints" if m.via is None else f"keypoints+{m.via.probe}"
    """How a match was made, as the API writes it ("flip_y", "stored:crop90_3_3",
    "flip_y+stored:crop95_2_1"; "whole" for the query as given against the stored
    hash); None for a hit on a stored variant beyond its kind's STORED_THRESHOLDS,
    which the matcher never reports (a check that it does not)."""
    stored = m.via.stored if m.via else None
    if stored is not None and m.distance > STORED_THRESHOLDS[stored]:
        return None
    return m.how or "whole"


def _found(result: QueryResult, reference: str) -> str | None:
    """How the query matched `reference` (see `_how`), or None."""
    for m in sorted(result.matches, key=lambda m: m.distance):
        how = _how(m)
        if m.record.reference == reference and how is not None:
            return how
    return None


def _any(result: QueryResult) -> bool:
    return any(_how(m) is not None for m in result.matches)


def _stored_kind(variant: str | None) -> str:
    if variant is None:
        return "image"
    return CONTENT if variant == CONTENT else "crop windows"


def _kind(name: str) -> str:
    if name.startswith("content_"):
        return "content_dihedral"
    if name.startswith("crop_"):
        return "crops"
    if name in ("whole", "content"):
        return name
    return "dihedral"


def run(
    references: int,
    unrelated: int,
    workers: int,
    seed: int,
    sent_as: str = "upload",
    scale: int = 0,
) -> None:
    pdq_from_bytes, pdq_index = _tx()
    tmp = Path(tempfile.mkdtemp(prefix="hashdb-quality-"))
    settings = Settings(database_url=f"sqlite:///{tmp / 'q.sqlite3'}", sync_interval=0.0)
    db = Consortium(settings, Store.open(settings.resolved_database_url(), migrate_schema=True))
    admin = db.store.members.create("bench", Role.ADMIN)[0]

    print(
        f"references: {references}, sent as {sent_as}; storing through "
        f"Consortium.contribute (SQLite in {tmp})"
    )
    pictures, files, skipped = [], [], 0
    for i in range(references):
        picture = qt.jpeg(qc.reference(i, seed), 95)
        data = qt.apply("identity", np.random.default_rng(i), picture)
        if hash_image(data).pdq_quality < (PDQ.min_quality or 0):
            skipped += 1  # refused on contribution (too little detail); not a reference
            continue
        pictures.append(picture)
        files.append(data)
    print(f"left out {skipped} low-quality pictures (PDQ quality < 50, refused by Consortium)")
    tx_entries = []
    own_phash = [hash_image(data).phash for data in files]
    copy_bits: list[int] = []  # pHash distance of each edited copy to its reference
    alone: list[int] = []  # ... of each copy only pHash found
    started = time.perf_counter()
    for i, data in enumerate(files):
        ref = f"ref-{i}"
        image, rows = image_contributions(data, (), ref, max_pixels=10**8)
        if sent_as == "hash-only":  # through the wire form of POST /v1/hashes
            wire = [s.HashIn.model_validate(contribution(r).to_json((), ref)) for r in rows]
            rows = list(to_new_hashes(settings, wire))
        elif sent_as == "bare":
            rows = contributions(image, (), ref)  # no stored variants
        db.contributions.add(admin, rows)
        tx_entries.append((pdq_from_bytes(data)[0], ref))
    per_image = (time.perf_counter() - started) / max(1, len(files))
    tx_index = pdq_index(entries=tx_entries, threshold=31)
    db.matcher.load()
    stored = Counter(_stored_kind(kind) for kind, _ in _stored_codes(db))
    held = db.matcher.nbytes()
    print(
        f"stored {len(files)} images + {stored[CONTENT]} content regions + "
        f"{stored['crop windows']} crop windows + {db.matcher.keypoint_sets()} keypoint "
        f"sets (hash + store {per_image * 1000:.0f} ms/image)\n"
        f"index bytes per image at this size: {sum(held.values()) / len(files):,.0f} "
        f"({', '.join(f'{k} {v / len(files):,.0f}' for k, v in sorted(held.items()))}; "
        "the keypoint index is exact MIH below 2,496 descriptors, a trained IVF beyond)\n"
    )

    print(
        f"{'transform':22s} {'threatexchange':>14s} {'ours plain':>10s} {'ours full':>9s} "
        f"{'phash':>6s} {'phash only':>10s}  matched by"
    )
    for name in qe.all_edits():
        counts = Counter[str]()
        variants = Counter[str]()
        for i, picture in enumerate(pictures):
            rng = np.random.default_rng([seed, 4, i, list(qe.all_edits()).index(name)])
            h = hash_query(qe.apply(name, rng, picture))
            ref = f"ref-{i}"
            counts["tx"] += any(m.metadata == ref for m in tx_index.query(h.tx))
            plain, full, local, ph = db.matching.match(None, [h.plain, h.full, *_local(h), h.phash])
            counts["plain"] += _found(plain, ref) is not None
            how = _found(full, ref) or _found(local, ref)
            if how is not None:
                counts["full"] += 1
                variants[how] += 1
            by_phash = _found(ph, ref) is not None
            counts["phash"] += by_phash
            counts["phash only"] += by_phash and how is None
            if by_phash and how is None:
                alone.append(_bits(h.phash.value, own_phash[i]))
            copy_bits.append(_bits(h.phash.value, own_phash[i]))
        n = len(pictures)
        top = ", ".join(f"{v} {c}" for v, c in variants.most_common(3))
        bar = (
            " (bar 95%)"
            if name in qt.BAR_95
            else " (bar 90%)"
            if name in qe.BAR_90
            else " (bar 80%)"
            if name in qt.BAR_80
            else ""
        )
        print(
            f"{name:22s} {counts['tx'] / n:14.1%} {counts['plain'] / n:10.1%} "
            f"{counts['full'] / n:9.1%} {counts['phash'] / n:6.1%} "
            f"{counts['phash only'] / n:10.1%}  {top}{bar}"
        )

    print(f"\nunrelated pictures: {unrelated} ({workers} worker processes)")
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        hashed = pool.map(_unrelated_job, [(i, seed) for i in range(unrelated)], chunksize=64)
    print(f"hashed in {time.perf_counter() - started:.0f} s")
    false = Counter[str]()
    for start in range(0, len(hashed), 1000):
        batch = hashed[start : start + 1000]
        false["tx"] += sum(bool(tx_index.query(h.tx)) for h in batch)
        plain_results = db.matching.match(None, [h.plain for h in batch])
        full_results = db.matching.match(None, [h.full for h in batch])
        asked = [q for h in batch for q in _local(h)]
        local_results = [  # a keypoint set costs 64 query units: fewer per request
            r
            for i in range(0, len(asked), 100)
            for r in db.matching.match(None, asked[i : i + 100])
        ]
        false["plain"] += sum(_any(r) for r in plain_results)
        false["full"] += sum(
            _any(f) or _any(k) for f, k in zip(full_results, local_results, strict=True)
        )
        false["phash"] += sum(_any(r) for r in db.matching.match(None, [h.phash for h in batch]))
    print(
        f"queries with any match: threatexchange {false['tx']}, ours plain {false['plain']}, "
        f"ours full {false['full']}, pHash (as a media lookup asks it) {false['phash']} "
        f"(of {unrelated})"
    )
    _phash_bits(copy_bits, [_nearest_bits(h.phash.value, own_phash) for h in hashed])
    print(f"  copies only pHash found, their distances: {sorted(alone)}")
    _distances(db, hashed)

    _texture_crops(seed)
    _latency(db, pictures)
    if scale:
        _memory_at(db, len(files), scale, seed)
    db.close()


def _texture_crops(seed: int, per_photo: int = 40) -> None:
    """Small crops of different photos: how close they come by pHash and by PDQ.

    Crops of 10-35% of each side of every seed photo of both pools (textures among
    them: moon, cells, brick, grass, gravel), enlarged 2x and saved as JPEG; every
    pair of crops of different photos whose PDQ quality is at least 50 (below it
    neither hash is matched) is a pair that must not match. Pairs of crops of one
    photo are counted apart (they may overlap: not unrelated)."""
    rng = np.random.default_rng([seed, 11])
    crops: list[tuple[int, bytes, bytes]] = []  # photo, pdq, phash
    for photo, im in enumerate(qc.seeds("reference") + qc.seeds("unrelated")):
        for _ in range(per_photo):
            f = rng.uniform(0.10, 0.35)
            w, h = int(im.width * f), int(im.height * f)
            x, y = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
            crop = im.crop((x, y, x + w, y + h)).resize((2 * w, 2 * h))
            hashed = hash_image(qt.apply("identity", rng, crop))
            if hashed.pdq_quality >= (PDQ.min_quality or 0):
                crops.append((photo, hashed.pdq, hashed.phash))
    photos = np.array([c[0] for c in crops])
    other = photos[:, None] != photos[None, :]
    upper = np.triu(np.ones_like(other), 1)
    for name, codes, bits in (
        ("pdq", [c[1] for c in crops], 31),
        ("phash", [c[2] for c in crops], PHASH.default_threshold),
    ):
        words = np.frombuffer(b"".join(codes), np.uint64).reshape(len(codes), -1)
        d = np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(axis=2)
        cross, same = d[other & upper], d[~other & upper]
        print(
            f"texture crops, {name}: {len(cross):,} pairs of different photos, nearest "
            f"{cross.min()} bits, within {bits} (its threshold): {(cross <= bits).sum()}; "
            f"within 10: {(cross <= 10).sum()}, 14: {(cross <= 14).sum()}; pairs of one "
            f"photo's crops within {bits}: {(same <= bits).sum()} of {len(same):,}"
        )


def _bits(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a) ^ int.from_bytes(b)).bit_count()


def _nearest_bits(code: bytes, stored: list[bytes]) -> int:
    return min(_bits(code, s) for s in stored)


def _phash_bits(copies: list[int], unrelated: list[int]) -> None:
    """How close edited copies came to their reference's pHash, and unrelated
    pictures to the nearest reference's: the measurement behind pHash's threshold."""
    print("pHash distance, share within t bits: t = " + " ".join(f"{t:>6d}" for t in PHASH_BITS))
    for label, found in (
        ("edited copies (own reference)", copies),
        ("unrelated (nearest)", unrelated),
    ):
        cells = " ".join(
            f"{sum(b <= t for b in found) / max(1, len(found)):6.1%}" for t in PHASH_BITS
        )
        print(f"  {label:31s} {cells}  (n = {len(found)}, min {min(found, default=-1)})")


PHASH_BITS = (2, 4, 6, 8, 10)


def _distances(db: Consortium, hashed: list[Hashed]) -> None:
    """For each kind of query probe and each kind of stored row, the nearest any
    unrelated probe came, and how many came within 28, 31, 36 and 40 bits."""
    codes = _stored_codes(db)
    stored_kinds = np.array([_stored_kind(kind) for kind, _ in codes])
    stored = np.frombuffer(b"".join(value for _, value in codes), np.uint8).reshape(-1, 32)
    words = stored.view(np.uint64)  # (n, 4)
    names = np.array([_kind(n) for h in hashed for n in h.probe_names])
    probes = np.frombuffer(b"".join(h.probe_codes for h in hashed), np.uint8)
    probes = probes.reshape(-1, 32).view(np.uint64)
    print(
        f"{'probe kind':18s} {'stored kind':13s} {'probes':>8s} {'min':>4s} {'<=28':>5s} "
        f"{'<=31':>5s} {'<=36':>5s} {'<=40':>5s}"
    )
    for stored_kind in sorted(set(stored_kinds)):
        these = words[stored_kinds == stored_kind]
        nearest = np.concatenate(
            [
                np.bitwise_count(chunk[:, None, :] ^ these[None, :, :]).sum(axis=2).min(axis=1)
                for chunk in np.array_split(probes, max(1, len(probes) // 2048))
            ]
        )
        for kind in sorted(set(names)):
            a = nearest[names == kind]
            print(
                f"{kind:18s} {stored_kind:13s} {len(a):8d} {a.min():4d} {(a <= 28).sum():5d} "
                f"{(a <= 31).sum():5d} {(a <= 36).sum():5d} {(a <= 40).sum():5d}"
            )


def _stored_codes(db: Consortium) -> list[tuple[str | None, bytes]]:
    """Every matchable stored PDQ code: (None, code) for a hash, (its kind, code) for
    a stored variant."""
    hashes = db.store.hashes
    out: list[tuple[str | None, bytes]] = [
        (None, bytes(code))
        for _, codes in hashes.iter_codes("pdq", 32, MATCHABLE)
        for code in codes
    ]
    for _, kinds, codes in hashes.iter_variant_codes("pdq", 32, MATCHABLE):
        out += [(kind, bytes(code)) for kind, code in zip(kinds, codes, strict=True)]
    return out


def _memory_at(db: Consortium, images: int, n: int, seed: int) -> None:
    """Index memory per image at `n` images: every matchable row the references
    stored (PDQ with its stored variants, pHash, the keypoint set) copied until there
    are `n` images' worth, each copy a few bits away from its original (8 of a PDQ,
    4 of a pHash, 8 of each keypoint descriptor), in the indexes the service builds:
    `make_index` per Hamming signal type, the keypoint index its `search_for` picks
    (a trained IVF at this size)."""
    rng = np.random.default_rng([seed, 9])
    copies = -(-n // images)
    started = time.perf_counter()
    held: dict[str, int] = {}
    for signal, flips, codes in (
        (PDQ, 8, np.frombuffer(b"".join(c for _, c in _stored_codes(db)), np.uint8)),
        (
            PHASH,
            4,
            np.concatenate([c for _, c in db.store.hashes.iter_codes("phash", 8, MATCHABLE)]),
        ),
    ):
        rows = codes.reshape(-1, signal.nbytes)
        index = make_index(signal.bits)
        for k in range(copies):
            index.add(np.arange(k * len(rows), (k + 1) * len(rows)) + 1, _flipped(rows, flips, rng))
        assert isinstance(index, MIHIndex)  # what make_index gives for 64 and 256 bits
        held[signal.name] = index.nbytes()
    sets = [
        KeypointSet.from_bytes(data)
        for part in db.store.hashes.iter_keypoint_sets(MATCHABLE)
        for _, data in part
    ]
    scaled = [
        replace(s, descriptors=_flipped(s.descriptors, 8, rng)) for _ in range(copies) for s in sets
    ]
    codes = np.concatenate([s.descriptors for s in scaled])
    local = KeypointIndex(search_for(codes), trained_for=len(codes))
    for i, kps in enumerate(scaled):
        local.add(i, kps)
    held["keypoints"] = local.nbytes()
    total = copies * images
    print(
        f"index memory at {total:,} images (the references' rows copied {copies}x, a few "
        f"bits flipped; built in {time.perf_counter() - started:.0f} s): "
        f"{sum(held.values()) / total:,.0f} bytes per image "
        f"({', '.join(f'{k} {v / total:,.0f}' for k, v in held.items())})"
    )


def _flipped(
    codes: npt.NDArray[np.uint8], bits: int, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    """`codes` with `bits` random bits flipped in each row."""
    unpacked = np.unpackbits(codes, axis=1)
    where = rng.integers(0, unpacked.shape[1], (len(codes), bits))
    np.bitwise_xor.at(unpacked, (np.arange(len(codes))[:, None], where), 1)
    return np.packbits(unpacked, axis=1)


def _latency(db: Consortium, pictures: list[Image.Image]) -> None:
    picture = pictures[0].resize((1155, 866), Image.Resampling.LANCZOS)  # 1.0 megapixel
    data = qt.apply("identity", np.random.default_rng(0), picture)
    for label, options in (("full probe set", FULL), ("default probe set", ProbeOptions())):
        times = []
        for _ in range(50):
            started = time.perf_counter()
            db.matching.match(None, probe_queries(data, options).queries())
            times.append(time.perf_counter() - started)
        print(
            f"latency, {label}, 1155 x 866 JPEG ({len(data) // 1024} KiB), hash + match: "
            f"p50 {statistics.median(times) * 1000:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--references", type=int, default=150)
    parser.add_argument("--unrelated", type=int, default=30000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    sent = parser.add_mutually_exclusive_group()
    sent.add_argument(
        "--hash-only",
        action="store_const",
        dest="sent_as",
        const="hash-only",
        help="references sent as `remote contribute --hash-only` sends them",
    )
    sent.add_argument(
        "--bare-hashes",
        action="store_const",
        dest="sent_as",
        const="bare",
        help="references stored as hashes and keypoint sets alone, no stored variants",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=100_000,
        help="measure index memory per image at this many images (0: skip)",
    )
    args = parser.parse_args()
    run(
        args.references,
        args.unrelated,
        args.workers,
        args.seed,
        args.sent_as or "upload",
        args.scale,
    )


if __name__ == "__main__":
    main()
