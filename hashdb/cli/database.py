"""`hashdb init`, `hashdb add` and `hashdb match`: the database from the command line.

`add` and `match` take images and videos as the API's `/v1/media` and
`/v1/match/media` do, hashed in this process (no sandbox: the files are the
operator's own) under the same limits (HASHDB_MAX_IMAGE_PIXELS,
HASHDB_MAX_DECODED_BYTES, HASHDB_VIDEO_MAX_SECONDS, HASHDB_VIDEO_MAX_FRAMES):

- an image added stores its hashes and its stored variants; an image matched is
  probed as the API and the console probe it (its content region, and with
  `--dihedral` its rotations and flips: `api.uploads.lookup_probes`);
- a video added is hashed at 1 frame per second and stored as one vpdq hash plus
  its digests, refused if a limit cut it short; a video matched is hashed at every
  frame and answered with the stored videos it matches: both shares, the matched
  time ranges and the offset, as the API answers them.

`-` among the inputs reads standard input (hashdb/cli/inputs.py): `TYPE:HEX`
lines are hashes, anything else one image or video, named `-` in the output.

Every match goes through the consortium's matching use case (threshold caps and
the per-request budget, HASHDB_MAX_REQUEST_COST); the command line has no key, so
it spends no key's budget and its matches are not counted for any member.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from hashdb.budget import check_threshold
from hashdb.cli.common import (
    EXIT_PARTIAL,
    OUTPUT,
    Output,
    acting,
    any_failed,
    open_db,
    progress,
)
from hashdb.cli.inputs import BadArg, FileArg, HashArg, arguments
from hashdb.consortium import (
    Actor,
    Added,
    Consortium,
    NewHash,
    Query,
    QueryResult,
    VideoMatch,
)
from hashdb.consortium.schema import migrate as migrate_schema
from hashdb.errors import HashdbError, InvalidInput
from hashdb.settings import Settings, load_settings
from hashdb.signals import MD5, PDQ, SHA256, SIGNAL_TYPES
from hashdb.signals.pdq_dihedral import dihedral_probes
from hashdb.signals.vpdq import VPDQ


@click.command()
@click.option("--admin-name", default="admin", show_default=True, help="Name of the first admin.")
@OUTPUT
def init(admin_name: str, out: Output) -> None:
    """Create or upgrade the database; create a first admin and print its key once.

    With --json: {"database": URL, "admin": NAME, "key": SECRET}, admin and key null
    when an admin existed already. With --quiet the key is not shown: an operator
    can still make another admin with `hashdb members add NAME --role admin`.
    """
    migrate_schema(load_settings())  # the same use case as `hashdb migrate`
    db = open_db()
    try:
        new_key = db.members.ensure_first_admin(admin_name)
        url = make_url(db.settings.resolved_database_url()).render_as_string(hide_password=True)
    finally:
        db.close()
    lines = [f"database ready: {url}"]
    if new_key is None:
        lines.append("an admin member already exists; no new key issued")
    else:
        lines.append(f"first admin key (shown once, keep it safe): {new_key.secret}")
    out.result(
        {
            "database": url,
            "admin": None if new_key is None else admin_name,
            "key": None if new_key is None else new_key.secret,
        },
        lines,
    )


def _file_error(name: str, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, HashdbError):
        return {"input": name, "error": exc.message, "code": exc.code}
    return {"input": name, "error": f"cannot read: {exc}", "code": "io_error"}


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--label", "labels", multiple=True, help="Label for every hash added (repeatable).")
@click.option("--reference", help="Free-text source reference (default: the file name).")
@click.option("--as", "as_member", help="Member to add as (default: the first admin).")
@OUTPUT
def add(
    inputs: tuple[str, ...],
    labels: tuple[str, ...],
    reference: str | None,
    as_member: str | None,
    out: Output,
) -> None:
    """Add image or video files, folders or hashes (TYPE:HEX) to the database.

    `-` reads standard input: TYPE:HEX lines, or one image or video."""
    db = open_db()
    try:
        actor = acting(db, as_member)
        db.contributions.check_labels([labels])  # shared by every input: refuse up front
        rows: list[dict[str, Any]] = []
        with arguments(inputs, db.settings.max_upload_bytes) as items:
            for item in progress(items, "adding", out.human):
                if isinstance(item, BadArg):
                    rows.append({"input": item.text, "error": item.message})
                elif isinstance(item, HashArg):
                    new = [item.new_hash(labels, reference)]
                    rows.append(_added(db, actor, item.text, new))
                else:
                    rows.append(_add_file(db, actor, item, labels, reference))
        _print_added(rows, out)
    finally:
        db.close()
    if any_failed(rows):
        sys.exit(EXIT_PARTIAL)


def _add_file(
    db: Consortium, actor: Actor, item: FileArg, labels: tuple[str, ...], given: str | None
) -> dict[str, Any]:
    """Hash one file (an image or a video) and store it, or the error that stopped it.
    Its reference is the one given, else the file's name (none for standard input)."""
    from api.video import REFERENCE_RATE, complete_reference, limits
    from ingest.records import contributions, usable_perceptual, video_contributions
    from ingest.sandbox import image_with_variants
    from ingest.video import REFERENCE_KEYFRAMES, hash_video_file

    settings = db.settings
    path, name = item.path, item.name
    reference = given if given is not None else (path.name if name == str(path) else None)
    if _is_video(path):
        try:
            v = complete_reference(
                hash_video_file(
                    path,
                    frames_per_second=REFERENCE_RATE,
                    limits=limits(settings),
                    keyframes=REFERENCE_KEYFRAMES,
                )
            )
        except (HashdbError, OSError) as exc:
            return _file_error(name, exc)
        video, digests = video_contributions(v, labels, reference)
        if not video.frames:  # nothing matchable in it: the digests still identify the file
            row = _added(db, actor, name, digests)
            row["warning"] = "no frame of pdq quality >= 50: only digests added"
            return row
        try:
            results = db.contributions.add_video(actor, video, digests)
        except InvalidInput as exc:
            return {"input": name, "error": exc.message}
        return _added_row(name, [VPDQ.name, *(d.signal_type for d in digests)], results)
    try:
        h, variants = image_with_variants(path.read_bytes(), **_image_limits(settings))
    except (HashdbError, OSError) as exc:
        return _file_error(name, exc)
    row = _added(db, actor, name, contributions(h, labels, reference, variants))
    if not usable_perceptual(h):
        row["warning"] = f"pdq quality {h.pdq_quality} < 50: only digests added"
    return row


