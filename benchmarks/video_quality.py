"""Do re-edited copies of a reference video match it, and does nothing else?

    .venv/bin/python -m benchmarks.video_quality [--seed N] [--synthetic N] [--seconds S]

References: synthetic clips written with OpenCV (HD 1280x720 and SD 640x480; shots
of 1.5-3 s, each a camera pan and zoom over a window of a photo, or a drawn scene
of moving shapes and text over a smooth colour field), and the sample videos of
../shared/testdata/video (real footage). Every reference is decoded again (as a
re-uploader would have it) and edited, each edit with its own random parameters:

- `regrade`: gamma 0.7-1.4, contrast 0.7-1.3, brightness +-20, saturation 0-1.5
  (0: greyscale), a colour tint of +-10 per channel;
- `logo_small` / `logo_large`: an opaque (or 70-100% opaque) logo of 0.5-2% /
  5-12% of the frame in a random corner, 1-4% from the edges;
- `letterbox` / `pillarbox` / `borders`: the picture scaled into bars of 5-15% of
  the side (each), of a random colour (black, white, grey or any);
- `sd_grey` (HD references only): downscaled to 720x480 or 640x480, fitted with
  bars, greyscale, contrast 0.7-1.3 and brightness +-20; `sd_grey_logo` adds a
  large logo; `hd_pillar` (SD references): upscaled to 1280x720 with pillars;
- combinations: `regrade_letterbox`, `logo_large_regrade`, `borders_logo_small`.

Unrelated clips (other seeds, other photos, drawn scenes, each given one of the
same edits) must match no reference at all. Queries are hashed as the API hashes
them (`ingest.video.EVERY_FRAME`), references at 1 frame per second; every query
frame is searched at PDQ's threshold 31 over all reference frames (brute force)
and the hits are scored per reference (`hashdb.video_match.score_video`).

Printed per case: the query share (share of the query's seconds that match the
true reference) three ways: `plain`, the query's frames against the references'
frames (vPDQ as stored today); `probes`, with the query's probes
(`ingest.video_regions`, ProbeSet.QUERY) as well; `stored`, also against the
references' own probes (ProbeSet.REFERENCE: content inside their bars, and the
corner set), which storing them would need. `barred_ref` is the reverse case: a
reference with bars, queried with the clip without them. Then per edit the
recall (query share >= 0.5; > 0), false matches (any hit on another reference, by
edited references and by unrelated clips), the index rows each way, and hashing
speed without and with query probes (x real time per core, interleaved runs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks import quality_corpus as qc
from hashdb.keypoints.index import KeypointIndex, MihSearch
from hashdb.matching.keyframes import Keyframes, as_frame_hits
from hashdb.store import StoredKeyframe
from hashdb.video_match import FrameHit, score_video
from ingest.video import (
    EVERY_FRAME,
    QUERY_KEYFRAMES,
    REFERENCE_KEYFRAMES,
    FrameHash,
    ProbeSet,
    VideoHashes,
    hash_video_file,
)

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"
FPS = 25
THRESHOLD = 31
STRONG = 0.5  # query share at which a match counts as found
BARRED = "-barred"  # a reference given bars: the same video as the one without
Frame = npt.NDArray[np.uint8]  # BGR
Edit = Callable[[Frame], Frame]
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


# ---------------------------------------------------------------------- sources


def photos(pool: str) -> list[Frame]:
    """Seed photos (BGR) of benchmarks/quality_corpus.py's `pool`: the two pools share
    no content, so a clip over one pool's photos is unrelated to every clip over the
    other's. The reference pool's second motorcycle view is left out (the same scene
    as the first)."""
    pictures = qc.seeds(pool)
    if pool == "reference":
        pictures = pictures[:-1]
    return [np.ascontiguousarray(np.asarray(p.convert("RGB"))[:, :, ::-1]) for p in pictures]


def smooth_field(rng: np.random.Generator, size: tuple[int, int]) -> Frame:
    """A smooth random colour field (low-resolution noise, upscaled)."""
    cells = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3)).astype(np.uint8)
    return np.asarray(cv2.resize(cells, size, interpolation=cv2.INTER_CUBIC), dtype=np.uint8)


def pan_shot(
    rng: np.random.Generator, photo: Frame, size: tuple[int, int], n: int
) -> Iterator[Frame]:
    """A camera moving and zooming over a window of `photo`."""
    width, height = size
    ph, pw = photo.shape[:2]
    aspect = width / height
    side0, side1 = (rng.uniform(0.25, 0.7) * min(ph, pw * 1 / aspect) for _ in range(2))
    centres = [
        (rng.uniform(s * aspect / 2, pw - s * aspect / 2), rng.uniform(s / 2, ph - s / 2))
        for s in (side0, side1)
    ]
    for k in range(n):
        t = k / max(1, n - 1)
        side = side0 + (side1 - side0) * t
        cx = centres[0][0] + (centres[1][0] - centres[0][0]) * t
        cy = centres[0][1] + (centres[1][1] - centres[0][1]) * t
        x0, y0 = int(cx - side * aspect / 2), int(cy - side / 2)
        window = photo[max(0, y0) : y0 + int(side), max(0, x0) : x0 + int(side * aspect)]
        yield np.asarray(cv2.resize(window, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def drawn_shot(rng: np.random.Generator, size: tuple[int, int], n: int) -> Iterator[Frame]:
    """Shapes and text moving over a smooth field, the field drifting."""
    width, height = size
    field = smooth_field(rng, (width + 200, height + 200))
    shapes = []
    for _ in range(int(rng.integers(8, 20))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        start = rng.uniform(0, 1, 2) * (width, height)
        speed = rng.uniform(-0.4, 0.4, 2) * (width, height)
        radius = int(rng.uniform(0.03, 0.25) * height)
        shapes.append((int(rng.integers(0, 3)), colour, start, speed, radius))
    drift = rng.uniform(-100, 100, 2)
    text = str(rng.integers(10_000, 99_999))
    for k in range(n):
        t = k / max(1, n - 1)
        dx, dy = (100 + drift * (t - 0.5)).astype(int)
        frame = field[dy : dy + height, dx : dx + width].copy()
        for kind, colour, start, speed, radius in shapes:
            x, y = (start + speed * t).astype(int)
            if kind == 0:
                cv2.circle(frame, (int(x), int(y)), radius, colour, -1, cv2.LINE_AA)
            elif kind == 1:
                cv2.rectangle(
                    frame, (int(x), int(y)), (int(x) + radius * 2, int(y) + radius), colour, -1
                )
            else:
                cv2.ellipse(
                    frame, (int(x), int(y)), (radius, radius // 2), 360 * t, 0, 360, colour, -1
                )
        scale = height / 240
        where = (int(width * 0.3), int(height * (0.4 + 0.2 * t)))
        thick = max(1, int(2 * scale))
        cv2.putText(frame, text, where, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick)
        yield frame


def synthetic(
    rng: np.random.Generator, pictures: list[Frame], size: tuple[int, int], seconds: float
) -> Iterator[Frame]:
    """Shots of 1.5-3 s until `seconds`: pans over one of `pictures`, or drawn scenes."""
    left = int(seconds * FPS)
    while left > 0:
        n = min(left, int(rng.uniform(1.5, 3.0) * FPS))
        if pictures and rng.random() < 0.6:
            yield from pan_shot(rng, pictures[int(rng.integers(len(pictures)))], size, n)
        else:
            yield from drawn_shot(rng, size, n)
        left -= n


def write(path: Path, frames: Iterator[Frame], fps: float = FPS) -> Path:
    writer: cv2.VideoWriter | None = None
    for frame in frames:
        if writer is None:
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(
                str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height)
            )
        writer.write(frame)
    if writer is not None:
        writer.release()
    return path


def frame_rate(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    rate = float(capture.get(cv2.CAP_PROP_FPS)) or FPS
    capture.release()
    return rate


def read(path: Path) -> Iterator[Frame]:
    capture = cv2.VideoCapture(str(path))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        yield np.asarray(frame, dtype=np.uint8)
    capture.release()


# ------------------------------------------------------------------------ edits


def bar_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    pick = rng.integers(4)
    if pick == 0:
        return (0, 0, 0)
    if pick == 1:
        return (255, 255, 255)
    if pick == 2:
        return (int(rng.integers(0, 256)),) * 3
    return tuple(int(c) for c in rng.integers(0, 256, 3))  # type: ignore[return-value]


def regrade(rng: np.random.Generator) -> Edit:
    gamma, contrast = rng.uniform(0.7, 1.4), rng.uniform(0.7, 1.3)
    brightness, saturation = rng.uniform(-20, 20), rng.uniform(0.0, 1.5)
    tint = rng.uniform(-10, 10, 3)

    def edit(frame: Frame) -> Frame:
        f = 255.0 * (frame.astype(np.float32) / 255.0) ** gamma
        grey = f.mean(axis=2, keepdims=True)
        f = grey + (f - grey) * saturation
        f = (f - 128.0) * contrast + 128.0 + brightness + tint
        return np.asarray(np.clip(f, 0, 255), dtype=np.uint8)

    return edit


def logo(rng: np.random.Generator, area: tuple[float, float]) -> Edit:
    """A logo: a coloured plate with a glyph and text, in a random corner."""
    share = rng.uniform(*area)
    aspect = rng.uniform(1.0, 2.5)
    corner = int(rng.integers(4))
    margin = rng.uniform(0.01, 0.04)
    alpha = 1.0 if rng.random() < 0.5 else rng.uniform(0.7, 1.0)
    plate = tuple(int(c) for c in rng.integers(0, 256, 3))
    ink = tuple(255 - c for c in plate)
    label = "".join(chr(int(c)) for c in rng.integers(65, 91, 3))

    def edit(frame: Frame) -> Frame:
        height, width = frame.shape[:2]
        h = int(np.sqrt(share * width * height / aspect))
        w = int(h * aspect)
        picture = np.zeros((h, w, 3), dtype=np.uint8)
        picture[:] = plate
        cv2.circle(picture, (h // 2, h // 2), h // 3, ink, -1, cv2.LINE_AA)
        cv2.putText(picture, label, (h, int(h * 0.65)), cv2.FONT_HERSHEY_SIMPLEX,
                    h / 50, ink, max(1, h // 20), cv2.LINE_AA)  # fmt: skip
        x = int(margin * width) if corner in (0, 2) else width - w - int(margin * width)
        y = int(margin * height) if corner in (0, 1) else height - h - int(margin * height)
        out = frame.copy()
        region = out[y : y + h, x : x + w].astype(np.float32)
        out[y : y + h, x : x + w] = (alpha * picture + (1 - alpha) * region).astype(np.uint8)
        return out

    return edit


def fit(
    frame: Frame,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    colour: tuple[int, int, int],
) -> Frame:
    """`frame` scaled into `box` (left, top, width, height) of a canvas of `size`."""
    canvas = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    canvas[:] = colour
    left, top, w, h = box
    canvas[top : top + h, left : left + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return canvas


def bars(rng: np.random.Generator, sides: str) -> Edit:
    """Bars on `sides` ("tb" letterbox, "lr" pillarbox, "tblr" borders), 5-15% each."""
    shares = {s: rng.uniform(0.05, 0.15) if s in sides else 0.0 for s in "tblr"}
    colour = bar_colour(rng)

    def edit(frame: Frame) -> Frame:
        height, width = frame.shape[:2]
        top, bottom = int(shares["t"] * height), int(shares["b"] * height)
        left, right = int(shares["l"] * width), int(shares["r"] * width)
        box = (left, top, width - left - right, height - top - bottom)
        return fit(frame, (width, height), box, colour)

    return edit


def sd_grey(rng: np.random.Generator, with_logo: bool) -> Edit:
    """An SD copy of an HD picture: 720x480 or 640x480, fitted inside bars (letterbox
    at least, maybe borders too), greyscale, contrast and brightness changed."""
    size = (720, 480) if rng.random() < 0.5 else (640, 480)
    extra = rng.uniform(0.0, 0.06) if rng.random() < 0.5 else 0.0
    colour = bar_colour(rng)
    contrast, brightness = rng.uniform(0.7, 1.3), rng.uniform(-20, 20)
    overlay = logo(rng, (0.05, 0.12)) if with_logo else None

    def edit(frame: Frame) -> Frame:
        height, width = frame.shape[:2]
        w = int(size[0] * (1 - 2 * extra))
        h = min(int(w * height / width), size[1])
        box = ((size[0] - w) // 2, (size[1] - h) // 2, w, h)
        out = fit(frame, size, box, colour)
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.float32)
        grey = (grey - 128.0) * contrast + 128.0 + brightness
        out = np.asarray(
            cv2.cvtColor(np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR), np.uint8
        )
        return overlay(out) if overlay else out

    return edit


def hd_pillar(rng: np.random.Generator) -> Edit:
    colour = bar_colour(rng)

    def edit(frame: Frame) -> Frame:
        height, width = frame.shape[:2]
        w = int(720 * width / height)
        return fit(frame, (1280, 720), ((1280 - w) // 2, 0, w, 720), colour)

    return edit


def chain(*edits: Edit) -> Edit:
    def edit(frame: Frame) -> Frame:
        for e in edits:
            frame = e(frame)
        return frame

    return edit


EDITS: dict[str, Callable[[np.random.Generator], Edit]] = {
    "regrade": regrade,
    "logo_small": lambda rng: logo(rng, (0.005, 0.02)),
    "logo_large": lambda rng: logo(rng, (0.05, 0.12)),
    "letterbox": lambda rng: bars(rng, "tb"),
    "pillarbox": lambda rng: bars(rng, "lr"),
    "borders": lambda rng: bars(rng, "tblr"),
    "regrade_letterbox": lambda rng: chain(regrade(rng), bars(rng, "tb")),
    "logo_large_regrade": lambda rng: chain(logo(rng, (0.05, 0.12)), regrade(rng)),
    "borders_logo_small": lambda rng: chain(bars(rng, "tblr"), logo(rng, (0.005, 0.02))),
}
HD_EDITS: dict[str, Callable[[np.random.Generator], Edit]] = {
    "sd_grey": lambda rng: sd_grey(rng, with_logo=False),
    "sd_grey_logo": lambda rng: sd_grey(rng, with_logo=True),
}
SD_EDITS: dict[str, Callable[[np.random.Generator], Edit]] = {"hd_pillar": hd_pillar}


# --------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Library:
    """Reference frames at 1 per second (and, if stored, their probes), brute force.

    A query row meets a stored row only when their variants are equal: "" for frames
    and for the probes aimed at a plain frame (content, masked), a corner's name
    for the corner set (`ingest.video_regions.CORNERS`).
    """

    names: list[str]
    codes: npt.NDArray[np.uint8]  # (rows, 32)
    variant: npt.NDArray[np.str_]  # per row
    owner: npt.NDArray[np.int64]  # per row: reference number
    position: npt.NDArray[np.int64]  # per row: position in its reference's row list
    times: dict[str, list[float]]

    @staticmethod
    def of(references: dict[str, VideoHashes], stored_probes: bool) -> Library:
        names = list(references)
        codes, variant, owner, position, times = [], [], [], [], {}
        for number, name in enumerate(names):
            rows = rows_of(references[name], stored_probes)
            times[name] = [f.timestamp for f in rows]
            codes += [np.frombuffer(f.pdq, np.uint8) for f in rows]
            variant += [getattr(f, "variant", "") for f in rows]
            owner += [number] * len(rows)
            position += list(range(len(rows)))
        return Library(
            names, np.stack(codes), np.array(variant), np.array(owner), np.array(position), times
        )

    def hits(self, rows: list[FrameHash]) -> dict[int, list[FrameHit]]:
        """Per reference number, the query rows' hits on its rows."""
        if not rows:
            return {}
        query = np.stack([np.frombuffer(f.pdq, np.uint8) for f in rows])
        kinds = np.array([getattr(f, "variant", "") for f in rows])
        distance = _POPCOUNT[query[:, None, :] ^ self.codes[None, :, :]].sum(axis=2, dtype=np.int32)
        meets = (distance <= THRESHOLD) & (kinds[:, None] == self.variant[None, :])
        q, r = np.nonzero(meets)
        out = {}
        for number in np.unique(self.owner[r]).tolist():
            mine = self.owner[r] == number
            pairs = zip(q[mine], self.position[r[mine]], distance[q[mine], r[mine]], strict=True)
            out[number] = [FrameHit(int(a), int(b), int(d)) for a, b, d in pairs]
        return out

    def match(self, rows: list[FrameHash]) -> dict[str, float]:
        """Query share per reference with any hit."""
        query_times = [f.timestamp for f in rows]
        return {
            self.names[n]: score_video(query_times, self.times[self.names[n]], hits).query_share
            for n, hits in self.hits(rows).items()
        }


