"""Numeric kernels of the multi-index hashing index, compiled with numba.

Why numba: the candidate stage is a loop of data-dependent table probes and a
32-byte popcount per candidate, with a branch per candidate. Vectorised numpy needs
several full passes over every candidate array (expand ranges, gather codes, xor,
count, filter, deduplicate) and a Python round trip per batch; a compiled loop
touches each candidate once. Every kernel releases the GIL (`nogil=True`), so the
index runs a batch on several threads and queries proceed while a refresher thread
adds or removes. Kernels are cached on disk (`cache=True`): the first import on a
machine compiles for a few seconds, later ones load in milliseconds.

Two search kernels share the layout: `search` probes the stored tables per query
(PROBE in `mih.py`), `join` streams stored codes through tables of a batch of queries
(`query_tables`; JOIN), and `group_hits` puts the join's pairs in `search`'s order.

Layout (internal, see `mih.py`): a code is `words = bits // 64` uint64s after a fixed
bit permutation; substring (chunk) j is bits [16j, 16j + 16), that is
`(code[j // 4] >> (16 * (j % 4))) & 0xFFFF`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

CHUNK_BITS = 16
BUCKETS = 1 << CHUNK_BITS
# Stored rows per pass of `join` over the tables (512 KB of PDQ codes). A block is
# read from memory once and from L2 for each table; a table's query entries (about
# 240 KB at 2,000 queries, 16 tables do not fit L2 together) are fetched again for
# every block, so larger blocks fetch them less often; past this size the gain
# levels off (docs/measurements.md, "Index and kernels").
JOIN_BLOCK = 16384
# Hits ahead whose query entries `join` prefetches, so that they arrive before the
# walk reaches them (docs/measurements.md, "Index and kernels").
PREFETCH_HITS = 24
# Candidates ahead whose codes `search` prefetches while it verifies (PROBE): enough
# random reads in flight to cover memory latency, few enough that each code is still
# in L1 when its turn comes (docs/measurements.md, "Index and kernels").
PREFETCH_ROWS = 32
ROWS_PER_LINE, TAGS_PER_LINE = 16, 64  # table entries per 64-byte cache line
# A table entry carries, beside its row, the low TAG_BITS bits of the row's sibling
# substring (chunk j ^ 1 for table j), so PROBE drops most candidates on one
# popcount without reading their codes (`search`; why no match is lost: layout.py).
TAG_BITS = 8
TAG_MASK = (1 << TAG_BITS) - 1
GROUPS = BUCKETS // 64  # 64-bucket groups of a `query_tables` occupancy bitmap
QUERY_SHIFT = 18  # a `query_tables` entry: query << 18 | own distance << 16 | sibling
JOIN_QUERIES = 1 << (32 - QUERY_SHIFT)  # queries per `query_tables` (entries are uint32)


@intrinsic
def _popcount(typingctx: Any, x: Any) -> Any:
    """LLVM's ctpop: one POPCNT instruction on x86-64. Typed int64, so that sums and
    comparisons with thresholds stay integer (numba turns uint64 + int64 into float)."""
    sig = types.int64(types.uint64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """LLVM's prefetch of `array[index]` (1-D) into all cache levels, for reading."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        array_value = context.make_array(array_type)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, array_type, array_value, [args[1]], wraparound=False
        )
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, fnty, "llvm.prefetch.p0"
        )
        flags = [ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)]
        builder.call(fn, [builder.bitcast(ptr, byte_ptr), *flags])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@njit(nogil=True, cache=True)
def permute(codes: Any, table: Any, words: int) -> Any:  # pragma: no cover - compiled
    """Bytes (n, nbytes) -> permuted uint64 words (n, words): OR of per-byte masks."""
    n, nbytes = codes.shape
    out = np.zeros((n, words), dtype=np.uint64)
    for r in range(n):
        for i in range(nbytes):
            v = codes[r, i]
            for w in range(words):
                out[r, w] |= table[i, v, w]
    return out


