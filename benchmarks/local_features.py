"""Local features (ORB keypoint sets) against the edits whole-image hashes miss.

    .venv/bin/python -m benchmarks.local_features [--references 150]
        [--distractors 10000] [--unrelated 10000] [--limit 128] [--seed 0]
        [--cache DIR] [--compare-mih 300] [--scale 100000]

Needs the `bench` extra (FAISS, scikit-image for the seed photos).

What it does:

1. Makes `--references` reference pictures and `--distractors` more of the same
   kind (benchmarks/quality_corpus.py, reference pool: crops of the reference seed
   photos and procedural pictures), saves each as a JPEG (quality 90), decodes it
   as the service does (ingest/decode.py) and indexes its keypoint set
   (ingest/keypoints.py) in a `KeypointIndex` over FAISS binary IVF. Only the
   keypoint sets are indexed, so every reference is "shared as hashes only".
   Plain PDQ (ingest.image, threshold 31) gets the same files.
2. Queries every reference after every edit (benchmarks/quality_transforms.py and
   benchmarks/quality_edits.py), described as it is and mirrored
   (`ingest.keypoints.query_sets`), and counts it found when its own reference is
   verified (hashdb/keypoints/verify.py); prints recall per edit for keypoints and
   plain PDQ, and the median share of the reference the query covers.
3. Queries `--unrelated` pictures that share no content with any indexed picture
   (benchmarks/quality_edits.unrelated: other photos' crops and collages,
   textures, procedural pictures, screenshots, logos): any verified match is a
   false match. Prints the most inliers any unrelated query reached.
4. Times hashing (decode + both keypoint sets) of a 1 MP JPEG and matching per
   query at the index's size; bytes of index per reference. With `--compare-mih N`,
   N queries are matched through MIH (exact radius search) and IVF on the same
   index contents, interleaved. With `--scale`, the match time is measured again
   over an index of that many references, made of the distractors' keypoint sets
   repeated with 8 random bits of each descriptor flipped (their descriptors keep
   the distribution of real ones; only the time is read from it).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from benchmarks import quality_corpus as qc
from benchmarks import quality_edits as qe
from hashdb.keypoints.codec import KeypointSet
from hashdb.keypoints.index import DescriptorSearch, IvfSearch, KeypointIndex, MihSearch
from hashdb.keypoints.verify import MIN_INLIERS
from ingest.decode import decode
from ingest.image import hash_image
from ingest.keypoints import keypoints, query_sets

MAX_PIXELS = 100_000_000
PDQ_THRESHOLD = 31


def _pdq(data: bytes) -> bytes:
    return hash_image(data).pdq


def _reference_file(i: int, seed: int) -> bytes:
    buf = io.BytesIO()
    qc.reference(i, seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _cached(
    cache: Path | None,
    name: str,
    count: int,
    make: Callable[[int], tuple[tuple[KeypointSet, ...], bytes]],
) -> tuple[list[tuple[KeypointSet, ...]], list[bytes]]:
    """Keypoint sets (one or two a picture) and PDQ hashes of `count` pictures, made
    by `make` or read from `cache` (the sets' own wire form, no pickle)."""
    path = cache / f"{name}-{count}.npz" if cache else None
    if path is not None and path.exists():
        loaded = np.load(path)
        blob, ends, per = loaded["blob"].tobytes(), loaded["ends"], int(loaded["per"])
        starts = np.concatenate([[0], ends[:-1]])
        flat = [KeypointSet.from_bytes(blob[s:e]) for s, e in zip(starts, ends, strict=True)]
        sets = [tuple(flat[k : k + per]) for k in range(0, len(flat), per)]
        return sets, [bytes(p) for p in loaded["pdq"]]
    sets, hashes = [], []
    started = time.perf_counter()
    for i in range(count):
        kps, pdq = make(i)
        sets.append(kps)
        hashes.append(pdq)
        if (i + 1) % 2000 == 0:
            print(
                f"  {name}: {i + 1} of {count} ({time.perf_counter() - started:.0f} s)", flush=True
            )
    if path is not None:
        raw = [s.to_bytes() for group in sets for s in group]
        np.savez(
            path,
            blob=np.frombuffer(b"".join(raw), np.uint8),
            ends=np.cumsum([len(r) for r in raw]),
            per=len(sets[0]) if sets else 1,
            pdq=np.frombuffer(b"".join(hashes), np.uint8).reshape(-1, 32),
        )
    return sets, hashes


def _hamming(a: bytes, b: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    x = np.bitwise_xor(np.frombuffer(a, np.uint8)[None, :], b)
    return np.asarray(np.unpackbits(x, axis=1).sum(axis=1), dtype=np.int64)


def _index(sets: list[KeypointSet], search: DescriptorSearch) -> KeypointIndex:
    index = KeypointIndex(search)
    for i, kps in enumerate(sets):
        index.add(i, kps)
    return index


def _ivf(sets: list[KeypointSet], seed: int) -> IvfSearch:
    codes = np.concatenate([s.descriptors for s in sets])
    rng = np.random.default_rng(seed)
    sample = codes[rng.choice(len(codes), min(len(codes), 150_000), replace=False)]
    nlist = int(2 ** round(np.log2(max(64, np.sqrt(len(codes))))))
    print(f"IVF: {len(codes):,} descriptors, nlist {nlist}, trained on {len(sample):,}")
    return IvfSearch(sample, nlist=nlist)


def run(args: argparse.Namespace) -> None:
    seed, limit = args.seed, args.limit
    cache = Path(args.cache) if args.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)

    def indexed(
        picture: Callable[[int, int], Image.Image],
    ) -> Callable[[int], tuple[tuple[KeypointSet, ...], bytes]]:
        def make(i: int) -> tuple[tuple[KeypointSet, ...], bytes]:
            buf = io.BytesIO()
            picture(i, seed).save(buf, "JPEG", quality=90)
            data = buf.getvalue()
            kps = keypoints(decode(data, max_pixels=MAX_PIXELS).image, limit=limit)
            return (kps,), _pdq(data)

        return make

    total = args.references + args.distractors
    print(f"indexing {args.references} references + {args.distractors} distractors, limit {limit}")
    r_sets, r_pdqs = _cached(
        cache, f"references-s{seed}-k{limit}", args.references, indexed(qc.reference)
    )
    d_sets, d_pdqs = _cached(
        cache, f"distractors-s{seed}-k{limit}", args.distractors, indexed(qe.distractor)
    )
    sets = [g[0] for g in r_sets + d_sets]
    pdqs = r_pdqs + d_pdqs
    index = _index(sets, _ivf(sets, seed))
    pdq_matrix = np.frombuffer(b"".join(pdqs), np.uint8).reshape(-1, 32)
    print(f"index: {index.nbytes() / total:,.0f} bytes per reference (IVF codes and ids, geometry)")
    print(
        f"wire form: median {statistics.median(len(s.to_bytes()) for s in sets):,.0f} bytes, "
        f"median keypoints {statistics.median(len(s) for s in sets):.0f}"
    )

    edits = qe.all_edits()
    found: dict[str, list[bool]] = defaultdict(list)
    found_pdq: dict[str, list[bool]] = defaultdict(list)
    shares: dict[str, list[float]] = defaultdict(list)
    inliers: dict[str, list[int]] = defaultdict(list)
    others: dict[str, int] = defaultdict(int)
    queries: list[tuple[KeypointSet, ...]] = []
    started = time.perf_counter()
    for r in range(args.references):
        picture = qc.reference(r, seed)
        for e, name in enumerate(edits):
            data = qe.apply(name, np.random.default_rng([seed, 5, r, e]), picture)
            pair = query_sets(decode(data, max_pixels=MAX_PIXELS).image)
            if r < 20:
                queries.append(pair)
            result = index.match(pair)
            own = [f for f in result if f.reference == r]
            hit = bool(own) and own[0].verdict.matched
            found[name].append(hit)
            inliers[name].append(own[0].verdict.inliers if own else 0)
            if hit:
                shares[name].append(own[0].verdict.frame_share)
            # a distractor shares no content with any reference: a match is false
            others[name] += sum(f.verdict.matched for f in result if f.reference >= args.references)
            found_pdq[name].append(
                bool(_hamming(_pdq(data), pdq_matrix[r : r + 1])[0] <= PDQ_THRESHOLD)
            )
    print(
        f"queried {args.references} x {len(edits)} edits in {time.perf_counter() - started:.0f} s"
    )
    # References with fewer keypoints than this cannot reach MIN_INLIERS after most
    # edits: featureless pictures, for which PDQ is the signal (as PDQ quality < 50 is).
    rich = np.array([len(s) >= 2 * MIN_INLIERS for s in sets[: args.references]])
    print(
        f"references with fewer than {2 * MIN_INLIERS} keypoints: {int((~rich).sum())} "
        f"({[int(k) for k in np.flatnonzero(~rich)]}); 'rich' is recall over the others"
    )
    print(
        f"\n{'edit':22} {'keypoints':>9} {'rich':>6} {'PDQ plain':>9} {'share':>6}"
        f" {'inl p10':>7} {'false':>5}"
    )
    for name in edits:
        bar = " (90)" if name in qe.BAR_90 else ""
        p10 = np.percentile(inliers[name], 10)
        share = statistics.median(shares[name]) if shares[name] else 0.0
        hits = np.array(found[name])
        print(
            f"{name:22} {100 * hits.mean():8.1f}% {100 * hits[rich].mean():5.1f}%"
            f" {100 * np.mean(found_pdq[name]):8.1f}% {share:6.2f} {p10:7.0f} {others[name]:5}{bar}"
        )

    def unrelated(i: int) -> tuple[tuple[KeypointSet, ...], bytes]:
        buf = io.BytesIO()
        qe.unrelated(i, seed).save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        return query_sets(decode(data, max_pixels=MAX_PIXELS).image), _pdq(data)

    u_sets, u_pdqs = _cached(cache, f"unrelated-s{seed}", args.unrelated, unrelated)
    false_kp, false_pdq, worst, parts = 0, 0, [], 0
    for i, u_pair in enumerate(u_sets):
        result = index.match(u_pair)
        matched = [f for f in result if f.verdict.matched]
        false_kp += bool(matched)
        parts += any(f.verdict.is_part for f in matched)
        worst.append(max((f.verdict.inliers for f in result), default=0))
        false_pdq += bool(_hamming(u_pdqs[i], pdq_matrix).min() <= PDQ_THRESHOLD)
        if matched:
            f = matched[0]
            print(f"  FALSE: unrelated {i} ~ ref {f.reference}: {f.verdict}")
    w = np.array(worst)
    print(
        f"\nunrelated {len(u_sets)}: false matches keypoints {false_kp} (of which parts {parts}), "
        f"PDQ plain {false_pdq}; most inliers {w.max()} (MIN_INLIERS {MIN_INLIERS}), "
        f"p99 {np.percentile(w, 99):.0f}, count >= 8: {(w >= 8).sum()}"
    )

    _timings(index, queries, seed, limit)
    if args.compare_mih:
        _compare(sets, queries[: args.compare_mih], seed)
    if args.scale:
        _scaled(sets[args.references :], queries, args.scale, seed)


def _p50(samples: list[float]) -> str:
    return f"{1000 * statistics.median(samples):.1f} ms"


def _match_seconds(index: KeypointIndex, queries: list[tuple[KeypointSet, ...]]) -> list[float]:
    """Seconds `index` takes to match each query, one at a time."""
    seconds = []
    for query in queries:
        t0 = time.perf_counter()
        index.match(query)
        seconds.append(time.perf_counter() - t0)
    return seconds


def _timings(
    index: KeypointIndex, queries: list[tuple[KeypointSet, ...]], seed: int, limit: int
) -> None:
    photo = qc.seeds("reference")[0].resize((1155, 866), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    hashing, both = [], []
    for _ in range(30):
        t0 = time.perf_counter()
        pair = query_sets(decode(data, max_pixels=MAX_PIXELS).image)
        t1 = time.perf_counter()
        index.match(pair)
        t2 = time.perf_counter()
        hashing.append(t1 - t0)
        both.append(t2 - t0)
    matching = _match_seconds(index, queries)
    print(
        f"\n1 MP JPEG: decode + keypoints (as is and mirrored) p50 {_p50(hashing)}, "
        f"+ match p50 {_p50(both)}"
    )
    print(
        f"match per query (both sets), {len(index):,} references: p50 {_p50(matching)}, "
        f"p90 {1000 * np.percentile(matching, 90):.1f} ms ({len(matching)} queries)"
    )


def _compare(sets: list[KeypointSet], queries: list[tuple[KeypointSet, ...]], seed: int) -> None:
    started = time.perf_counter()
    mih = _index(sets, MihSearch())
    built = time.perf_counter() - started
    print(f"\nMIH built in {built:.0f} s: {mih.nbytes() / len(sets):,.0f} bytes per reference")
    ivf = _index(sets, _ivf(sets, seed))
    times: dict[str, list[float]] = {"ivf": [], "mih": []}
    agree = 0
    for pair in queries:
        results = {}
        for name, idx in (("ivf", ivf), ("mih", mih)):
            t0 = time.perf_counter()
            results[name] = {f.reference for f in idx.match(pair) if f.verdict.matched}
            times[name].append(time.perf_counter() - t0)
        agree += results["ivf"] == results["mih"]
    print(
        f"IVF vs MIH on {len(queries)} queries: p50 {_p50(times['ivf'])} vs {_p50(times['mih'])}; "
        f"same verified references on {agree}"
    )


def _scaled(
    distractors: list[KeypointSet],
    queries: list[tuple[KeypointSet, ...]],
    n: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    sets: list[KeypointSet] = []
    while len(sets) < n:
        for s in distractors:
            if len(sets) == n:
                break
            flips = rng.integers(0, 256, (len(s), 8))
            d = np.unpackbits(s.descriptors, axis=1)
            np.bitwise_xor.at(d, (np.arange(len(s))[:, None], flips), 1)
            sets.append(
                KeypointSet(s.width, s.height, s.x, s.y, s.level, s.angle, np.packbits(d, axis=1))
            )
    started = time.perf_counter()
    index = _index(sets, _ivf(sets, seed))
    print(
        f"\nscaled index of {n:,} references built in {time.perf_counter() - started:.0f} s, "
        f"{index.nbytes() / n:,.0f} bytes per reference"
    )
    matching = _match_seconds(index, queries)
    print(
        f"match per query at {n:,} references: p50 {_p50(matching)}, "
        f"p90 {1000 * np.percentile(matching, 90):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--references", type=int, default=150)
    parser.add_argument("--distractors", type=int, default=10_000)
    parser.add_argument("--unrelated", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--compare-mih", type=int, default=0)
    parser.add_argument("--scale", type=int, default=0)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