@dataclass(frozen=True)
class WithKeyframes:
    """The references' frames and their keyframes (hashdb/matching/keyframes.py, as
    the service keeps them): a query's frame hits and keyframe hits scored together,
    as hashdb/matching/resolve.py scores them."""

    library: Library
    keyframes: Keyframes

    @staticmethod
    def of(library: Library, references: dict[str, VideoHashes]) -> WithKeyframes:
        index = Keyframes(KeypointIndex(MihSearch()))
        for number, name in enumerate(library.names):
            index.add(
                StoredKeyframe(number * 100_000 + i, number, k.timestamp, k.keypoints.to_bytes())
                for i, k in enumerate(references[name].keyframes)
            )
        return WithKeyframes(library, index)

    def match(self, rows: list[FrameHash], v: VideoHashes) -> dict[str, float]:
        """Query share per reference with any hit."""
        lib = self.library
        hits = lib.hits(rows)
        query_times = [f.timestamp for f in rows]
        found = self.keyframes.search((k.timestamp, k.keypoints) for k in v.keyframes)
        stored_times = {n: lib.times[name] for n, name in enumerate(lib.names)}
        extra = as_frame_hits(
            found, query_times, stored_times, hits, distance=THRESHOLD, interval=1.0
        )
        for n, more in extra.items():
            hits.setdefault(n, []).extend(more)
        return {
            lib.names[n]: score_video(query_times, stored_times[n], pairs).query_share
            for n, pairs in hits.items()
        }