@njit(nogil=True, cache=True)
def build_table(  # pragma: no cover - compiled
    codes: Any, chunk: int, offsets: Any, rows: Any, tags: Any
) -> None:
    """Counting sort of rows by the value of `chunk`: bucket v is
    rows[offsets[v]:offsets[v + 1]], rows ascending inside a bucket, and beside each
    row its tag for this table (`tag_of`)."""
    n = codes.shape[0]
    word = chunk >> 2
    shift = np.uint64((chunk & 3) * CHUNK_BITS)
    mask = np.uint64(BUCKETS - 1)
    counts = np.zeros(BUCKETS + 1, dtype=np.int64)
    for r in range(n):
        counts[((codes[r, word] >> shift) & mask) + 1] += 1
    for v in range(BUCKETS):
        counts[v + 1] += counts[v]
    for v in range(BUCKETS + 1):
        offsets[v] = counts[v]
    for r in range(n):
        key = (codes[r, word] >> shift) & mask
        rows[counts[key]] = r
        tags[counts[key]] = _tag(codes, r, chunk)
        counts[key] += 1


@njit(inline="always")
def _tag(codes: Any, r: int, chunk: int) -> Any:  # pragma: no cover
    sibling = chunk ^ 1
    shift = np.uint64((sibling & 3) * CHUNK_BITS)
    return np.uint8((codes[r, sibling >> 2] >> shift) & np.uint64(TAG_MASK))


@njit(nogil=True, cache=True)
def tag_of(codes: Any, rows: Any, tags: Any) -> None:  # pragma: no cover - compiled
    """Fill `tags` (m, n) uint8 beside tables `rows` (m, n): the tag of table j's
    entry for row r is the low `TAG_BITS` bits of r's sibling substring j ^ 1.
    `build_table` fills tags as it sorts; this is for tables saved without them."""
    for j in range(rows.shape[0]):
        for s in range(rows.shape[1]):
            tags[j, s] = _tag(codes, rows[j, s], j)


@njit(inline="always")
def _distance(q: Any, codes: Any, r: int, words: int) -> int:  # pragma: no cover
    d = 0
    for w in range(words):
        d += _popcount(q[w] ^ codes[r, w])  # type: ignore[call-arg]
    return d


@njit(inline="always")
def _chunk_distance(q: Any, codes: Any, r: int, chunk: int) -> int:  # pragma: no cover
    shift = np.uint64((chunk & 3) * CHUNK_BITS)
    x = ((q[chunk >> 2] ^ codes[r, chunk >> 2]) >> shift) & np.uint64(BUCKETS - 1)
    return int(_popcount(x))  # type: ignore[call-arg]


@njit(nogil=True)
def _grow(ids: Any, dists: Any, size: int) -> Any:  # pragma: no cover
    new_ids = np.empty(max(2 * len(ids), size), dtype=np.int64)
    new_dists = np.empty(len(new_ids), dtype=np.int32)
    new_ids[: len(ids)] = ids
    new_dists[: len(dists)] = dists
    return new_ids, new_dists


@njit(nogil=True)
def _sort_hits(ids: Any, dists: Any, start: int, stop: int) -> None:  # pragma: no cover
    """Sort hits[start:stop] by (distance, id) in place."""
    k = stop - start
    if k < 2:
        return
    if k <= 32:  # insertion sort: hit lists are short
        for a in range(start + 1, stop):
            i, d = ids[a], dists[a]
            b = a - 1
            while b >= start and (dists[b] > d or (dists[b] == d and ids[b] > i)):
                ids[b + 1], dists[b + 1] = ids[b], dists[b]
                b -= 1
            ids[b + 1], dists[b + 1] = i, d
        return
    seg_ids = ids[start:stop].copy()
    seg_dists = dists[start:stop].copy()
    by_id = np.argsort(seg_ids, kind="mergesort")
    order = by_id[np.argsort(seg_dists[by_id], kind="mergesort")]
    for a in range(k):
        ids[start + a] = seg_ids[order[a]]
        dists[start + a] = seg_dists[order[a]]


@njit(nogil=True)
def _scan(  # pragma: no cover - compiled
    q: Any,
    threshold: int,
    codes: Any,
    ids: Any,
    live: Any,
    size: int,
    out_ids: Any,
    out_dists: Any,
    h: int,
) -> Any:
    start = 0
    while True:
        start, h = _scan_until_full(
            q, threshold, codes, ids, live, start, size, out_ids, out_dists, h
        )
        if start == size:
            return out_ids, out_dists, h
        out_ids, out_dists = _grow(out_ids, out_dists, h + 1)


