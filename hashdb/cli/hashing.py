"""`hashdb hash`: print the hashes of image and video files, without touching the database.

An image is decoded once and printed with its PDQ hash (and quality), pHash,
digests and keypoint set: `keypoints`, the base64 text of the set a stored picture
keeps (`ingest.keypoints.keypoints`, at most 128 keypoints: the one the server
computes from an upload), which `hashdb add`, `hashdb match` and `hashdb remote`
take back as `keypoints:BASE64`, and `keypoints_count`, how many it holds (the
stored row's quality; below `KEYPOINTS.min_quality` too few to match on).

A video is hashed as `hashdb add` stores it (1 frame per second, under the same
limits as an upload) and printed with its digests and its frames as vPDQ text.
`-` reads standard input (hashdb/cli/inputs.py): media bytes are hashed as a file
named `-`; a list of `TYPE:HEX` lines is checked and printed back in canonical
form (type name and lower-case hex, a keypoint set's base64), each bad line
reported, so a list can be validated before it is added or matched.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from hashdb.cli.common import EXIT_PARTIAL, OUTPUT, Output, any_failed, progress
from hashdb.cli.inputs import BadArg, FileArg, HashArg, Item, arguments, upload_limit, walk
from hashdb.errors import HashdbError
from hashdb.settings import load_settings
from hashdb.signals import KEYPOINTS, MD5, PDQ, PHASH, SHA256
from hashdb.signals.vpdq import format_frames


def describe_file(path: Path, name: str | None = None) -> dict[str, Any]:
    """The hashes of one file as JSON-ready fields, or {'error': ...}; `name` is what
    the output calls it (default: the path)."""
    from ingest.decode import decode
    from ingest.image import DEFAULT_MAX_PIXELS, hash_decoded
    from ingest.keypoints import keypoints
    from ingest.video import is_video

    shown = str(path) if name is None else name
    try:
        if is_video(path):
            return {**_describe_video(path), "file": shown}
        data = path.read_bytes()
        decoded = decode(data, max_pixels=DEFAULT_MAX_PIXELS)
        h = hash_decoded(data, decoded)
        kps = keypoints(decoded.image)
    except HashdbError as exc:
        return {"file": shown, "error": exc.message, "code": exc.code}
    except OSError as exc:
        return {"file": shown, "error": f"cannot read: {exc.strerror}", "code": "io_error"}
    return {
        "file": shown,
        "pdq": PDQ.format(h.pdq),
        "pdq_quality": h.pdq_quality,
        "phash": PHASH.format(h.phash),
        "md5": MD5.format(h.md5),
        "sha256": SHA256.format(h.sha256),
        "keypoints": kps.to_text(),
        "keypoints_count": len(kps),
        "width": h.width,
        "height": h.height,
    }


def _describe_video(path: Path) -> dict[str, Any]:
    from api.video import REFERENCE_RATE, limits
    from ingest.records import video_frames
    from ingest.video import hash_video_file

    v = hash_video_file(path, frames_per_second=REFERENCE_RATE, limits=limits(load_settings()))
    return {
        "file": str(path),
        "md5": MD5.format(v.md5),
        "sha256": SHA256.format(v.sha256),
        "duration": v.duration,
        "width": v.width,
        "height": v.height,
        "complete": v.complete,
        "vpdq": format_frames(video_frames(v)),
    }


def describe_hash(item: HashArg | BadArg) -> dict[str, Any]:
    """A hash given as text, checked and written in canonical form, or {'error': ...}."""
    if isinstance(item, BadArg):
        return {"hash": item.text, "error": item.message, "code": "invalid_input"}
    signal = item.signal_type
    return {"hash": f"{signal.name}:{item.canonical}", "signal_type": signal.name}


def _describe(item: Item) -> dict[str, Any]:
    return describe_file(item.path, item.name) if isinstance(item, FileArg) else describe_hash(item)


@click.command("hash")
@click.argument("paths", nargs=-1, required=True)
@OUTPUT
def hash_files(paths: tuple[str, ...], out: Output) -> None:
    """Print PDQ (with quality), pHash, MD5, SHA-256 and the keypoint set (base64) of
    image FILES or folders, and the MD5, SHA-256 and vPDQ frames (1 a second) of
    videos. `-` reads standard input: one image or video, or TYPE:HEX lines (checked
    and printed back)."""
    with arguments(paths, upload_limit(paths), expander=_files) as items:
        rows = [_describe(item) for item in progress(items, "hashing", out.human)]
    if not out.as_json:
        for row in rows:
            if "error" in row:
                out.error(f"{row.get('file', row.get('hash'))}: error: {row['error']}")
    out.result(rows, lambda: _text(rows))
    if any_failed(rows):
        sys.exit(EXIT_PARTIAL)


def _files(paths: tuple[str, ...]) -> Iterator[Item]:
    """Every argument but `-` names a file or folder here (one that does not exist is
    reported as a file that cannot be read)."""
    for path in paths:
        yield from (FileArg(f, str(f)) for f in walk(Path(path)))


def _text(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        if "error" in row:
            continue
        if "hash" in row:
            yield row["hash"]
        elif "vpdq" in row:
            frames = len(row["vpdq"].splitlines())
            yield (
                f"{row['file']}\n  video  {row['duration']:.1f} s, {frames} frame(s) hashed"
                f"{'' if row['complete'] else ' (cut short)'}"
                f"\n  md5    {row['md5']}\n  sha256 {row['sha256']}"
            )
        else:
            yield (
                f"{row['file']}\n  pdq    {row['pdq']} (quality {row['pdq_quality']})"
                f"\n  phash  {row['phash']}\n  md5    {row['md5']}\n  sha256 {row['sha256']}"
                f"\n  keypoints {row['keypoints']} ({_count(row['keypoints_count'])})"
            )


def _count(keypoints: int) -> str:
    few = keypoints < (KEYPOINTS.min_quality or 0)
    return f"{keypoints} keypoints{', too few to match on' if few else ''}"
