"""A realistic synthetic PDQ corpus for index benchmarks, generated in seconds.

Why not uniform random bits: an index that splits hashes into substrings (multi-index
hashing) is only as fast as its fullest bucket, and real PDQ hashes are far from
uniform. PDQ thresholds the 16x16 lowest (non-DC) DCT coefficients of a 64x64
luminance image at their median, so natural images with large smooth regions,
gradients (sky over ground) and a few objects share many low-frequency sign
patterns, and re-uploads of one picture form tight near-duplicate clusters. Random
bits hide both effects; this generator reproduces them without shipping images.

How a hash is made: each image is a 32x32 luminance picture (nearest-upscaled to the
64x64 PDQ works on) built from a linear gradient in a random direction, one to six
ellipses or rectangles of random intensity, and a 1/f^a multi-octave noise texture of random
strength; about 2% are almost flat (the low-detail images that survive a quality
filter). The hash is the PDQ transform itself, vectorised: D X D^T with PDQ's 16x64
DCT matrix (coefficients 1..16), thresholded at the median, in `pdqhash`'s bit order
(bytes as `np.packbits` of `pdqhash.compute`). For 64x64 grey inputs this equals
`pdqhash.compute` bit for bit (checked on generated images while writing this),
at about 10 us per hash instead of 140 us.

Near-duplicates are made the way platforms see them: the same image after one to
three edits (brightness/contrast, gamma, noise, blur, a one-pixel shift or 5-10%
crop, a logo-like overlay), hashed again. They land 0-60 bits from the original,
mostly under 31.

Corpus shape (`make_corpus`): about 30% of the stored hashes belong to clusters of
near-duplicates (cluster sizes geometric with mean 4, capped at 64), the rest are
distinct images. Queries (`make_queries`): half are fresh edits of stored images
(near-duplicates, most of them matching), half are unrelated new images.
Everything is deterministic in `seed`; images are generated in blocks of 4096 so
memory stays flat at any corpus size. Rendering costs about 180 us per hash on the
2-core development machine (3 minutes per million).

Derived corpora (`make_corpus(n, rendered=k)`), for sizes where rendering every hash
takes too long (10M: half an hour): the first `k` hashes are rendered as above and
the remaining n - k are derived from them, in proportions that keep the corpus
shape. 30% are near-duplicates of a random rendered hash: each bit flipped with
probability d / 256, d drawn from the distances the rendered near-duplicates have to
their sources (real edits flip correlated bits; these flip independent ones). 70% are
"fresh" hashes spliced from four rendered hashes, one 64-bit word (four rows of the
16x16 DCT grid) from each: every word keeps its real bit statistics and the skew of
its substrings, but the correlation between words is lost and a spliced hash is not
exactly balanced. Benchmarks print which kind of corpus they ran on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SIDE = 32  # rendered side; PDQ's 64x64 input is this upscaled 2x (nearest)
BLOCK = 4096
CLUSTER_SHARE = 0.3
CLUSTER_MEAN = 4
CLUSTER_MAX = 64
FLAT_SHARE = 0.02

Images = npt.NDArray[np.float32]
Codes = npt.NDArray[np.uint8]


def _pdq_matrix() -> npt.NDArray[np.float32]:
    """PDQ's 16x64 DCT matrix, folded with the 2x nearest upscale: (16, 32)."""
    i = np.arange(16)[:, None]
    j = np.arange(64)[None, :]
    dct = np.sqrt(2 / 64) * np.cos(np.pi / 128 * (i + 1) * (2 * j + 1))
    return (dct[:, 0::2] + dct[:, 1::2]).astype(np.float32)


_DCT = _pdq_matrix()


def pdq_codes(images: Images) -> Codes:
    """PDQ hashes of (n, 32, 32) luminance images as (n, 32) uint8, pdqhash's order."""
    coeffs = (_DCT @ images @ _DCT.T).reshape(len(images), 256)
    median = np.median(coeffs, axis=1, keepdims=True)
    bits = (coeffs > median)[:, ::-1]
    return np.packbits(bits, axis=1)


def _grid() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    axis = (np.arange(SIDE, dtype=np.float32) + 0.5) / SIDE
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return y, x