@njit(nogil=True)
def _scan_until_full(  # pragma: no cover - compiled
    q: Any,
    threshold: int,
    codes: Any,
    ids: Any,
    live: Any,
    start: int,
    size: int,
    out_ids: Any,
    out_dists: Any,
    h: int,
) -> tuple[int, int]:
    """`_scan` from row `start` until the output is full: (the row it stopped at, or
    `size`, and the new hit count). The loop never replaces its output arrays: in a
    loop that may reassign an array, numba counts references on every iteration, which
    made scans many times slower (docs/measurements.md, "Index and kernels")."""
    words = codes.shape[1]
    for r in range(start, size):
        if live[r]:
            d = _distance(q, codes, r, words)
            if d <= threshold:
                if h == len(out_ids):
                    return r, h
                out_ids[h] = ids[r]
                out_dists[h] = d
                h += 1
    return size, h


@njit(inline="always")
def _candidates(  # pragma: no cover - compiled
    q: Any,
    offsets: Any,
    rows: Any,
    tags: Any,
    radii: Any,
    flips: Any,
    flips_upto: Any,
    probe_lo: Any,
    probe_hi: Any,
) -> int:
    """The bucket of every probe of query `q` as a range of `rows` (flat: table j's
    row s is j * n + s), prefetching each bucket (rows and tags) so that `_gather`
    finds them in cache; returns the candidate count."""
    n = rows.shape[1]
    flat_rows = rows.reshape(rows.shape[0] * n)
    flat_tags = tags.reshape(tags.shape[0] * n)
    p = k = 0
    for j in range(offsets.shape[0]):
        key = (q[j >> 2] >> np.uint64((j & 3) * CHUNK_BITS)) & np.uint64(BUCKETS - 1)
        for f in range(flips_upto[radii[j]]):
            probe = key ^ flips[f]
            lo, hi = offsets[j, probe], offsets[j, probe + 1]
            if hi > lo:  # every line of the bucket: its misses overlap with the others'
                for s in range(j * n + lo, j * n + hi, ROWS_PER_LINE):
                    _prefetch(flat_rows, s)  # type: ignore[call-arg]
                _prefetch(flat_rows, j * n + hi - 1)  # type: ignore[call-arg]
                for s in range(j * n + lo, j * n + hi, TAGS_PER_LINE):
                    _prefetch(flat_tags, s)
                _prefetch(flat_tags, j * n + hi - 1)
            probe_lo[p] = j * n + lo
            probe_hi[p] = j * n + hi
            k += hi - lo
            p += 1
    return k


@njit(nogil=True)
def _gather(  # pragma: no cover - compiled
    q: Any,
    rows: Any,
    tags: Any,
    radii: Any,
    flips: Any,
    flips_upto: Any,
    probe_lo: Any,
    probe_hi: Any,
    table_ends: Any,
    cand_rows: Any,
) -> int:
    """The rows of the probed buckets (`_candidates`) whose tag passes the sibling
    filter, concatenated in probe order; `table_ends` is rewritten for them. Returns
    their count."""
    chunks, n = rows.shape
    flat_rows = rows.reshape(chunks * n)
    flat_tags = tags.reshape(chunks * n)
    k = p = 0
    for j in range(chunks):
        sibling = j ^ 1
        shift = np.uint64((sibling & 3) * CHUNK_BITS)
        tag = (q[sibling >> 2] >> shift) & np.uint64(TAG_MASK)
        pair = radii[j] + radii[sibling] + 1
        for f in range(flips_upto[radii[j]]):
            limit = pair - _popcount(flips[f])  # type: ignore[call-arg]
            for s in range(probe_lo[p], probe_hi[p]):
                cand_rows[k] = flat_rows[s]  # kept only if the filter passes: branch-free
                k += _popcount(np.uint64(flat_tags[s]) ^ tag) <= limit
            p += 1
        table_ends[j] = k
    return k


