"""`hashdb remote`: a member's commands against a consortium server, through hashdb.client.

`hashdb match`, `add` and `sync` work on this machine's database, as its operator.
`hashdb remote match|contribute|feedback|export --url URL` instead call a hashdb
server's API as one member, with that member's key, which comes only from the
`HASHDB_API_KEY` environment variable or the file `HASHDB_API_KEY_FILE` names: a
key on a command line would show in the process list. Files given to `match` and
`contribute` are uploaded for the server to hash (its keypoint set too);
`TYPE:HEX` arguments are sent as hashes, in batches of the server's size, and
`keypoints:BASE64` (a set `hashdb hash` printed) as a keypoint set: contributed as
it is, looked up without a mirrored set (it cannot be derived from the set; a lookup
that should find mirrored copies uploads the picture, or sends both sets through
hashdb.client). `--threshold` applies to the hashes that take one. A keypoints
match is printed with the keypoints found in agreement and the share of the stored
picture shown. `-` reads standard input
(hashdb/cli/inputs.py): `TYPE:HEX` lines are hashes, anything else one image or
video, uploaded as a file named `-` in the output. Retries, idempotency keys and errors
are the client's (hashdb/client.py); errors exit as every command's do (2: the
server refused, or no key; 3: no answer), and a file the server refuses is
reported on its own line with exit 1 once the rest is done.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import click

from hashdb.cli.common import EXIT_PARTIAL, OUTPUT, Output, any_failed
from hashdb.cli.inputs import BadArg, FileArg, HashArg, arguments, upload_limit
from hashdb.client import Client, Contribution, Match, RemoteError
from hashdb.consortium import NewHash
from hashdb.consortium.export import MAX_LIMIT, FeedPage
from hashdb.errors import HashdbError, InvalidInput
from hashdb.keypoints.codec import KeypointSet
from hashdb.settings import load_settings
from hashdb.signals import SIGNAL_TYPES

# Refusals that concern one uploaded file, not the whole run.
_FILE_REFUSALS = frozenset({400, 413, 415, 422})

URL = click.option(
    "--url", required=True, help="Base URL of the consortium server, http(s)://host[:port]."
)
INPUTS = click.argument("inputs", nargs=-1, required=True)


@click.group()
def remote() -> None:
    """Talk to a consortium server as a member (key: HASHDB_API_KEY or HASHDB_API_KEY_FILE)."""


def _wire(item: HashArg) -> tuple[str, str]:
    """The hash as the API takes it: its type and its text (hex, or base64)."""
    return item.signal_type.name, item.canonical


def _file_error(item: FileArg, exc: RemoteError) -> dict[str, Any]:
    if exc.status not in _FILE_REFUSALS:
        raise exc
    return {"input": item.name, "error": exc.message}


def _match_row(name: str, matches: list[Match], low_quality: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"input": name, "matches": [asdict(m) for m in matches]}
    if low_quality:
        row["low_quality"] = low_quality
    return row


@remote.command("match")
@URL
@INPUTS
@click.option("--threshold", type=click.IntRange(0, 256), help="Distance threshold for hashes.")
@OUTPUT
def match(url: str, inputs: tuple[str, ...], threshold: int | None, out: Output) -> None:
    """Match image or video files, folders or hashes (TYPE:HEX) on the server.

    `-` reads standard input: TYPE:HEX lines, or one image or video."""
    rows: dict[int, dict[str, Any]] = {}
    with arguments(inputs, upload_limit(inputs)) as items, Client(url) as client:
        hashes = [(i, arg) for i, arg in enumerate(items) if isinstance(arg, HashArg)]
        results = client.match([_wire(h) for _, h in hashes], threshold) if hashes else []
        for (i, arg), result in zip(hashes, results, strict=True):
            low = [result.signal_type] if result.low_quality else []
            rows[i] = _match_row(arg.text, list(result.matches), low)
            if result.videos:
                rows[i]["videos"] = [asdict(v) for v in result.videos]
        for i, item in enumerate(items):
            if isinstance(item, BadArg):
                rows[i] = {"input": item.text, "error": item.message}
            elif isinstance(item, FileArg):
                try:
                    media = client.match_media(item.path)
                except RemoteError as exc:
                    rows[i] = _file_error(item, exc)
                    continue
                found = [m for r in media.results for m in r.matches]
                low = [r.signal_type for r in media.results if r.low_quality]
                rows[i] = _match_row(item.name, found, low)
                if media.kind == "video":
                    rows[i]["videos"] = [asdict(v) for v in media.videos]
    ordered = [rows[i] for i in range(len(rows))]
    _errors(ordered, out)
    out.result(ordered, lambda: _match_text(ordered))
    if any_failed(ordered):
        sys.exit(EXIT_PARTIAL)


def _errors(rows: list[dict[str, Any]], out: Output) -> None:
    """Each failed input on stderr (with --json they are in the result instead)."""
    if not out.as_json:
        for row in rows:
            if "error" in row:
                out.error(f"{row['input']}: error: {row['error']}")


def _match_text(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        if "error" not in row:
            videos = row.get("videos")
            extra = f", {len(videos)} video(s)" if videos is not None else ""
            yield f"{row['input']}: {len(row['matches'])} match(es){extra}"
            for m in row["matches"]:
                labels = ",".join(m["labels"]) or "-"
                yield f"  #{m['id']} {_how_close(m)} {m['status']} labels {labels}"
            for v in videos or ():
                yield (
                    f"  video #{v['id']} query {v['query_share']:.0%} "
                    f"reference {v['reference_share']:.0%}"
                )


def _how_close(match: dict[str, Any]) -> str:
    if match["inliers"] is None:
        return f"distance {match['distance']}"
    return f"{match['inliers']} keypoints agree, {match['share']:.0%} of it shown"


@remote.command("contribute")
@URL
@INPUTS
@click.option("--label", "labels", multiple=True, help="Label for every hash (repeatable).")
@click.option("--reference", help="Free-text reference (a case number, a source).")
@click.option(
    "--hash-only",
    is_flag=True,
    help="Hash images here and send their hashes only (with their keypoint set and stored "
    "variants, as an upload would store them); the files never leave this machine.",
)
@OUTPUT
def contribute(
    url: str,
    inputs: tuple[str, ...],
    labels: tuple[str, ...],
    reference: str | None,
    hash_only: bool,
    out: Output,
) -> None:
    """Contribute image or video files, folders or hashes (TYPE:HEX) to the server.

    `-` reads standard input: TYPE:HEX lines, or one image or video."""
    rows: dict[int, dict[str, Any]] = {}
    max_pixels = load_settings().max_image_pixels if hash_only else 0
    with arguments(inputs, upload_limit(inputs)) as items, Client(url) as client:
        hashes = [(i, arg) for i, arg in enumerate(items) if isinstance(arg, HashArg)]
        added = (
            client.contribute([_wire(h) for _, h in hashes], labels, reference) if hashes else []
        )
        for (i, arg), a in zip(hashes, added, strict=True):
            rows[i] = {"input": arg.text, "added": [asdict(a)]}
        for i, item in enumerate(items):
            if isinstance(item, BadArg):
                rows[i] = {"input": item.text, "error": item.message}
            elif isinstance(item, FileArg) and hash_only:
                rows[i] = _contribute_hashes_of(client, item, labels, reference, max_pixels)
            elif isinstance(item, FileArg):
                try:
                    media = client.contribute_media(item.path, labels, reference)
                except RemoteError as exc:
                    rows[i] = _file_error(item, exc)
                    continue
                rows[i] = {"input": item.name, "added": [asdict(a) for a in media.added]}
                if media.low_quality:
                    rows[i]["low_quality"] = True
    ordered = [rows[i] for i in range(len(rows))]
    _errors(ordered, out)
    out.result(ordered, lambda: _contributed_text(ordered))
    if any_failed(ordered):
        sys.exit(EXIT_PARTIAL)


def _contribute_hashes_of(
    client: Client,
    item: FileArg,
    labels: tuple[str, ...],
    reference: str | None,
    max_pixels: int,
) -> dict[str, Any]:
    """Hash an image file here (of at most `max_pixels`), as the server hashes an
    upload (ingest/records.py: its hashes, keypoint set and stored variants), and
    contribute the hashes alone."""
    from ingest.records import image_contributions, usable_perceptual
    from ingest.video import is_video

    if is_video(item.path):
        return {
            "input": item.name,
            "error": "a video is contributed as a file: drop --hash-only",
        }
    try:
        h, rows = image_contributions(item.path.read_bytes(), (), reference, max_pixels=max_pixels)
    except HashdbError as exc:
        return {"input": item.name, "error": exc.message}
    except OSError as exc:
        return {"input": item.name, "error": f"cannot read: {exc.strerror or exc}"}
    try:
        added = client.contribute([contribution(r) for r in rows], labels, reference)
    except RemoteError as exc:
        return _file_error(item, exc)
    row: dict[str, Any] = {"input": item.name, "added": [asdict(a) for a in added]}
    if not usable_perceptual(h):
        row["low_quality"] = True
    return row


def contribution(row: NewHash) -> Contribution:
    """A row to store as the API takes it: hex (a keypoint set: its base64 text), with
    the PDQ row's stored variants."""
    signal = SIGNAL_TYPES[row.signal_type]
    if row.keypoint_set is not None:
        return Contribution(row.signal_type, KeypointSet.from_bytes(row.keypoint_set).to_text())
    return Contribution(
        row.signal_type,
        signal.format(row.value),
        quality=row.quality,
        variants=tuple((v.kind, signal.format(v.value), v.quality or 0) for v in row.variants),
    )


