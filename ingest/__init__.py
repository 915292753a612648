"""Turning files into hashes: image decoding and hashing (PDQ, pHash, MD5, SHA-256).

`ingest.image.hash_image` is the entry point for one image; `ingest.decode` is the
trust boundary (formats, size limits, errors), `ingest.pixels` maps pixel modes to
8-bit RGB or greyscale, `ingest.pdq` wraps Meta's reference PDQ code. `ingest`
depends on `hashdb` (signal types, errors), never the other way round.
"""