@njit(inline="always")
def _passes_tag(q: Any, codes: Any, r: int, j: int, radii: Any) -> bool:  # pragma: no cover
    """Whether row r is a candidate of table j that passes its tag filter (`search`)."""
    own = _chunk_distance(q, codes, r, j)
    if own > radii[j]:
        return False
    sibling = j ^ 1
    shift = np.uint64((sibling & 3) * CHUNK_BITS)
    x = ((q[sibling >> 2] ^ codes[r, sibling >> 2]) >> shift) & np.uint64(TAG_MASK)
    passes: bool = own + _popcount(x) <= radii[j] + radii[sibling] + 1  # type: ignore[call-arg]
    return passes


@njit(nogil=True)
def _verify(  # pragma: no cover - compiled
    q: Any,
    threshold: int,
    codes: Any,
    ids: Any,
    live: Any,
    radii: Any,
    cand_rows: Any,
    table_ends: Any,
    out_ids: Any,
    out_dists: Any,
    h: int,
) -> int:
    """Append the candidates (`_gather`) within `threshold` to the output (which has
    room for all of them); returns the new hit count.

    A software pipeline: the code of the candidate PREFETCH_ROWS ahead is requested
    now, so that many random reads are in flight at once and each code arrives in L1
    just before it is compared. A row is reported from the first table whose filter
    keeps it only."""
    words = codes.shape[1]
    flat_codes = codes.reshape(codes.shape[0] * words)
    k = table_ends[-1]
    start = 0
    for j in range(len(table_ends)):
        stop = table_ends[j]
        for c in range(start, stop):
            if c + PREFETCH_ROWS < k:
                _prefetch(flat_codes, cand_rows[c + PREFETCH_ROWS] * words)  # type: ignore[call-arg]
            r = cand_rows[c]
            d = _distance(q, codes, r, words)
            if d > threshold or not live[r]:
                continue
            seen = False
            for jj in range(j):
                if _passes_tag(q, codes, r, jj, radii):
                    seen = True
                    break
            if not seen:
                out_ids[h] = ids[r]
                out_dists[h] = d
                h += 1
        start = stop
    return h


@njit(nogil=True, cache=True)
def search(  # pragma: no cover - compiled
    queries: Any,
    threshold: int,
    use_tables: bool,
    codes: Any,
    ids: Any,
    live: Any,
    offsets: Any,
    rows: Any,
    tags: Any,
    radii: Any,
    flips: Any,
    flips_upto: Any,
    a_codes: Any,
    a_ids: Any,
    a_live: Any,
    a_size: int,
    b_codes: Any,
    b_ids: Any,
    b_live: Any,
    b_size: int,
) -> Any:
    """Every live stored code within `threshold` of each query.

    The base segment (`codes`, `ids`, `live`, tables `offsets`/`rows`) is searched
    through its tables when `use_tables`, else scanned; two unindexed buffers
    (`a_*`, `b_*`, their first `*_size` rows) are scanned. Returns
    (lims, ids, distances): query i's hits are [lims[i], lims[i + 1]), sorted by
    (distance, id).
    """
    nq = queries.shape[0]
    chunks = offsets.shape[0]
    lims = np.zeros(nq + 1, dtype=np.int64)
    out_ids = np.empty(1024, dtype=np.int64)
    out_dists = np.empty(1024, dtype=np.int32)
    probes = 0
    for j in range(chunks):
        probes += flips_upto[radii[j]]
    probe_lo = np.empty(probes, dtype=np.int64)
    probe_hi = np.empty(probes, dtype=np.int64)
    table_ends = np.empty(chunks, dtype=np.int64)
    cand_rows = np.empty(16384, dtype=np.int32)
    h = 0
    for qi in range(nq):
        q = queries[qi]
        if use_tables:
            k = _candidates(q, offsets, rows, tags, radii, flips, flips_upto, probe_lo, probe_hi)
            if k > len(cand_rows):
                cand_rows = np.empty(max(k, 2 * len(cand_rows)), dtype=np.int32)
            k = _gather(
                q, rows, tags, radii, flips, flips_upto, probe_lo, probe_hi, table_ends, cand_rows
            )
            if h + k > len(out_ids):  # room for every candidate: no growth in the loop
                out_ids, out_dists = _grow(out_ids, out_dists, h + k)
            h = _verify(
                q, threshold, codes, ids, live, radii, cand_rows, table_ends, out_ids, out_dists, h
            )
        else:
            out_ids, out_dists, h = _scan(
                q, threshold, codes, ids, live, codes.shape[0], out_ids, out_dists, h
            )
        out_ids, out_dists, h = _scan(
            q, threshold, a_codes, a_ids, a_live, a_size, out_ids, out_dists, h
        )
        out_ids, out_dists, h = _scan(
            q, threshold, b_codes, b_ids, b_live, b_size, out_ids, out_dists, h
        )
        _sort_hits(out_ids, out_dists, lims[qi], h)
        lims[qi + 1] = h
    return lims, out_ids[:h], out_dists[:h]


