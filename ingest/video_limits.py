"""The per-file budget for video hashing, and how a hashing run ended.

Uploads are untrusted: a file can declare ten hours in a few kilobytes, hold
millions of tiny frames, or frames of 30,000 pixels square. Every run therefore
stops at whichever comes first of a wall-clock budget, a number of sampled
frames and a length of video, and says which one stopped it, keeping what it
sampled so far (a bounded result, never a hang). Frames larger than
`max_frame_pixels` are refused (MediaError) before they are decoded.

The defaults fit a 4-hour video sampled at 1 frame per second (14,400 frames):
at the speed hashing runs at (tens of times real time per core at 1 frame per
second; docs/measurements.md, "Video decoding speed") that is a few minutes of one
core, inside the 10-minute budget with room to spare. Hashing every frame
(queries) is several times slower, so a caller that does so, or that answers an
HTTP request, should pass tighter limits of its own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EndReason(enum.Enum):
    """Why sampling stopped where it did."""

    COMPLETE = "complete"  # the whole video was sampled
    MAX_DURATION = "max_duration"  # frames past VideoLimits.max_duration were left out
    MAX_FRAMES = "max_frames"  # VideoLimits.max_frames frames were sampled
    TIME_BUDGET = "time_budget"  # VideoLimits.max_seconds_of_work ran out
    DAMAGED = "damaged"  # the data ended early or some packets would not decode


@dataclass(frozen=True)
class VideoLimits:
    max_seconds_of_work: float = 600.0  # wall clock for the whole call
    max_frames: int = 20_000  # frames sampled (hashed)
    max_duration: float = 4 * 3600.0  # seconds of video from the first frame
    max_frame_pixels: int = 8192 * 4320  # 8K; larger frames are refused

    def __post_init__(self) -> None:
        if not self.max_seconds_of_work > 0:
            raise ValueError("max_seconds_of_work must be positive")
        if self.max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        if not self.max_duration > 0:
            raise ValueError("max_duration must be positive")
        if self.max_frame_pixels < 1:
            raise ValueError("max_frame_pixels must be at least 1")
