"""A picture of a hash, for when there is no picture of the content.

The console never holds members' media: contributions arrive as hashes (or as an
upload hashed and then discarded), so the review queue cannot show a thumbnail of
the content itself. It shows the hash instead: the bits of a PDQ hash (256) or a
pHash (64) as a square grid, row by row in the hash's hex order, dark for 1. Two
hashes a few bits apart look nearly the same, which is what a reviewer comparing a
contribution with its similar hashes needs to see. Digests (MD5, SHA-256) have no
meaningful picture and get none.
"""

from __future__ import annotations

from markupsafe import Markup

GRIDDED = {"pdq": 16, "phash": 8}  # side of the grid, bits = side * side


def bit_grid(signal_type: str, value: bytes, *, size: int = 64, label: str = "") -> Markup:
    """An inline SVG of the hash's bits, or an empty Markup for a digest."""
    side = GRIDDED.get(signal_type)
    if side is None or len(value) * 8 != side * side:
        return Markup("")
    bits = int.from_bytes(value, "big")
    total = side * side
    cells = []
    for i in range(total):
        if bits >> (total - 1 - i) & 1:
            y, x = divmod(i, side)
            cells.append(f"M{x} {y}h1v1h-1z")
    return Markup(
        '<svg class="bits" role="img" width="{size}" height="{size}" '
        'viewBox="0 0 {side} {side}" xmlns="http://www.w3.org/2000/svg">'
        '<title>{title}</title><rect width="{side}" height="{side}" class="bits-off"/>'
        '<path class="bits-on" d="{path}"/></svg>'
    ).format(size=size, side=side, title=label or f"{signal_type} hash bits", path="".join(cells))