@njit(inline="always")
def _chunk(code: Any, chunk: int) -> Any:  # pragma: no cover
    return (code[chunk >> 2] >> np.uint64((chunk & 3) * CHUNK_BITS)) & np.uint64(BUCKETS - 1)


def query_tables(queries: Any, radii: Any, flips: Any, flips_upto: Any) -> Any:
    """Tables over a batch of at most `JOIN_QUERIES` queries, each query filed under
    every key within its table's radius, in a rank-indexed form (`join` reads it).

    Table j: bit v % 64 of `bits[j, v // 64]` says whether bucket v holds queries; an
    occupied bucket's slot is `rank[j, v // 64]` plus the occupied buckets before it
    in its 64-bucket group, and its entries are `entries[starts[slot]:starts[slot + 1]]`
    (slots are global across tables, each table's in a range of its own that ends
    with a sentinel slot). An entry is query index << QUERY_SHIFT | min(own, 3) << 16
    | the query's sibling substring (j ^ 1), where own is the key's distance from the
    query's own substring j.

    Returns the empty arrays; `file_tables` fills them, a range of tables per call, so
    that threads can share the work (each table's slots and entries have a fixed
    place)."""
    nq, chunks = queries.shape[0], radii.shape[0]
    keys = flips_upto[radii]
    slots = int(np.minimum(BUCKETS, nq * keys).sum()) + chunks
    return (
        np.zeros((chunks, GROUPS), dtype=np.uint64),
        np.zeros((chunks, GROUPS), dtype=np.int32),
        np.empty(slots, dtype=np.int32),
        np.empty(int(nq * keys.sum()), dtype=np.uint32),
    )


@njit(nogil=True, cache=True)
def file_tables(  # pragma: no cover - compiled
    queries: Any,
    radii: Any,
    flips: Any,
    flips_upto: Any,
    first: int,
    last: int,
    bits: Any,
    rank: Any,
    starts: Any,
    entries: Any,
) -> None:
    """Fill tables [first, last) of `query_tables`' arrays."""
    nq = queries.shape[0]
    s = e = 0  # where table `first`'s slots and entries start
    for j in range(first):
        s += min(BUCKETS, nq * flips_upto[radii[j]]) + 1
        e += nq * flips_upto[radii[j]]
    counts = np.empty(BUCKETS, dtype=np.int32)
    for j in range(first, last):
        keys = flips_upto[radii[j]]
        counts[:] = 0
        for qi in range(nq):
            key = _chunk(queries[qi], j)
            for f in range(keys):
                counts[key ^ flips[f]] += 1
        end = s + min(BUCKETS, nq * keys) + 1  # the next table's first slot
        for g in range(GROUPS):
            rank[j, g] = s
            occupied = np.uint64(0)
            for v in range(g * 64, g * 64 + 64):
                if counts[v]:
                    occupied |= np.uint64(1) << np.uint64(v & 63)
                    starts[s] = e
                    e += counts[v]
                    counts[v] = starts[s]  # from here on: the bucket's fill cursor
                    s += 1
            bits[j, g] = occupied
        starts[s] = e
        s = end
        for qi in range(nq):
            q = queries[qi]
            key = _chunk(q, j)
            entry = np.uint32((qi << QUERY_SHIFT) | _chunk(q, j ^ 1))
            for f in range(keys):
                probe = key ^ flips[f]
                own = np.uint32(min(_popcount(flips[f]), 3))  # type: ignore[call-arg]
                entries[counts[probe]] = entry | (own << np.uint32(16))
                counts[probe] += 1


