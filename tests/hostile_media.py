"""Hostile uploads, made on the spot: the corpus behind tests/test_hostile_input.py.

Every generator is a pure function returning the bytes of one file (nothing is
checked in), small enough to upload and cheap to make. Each item stands for
something a careless tool or an attacker sends: a transport stream cut and
concatenated (timestamps restart half-way), a resolution switch mid-stream,
images whose header or compressed chunks promise far more than their size
(decompression bombs), a 10,000-frame GIF, files cut short of every supported
type, files that are not what their name says, and a video whose container claims
an absurd duration and frame size. The clean originals (`valid_images`, `ts_clip`)
also seed the fuzz test's mutations.

`corpus()` gives them all, by name, with the file name an upload would carry.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from media_factory import detailed_image


@dataclass(frozen=True)
class Item:
    name: str  # the test id
    filename: str  # the name the upload carries
    data: bytes


# --- video -----------------------------------------------------------------------------


def ts_clip(
    *, seconds: int = 2, fps: int = 30, width: int = 160, height: int = 120, seed: int = 0
) -> bytes:
    """An H.264 MPEG-TS clip with B-frames whose picture changes every frame.

    Each frame is a detailed picture (`media_factory.detailed_image`) scrolled by
    its frame number, so every frame hashes differently and well above quality 50.
    """
    side = max(width, height) + seconds * fps
    base = np.asarray(detailed_image(seed, side), dtype=np.uint8)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=fps, options={"bf": "3", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(seconds * fps):
            picture = np.ascontiguousarray(base[n : n + height, n : n + width])
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def restarted_timestamps() -> bytes:
    """`cat a.ts a.ts`: the second half's timestamps start again from the first's."""
    clip = ts_clip()
    return clip + clip


def resolution_switch() -> bytes:
    """Two clips of different sizes concatenated as TS (160x120, then 128x96)."""
    return ts_clip() + ts_clip(width=128, height=96, seed=1)


def mp4_clip(*, frames: int = 20, size: int = 64) -> bytes:
    """A short MPEG-4 Part 2 MP4 (the index, `moov`, after the data)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for n in range(frames):
            picture = np.asarray(detailed_image(n, size), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def absurd_mkv() -> bytes:
    """A Matroska video whose header claims 30000 x 30000 frames lasting ten years.

    The real stream is ten 320 x 256 frames. The header's Duration (an 8-byte float
    of milliseconds) and PixelWidth / PixelHeight (2-byte integers) are patched in
    place; FFmpeg takes the frame size from the bitstream, the duration from the
    header.
    """
    width, height = 320, 256
    picture = np.asarray(detailed_image(3, width), dtype=np.uint8)[:height]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for n in range(10):
            shifted = np.ascontiguousarray(np.roll(picture, 8 * n, axis=1))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(shifted, format="rgb24")))
        container.mux(stream.encode(None))
    out = bytearray(buffer.getvalue())
    for element, value in ((b"\xb0\x82", width), (b"\xba\x82", height)):
        at = out.find(element + struct.pack(">H", value))
        assert at > 0, element
        struct.pack_into(">H", out, at + 2, 30000)
    duration = out.find(b"\x44\x89\x88")
    assert duration > 0
    struct.pack_into(">d", out, duration + 3, 10 * 365 * 86400 * 1000.0)
    return bytes(out)


# --- images ----------------------------------------------------------------------------


def valid_images() -> dict[str, bytes]:
    """A small detailed picture in each supported image format, by file suffix."""
    picture = detailed_image(7, 64)
    out = {}
    for suffix, format_name in (
        ("jpg", "JPEG"),
        ("png", "PNG"),
        ("gif", "GIF"),
        ("webp", "WEBP"),
        ("bmp", "BMP"),
        ("tiff", "TIFF"),
    ):
        buffer = io.BytesIO()
        picture.save(buffer, format_name)
        out[suffix] = buffer.getvalue()
    return out


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, bit_depth: int, colour_type: int, *chunks: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + b"".join(chunks)


_PIECE = 1 << 20