def _contributed_text(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        if "error" not in row:
            ids = ", ".join(
                f"{a['signal_type']}#{a['id']}{'' if a['created'] else ' (already added)'}"
                for a in row["added"]
            )
            note = " (low quality: only the digests)" if row.get("low_quality") else ""
            yield f"{row['input']}: {ids}{note}"


@remote.command("feedback")
@URL
@click.argument("hash_id", type=click.IntRange(1))
@click.argument("kind", type=click.Choice(["agree", "disagree", "false_positive"]))
@click.option(
    "--reason",
    type=click.Choice(["not_terrorist_content", "wrong_label", "low_quality"]),
    help="Why you disagree (required with disagree).",
)
@click.option(
    "--content", help="With false_positive: the hash (TYPE:HEX) of your content that matched."
)
@click.option("--note", help="Free text.")
@OUTPUT
def feedback(
    url: str,
    hash_id: int,
    kind: str,
    reason: str | None,
    content: str | None,
    note: str | None,
    out: Output,
) -> None:
    """Say whether a match of hash HASH_ID was right."""
    wrong: tuple[str, str] | None = None
    if content is not None:
        name, sep, value = content.partition(":")
        if not sep or not value:
            raise InvalidInput("--content must be TYPE:HEX", field="--content")
        wrong = (name, value)
    with Client(url) as client:
        given = client.feedback(hash_id, kind, reason=reason, content=wrong, note=note)
    disputed = "; the hash is now disputed" if given.disputed else ""
    out.result(
        asdict(given),
        [
            f"feedback #{given.id} on hash #{given.hash_id}: {given.kind} "
            f"({given.disagreeing_members} member(s) disagreeing){disputed}"
        ],
    )


@remote.command("export")
@URL
@click.option("--since", type=click.IntRange(0), default=0, show_default=True, help="Cursor.")
@click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), default=1000, show_default=True, help="Page size."
)
@click.option("--follow", is_flag=True, help="Read on page after page while there is more.")
@click.option("--label", "labels", multiple=True, help="Only hashes with this label (repeatable).")
@click.option("--signal-type", "signal_types", multiple=True, help="Only this type (repeatable).")
@OUTPUT
def export(
    url: str,
    since: int,
    limit: int,
    follow: bool,
    labels: tuple[str, ...],
    signal_types: tuple[str, ...],
    out: Output,
) -> None:
    """Read the export feed after cursor --since: one page, or all of it with --follow.

    With --json, one JSON object per page (entries, cursor, more, epoch, head), one
    per line. Otherwise one line per entry and a last line with the cursor to resume
    from, whether there is more, and the epoch the cursor belongs to.
    """
    with Client(url) as client:
        if follow:
            pages: Iterator[FeedPage] = client.follow(
                since, limit, labels=labels, signal_types=signal_types
            )
        else:
            pages = iter([client.export(since, limit, labels=labels, signal_types=signal_types)])
        last: FeedPage | None = None
        for page in pages:
            last = page
            _print_page(page, out)
    if last is not None:
        more = "more follows" if last.more else "up to date"
        out.say(f"cursor {last.cursor} ({more}); epoch {last.epoch}")


def _print_page(page: FeedPage, out: Output) -> None:
    if out.as_json:
        click.echo(json.dumps(page.to_json(), separators=(",", ":")))
        return
    for e in page.entries:
        labels = ",".join(e.labels) or "-"
        out.say(f"{e.seq} {e.op.value} #{e.id} {e.signal_type} {e.value or '-'} {labels}")