@njit(inline="always")
def _passes(
    q: Any, code: Any, j: int, radii: Any, pair_radii: Any, word_radii: Any
) -> bool:  # pragma: no cover
    """Whether table j's filters accept the pair (see `join`)."""
    own: int = _popcount(_chunk(q, j) ^ _chunk(code, j))  # type: ignore[call-arg]
    if own > radii[j]:
        return False
    if own + _popcount(_chunk(q, j ^ 1) ^ _chunk(code, j ^ 1)) > pair_radii[j >> 1]:
        return False
    word: bool = _popcount(q[j >> 2] ^ code[j >> 2]) <= word_radii[j >> 2]
    return word


@njit(nogil=True, cache=True)
def join(  # pragma: no cover - compiled
    queries: Any,
    threshold: int,
    codes: Any,
    ids: Any,
    live: Any,
    lo: int,
    hi: int,
    bits: Any,
    rank: Any,
    starts: Any,
    entries: Any,
    radii: Any,
    pair_radii: Any,
    word_radii: Any,
) -> Any:
    """Every (query, live stored row in [lo, hi)) pair within `threshold`, found by
    streaming the stored codes through the batch's `query_tables`, a block of rows
    at a time so that one table and the block stay in cache together.

    Per block and table, three passes: (1) branch-free over the rows, the occupancy
    bit of each row's bucket (an 8 KB bitmap, in L1) and its slot; (2) branch-free
    over the rows that hit, their entry ranges (independent loads that overlap);
    (3) over those ranges, the sibling filter, then the full codes.

    A pair met in table j is verified only if its 32-bit substring j // 2 is within
    `pair_radii` (own distance + sibling distance) and its word j // 4 within
    `word_radii` (see `layout.py` for why this loses no match), and reported only
    from the first table that accepts it.
    Returns (query index int32, id int64, distance int32) arrays, unordered.
    """
    words = codes.shape[1]
    chunks = bits.shape[0]
    mask = np.uint64(BUCKETS - 1)
    one = np.uint64(1)
    out_q = np.empty(1024, dtype=np.int32)
    out_ids = np.empty(1024, dtype=np.int64)
    out_dists = np.empty(1024, dtype=np.int32)
    hit_rows = np.empty(JOIN_BLOCK, dtype=np.int64)
    hit_slots = np.empty(JOIN_BLOCK, dtype=np.int64)
    hit_lo = np.empty(JOIN_BLOCK, dtype=np.int64)
    hit_hi = np.empty(JOIN_BLOCK, dtype=np.int64)
    pend_q = np.empty(JOIN_BLOCK, dtype=np.int64)  # pairs within the threshold, to report
    pend_rows = np.empty(JOIN_BLOCK, dtype=np.int64)
    pend_tables = np.empty(JOIN_BLOCK, dtype=np.int64)
    pend_dists = np.empty(JOIN_BLOCK, dtype=np.int32)
    h = p = 0
    for start in range(lo, hi, JOIN_BLOCK):
        stop = min(hi, start + JOIN_BLOCK)
        for j in range(chunks):
            occupied = bits[j]
            ranks = rank[j]
            word = j >> 2
            shift = np.uint64((j & 3) * CHUNK_BITS)
            sibling_word = (j ^ 1) >> 2
            sibling_shift = np.uint64(((j ^ 1) & 3) * CHUNK_BITS)
            limit = np.int64(pair_radii[j >> 1])
            # Pass 1: the rows whose bucket holds queries, and the bucket's slot.
            k = 0
            for r in range(start, stop):
                key = (codes[r, word] >> shift) & mask
                group = key >> np.uint64(6)
                bit = key & np.uint64(63)
                below = occupied[group] & ((one << bit) - one)
                hit_rows[k] = r
                hit_slots[k] = ranks[group] + _popcount(below)  # type: ignore[call-arg]
                k += np.int64((occupied[group] >> bit) & one)
            # Pass 2: their entry ranges.
            for c in range(k):
                hit_lo[c] = starts[hit_slots[c]]
                hit_hi[c] = starts[hit_slots[c] + 1]
            # Pass 3: filter on the sibling substring, then verify the survivors.
            for c in range(k):
                if c + PREFETCH_HITS < k:  # the entries are in L2 or further: ask early
                    _prefetch(entries, hit_lo[c + PREFETCH_HITS])  # type: ignore[call-arg]
                r = hit_rows[c]
                sibling = (codes[r, sibling_word] >> sibling_shift) & mask
                for e in range(hit_lo[c], hit_hi[c]):
                    entry = np.uint64(entries[e])
                    own = np.int64((entry >> np.uint64(16)) & np.uint64(3))
                    if own + _popcount((entry ^ sibling) & mask) > limit:  # type: ignore[call-arg]
                        continue
                    qi = np.int64(entry >> np.uint64(QUERY_SHIFT))
                    d = 0
                    for w in range(words):
                        d += _popcount(queries[qi, w] ^ codes[r, w])
                    if d > threshold or not live[r]:
                        continue
                    if p == len(pend_q):
                        out_q, out_ids, out_dists, h = _report(
                            pend_q,
                            pend_rows,
                            pend_tables,
                            pend_dists,
                            p,
                            queries,
                            codes,
                            ids,
                            radii,
                            pair_radii,
                            word_radii,
                            out_q,
                            out_ids,
                            out_dists,
                            h,
                        )
                        p = 0
                    pend_q[p], pend_rows[p], pend_tables[p], pend_dists[p] = qi, r, j, d
                    p += 1
    out_q, out_ids, out_dists, h = _report(
        pend_q,
        pend_rows,
        pend_tables,
        pend_dists,
        p,
        queries,
        codes,
        ids,
        radii,
        pair_radii,
        word_radii,
        out_q,
        out_ids,
        out_dists,
        h,
    )
    return out_q[:h], out_ids[:h], out_dists[:h]


