"""Specification of ingest.video_regions: query probes that undo added bars and logos.

First the parts on frames made here (bars of random sizes and colours around a
real photo, a logo burnt into a panning shot), then end to end: edited copies of
the sample videos and of a generated pan, written with OpenCV, hashed as queries
(every frame, with probes) and matched against the originals hashed as
references (1 frame per second, plain vPDQ frames), brute force at PDQ's 31 bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from media_factory import hamming

from hashdb.video_match import FrameHit, VideoScore, score_video
from ingest.canonical import Box
from ingest.video import EVERY_FRAME, FrameHash, ProbeKind, ProbeSet, VideoHashes, hash_video_file
from ingest.video_decode import sample_frames
from ingest.video_pdq import pdq_buffer, pdq_from_buffer, pdq_from_buffers
from ingest.video_regions import (
    CORNERS,
    MIN_BAR,
    bars_box,
    candidate_boxes,
    corner_of,
    near,
    overlay_mask,
)

Frame = npt.NDArray[np.uint8]
FPS = 25


@pytest.fixture(scope="module")
def photo(testdata: Path) -> Frame:
    """A real photograph (BGR)."""
    picture = cv2.imread(str(testdata / "pdq" / "bridge-mods" / "aaa-orig.jpg"))
    assert picture is not None
    return np.asarray(picture, dtype=np.uint8)


def grey(frame: Frame) -> Frame:
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)


def framed(picture: Frame, size: tuple[int, int], box: Box, colour: int) -> Frame:
    """`picture` scaled into `box` of a grey frame of `size` filled with `colour`."""
    canvas = np.full((size[1], size[0]), colour, dtype=np.uint8)
    inside = cv2.resize(grey(picture), (box.width, box.height), interpolation=cv2.INTER_AREA)
    canvas[box.top : box.bottom, box.left : box.right] = inside
    return canvas


def pan(photo: Frame, size: tuple[int, int], frames: int) -> Iterator[Frame]:
    """A camera panning and zooming across the photo."""
    height, width = photo.shape[:2]
    for k in range(frames):
        t = k / max(1, frames - 1)
        side = int(height * (0.8 - 0.3 * t))
        x = int((width - side * size[0] / size[1]) * t)
        window = photo[:side, x : x + int(side * size[0] / size[1])]
        yield np.asarray(cv2.resize(window, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def write(path: Path, frames: Iterator[Frame], fps: float = FPS) -> Path:
    writer: cv2.VideoWriter | None = None
    for frame in frames:
        if writer is None:
            size = (frame.shape[1], frame.shape[0])
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
            assert writer.isOpened()
        writer.write(frame)
    assert writer is not None
    writer.release()
    return path


def read(path: Path) -> Iterator[Frame]:
    capture = cv2.VideoCapture(str(path))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        yield np.asarray(frame, dtype=np.uint8)
    capture.release()


def edited(source: Path, path: Path, edit: Callable[[Frame], Frame]) -> Path:
    return write(path, (edit(f) for f in read(source)), cv2.VideoCapture(str(source)).get(5))


def add_logo(frame: Frame, share: float, corner: str) -> Frame:
    """An opaque white plate with a dark disc, `share` of the frame, in a corner."""
    height, width = frame.shape[:2]
    h = int(np.sqrt(share * width * height / 1.6))
    w = int(h * 1.6)
    x = int(0.02 * width) if "l" in corner else width - w - int(0.02 * width)
    y = int(0.03 * height) if "t" in corner else height - h - int(0.03 * height)
    out = frame.copy()
    out[y : y + h, x : x + w] = 235
    cv2.circle(out, (x + h // 2, y + h // 2), h // 3, (30, 30, 200), -1)
    return out


def sd_grey(frame: Frame) -> Frame:
    """An SD (720x480) greyscale copy with more contrast, the picture letterboxed."""
    height, width = frame.shape[:2]
    h = 720 * height // width
    picture = cv2.resize(grey(frame), (720, h), interpolation=cv2.INTER_AREA)
    contrasted = np.clip((picture.astype(np.float32) - 128) * 1.2 + 140, 0, 255)
    canvas = np.full((480, 720), 16, dtype=np.uint8)
    canvas[(480 - h) // 2 : (480 - h) // 2 + h] = contrasted.astype(np.uint8)
    return np.asarray(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), dtype=np.uint8)


def letterbox(frame: Frame, share: float = 0.12, colour: int = 0) -> Frame:
    height, width = frame.shape[:2]
    bar = int(share * height)
    canvas = np.full_like(frame, colour)
    canvas[bar : height - bar] = cv2.resize(frame, (width, height - 2 * bar))
    return canvas


def match(reference: VideoHashes, query: Sequence[FrameHash]) -> VideoScore:
    """The query scored against the reference, every hit within PDQ's 31 bits."""
    hits = [
        FrameHit(q, r, hamming(a.pdq, b.pdq))
        for q, a in enumerate(query)
        for r, b in enumerate(reference.frames)
        if hamming(a.pdq, b.pdq) <= 31
    ]
    return score_video([f.timestamp for f in query], [f.timestamp for f in reference.frames], hits)