def _is_video(path: Path) -> bool:
    """Whether the file is a video container (False if it cannot be read: reading it
    as an image then reports why)."""
    from ingest.video import is_video

    try:
        return is_video(path)
    except OSError:
        return False


def _image_limits(settings: Settings) -> dict[str, int]:
    """The decoding limits an upload is hashed under, for a file hashed here."""
    return {
        "max_pixels": settings.max_image_pixels,
        "max_decoded_bytes": settings.max_decoded_bytes,
    }


def _added(db: Consortium, actor: Actor, name: str, items: list[NewHash]) -> dict[str, Any]:
    try:
        results = db.contributions.add(actor, items)
    except InvalidInput as exc:
        return {"input": name, "error": exc.message}
    return _added_row(name, [i.signal_type for i in items], results)


def _added_row(name: str, signal_types: list[str], results: list[Added]) -> dict[str, Any]:
    return {
        "input": name,
        "added": [
            {"signal_type": t, "id": r.id, "new": r.created}
            for t, r in zip(signal_types, results, strict=True)
        ],
    }


def _print_added(rows: list[dict[str, Any]], out: Output) -> None:
    if out.as_json:
        out.result(rows)
        return
    for row in rows:
        if "error" in row:
            out.error(f"{row['input']}: error: {row['error']}")
            continue
        parts = [
            f"{a['signal_type']}#{a['id']}{'' if a['new'] else ' (already)'}" for a in row["added"]
        ]
        out.say(f"{row['input']}: " + ", ".join(parts))
        if "warning" in row:
            out.warn(f"  warning: {row['warning']}")


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--threshold",
    type=click.IntRange(0, 128),
    help="PDQ distance threshold, for images and each video frame (default 31).",
)
@click.option("--dihedral", is_flag=True, help="Also try the 8 rotations/flips of each image.")
@OUTPUT
def match(inputs: tuple[str, ...], threshold: int | None, dihedral: bool, out: Output) -> None:
    """Match image or video files, folders or hashes (TYPE:HEX) against the database.

    `-` reads standard input: TYPE:HEX lines, or one image or video."""
    db = open_db()
    try:
        check_threshold(db.settings, PDQ, threshold, "--threshold")
        rows: list[dict[str, Any]] = []
        with arguments(inputs, db.settings.max_upload_bytes) as items:
            for item in progress(items, "matching", out.human):
                if isinstance(item, BadArg):
                    rows.append({"input": item.text, "error": item.message})
                elif isinstance(item, HashArg):
                    is_pdq = item.signal_type is PDQ
                    variants = dihedral_probes(item.value) if is_pdq and dihedral else ()
                    pdq_threshold = threshold if is_pdq else None
                    qs = [item.query(pdq_threshold, variants)]
                    rows.append(_matched(item.text, db.matching.match(None, qs)))
                else:
                    rows.append(_match_file(db, item, threshold, dihedral))
        _print_matched(rows, out)
    finally:
        db.close()
    if any_failed(rows):
        sys.exit(EXIT_PARTIAL)