def rows_of(v: VideoHashes, probes: bool) -> list[FrameHash]:
    """A video's frames, and its probes if asked, in time order."""
    return sorted([*v.frames, *v.probes], key=lambda f: f.timestamp) if probes else list(v.frames)


# -------------------------------------------------------------------------- run


@dataclass(frozen=True)
class Case:
    edit: str
    reference: str
    plain: dict[str, float]  # query share per reference hit: frames only
    probes: dict[str, float]  # with the query's probes
    stored: dict[str, float]  # with the query's probes and the references' stored probes
    keypoints: dict[str, float]  # with the query's probes and keyframe keypoint sets

    def share(self, which: dict[str, float]) -> float:
        return which.get(self.reference, 0.0)

    def false(self, which: dict[str, float]) -> int:
        """Hits on references other than this one (a reference and its barred copy
        are one video)."""
        mine = self.reference.removesuffix(BARRED)
        return sum(1 for name in which if name.removesuffix(BARRED) != mine)


COLUMNS = ("plain", "probes", "stored", "keypoints")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--synthetic", type=int, default=6, help="synthetic references")
    parser.add_argument("--unrelated", type=int, default=12, help="unrelated clips")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of synthetic clips")
    parser.add_argument("--timed", type=int, default=8, help="queries timed for speed")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    # Each synthetic reference pans over a photo of its own, so that references share
    # no content (a keyframe keypoint set finds a photo wherever a clip shows it);
    # unrelated clips pan over the other pool's photos.
    references_photos, others = photos("reference"), photos("unrelated")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources: dict[str, Path] = {}
        for k in range(args.synthetic):
            size = (1280, 720) if k % 2 == 0 else (640, 480)
            name = f"synth{k}-{'hd' if k % 2 == 0 else 'sd'}"
            own = [references_photos[k % len(references_photos)]]
            frames = synthetic(rng, own, size, args.seconds)
            sources[name] = write(folder / f"{name}.mp4", frames)
        for name in (
            "chair-orig-22-sd-bar",
            "doorknob-hd-no-bar",
            "pattern-sd-with-small-logo-bar",
        ):
            sources[name] = TESTDATA / "video" / f"{name}.mp4"
        queries: list[tuple[str, str, Path]] = []  # edit, reference, file
        for name, path in list(sources.items()):
            hd = "hd" in name or name.startswith("doorknob")
            edits = {**EDITS, **(HD_EDITS if hd else SD_EDITS)}
            for edit_name, make in edits.items():
                out = folder / f"{name}--{edit_name}.mp4"
                edited = write(out, map(make(rng), read(path)), frame_rate(path))
                queries.append((edit_name, name, edited))
        grey = TESTDATA / "video" / "chair-22-sd-grey-bar.mp4"
        queries.append(("testdata_grey", "chair-orig-22-sd-bar", grey))
        for name in list(sources)[: args.synthetic]:  # references with bars, queries without
            barred = folder / f"{name}--barred.mp4"
            sources[f"{name}{BARRED}"] = write(barred, map(bars(rng, "tb"), read(sources[name])))
            queries.append(("barred_ref", f"{name}{BARRED}", sources[name]))
        references = {
            n: hash_video_file(p, probes=ProbeSet.REFERENCE, keyframes=REFERENCE_KEYFRAMES)
            for n, p in sources.items()
        }
        frames_only = Library.of(references, stored_probes=False)
        with_stored = Library.of(references, stored_probes=True)
        with_keyframes = WithKeyframes.of(frames_only, references)
        all_edits = {**EDITS, **HD_EDITS}
        for k in range(args.unrelated):
            size = (1280, 720) if k % 2 == 0 else (640, 480)
            edit_name = list(all_edits)[k % len(all_edits)]
            frames = map(all_edits[edit_name](rng), synthetic(rng, others, size, args.seconds))
            queries.append(
                (f"unrelated:{edit_name}", "", write(folder / f"unrelated{k}.mp4", frames))
            )

        cases = []
        for edit_name, reference, path in queries:
            v = hash_video_file(
                path,
                frames_per_second=EVERY_FRAME,
                probes=ProbeSet.QUERY,
                keyframes=QUERY_KEYFRAMES,
            )
            plain, probed = rows_of(v, False), rows_of(v, True)
            cases.append(
                Case(
                    edit_name,
                    reference,
                    frames_only.match(plain),
                    frames_only.match(probed),
                    with_stored.match(probed),
                    with_keyframes.match(probed, v),
                )
            )
        report(cases, len(frames_only.codes), len(with_stored.codes))
        speed([path for _, _, path in queries[:: max(1, len(queries) // args.timed)]])


def speed(paths: list[Path]) -> None:
    """CPU time of hashing every frame: plain, with probes, with probes and keyframes
    (a query as the API hashes it), interleaved."""
    ways = {
        "plain": {"probes": ProbeSet.NONE, "keyframes": None},
        "with probes": {"probes": ProbeSet.QUERY, "keyframes": None},
        "with probes and keyframes": {"probes": ProbeSet.QUERY, "keyframes": QUERY_KEYFRAMES},
    }
    spent: dict[str, list[float]] = {name: [] for name in ways}
    seconds = 0.0
    for path in paths:
        for name, options in ways.items():
            started = time.process_time()
            v = hash_video_file(path, frames_per_second=EVERY_FRAME, **options)  # type: ignore[arg-type]
            spent[name].append(time.process_time() - started)
        seconds += v.duration
    cells = ", ".join(f"{name} {seconds / sum(times):.1f}x" for name, times in spent.items())
    print(f"hashing every frame ({len(paths)} queries), x real time per core: {cells}")


def report(cases: list[Case], frame_rows: int, stored_rows: int) -> None:
    print(
        "query share of the true reference: plain frames / + query probes / + stored probes"
        " / query probes + keyframe keypoint sets"
    )
    print(f"{'case':52} {'plain':>6} {'probes':>6} {'stored':>6} {'kps':>6}  false matches")
    for c in cases:
        label = f"{c.edit} <- {c.reference}" if c.reference else c.edit
        shares = " ".join(f"{c.share(getattr(c, w)):6.2f}" for w in COLUMNS)
        false = "/".join(str(c.false(getattr(c, w))) for w in COLUMNS)
        print(f"{label:52} {shares}  {false}")
    print()
    print(f"found: query share >= {STRONG} (and > 0 in brackets); mean query share")
    print(f"{'edit':22} {'n':>3} " + " ".join(f"{w:>11}" for w in COLUMNS) + "   mean share")
    for edit in sorted({c.edit for c in cases if c.reference}):
        mine = [c for c in cases if c.edit == edit]
        cells = []
        for w in COLUMNS:
            strong = sum(c.share(getattr(c, w)) >= STRONG for c in mine)
            found = sum(c.share(getattr(c, w)) > 0 for c in mine)
            cells.append(f"{strong:>6} ({found:>2})")
        means = "/".join(
            f"{statistics.mean(c.share(getattr(c, w)) for c in mine):.2f}" for w in COLUMNS
        )
        print(f"{edit:22} {len(mine):3d} " + " ".join(cells) + f"   {means}")
    unrelated = [c for c in cases if not c.reference]
    edited = [c for c in cases if c.reference]
    print()
    for label, group in (("unrelated clips", unrelated), ("edited references", edited)):
        counts = "/".join(str(sum(c.false(getattr(c, w)) for c in group)) for w in COLUMNS)
        print(f"false matches by {label} ({len(group)}), plain/probes/stored/keypoints: {counts}")
    print(f"index rows: frames {frame_rows}, with stored probes {stored_rows}")


if __name__ == "__main__":
    main()