@njit(nogil=True)
def _report(  # pragma: no cover - compiled
    pend_q: Any,
    pend_rows: Any,
    pend_tables: Any,
    pend_dists: Any,
    p: int,
    queries: Any,
    codes: Any,
    ids: Any,
    radii: Any,
    pair_radii: Any,
    word_radii: Any,
    out_q: Any,
    out_ids: Any,
    out_dists: Any,
    h: int,
) -> Any:
    """Append the pending pairs within the threshold that their table accepts and no
    earlier table does (each pair is reported once)."""
    for i in range(p):
        q, r, j = queries[pend_q[i]], pend_rows[i], pend_tables[i]
        code = codes[r]
        if not _passes(q, code, j, radii, pair_radii, word_radii):
            continue
        seen = False
        for jj in range(j):
            if _passes(q, code, jj, radii, pair_radii, word_radii):
                seen = True
                break
        if seen:
            continue
        if h == len(out_q):
            grown = np.empty(2 * h, dtype=np.int32)
            grown[:h] = out_q
            out_q = grown
            out_ids, out_dists = _grow(out_ids, out_dists, h + 1)
        out_q[h] = pend_q[i]
        out_ids[h] = ids[r]
        out_dists[h] = pend_dists[i]
        h += 1
    return out_q, out_ids, out_dists, h


@njit(nogil=True, cache=True)
def group_hits(nq: int, qidx: Any, ids: Any, dists: Any) -> Any:  # pragma: no cover
    """(query, id, distance) triples -> (lims, ids, distances) as `search` returns."""
    lims = np.zeros(nq + 1, dtype=np.int64)
    for i in range(len(qidx)):
        lims[qidx[i] + 1] += 1
    for q in range(nq):
        lims[q + 1] += lims[q]
    cursor = lims[:nq].copy()
    out_ids = np.empty(len(qidx), dtype=np.int64)
    out_dists = np.empty(len(qidx), dtype=np.int32)
    for i in range(len(qidx)):
        p = cursor[qidx[i]]
        out_ids[p] = ids[i]
        out_dists[p] = dists[i]
        cursor[qidx[i]] += 1
    for q in range(nq):
        _sort_hits(out_ids, out_dists, lims[q], lims[q + 1])
    return lims, out_ids, out_dists