def _match_file(
    db: Consortium, item: FileArg, threshold: int | None, dihedral: bool
) -> dict[str, Any]:
    """Hash one file (an image or a video) as the API would and match it."""
    from api.uploads import lookup_probes
    from api.video import limits, video_match, video_query
    from ingest.sandbox import probed_image
    from ingest.video import EVERY_FRAME, QUERY_KEYFRAMES, hash_video_file
    from ingest.video_regions import ProbeSet

    settings = db.settings
    path, name = item.path, item.name
    if not _is_video(path):
        try:
            probed = probed_image(
                path.read_bytes(), lookup_probes(dihedral), **_image_limits(settings)
            )
        except (HashdbError, OSError) as exc:
            return _file_error(name, exc)
        return _matched(name, db.matching.match(None, probed.queries(pdq_threshold=threshold)))
    try:
        v = hash_video_file(
            path,
            frames_per_second=EVERY_FRAME,
            limits=limits(settings),
            probes=ProbeSet.QUERY,
            keyframes=QUERY_KEYFRAMES,
        )
    except (HashdbError, OSError) as exc:
        return _file_error(name, exc)
    digests = [Query(MD5, v.md5), Query(SHA256, v.sha256)]
    answer = db.matching.answer(None, digests, [video_query(v, threshold)])
    row = _matched(name, answer.results)
    row["video"] = {
        "duration": v.duration,
        "frames": len(v.frames),
        "low_quality_frames": v.low_quality_frames,
        "complete": v.complete,
        "ended_by": v.ended_by.value,
    }
    (found,) = answer.videos
    row["videos"] = [_video_row(video_match(m).model_dump(mode="json"), m) for m in found]
    return row


def _video_row(shaped: dict[str, Any], m: VideoMatch) -> dict[str, Any]:
    """A matched video as the API shapes it, with the reference the CLI shows."""
    return {**shaped, "reference": m.record.reference}


def _matched(name: str, results: list[QueryResult]) -> dict[str, Any]:
    matches = []
    for result in results:
        for m in result.matches:
            signal = SIGNAL_TYPES[m.record.signal_type]
            matches.append(
                {
                    "id": m.record.id,
                    "signal_type": signal.name,
                    "value": signal.format(m.record.value),
                    "distance": m.distance,
                    "via": None
                    if m.via is None
                    else {"probe": m.via.probe, "stored": m.via.stored},
                    "variant": m.how,
                    "labels": list(m.record.labels),
                    "reference": m.record.reference,
                }
            )
    low = [r.query.signal_type.name for r in results if r.low_quality]
    row: dict[str, Any] = {"input": name, "matches": matches}
    if low:
        row["low_quality"] = low
    return row


def _span(ranges: list[dict[str, float]]) -> str:
    return ", ".join(f"{r['start']:.1f}-{r['end']:.1f}s" for r in ranges) or "-"


def _print_matched(rows: list[dict[str, Any]], out: Output) -> None:
    if out.as_json:
        out.result(rows)
        return
    for row in rows:
        if "error" in row:
            out.error(f"{row['input']}: error: {row['error']}")
            continue
        if out.quiet:
            continue
        note = " (low quality: perceptual hashes not matched)" if row.get("low_quality") else ""
        videos = row.get("videos")
        found = f", {len(videos)} video(s)" if videos is not None else ""
        click.echo(f"{row['input']}: {len(row['matches'])} match(es){found}{note}")
        video = row.get("video")
        if video is not None and not video["complete"]:
            out.warn(f"  only part of the video was hashed ({video['ended_by']})")
        for m in row["matches"]:
            how = f" via {m['variant']}" if m["variant"] else ""
            labels = ",".join(m["labels"]) or "-"
            click.echo(
                f"  {m['signal_type']}#{m['id']} distance {m['distance']}{how} labels {labels}"
                f" ({m['reference'] or 'no reference'})"
            )
        for v in videos or ():
            labels = ",".join(v["labels"]) or "-"
            offset = "-" if v["offset"] is None else f"{v['offset']:+.1f}s"
            click.echo(
                f"  vpdq#{v['id']} query {v['query_share']:.0%} reference "
                f"{v['reference_share']:.0%} offset {offset} labels {labels}"
                f" ({v['reference'] or 'no reference'})\n"
                f"    here {_span(v['query_ranges'])}; in stored {_span(v['reference_ranges'])}"
            )
