"""Any Pillow pixel mode to 8-bit RGB or greyscale, the only input the hashers take.

PDQ hashes luminance, Y = 0.299 R + 0.587 G + 0.114 B (the coefficients of Meta's
C++ reference, facebook/ThreatExchange `pdq/cpp/hashing/pdqhashing.cpp`); pHash
(imagehash) converts to Pillow's "L", which uses the same weights. So every mode
only has to become "RGB" or "L" with values 0-255; the hashers do the rest.

Choices, and why:

- **Alpha is dropped, not composited.** The C++ reference reads the first three
  channels of any image that has three or more and ignores the fourth
  (`loadFloatLumaFromCImg` in `pdq/cpp/io/pdqio.cpp`); python-threatexchange hands
  RGBA arrays to pdqhash, which reads channels 0-2. Compositing onto a background
  would make our hash of a transparent PNG disagree with the hash every other
  member computes with Meta's tools. The reference image `pen-and-coaster.png`
  (RGBA) is within 4 bits of the C++ hash this way.
- **Palette images with a transparency entry** go through RGBA first: converting
  "P" straight to "RGB" makes Pillow warn, and the colours are the same.
- **CMYK, YCbCr, HSV, LAB** use Pillow's own conversion to RGB (no ICC colour
  management: the hash is about structure, not colour accuracy).
- **16- and 32-bit greyscale (I;16*, I, F).** Pillow's `convert("L")` clips at 255,
  which turns a 16-bit scan almost white. PDQ's bits do not depend on the scale:
  the DC term is not hashed and every bit compares a DCT coefficient with the
  median, so any increasing linear map of luminance gives the same bits (up to
  8-bit rounding). The scale only moves the quality score, which measures
  gradients on a 0-255 scale, so we pick the scale the data most plausibly uses:
    * I;16, I;16B, I;16L, I;16N: the full 16-bit range, value / 257.
    * I (32-bit signed): values within 0-255 are 8-bit data in a wide container
      (what Pillow's `convert("I")` produces) and are kept; values within
      0-65535 are 16-bit data (TIFF, and 16-bit PNG in older Pillow), / 257;
      anything else is stretched from its minimum to its maximum.
    * F (32-bit float): within [0, 1] is normalised data, x 255; within [0, 255]
      is kept (Pillow's `convert("F")`); anything else is stretched. NaN and
      infinities count as 0.
  A stretched flat image stays flat (quality 0).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from hashdb.errors import UnsupportedMedia

_FLOAT = npt.NDArray[np.float64]


def to_8bit(image: Image.Image) -> Image.Image:
    """`image` as mode "RGB" or "L" (the same object when it already is one)."""
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _deep_grey_to_l(image)
    if mode == "1":
        return image.convert("L")
    if mode in ("LA", "La"):
        return image.getchannel(0)
    if mode == "P" and "transparency" in image.info:
        return image.convert("RGBA").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as exc:  # Pillow has no conversion for this mode
        raise UnsupportedMedia(f"pixel mode {mode!r} is not supported", mode=mode) from exc


def _deep_grey_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    values[~np.isfinite(values)] = 0.0
    if image.mode == "F":
        scaled = _scale_float(values)
    elif image.mode == "I":
        scaled = _scale_int32(values)
    else:  # I;16 and its byte orders
        scaled = values / 257.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _scale_int32(values: _FLOAT) -> _FLOAT:
    low, high = _range(values)
    if low >= 0 and high <= 255:
        return values
    if low >= 0 and high <= 65535:
        return values / 257.0
    return _stretch(values, low, high)


def _scale_float(values: _FLOAT) -> _FLOAT:
    low, high = _range(values)
    if low >= 0 and high <= 1:
        return values * 255.0
    if low >= 0 and high <= 255:
        return values
    return _stretch(values, low, high)


def _range(values: _FLOAT) -> tuple[float, float]:
    if values.size == 0:
        return 0.0, 0.0
    return float(values.min()), float(values.max())


def _stretch(values: _FLOAT, low: float, high: float) -> _FLOAT:
    if high <= low:
        return np.zeros_like(values)
    return (values - low) * (255.0 / (high - low))
