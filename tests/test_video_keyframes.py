"""Video keyframes: the keypoint sets that find a copy whose frames' PDQ has drifted.

A stored video keeps the keypoint set of a frame every 2 s (REFERENCE_KEYFRAMES), a
query video carries the sets of its frames every 0.5 s (QUERY_KEYFRAMES); a query
keyframe that verifies against a stored one counts as a frame hit
(hashdb/matching/keyframes.py). The videos are written here with OpenCV: a slow pan
over a photo of ../shared/testdata/pdq (6 s at 25 fps, 640x480), and a copy of it
darkened, greyed and carrying an opaque logo over a tenth of the frame in a corner,
which its frames' PDQ alone no longer finds. Hashing, storage (both backends),
matching through the consortium's use case and its workflow, and the HTTP API.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from hashdb.budget import KEYPOINT_SET_WEIGHT
from hashdb.consortium import Actor, Consortium, VideoMatch, VideoQuery
from hashdb.keypoints.codec import KeypointSet
from hashdb.settings import Settings
from hashdb.signals.vpdq import Frame as VideoFrame
from hashdb.store import Keyframe, NewVideo, Role, Status, Store
from hashdb.video_match import VideoThresholds
from ingest.keypoints import keypoints
from ingest.records import video_contributions, video_frames
from ingest.video import (
    EVERY_FRAME,
    QUERY_KEYFRAMES,
    REFERENCE_KEYFRAMES,
    Keyframing,
    VideoHashes,
    hash_video_file,
)

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]

WIDTH, HEIGHT, FPS, SECONDS = 640, 480, 25, 6.0
LOGO_SIDE = 0.32  # of each side of the frame: the logo covers about 10 % of it
BRIDGE = Path("pdq", "bridge-mods", "aaa-orig.jpg")
HOUSES = Path("pdq", "reference", "labelme-subset", "q1050.jpg")  # canal houses
ZEBRA = Path("pdq", "reference", "labelme-subset", "q2821.jpg")  # a repetitive pattern

Frame = npt.NDArray[np.uint8]


def write_pan(photo: Path, path: Path, edit: Callable[[Frame], Frame] | None = None) -> Path:
    """A SECONDS-long video panning left to right over `photo` (a window 60 % of its
    height, so that keyframes 2 s apart show different parts of it), each frame
    passed through `edit` if given."""
    picture = cv2.imread(str(photo))
    if picture is None:
        raise FileNotFoundError(photo)
    tall, wide = picture.shape[:2]
    window_h = int(min(tall, wide * 3 / 4) * 0.6)
    window_w = window_h * 4 // 3
    count = int(SECONDS * FPS)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for i in range(count):
        x, y = round((wide - window_w) * i / (count - 1)), (tall - window_h) // 2
        window = picture[y : y + window_h, x : x + window_w]
        scaled = cv2.resize(window, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        frame = np.asarray(scaled, dtype=np.uint8)
        writer.write(edit(frame) if edit is not None else frame)
    writer.release()
    return path


def logo_and_regrade(frame: Frame) -> Frame:
    """Greyed, darkened (gamma 1.8, contrast cut) and branded: an opaque logo with
    text in the bottom-right corner over about 10 % of the frame."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) / 255.0
    graded = (255 * grey**1.8 * 0.8 + 30).clip(0, 255).astype(np.uint8)
    out = np.asarray(cv2.cvtColor(graded, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    logo_w, logo_h = int(WIDTH * LOGO_SIDE), int(HEIGHT * LOGO_SIDE)
    out[HEIGHT - logo_h :, WIDTH - logo_w :] = (40, 200, 240)
    cv2.putText(
        out, "TV", (WIDTH - logo_w + 20, HEIGHT - 30), cv2.FONT_HERSHEY_SIMPLEX, 2, (255,) * 3, 6
    )
    return out


def write_flat(path: Path) -> Path:
    """Two seconds of a single colour."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    for _ in range(2 * FPS):
        writer.write(np.full((HEIGHT, WIDTH, 3), (60, 120, 200), np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clips(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The written videos: the reference (bridge), its copy (logo and regrade), an
    unrelated pan (canal houses), a stored distractor (zebra stripes), a flat one."""
    folder = tmp_path_factory.mktemp("keyframes")
    return {
        "reference": write_pan(testdata / BRIDGE, folder / "reference.mp4"),
        "copy": write_pan(testdata / BRIDGE, folder / "copy.mp4", logo_and_regrade),
        "unrelated": write_pan(testdata / HOUSES, folder / "unrelated.mp4"),
        "zebra": write_pan(testdata / ZEBRA, folder / "zebra.mp4"),
        "flat": write_flat(folder / "flat.mp4"),
    }


@pytest.fixture(scope="module")
def hashed(clips: dict[str, Path]) -> dict[str, VideoHashes]:
    """Stored videos hashed as a contribution is (1 frame per second, reference
    keyframes); queries as a match upload is (every frame, query keyframes), without
    frame probes so that what the keyframes add is seen alone."""
    out = {
        name: hash_video_file(clips[name], keyframes=REFERENCE_KEYFRAMES)
        for name in ("reference", "zebra")
    }
    for name in ("copy", "unrelated"):
        out[name] = hash_video_file(
            clips[name], frames_per_second=EVERY_FRAME, keyframes=QUERY_KEYFRAMES
        )
    return out


def query(v: VideoHashes, *, keyframes: bool = True) -> VideoQuery:
    """A hashed video as the matching use case takes it (as api/video.py builds it)."""
    sets = tuple((k.timestamp, k.keypoints) for k in v.keyframes) if keyframes else ()
    return VideoQuery(video_frames(v), thresholds=VideoThresholds(), keyframes=sets)


def spacings(v: VideoHashes) -> list[float]:
    times = [k.timestamp for k in v.keyframes]
    return [b - a for a, b in pairwise(times)]


# ---- hashing ------------------------------------------------------------------------


def test_a_reference_keeps_a_keyframe_every_two_seconds(hashed: dict[str, VideoHashes]) -> None:
    reference = hashed["reference"]
    assert [k.timestamp for k in reference.keyframes] == pytest.approx([0.0, 2.0, 4.0])
    assert all(len(k.keypoints) >= 24 for k in reference.keyframes)
    assert all(len(k.keypoints) <= REFERENCE_KEYFRAMES.limit for k in reference.keyframes)


def test_a_query_keeps_a_keyframe_about_every_half_second(
    hashed: dict[str, VideoHashes],
) -> None:
    copy = hashed["copy"]
    assert copy.keyframes[0].timestamp == 0.0
    assert len(copy.keyframes) == pytest.approx(SECONDS / 0.5, abs=1)
    assert all(0.5 <= gap <= 0.5 + 1 / FPS + 1e-6 for gap in spacings(copy))
    assert all(24 <= len(k.keypoints) <= QUERY_KEYFRAMES.limit for k in copy.keyframes)


def test_keyframes_are_only_computed_when_asked_for(clips: dict[str, Path]) -> None:
    assert hash_video_file(clips["reference"]).keyframes == ()


def test_a_flat_video_has_no_keyframes(clips: dict[str, Path]) -> None:
    flat = hash_video_file(clips["flat"], frames_per_second=EVERY_FRAME, keyframes=QUERY_KEYFRAMES)
    assert flat.sampled_frames > 0
    assert flat.keyframes == ()


def test_past_the_most_keyframes_they_are_thinned_and_stay_spread_over_the_clip(
    clips: dict[str, Path],
) -> None:
    """Every 0.5 s would be 12 keyframes; at most 4 are kept, each time the fourth
    arrives every other one is dropped and the spacing doubles."""
    few = Keyframing(every=0.5, most=4, limit=128)
    v = hash_video_file(clips["reference"], frames_per_second=EVERY_FRAME, keyframes=few)
    times = [k.timestamp for k in v.keyframes]
    assert 2 <= len(times) <= 4
    assert times == sorted(times) and times[0] == 0.0
    assert times[-1] >= SECONDS / 2  # not the first 2 s of the clip
    assert min(spacings(v)) >= 1.0  # no longer every 0.5 s
    assert all(len(k.keypoints) <= 128 for k in v.keyframes)


# ---- storage --------------------------------------------------------------------------


@pytest.fixture
def admin_id(store: Store) -> int:
    return store.members.create("admin", Role.ADMIN)[0].id


def test_keyframes_are_stored_with_their_video_and_read_back_in_time_order(
    store: Store, admin_id: int, hashed: dict[str, VideoHashes]
) -> None:
    video, _ = video_contributions(hashed["reference"], (), None)
    added = store.videos.add(admin_id, video)
    info = store.videos.info([added.id], with_keyframes=True)[added.id]
    assert info.keyframes == video.keyframes
    assert [k.timestamp for k in info.keyframes] == pytest.approx([0.0, 2.0, 4.0])
    first = KeypointSet.from_bytes(info.keyframes[0].data)
    assert len(first) == len(hashed["reference"].keyframes[0].keypoints)
    # a video match reads shape and frames only: the sets are not read unless asked
    assert store.videos.info([added.id])[added.id].keyframes == ()


def test_iter_keyframes_yields_matchable_videos_or_the_ones_asked_for(
    store: Store, admin_id: int, hashed: dict[str, VideoHashes]
) -> None:
    live, _ = video_contributions(hashed["reference"], (), None)
    gone, _ = video_contributions(hashed["zebra"], (), None)
    live_id = store.videos.add(admin_id, live).id
    gone_id = store.videos.add(admin_id, gone, Status.RETIRED).id

    def stored(**given: Any) -> list[tuple[int, float, bytes]]:
        rows = [k for part in store.videos.iter_keyframes(**given) for k in part]
        assert [k.id for k in rows] == sorted(k.id for k in rows)
        return [(k.hash_id, k.timestamp, k.data) for k in rows]

    assert stored() == [(live_id, k.timestamp, k.data) for k in live.keyframes]
    assert stored(hash_ids=[gone_id]) == [(gone_id, k.timestamp, k.data) for k in gone.keyframes]
    assert {h for h, _, _ in stored(statuses=[Status.RETIRED])} == {gone_id}


def test_adding_the_same_video_again_does_not_duplicate_its_keyframes(
    store: Store, admin_id: int, hashed: dict[str, VideoHashes]
) -> None:
    video, _ = video_contributions(hashed["reference"], (), None)
    first = store.videos.add(admin_id, video)
    again = store.videos.add(admin_id, video)
    assert (again.id, again.created) == (first.id, False)
    rows = [k for part in store.videos.iter_keyframes() for k in part]
    assert len(rows) == len(video.keyframes) == 3
    assert store.videos.info([first.id], with_keyframes=True)[first.id].keyframes == video.keyframes


# ---- matching -------------------------------------------------------------------------


class Library:
    """A consortium over the test database, an admin and a member; `contribute`
    stores a hashed video as a contribution (an admin's is active at once), `find`
    asks for one through the matching use case, with or without its keyframes."""

    def __init__(self, store: Store, hashed: dict[str, VideoHashes], **settings: Any) -> None:
        self.db = Consortium(Settings(sync_interval=0.0, **settings), store)
        self.admin = Actor(store.members.create("Consortium", Role.ADMIN)[0])
        self.member = Actor(store.members.create("Platform A", Role.MEMBER)[0])
        self.hashed = hashed

    def contribute(self, name: str, who: Actor | None = None) -> int:
        video, digests = video_contributions(self.hashed[name], ("attack_footage",), name)
        return self.db.contributions.add_video(who or self.admin, video, digests)[0].id

    def find(self, name: str, *, keyframes: bool = True) -> list[VideoMatch]:
        (found,) = self.db.matching.answer(
            None, [], [query(self.hashed[name], keyframes=keyframes)]
        ).videos
        return found


@pytest.fixture
def library(store: Store, hashed: dict[str, VideoHashes]) -> Library:
    return Library(store, hashed)


def test_a_branded_regraded_copy_is_found_by_its_keyframes_alone(library: Library) -> None:
    reference = library.contribute("reference")
    library.contribute("zebra")
    assert library.find("copy", keyframes=False) == []  # its frames' PDQ drifted too far
    (found,) = library.find("copy")
    assert found.record.id == reference
    assert found.record.labels == ("attack_footage",)
    assert found.score.query_share >= 0.9
    assert found.score.reference_share >= 0.5  # the stored frames nearest its keyframes
    # A keyframe stands for the seconds around it: the offset is as good as their spacing.
    assert found.score.offset == pytest.approx(0.0, abs=REFERENCE_KEYFRAMES.every / 2)


def test_each_query_keyframe_is_priced_as_a_keypoint_set(
    library: Library, hashed: dict[str, VideoHashes]
) -> None:
    copy = query(hashed["copy"])
    answer = library.db.matching.answer(None, [], [copy])
    assert len(copy.keyframes) >= 10
    assert answer.cost == len(copy.frames) + KEYPOINT_SET_WEIGHT * len(copy.keyframes)


def test_an_unrelated_clip_matches_nothing_even_with_its_keyframes(library: Library) -> None:
    library.contribute("reference")
    library.contribute("zebra")
    assert len(library.hashed["unrelated"].keyframes) >= 10
    assert library.find("unrelated") == []
    assert library.db.matcher.keyframes() == 6  # both stored videos' were searched


def test_a_retired_reference_stops_matching_and_comes_back_when_reactivated(
    library: Library, store: Store
) -> None:
    reference = library.contribute("reference")
    assert [m.record.id for m in library.find("copy")] == [reference]
    held = library.db.matcher.keyframes()
    assert held == 3

    library.db.vetting.retire(library.admin, [reference], "contributed in error")
    assert library.find("copy") == []
    assert library.db.matcher.keyframes() == 0  # taken out of the index, not only hidden

    store.hashes.set_status([reference], Status.ACTIVE)  # the retirement undone
    assert [m.record.id for m in library.find("copy")] == [reference]
    assert library.db.matcher.keyframes() == held


def test_a_pending_video_is_matched_by_its_keyframes_once_approved(
    store: Store, hashed: dict[str, VideoHashes]
) -> None:
    """Where pending hashes do not match, approval is what files its keyframes: the
    matcher's replay reads them from the store."""
    library = Library(store, hashed, pending_matches=False)
    assert library.find("copy") == []  # loads the (empty) indexes
    pending = library.contribute("reference", library.member)
    assert library.find("copy") == []
    assert library.db.matcher.keyframes() == 0
    library.db.vetting.approve(library.admin, [pending])
    assert [m.record.id for m in library.find("copy")] == [pending]
    assert library.db.matcher.keyframes() == 3


def test_a_keyframe_index_grown_by_contributions_is_rebuilt_as_a_trained_ivf(
    library: Library, hashed: dict[str, VideoHashes], store: Store
) -> None:
    """A service that starts with few keyframes (exact MIH) outgrows MIH as videos
    arrive: the keyframe index is built again in the background, trained, and the
    copy is still found."""
    reference = library.contribute("reference")
    assert library.find("copy")  # loads the indexes
    assert type(library.db.matcher._indexes.keyframes.index._search).__name__ == "MihSearch"
    rng = np.random.default_rng(7)
    for k in range(12):  # videos of textured noise, two keyframes each: past IVF_MIN_ROWS
        frames = [rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8) for _ in range(2)]
        sets = [keypoints(f) for f in frames]
        video = NewVideo(
            frames=(
                VideoFrame(0, 0.0, rng.bytes(32), 90),
                VideoFrame(50, 2.0, rng.bytes(32), 90),
            ),
            duration=4.0,
            fps=25.0,
            width=WIDTH,
            height=HEIGHT,
            reference=f"noise-{k}",
            keyframes=tuple(Keyframe(2.0 * i, s.to_bytes()) for i, s in enumerate(sets)),
        )
        store.videos.add(library.admin.member.id, video)
    library.db.matcher.refresh()
    deadline = time.monotonic() + 60
    while library.db.matcher._indexes.rebuilding and time.monotonic() < deadline:
        time.sleep(0.05)
    assert type(library.db.matcher._indexes.keyframes.index._search).__name__ == "IvfSearch"
    assert library.db.matcher.keyframes() == 3 + 24
    assert [m.record.id for m in library.find("copy")] == [reference]


# ---- over HTTP ------------------------------------------------------------------------


def upload(api: Api, path: str, data: bytes, role: str) -> dict[str, Any]:
    form: dict[str, Any] = {"file": FileStorage(io.BytesIO(data), "upload.mp4")}
    boundary, body = encode_multipart(form)
    response = api.client.post(
        path,
        data=body,
        headers=api.auth(role),
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert response.status_code in (200, 201), response.json
    found: dict[str, Any] = response.json  # type: ignore[assignment]
    return found


def test_an_uploaded_reference_is_found_by_its_branded_regraded_copy(
    api: Api, clips: dict[str, Path]
) -> None:
    added = upload(api, "/v1/media", clips["reference"].read_bytes(), "admin")["added"]
    reference = added[0]["id"]
    upload(api, "/v1/media", clips["zebra"].read_bytes(), "admin")
    assert len(api.store.videos.info([reference], with_keyframes=True)[reference].keyframes) == 3

    body = upload(api, "/v1/match/media", clips["copy"].read_bytes(), "member")
    assert body["kind"] == "video"
    assert body["hashes"]["keyframes"] >= 10  # 6 s, every half second
    assert [v["id"] for v in body["videos"]] == [reference]
    assert body["videos"][0]["query_share"] >= 0.9
