"""Specification of hashdb.video_match: scoring candidate videos from frame matches.

First the arithmetic on made-up timelines (examples, then hypothesis properties),
then end to end: the sample videos hashed at 1 frame per second into a real PDQ
index, queried with real videos, a clip and a compilation cut from the samples
with OpenCV in fixtures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashdb.errors import InvalidInput
from hashdb.index import HammingIndex, SearchHits, make_index
from hashdb.signals import PDQ
from hashdb.video_match import (
    FrameHit,
    TimeRange,
    VideoScore,
    VideoThresholds,
    group_hits,
    meets,
    rank_candidates,
    score_video,
)
from ingest.video import EVERY_FRAME, ProbeSet, VideoHashes, hash_video_file

FPS = 30


def diagonal(count: int, shift: int = 0) -> list[FrameHit]:
    return [FrameHit(i, i + shift, 0) for i in range(count)]


# --- the arithmetic, by example -------------------------------------------------------


def test_a_video_against_itself_scores_one_and_one_at_offset_zero() -> None:
    times = [float(t) for t in range(20)]
    score = score_video(times, times, diagonal(20))
    assert (score.query_share, score.reference_share) == (1.0, 1.0)
    assert score.offset == 0.0
    assert score.aligned_query_share == 1.0
    assert score.query_ranges == score.reference_ranges == (TimeRange(0.0, 19.0),)


def test_a_clip_matches_all_of_itself_and_part_of_the_reference() -> None:
    reference = [float(t) for t in range(300)]  # a 5-minute reference at 1 per second
    clip = [float(t) for t in range(15)]  # 15 s of it, from 40 s
    score = score_video(clip, reference, diagonal(15, shift=40))
    assert score.query_share == 1.0
    assert score.reference_share == pytest.approx(15 / 300)
    assert score.offset == 40.0
    assert score.reference_ranges == (TimeRange(40.0, 54.0),)
    assert score.query_ranges == (TimeRange(0.0, 14.0),)


def test_a_compilation_contains_all_of_the_reference_at_a_negative_offset() -> None:
    reference = [float(t) for t in range(20)]
    compilation = [float(t) for t in range(60)]  # 25 s of other footage first
    score = score_video(compilation, reference, [FrameHit(i + 25, i, 3) for i in range(20)])
    assert score.reference_share == 1.0
    assert score.query_share == pytest.approx(20 / 60)
    assert score.offset == -25.0
    assert score.query_ranges == (TimeRange(25.0, 44.0),)


def test_shares_count_intervals_so_a_dense_query_still_scores_one() -> None:
    """Query at every frame, reference at 1 per second: one query frame per second lines up."""
    reference = [float(t) for t in range(10)]
    query = [k / FPS for k in range(10 * FPS)]
    hits = [FrameHit(k * FPS, k, 0) for k in range(10)]
    score = score_video(query, reference, hits)
    assert (score.query_share, score.reference_share) == (1.0, 1.0)
    assert score.query_matched == 10
    assert score.query_ranges == (TimeRange(0.0, 9.0),)


def test_unmatched_intervals_split_ranges_and_empty_ones_do_not() -> None:
    times = [0.0, 1.0, 2.0, 3.0, 6.0, 7.0]  # nothing matchable in 4-5 s
    hits = [FrameHit(i, i, 0) for i in (0, 1, 3, 4, 5)]
    score = score_video(times, times, hits)
    assert score.query_ranges == (TimeRange(0.0, 1.0), TimeRange(3.0, 7.0))


def test_the_offset_follows_most_of_the_query_not_stray_hits() -> None:
    reference = [float(t) for t in range(100)]
    query = [float(t) for t in range(30)]
    aligned = diagonal(20, shift=50)
    strays = [FrameHit(q, r, 30) for q, r in ((20, 3), (22, 90), (25, 7), (28, 70))]
    score = score_video(query, reference, aligned + strays)
    assert score.offset == 50.0
    assert score.query_share == pytest.approx(24 / 30)
    assert score.aligned_query_share == pytest.approx(20 / 30)


def test_a_static_shot_votes_for_the_diagonal() -> None:
    """Every frame of a still image matches every other; the diagonal still wins."""
    times = [float(t) for t in range(8)]
    hits = [FrameHit(q, r, 0) for q in range(8) for r in range(8)]
    assert score_video(times, times, hits).offset == 0.0


def test_no_hits_score_zero_and_are_not_reported() -> None:
    score = score_video([0.0, 1.0], [0.0, 1.0], [])
    assert (score.query_share, score.reference_share, score.offset) == (0.0, 0.0, None)
    assert score.query_ranges == ()
    assert not meets(score, VideoThresholds())


def test_hits_must_name_frames_that_exist() -> None:
    with pytest.raises(ValueError, match="query frame"):
        score_video([0.0], [0.0, 1.0], [FrameHit(1, 0, 0)])
    with pytest.raises(ValueError, match="reference frame"):
        score_video([0.0], [0.0, 1.0], [FrameHit(0, 2, 0)])


def test_thresholds_need_both_shares() -> None:
    clip = score_video([0.0, 1.0], [float(t) for t in range(10)], diagonal(2))
    assert meets(clip, VideoThresholds())
    assert meets(clip, VideoThresholds(min_query_share=0.9))
    assert not meets(clip, VideoThresholds(min_query_share=0.9, min_reference_share=0.8))
    for bad in ({"min_query_share": -0.1}, {"min_reference_share": 1.5}):
        with pytest.raises(InvalidInput) as error:
            VideoThresholds(**bad)
        assert error.value.field in bad


def test_group_hits_maps_index_ids_to_videos_and_frames() -> None:
    per_query = [
        SearchHits(np.array([1_000_002, 2_000_000]), np.array([4, 9], dtype=np.int32)),
        SearchHits(np.array([], dtype=np.int64), np.array([], dtype=np.int32)),
        SearchHits(np.array([1_000_003]), np.array([0], dtype=np.int32)),
    ]
    grouped = group_hits(per_query, lambda i: (f"v{i // 1_000_000}", i % 1_000_000))
    assert grouped == {
        "v1": [FrameHit(0, 2, 4), FrameHit(2, 3, 0)],
        "v2": [FrameHit(0, 0, 9)],
    }


def test_rank_candidates_filters_and_puts_the_best_first() -> None:
    query = [float(t) for t in range(10)]
    hits = {"partial": diagonal(3), "full": diagonal(10), "clip-of": diagonal(10, shift=5)}
    references = {
        "partial": [float(t) for t in range(10)],
        "full": [float(t) for t in range(10)],
        "clip-of": [float(t) for t in range(100)],
    }
    ranked = rank_candidates(query, hits, references)
    assert [video for video, _ in ranked] == ["full", "clip-of", "partial"]
    strict = rank_candidates(query, hits, references, VideoThresholds(min_reference_share=0.5))
    assert [video for video, _ in strict] == ["full"]


# --- the arithmetic, as properties ------------------------------------------------------


@st.composite
def timelines_and_hits(draw: st.DrawFn) -> tuple[list[float], list[float], list[FrameHit]]:
    query = sorted(set(draw(st.lists(st.integers(0, 600), min_size=1, max_size=40))))
    reference = sorted(set(draw(st.lists(st.integers(0, 600), min_size=1, max_size=40))))
    pairs = st.tuples(
        st.integers(0, len(query) - 1), st.integers(0, len(reference) - 1), st.integers(0, 31)
    )
    hits = [FrameHit(*p) for p in draw(st.lists(pairs, max_size=60))]
    return [float(t) for t in query], [float(t) for t in reference], hits


def _ranges_are_ordered_within(ranges: Sequence[TimeRange], times: Sequence[float]) -> bool:
    ends = [t for r in ranges for t in (r.start, r.end)]
    return ends == sorted(ends) and all(min(times) <= t <= max(times) for t in ends)


@given(timelines_and_hits())
def test_shares_lie_in_zero_one_and_ranges_inside_the_videos(
    case: tuple[list[float], list[float], list[FrameHit]],
) -> None:
    query, reference, hits = case
    score = score_video(query, reference, hits)
    assert 0.0 <= score.query_share <= 1.0 and 0.0 <= score.reference_share <= 1.0
    assert 0.0 <= score.aligned_query_share <= score.query_share
    assert (score.offset is None) == (not hits)
    assert _ranges_are_ordered_within(score.query_ranges, query)
    assert _ranges_are_ordered_within(score.reference_ranges, reference)


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=50, unique=True))
def test_identical_videos_score_one_and_one_at_offset_zero(seconds: list[int]) -> None:
    times = [float(t) for t in sorted(seconds)]
    score = score_video(times, times, diagonal(len(times)))
    assert (score.query_share, score.reference_share, score.offset) == (1.0, 1.0, 0.0)


@given(timelines_and_hits(), st.integers(-5000, 5000))
def test_shifting_the_reference_shifts_the_offset(
    case: tuple[list[float], list[float], list[FrameHit]], shift: int
) -> None:
    query, reference, hits = case
    before = score_video(query, reference, hits)
    # Whole-interval shifts keep the slots; the shares cannot change.
    after = score_video(query, [t + shift for t in reference], hits)
    assert (after.query_share, after.reference_share) == (
        before.query_share,
        before.reference_share,
    )
    if before.offset is not None:
        assert after.offset == before.offset + shift


# --- end to end: real videos, a real index ------------------------------------------------


class Library:
    """Reference videos hashed at 1 frame per second, their frames in a PDQ index."""

    def __init__(self, videos: dict[str, VideoHashes]) -> None:
        self.names = list(videos)
        self.times = {name: [f.timestamp for f in videos[name].frames] for name in videos}
        self.index: HammingIndex = make_index(256)
        for number, name in enumerate(self.names):
            frames = videos[name].frames
            self.index.add(np.arange(len(frames)) + number * 1_000_000, codes(frames))

    def locate(self, hash_id: int) -> tuple[str, int]:
        return self.names[hash_id // 1_000_000], hash_id % 1_000_000

    def match(self, query: VideoHashes) -> dict[str, VideoScore]:
        found = self.index.search(codes(query.frames), PDQ.default_threshold)
        hits = group_hits(found, self.locate)
        query_times = [f.timestamp for f in query.frames]
        return dict(rank_candidates(query_times, hits, self.times))


def codes(frames: Sequence[object]) -> npt.NDArray[np.uint8]:
    raw = b"".join(f.pdq for f in frames)  # type: ignore[attr-defined]
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32)


def video(testdata: Path, name: str) -> Path:
    return testdata / "video" / f"{name}.mp4"


@pytest.fixture(scope="module")
def references(testdata: Path) -> dict[str, VideoHashes]:
    return {p.stem: hash_video_file(p) for p in sorted((testdata / "video").glob("*.mp4"))}


def copy_frames(
    writer: cv2.VideoWriter, source: Path, size: tuple[int, int], first: int = 0, stop: int = 10**9
) -> int:
    """Append frames [first, stop) of `source`, resized to `size`; returns how many."""
    capture = cv2.VideoCapture(str(source))
    written = 0
    for number in range(stop):
        ok, frame = capture.read()
        if not ok:
            break
        if number >= first:
            writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
            written += 1
    capture.release()
    return written


def open_writer(path: Path, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, size)
    assert writer.isOpened()
    return writer


PARTS = ("pattern-sd-with-small-logo-bar", "chair-orig-22-sd-bar", "test-padded-dimensions")
CLIP_FIRST, CLIP_STOP = 158, 458  # 5.27 s to 15.27 s: not on a whole second


@pytest.fixture(scope="module")
def clip(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = open_writer(path, (480, 720))
    copy_frames(writer, video(testdata, "chair-orig-22-sd-bar"), (480, 720), CLIP_FIRST, CLIP_STOP)
    writer.release()
    return path


@pytest.fixture(scope="module")
def compilation(
    testdata: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[float]]:
    """pattern, then chair-orig, then the padded sample, all at 480 x 720; and start times."""
    path = tmp_path_factory.mktemp("compilation") / "compilation.mp4"
    writer = open_writer(path, (480, 720))
    starts, frames = [], 0
    for name in (
        "pattern-sd-with-small-logo-bar",
        "chair-orig-22-sd-bar",
        "test-padded-dimensions",
    ):
        starts.append(frames / FPS)
        frames += copy_frames(writer, video(testdata, name), (480, 720))
    writer.release()
    return path, starts


def test_the_grey_chair_matches_the_original_and_nothing_else(
    testdata: Path, references: dict[str, VideoHashes]
) -> None:
    library = Library({n: h for n, h in references.items() if n != "chair-22-sd-grey-bar"})
    query = hash_video_file(video(testdata, "chair-22-sd-grey-bar"), frames_per_second=EVERY_FRAME)
    matches = library.match(query)
    assert list(matches) == ["chair-orig-22-sd-bar"]
    score = matches["chair-orig-22-sd-bar"]
    assert score.query_share >= 0.9 and score.reference_share >= 0.9
    assert score.offset == pytest.approx(0.0, abs=1 / FPS)
    # At 1 frame per second both copies are sampled at the same instants, so they match too.
    once_a_second = library.match(hash_video_file(video(testdata, "chair-22-sd-grey-bar")))
    assert list(once_a_second) == ["chair-orig-22-sd-bar"]
    assert once_a_second["chair-orig-22-sd-bar"].reference_share >= 0.9


def test_a_clip_is_found_with_its_offset(clip: Path, references: dict[str, VideoHashes]) -> None:
    matches = Library(references).match(hash_video_file(clip, frames_per_second=EVERY_FRAME))
    assert set(matches) == {"chair-orig-22-sd-bar", "chair-22-sd-grey-bar"}
    score = matches["chair-orig-22-sd-bar"]
    assert score.offset == pytest.approx(CLIP_FIRST / FPS, abs=0.1)
    assert score.query_share >= 0.9
    assert score.reference_share == pytest.approx(10 / 23, abs=0.1)
    [where] = score.reference_ranges
    assert where.start == pytest.approx(6.0) and where.end == pytest.approx(15.0)


def test_a_compilation_is_found_with_where_each_reference_starts(
    compilation: tuple[Path, list[float]], references: dict[str, VideoHashes]
) -> None:
    path, (pattern_start, chair_start, padded_start) = compilation
    matches = Library(references).match(hash_video_file(path, frames_per_second=EVERY_FRAME))
    chair = matches["chair-orig-22-sd-bar"]
    assert chair.reference_share >= 0.9
    assert chair.offset == pytest.approx(-chair_start, abs=0.1)
    assert chair.aligned_query_share == pytest.approx(22.4 / 34.3, abs=0.1)
    assert chair.query_ranges[0].start == pytest.approx(chair_start, abs=0.1)
    assert chair.query_ranges[-1].end == pytest.approx(padded_start, abs=1.1)
    pattern = matches["pattern-sd-with-small-logo-bar"]
    assert pattern.reference_share >= 0.9
    assert pattern.offset == pytest.approx(-pattern_start, abs=0.1)
    padded = matches["test-padded-dimensions"]
    assert padded.offset == pytest.approx(-padded_start, abs=0.1)
    assert "doorknob-hd-no-bar" not in matches


def test_probes_count_in_their_frames_interval_so_shares_stay_shares(
    testdata: Path, references: dict[str, VideoHashes], tmp_path: Path
) -> None:
    """A letterboxed copy of the grey chair (which has pillars of its own): its frames
    match little, its probes (the picture inside the added bars) nearly all; the
    probes add no interval of their own, so both shares stay within [0, 1] and the
    offset is the copy's."""
    path = tmp_path / "letterboxed.mp4"
    writer = open_writer(path, (480, 720))
    capture = cv2.VideoCapture(str(video(testdata, "chair-22-sd-grey-bar")))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        boxed = np.zeros_like(frame)
        boxed[90:630] = cv2.resize(frame, (480, 540), interpolation=cv2.INTER_AREA)
        writer.write(boxed)
    capture.release()
    writer.release()
    query = hash_video_file(path, frames_per_second=EVERY_FRAME, probes=ProbeSet.QUERY)
    library = Library({"chair-orig-22-sd-bar": references["chair-orig-22-sd-bar"]})
    plain = library.match(query).get("chair-orig-22-sd-bar")
    found = library.index.search(codes([*query.frames, *query.probes]), PDQ.default_threshold)
    times = [f.timestamp for f in [*query.frames, *query.probes]]
    probed = score_video(
        times,
        library.times["chair-orig-22-sd-bar"],
        group_hits(found, library.locate)["chair-orig-22-sd-bar"],
    )
    assert plain is None or plain.query_share < 0.2
    assert probed.query_share >= 0.9 and probed.reference_share >= 0.9
    assert probed.offset == pytest.approx(0.0, abs=1 / FPS)