def with_probes(v: VideoHashes) -> list[FrameHash]:
    return sorted([*v.frames, *v.probes], key=lambda f: f.timestamp)


# --- bars, frame by frame -------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    top=st.floats(0.0, 0.2),
    bottom=st.floats(0.0, 0.2),
    left=st.floats(0.0, 0.2),
    right=st.floats(0.0, 0.2),
    colour=st.sampled_from([0, 16, 128, 235, 255]),
    hd=st.booleans(),
)
def test_bars_of_any_size_and_colour_are_found_to_the_pixel(
    photo: Frame, top: float, bottom: float, left: float, right: float, colour: int, hd: bool
) -> None:
    size = (1280, 720) if hd else (720, 480)
    box = Box(
        round(left * size[0]),
        round(top * size[1]),
        size[0] - round(right * size[0]),
        size[1] - round(bottom * size[1]),
    )
    found = bars_box(framed(photo, size, box, colour)) or Box(0, 0, *size)
    drawn = (box.left, box.top, size[0] - box.right, size[1] - box.bottom)
    seen = (found.left, found.top, size[0] - found.right, size[1] - found.bottom)
    sides = (size[0], size[1], size[0], size[1])
    for k, (bar, got, side) in enumerate(zip(drawn, seen, sides, strict=True)):
        thin = MIN_BAR * side  # a bar this thin may be left in the picture
        opposite = drawn[(k + 2) % 4]  # bars are taken as centred where both are there
        if bar >= thin + 2:
            assert abs(got - bar) <= 2 or abs(got - opposite) <= 2
        elif bar <= thin - 2:
            assert got == 0
        else:
            assert got == 0 or abs(got - bar) <= 2 or abs(got - opposite) <= 2


def test_a_picture_without_bars_and_a_flat_frame_have_none(photo: Frame) -> None:
    assert bars_box(grey(photo)) is None
    assert bars_box(np.full((480, 720), 16, dtype=np.uint8)) is None


def test_a_logo_on_a_bar_does_not_break_it(photo: Frame) -> None:
    frame = framed(photo, (1280, 720), Box(0, 90, 1280, 630), 0)
    frame[20:70, 1150:1230] = 255  # a channel badge on the top bar
    found = bars_box(frame)
    assert found is not None and near(found, Box(0, 90, 1280, 630), 2)


def test_bars_both_ways_also_propose_each_pair_alone() -> None:
    both = Box(40, 30, 600, 450)
    assert candidate_boxes(both, 640, 480) == [both, Box(0, 30, 640, 450), Box(40, 0, 600, 480)]
    assert candidate_boxes(Box(0, 30, 640, 450), 640, 480) == [Box(0, 30, 640, 450)]
    assert candidate_boxes(None, 640, 480) == []


# --- hashing probes in bulk -------------------------------------------------------------


# Two DCT coefficients closer than this to each other and to the median may be ordered
# either way by float32 sums taken in different orders (pdqhash's loops, numpy's BLAS);
# the largest rounding error of a coefficient of 64 x 64 products is well below it.
MEDIAN_TIE = 1e-3


def tied_at_median(buffer: npt.NDArray[np.uint8], bits: npt.NDArray[np.intp]) -> bool:
    """Whether every coefficient behind `bits` (PDQ's order: the last coefficient is
    the first bit) lies within MEDIAN_TIE of the median, computed exactly (float64)."""
    i = np.arange(1, 17)[:, np.newaxis]
    j = np.arange(64)[np.newaxis, :]
    dct = np.sqrt(2 / 64) * np.cos(np.pi / 128 * i * (2 * j + 1))
    coefficients = (dct @ buffer.astype(np.float64) @ dct.T).reshape(-1)
    near = np.abs(coefficients[255 - bits] - np.median(coefficients))
    return bool((near <= MEDIAN_TIE).all())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cells=st.sampled_from([4, 8, 16, 64]))
