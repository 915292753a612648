"""`hashdb hash`: print the hashes of image and video files, without touching the database.

A video is hashed as `hashdb add` stores it (1 frame per second, under the same
limits as an upload) and printed with its digests and its frames as vPDQ text.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hashdb.cli.common import EXIT_PARTIAL, any_failed, emit_json, progress
from hashdb.cli.inputs import walk
from hashdb.errors import HashdbError
from hashdb.settings import load_settings
from hashdb.signals import MD5, PDQ, PHASH, SHA256
from hashdb.signals.vpdq import format_frames


def describe_file(path: Path) -> dict[str, Any]:
    """The hashes of one file as JSON-ready fields, or {'error': ...}."""
    from ingest.image import hash_image_file
    from ingest.video import is_video

    try:
        if is_video(path):
            return _describe_video(path)
        h = hash_image_file(path)
    except HashdbError as exc:
        return {"file": str(path), "error": exc.message, "code": exc.code}
    except OSError as exc:
        return {"file": str(path), "error": f"cannot read: {exc.strerror}", "code": "io_error"}
    return {
        "file": str(path),
        "pdq": PDQ.format(h.pdq),
        "pdq_quality": h.pdq_quality,
        "phash": PHASH.format(h.phash),
        "md5": MD5.format(h.md5),
        "sha256": SHA256.format(h.sha256),
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


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def hash_files(paths: tuple[Path, ...], as_json: bool) -> None:
    """Print PDQ (with quality), pHash, MD5 and SHA-256 of image FILES or folders, and
    the MD5, SHA-256 and vPDQ frames (1 a second) of videos."""
    files = [f for p in paths for f in walk(p)]
    rows = [describe_file(f) for f in progress(files, "hashing", not as_json)]
    if as_json:
        emit_json(rows)
    else:
        for row in rows:
            if "error" in row:
                click.echo(f"{row['file']}: error: {row['error']}", err=True)
            elif "vpdq" in row:
                frames = len(row["vpdq"].splitlines())
                click.echo(
                    f"{row['file']}\n  video  {row['duration']:.1f} s, {frames} frame(s) hashed"
                    f"{'' if row['complete'] else ' (cut short)'}"
                    f"\n  md5    {row['md5']}\n  sha256 {row['sha256']}"
                )
            else:
                click.echo(
                    f"{row['file']}\n  pdq    {row['pdq']} (quality {row['pdq_quality']})"
                    f"\n  phash  {row['phash']}\n  md5    {row['md5']}\n  sha256 {row['sha256']}"
                )
    if any_failed(rows):
        sys.exit(EXIT_PARTIAL)