def _zeros_deflated(size: int) -> bytes:
    """A zlib stream of `size` zero bytes, made without deflating them all.

    A block flushed with Z_FULL_FLUSH refers to nothing before it, so one block of
    a MiB of zeros, repeated, inflates to that many MiB; the stream ends with an
    empty final block and the Adler-32 of the zeros (A stays 1, B counts bytes).
    """
    head, block = _full_flush_block(_PIECE)
    _, rest = _full_flush_block(size % _PIECE)
    adler = (size % 65521) << 16 | 1
    return head + block * (size // _PIECE) + rest + b"\x03\x00" + struct.pack(">I", adler)


def _full_flush_block(size: int) -> tuple[bytes, bytes]:
    """The zlib header, and a self-contained deflate block of `size` zeros."""
    compressor = zlib.compressobj(9)
    out = compressor.compress(bytes(size)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return out[:2], out[2:]


def png_16bit_bomb() -> bytes:
    """10000 x 10000 16-bit RGBA (800 MB of pixels, 100 M of them) in well under 1 MB."""
    side = 10_000
    row = 1 + side * 8  # filter byte, then 4 channels of 2 bytes
    return _png(side, side, 16, 6, _png_chunk(b"IDAT", _zeros_deflated(row * side)),
                _png_chunk(b"IEND", b""))  # fmt: skip


def _tiny_png(*extra: bytes) -> bytes:
    """A valid 8 x 8 grey PNG, with `extra` chunks before its pixels."""
    pixels = zlib.compress(b"".join(b"\x00" + bytes(range(k, k + 8)) for k in range(8)))
    idat = _png_chunk(b"IDAT", pixels)
    return _png(8, 8, 8, 0, *extra, idat, _png_chunk(b"IEND", b""))


def png_ztxt_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates to 256 MB of text."""
    return _tiny_png(_png_chunk(b"zTXt", b"Comment\x00\x00" + _zeros_deflated(256 << 20)))


def png_iccp_bomb() -> bytes:
    """A small PNG with an iCCP (colour profile) chunk that inflates to 256 MB."""
    return _tiny_png(_png_chunk(b"iCCP", b"icc\x00\x00" + _zeros_deflated(256 << 20)))


def gif_10000_frames() -> bytes:
    """An animated GIF of 10,000 2 x 2 frames, each colour differing from the last.

    Written by hand (Pillow takes seconds): each frame's LZW data sends a clear
    code before every pixel, so the code width stays at 3 bits.
    """
    screen = struct.pack("<HHBBB", 2, 2, 0x81, 0, 0)  # a global table of 4 colours
    palette = bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    frames = []
    for n in range(10_000):
        colour = n % 4
        codes = [4, colour] * 4 + [5]  # clear, pixel, ..., end of information
        bits = sum(code << (3 * k) for k, code in enumerate(codes))
        control = b"\x21\xf9\x04\x04" + struct.pack("<H", 1) + b"\x00\x00"
        descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, 2, 2, 0)
        frames.append(control + descriptor + b"\x02\x04" + bits.to_bytes(4, "little") + b"\x00")
    return b"GIF89a" + screen + palette + b"".join(frames) + b"\x3b"


# --- the corpus --------------------------------------------------------------------------

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + struct.pack("<HHI", 2, 62, 1) + bytes(200)

_GENERATED: dict[str, tuple[str, Callable[[], bytes]]] = {
    "ts-restarted-timestamps": ("restarted.ts", restarted_timestamps),
    "ts-resolution-switch": ("switch.ts", resolution_switch),
    "mkv-absurd-duration-and-size": ("absurd.mkv", absurd_mkv),
    "png-16bit-bomb": ("bomb.png", png_16bit_bomb),
    "png-ztxt-bomb": ("ztxt.png", png_ztxt_bomb),
    "png-iccp-bomb": ("iccp.png", png_iccp_bomb),
    "gif-10000-frames": ("frames.gif", gif_10000_frames),
}


def corpus() -> list[Item]:
    """Every hostile item, in a stable order."""
    items = [Item(name, filename, make()) for name, (filename, make) in _GENERATED.items()]
    originals = {**valid_images(), "mp4": mp4_clip(), "ts": ts_clip(seconds=1)}
    for suffix, data in originals.items():
        for share in (2, 4):  # cut at a half (mid-data) and a quarter (often mid-header)
            items.append(Item(f"truncated-{suffix}-1/{share}", f"cut.{suffix}",
                              data[: len(data) // share]))  # fmt: skip
    items += [
        Item("pdf-named-jpg", "document.jpg", PDF),
        Item("elf-named-jpg", "program.jpg", ELF),
        Item("text-named-jpg", "notes.jpg", b"just some text, no picture here\n" * 20),
    ]
    return items