@example(seed=19332, cells=8)  # two coefficients 3e-5 apart astride the median
def test_hashing_buffers_in_bulk_is_pdqhash_but_for_ties_at_the_median(
    seed: int, cells: int
) -> None:
    """`pdq_from_buffers` (numpy, for probes) against `pdqhash` buffer by buffer, on
    random pictures from blocky to noisy: the same quality, and the same bits but where
    two coefficients tie at the median within float32 rounding (a blocky picture can
    have such a pair: then both their bits may swap)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (5, cells, cells)).astype(np.uint8)
    buffers = np.stack([cv2.resize(b, (64, 64), interpolation=cv2.INTER_LINEAR) for b in small])
    for buffer, bulk in zip(buffers, pdq_from_buffers(buffers), strict=True):
        one = pdq_from_buffer(buffer)
        assert bulk.quality == one.quality
        ours = np.unpackbits(np.frombuffer(bulk.hash, np.uint8))
        theirs = np.unpackbits(np.frombuffer(one.hash, np.uint8))
        assert tied_at_median(buffer, np.flatnonzero(ours != theirs))


def test_bulk_hashes_of_real_frames_are_pdqhash_s(samples: dict[str, Path]) -> None:
    found = sample_frames(
        samples["chair-orig-22-sd-bar"],
        lambda f: pdq_buffer(f.luma, limited_range=f.limited_range),
        frames_per_second=2,
    )
    buffers = np.stack([b for b in found.results if b is not None])
    assert pdq_from_buffers(buffers) == [pdq_from_buffer(b) for b in buffers]


# --- static overlays ------------------------------------------------------------------


def buffers(frames: Iterator[Frame]) -> list[Frame]:
    out = []
    for frame in frames:
        buffer = pdq_buffer(grey(frame), limited_range=False)
        assert buffer is not None
        out.append(buffer)
    return out


def test_a_logo_over_a_moving_picture_is_masked_where_it_is(photo: Frame) -> None:
    frames = (add_logo(f, 0.06, "tr") for f in pan(photo, (640, 360), 60))
    mask = overlay_mask(buffers(frames))
    assert mask is not None
    ys, xs = np.nonzero(mask)
    assert xs.min() >= 32 and ys.max() < 32  # the top-right quarter
    assert 0.04 <= mask.mean() <= 0.16


def test_no_logo_or_no_motion_masks_nothing(photo: Frame) -> None:
    assert overlay_mask(buffers(pan(photo, (640, 360), 60))) is None
    still = next(pan(photo, (640, 360), 1))
    assert overlay_mask(buffers(add_logo(still, 0.06, "tr") for _ in range(30))) is None


# --- end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(testdata: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((testdata / "video").glob("*.mp4"))}


@pytest.fixture(scope="module")
def references(samples: dict[str, Path]) -> dict[str, VideoHashes]:
    return {name: hash_video_file(path) for name, path in samples.items()}


def test_probes_never_change_the_vpdq_frames(samples: dict[str, Path]) -> None:
    path = samples["chair-orig-22-sd-bar"]
    plain = hash_video_file(path, frames_per_second=EVERY_FRAME)
    probed = hash_video_file(path, frames_per_second=EVERY_FRAME, probes=ProbeSet.QUERY)
    assert probed.frames == plain.frames and not plain.probes
    assert {p.kind for p in probed.probes} == {ProbeKind.CONTENT}  # its own pillars
    frame_times = {f.index: f.timestamp for f in probed.frames}
    assert all(frame_times.get(p.index, p.timestamp) == p.timestamp for p in probed.probes)


def test_an_sd_grey_letterboxed_copy_of_an_hd_reference_matches_it(
    samples: dict[str, Path], references: dict[str, VideoHashes], tmp_path: Path
) -> None:
    copy = edited(samples["doorknob-hd-no-bar"], tmp_path / "sd.mp4", sd_grey)
    query = hash_video_file(copy, frames_per_second=EVERY_FRAME, probes=ProbeSet.QUERY)
    assert query.width == 720 and query.height == 480
    reference = references["doorknob-hd-no-bar"]  # 2 of its 4 seconds have quality >= 50
    assert match(reference, query.frames).query_matched == 0
    assert match(reference, with_probes(query)).reference_share == 1.0


def test_a_letterbox_on_a_reference_with_pillars_matches_it(
    samples: dict[str, Path], references: dict[str, VideoHashes], tmp_path: Path
) -> None:
    """The reference's own pillars stay: the probe cut inside the added bars only."""
    copy = edited(samples["chair-orig-22-sd-bar"], tmp_path / "lb.mp4", letterbox)
    query = hash_video_file(copy, frames_per_second=EVERY_FRAME, probes=ProbeSet.QUERY)
    reference = references["chair-orig-22-sd-bar"]
    assert match(reference, query.frames).query_share < 0.2
    assert match(reference, with_probes(query)).query_share >= 0.9