def _texture(rng: np.random.Generator, n: int) -> Images:
    """Multi-octave value noise with amplitude ~ 1/f^a (a in 1..2), unit variance."""
    alpha = rng.uniform(1.0, 2.0, size=(n, 1, 1)).astype(np.float32)
    field = np.zeros((n, SIDE, SIDE), dtype=np.float32)
    size = 2
    while size <= SIDE:
        noise = rng.standard_normal((n, size, size), dtype=np.float32)
        up = np.repeat(np.repeat(noise, SIDE // size, axis=1), SIDE // size, axis=2)
        field += up * (size / 2) ** -alpha
        size *= 2
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-6
    return field


def render(rng: np.random.Generator, n: int) -> Images:
    """`n` random natural-looking luminance images, values roughly 0-255."""
    y, x = _grid()
    angle = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
    slope = rng.uniform(0, 120, size=(n, 1, 1)).astype(np.float32)
    img = rng.uniform(40, 200, size=(n, 1, 1)).astype(np.float32) + slope * (
        np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)
    )
    shapes = rng.integers(1, 7, size=n)
    for k in range(6):
        on = (shapes > k)[:, None, None]
        cy, cx = rng.uniform(0, 1, size=(2, n, 1, 1)).astype(np.float32)
        ry, rx = rng.uniform(0.05, 0.4, size=(2, n, 1, 1)).astype(np.float32)
        dy, dx = ((y - cy) / ry) ** 2, ((x - cx) / rx) ** 2
        boxy = rng.random((n, 1, 1)) < 0.5  # |d|^8 for a rounded rectangle, |d|^2 an ellipse
        dy, dx = np.where(boxy, (dy * dy) ** 2, dy), np.where(boxy, (dx * dx) ** 2, dx)
        mask = (dy + dx <= 1) & on
        img = np.where(mask, rng.uniform(0, 255, size=(n, 1, 1)).astype(np.float32), img)
    img = img + rng.uniform(0, 40, size=(n, 1, 1)) * _texture(rng, n)
    flat = rng.random(n) < FLAT_SHARE
    img[flat] = img[flat].mean(axis=(1, 2), keepdims=True) + rng.normal(0, 2, (flat.sum(), 1, 1))
    img[flat] += 0.5 * _texture(rng, int(flat.sum()))
    return np.clip(img, 0, 255).astype(np.float32)


def edit(rng: np.random.Generator, images: Images) -> Images:
    """One to three random everyday edits per image (a re-upload of the same picture)."""
    out = images.copy()
    n = len(out)
    for _ in range(3):
        kind = rng.integers(0, 7, size=n)
        kind[rng.random(n) < 0.35] = -1  # fewer edits for some
        sel = kind == 0  # brightness / contrast
        out[sel] = out[sel] * rng.uniform(0.7, 1.3, (sel.sum(), 1, 1)) + rng.uniform(
            -30, 30, (sel.sum(), 1, 1)
        )
        sel = kind == 1  # gamma
        g = rng.uniform(0.7, 1.4, (sel.sum(), 1, 1))
        out[sel] = 255 * (np.clip(out[sel], 0, 255) / 255) ** g
        sel = kind == 2  # noise (compression, grain)
        out[sel] += rng.normal(0, 4, out[sel].shape).astype(np.float32)
        sel = kind == 3  # blur
        pad = np.pad(out[sel], ((0, 0), (1, 1), (1, 1)), mode="edge")
        out[sel] = (
            sum(pad[:, dy : dy + SIDE, dx : dx + SIDE] for dy in range(3) for dx in range(3)) / 9
        )
        sel = kind == 4  # half-pixel shift (a resize with a different filter)
        out[sel] = (
            out[sel] + np.pad(out[sel], ((0, 0), (0, 0), (1, 0)), mode="edge")[:, :, :-1]
        ) / 2
        sel = kind == 5  # crop about 3% and scale back
        idx = np.linspace(0.5, SIDE - 1.5, SIDE).round().astype(int)
        out[sel] = out[sel][:, idx][:, :, idx]
        sel = kind == 6  # logo-like overlay in a corner
        out[sel, -6:, -10:] = rng.uniform(0, 255, (sel.sum(), 1, 1))
    return np.clip(out, 0, 255).astype(np.float32)


def _cluster_sources(rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
    """For a block of `n` slots, the slot index of each slot's source image."""
    src = np.arange(n)
    pos = 0
    while pos < n:
        if rng.random() < CLUSTER_SHARE / (CLUSTER_SHARE + (1 - CLUSTER_SHARE) * CLUSTER_MEAN):
            size = min(int(rng.geometric(1 / CLUSTER_MEAN)) + 1, CLUSTER_MAX, n - pos)
            src[pos : pos + size] = pos
            pos += size
        else:
            pos += 1
    return src


@dataclass(frozen=True)
class Corpus:
    ids: npt.NDArray[np.int64]
    codes: Codes
    seed: int


def _block(seed: int, block: int, n: int) -> tuple[Images, npt.NDArray[np.int64]]:
    rng = np.random.default_rng([seed, block])
    base = render(rng, n)
    src = _cluster_sources(rng, n)
    images = base[src]
    variant = src != np.arange(n)
    images[variant] = edit(rng, images[variant])
    return images, src


def make_corpus(n: int, seed: int = 0, rendered: int | None = None) -> Corpus:
    """`n` stored PDQ hashes with ids 0..n-1, the first `rendered` (default all)
    rendered and the rest derived from them (see the module docstring)."""
    k = n if rendered is None else max(1, min(n, rendered))
    codes = np.empty((n, 32), dtype=np.uint8)
    edits: list[npt.NDArray[np.int64]] = []
    for b, start in enumerate(range(0, k, BLOCK)):
        size = min(BLOCK, k - start)
        images, src = _block(seed, b, size)
        codes[start : start + size] = block = pdq_codes(images)
        variant = src != np.arange(size)
        xor = block[variant] ^ block[src[variant]]
        edits.append(np.unpackbits(xor, axis=1).sum(axis=1, dtype=np.int64))
    if k < n:
        _derive(codes, k, np.concatenate(edits), np.random.default_rng([seed, 99]))
    return Corpus(np.arange(n, dtype=np.int64), codes, seed)


def _derive(
    codes: Codes, k: int, distances: npt.NDArray[np.int64], rng: np.random.Generator
) -> None:
    """Fill codes[k:] from codes[:k]: near-duplicates and spliced fresh hashes."""
    words = codes.view(np.uint64)  # (n, 4)
    for start in range(k, len(codes), 1 << 16):
        stop = min(len(codes), start + (1 << 16))
        m = stop - start
        near = rng.random(m) < CLUSTER_SHARE
        picks = rng.integers(0, k, size=(m, 4))
        out = words[picks, np.arange(4)]  # spliced: word w from hash picks[:, w]
        source = words[picks[near, 0]]
        d = rng.choice(distances, size=int(near.sum())) if len(distances) else np.zeros(0)
        flips = rng.random((len(source), 256), dtype=np.float32) < (d[:, None] / 256)
        out[near] = source ^ np.packbits(flips, axis=1).view(np.uint64)
        words[start:stop] = out


def make_queries(corpus: Corpus, m: int, seed: int = 1) -> tuple[Codes, npt.NDArray[np.bool_]]:
    """`m` queries: (codes, near) where `near` marks edits of stored images."""
    rng = np.random.default_rng([corpus.seed, seed, 7])
    n = len(corpus.ids)
    near_count = m // 2
    blocks = max(1, min((n + BLOCK - 1) // BLOCK, 8))
    picked: list[Images] = []
    per_block = -(-near_count // blocks)
    for b in range(blocks):
        size = min(BLOCK, n - b * BLOCK)
        images, _ = _block(corpus.seed, b, size)
        picked.append(images[rng.integers(0, size, size=per_block)])
    near = edit(rng, np.concatenate(picked)[:near_count])
    unrelated = render(rng, m - near_count)
    codes = np.concatenate([pdq_codes(near), pdq_codes(unrelated)])
    flags = np.arange(m) < near_count
    order = rng.permutation(m)
    return codes[order], flags[order]