def test_a_large_logo_on_a_moving_picture_is_painted_over(photo: Frame, tmp_path: Path) -> None:
    source = write(tmp_path / "pan.mp4", pan(photo, (640, 360), 4 * FPS))
    reference = hash_video_file(source)
    copy = edited(source, tmp_path / "logo.mp4", lambda f: add_logo(f, 0.08, "br"))
    query = hash_video_file(copy, frames_per_second=EVERY_FRAME, probes=ProbeSet.QUERY)
    assert {p.kind for p in query.probes} == {ProbeKind.MASKED, ProbeKind.CORNER}
    plain, probed = match(reference, query.frames), match(reference, with_probes(query))
    assert probed.query_share > plain.query_share and probed.query_share >= 0.75


def test_a_logo_painted_over_meets_the_same_corner_painted_over_in_the_reference(
    photo: Frame, tmp_path: Path
) -> None:
    """The stored corner set: the reference's frames with each standard corner painted
    over, met by the query's frames with the corner holding its logo painted over
    (same variant only), whatever the logo hid."""
    source = write(tmp_path / "pan.mp4", pan(photo, (640, 360), 4 * FPS))
    reference = hash_video_file(source, probes=ProbeSet.REFERENCE)
    stored = [p for p in reference.probes if p.kind is ProbeKind.CORNER]
    assert len(stored) == len(CORNERS) * len(reference.frames)
    copy = edited(source, tmp_path / "logo.mp4", lambda f: add_logo(f, 0.1, "tl"))
    query = hash_video_file(copy, frames_per_second=EVERY_FRAME, probes=ProbeSet.QUERY)
    corner = [p for p in query.probes if p.kind is ProbeKind.CORNER]
    assert corner and {p.variant for p in corner} <= {"tl24", "tl32"}
    variant = corner[0].variant
    same = [p for p in stored if p.variant == variant]
    closest = [min(hamming(p.pdq, q.pdq) for q in corner if q.index == p.index) for p in same]
    assert max(closest) <= 31  # measured: a few bits


def test_the_smallest_standard_corner_holding_a_mask_is_chosen() -> None:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[2:20, 50:62] = 1
    assert corner_of(mask) == "tr24"
    mask[2:30, 36:62] = 1
    assert corner_of(mask) == "tr32"
    mask[40, 10] = 1  # a second overlay in another corner: no single corner holds both
    assert corner_of(mask) is None
    assert corner_of(np.zeros((64, 64), dtype=np.uint8)) is None


def test_probes_of_other_videos_match_nothing(
    samples: dict[str, Path], references: dict[str, VideoHashes], tmp_path: Path
) -> None:
    """Edited copies of each sample, probes included, never match another sample
    (the grey chair is a copy of the original chair, so those two are one video)."""
    same = {"chair-22-sd-grey-bar": "chair-orig-22-sd-bar"}
    for name in ("chair-22-sd-grey-bar", "pattern-sd-with-small-logo-bar", "doorknob-hd-no-bar"):
        copy = edited(samples[name], tmp_path / f"{name}.mp4", letterbox)
        query = with_probes(
            hash_video_file(copy, frames_per_second=EVERY_FRAME, probes=ProbeSet.QUERY)
        )
        for other, reference in references.items():
            if other not in (name, same.get(name), {v: k for k, v in same.items()}.get(name)):
                assert match(reference, query).query_matched == 0, (name, other)


def test_probes_are_hashed_for_every_sampled_frame_at_one_per_second(
    samples: dict[str, Path],
) -> None:
    """References are sampled at 1 per second: each has its own content probe."""
    v = hash_video_file(samples["pattern-sd-with-small-logo-bar"], probes=ProbeSet.QUERY)
    content = [p for p in v.probes if p.kind is ProbeKind.CONTENT]
    assert [p.index for p in content] == [f.index for f in v.frames]
    seen = sample_frames(samples["pattern-sd-with-small-logo-bar"], lambda f: f.index)
    assert set(p.index for p in v.probes) <= set(seen.results)
