"""Opening a media file, the errors that make a file unusable, and the clock of its times.

Clock: every time is in seconds on the *container's* clock, shifted so that
the container's start time is 0 (`origin_seconds`).
"""

import os
from typing import Optional

import av

# Stable reason codes of `MediaError` (also the skip reasons of the builder).
REASONS = {
    "not_found": "the file does not exist",
    "empty_file": "the file has zero bytes",
    "unreadable": "FFmpeg cannot open it as media (not a media file, truncated header, ...)",
    "no_video_stream": "the file has no video stream",
    "no_audio_stream": "the file has no audio stream",
    "audio_too_short": "less decodable audio than required",
    "decode_error": "decoding failed before any usable frame or audio",
}


class MediaError(Exception):
    """A file that cannot be used, with a stable machine-readable `reason` (see `REASONS`)."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # picklable across worker processes
        return (MediaError, (self.reason, self.message))


def open_media(path: str):
    """An open `av` input container for `path`; raises MediaError (not_found, empty_file, unreadable)."""
    if not os.path.exists(path):
        raise MediaError("not_found", f"{path} does not exist")
    if os.path.isdir(path):
        raise MediaError("unreadable", f"{path} is a directory")
    if os.path.getsize(path) == 0:
        raise MediaError("empty_file", f"{path} has zero bytes")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError("unreadable", f"cannot open {path}: {e}") from None
    # FFmpeg's "tty" demuxer opens any text file as ANSI art: not a video.
    if container.format.name in ("tty",):
        container.close()
        raise MediaError("unreadable", f"{path} is not a media file (probed as {container.format.name})")
    return container


def origin_seconds(container) -> float:
    """The container's start time in seconds (0 of our clock): the earliest stream start,
    computed exactly from the streams' time bases (`container.start_time` is rounded to us)."""
    starts = [s.start_time * s.time_base for s in container.streams
              if s.start_time is not None and s.time_base is not None]
    if starts:
        return float(min(starts))
    if container.start_time is not None:
        return container.start_time / av.time_base
    return 0.0


def frame_time(frame, origin: float) -> Optional[float]:
    """A decoded frame's time in seconds on our clock, None when it has no timestamp."""
    t = frame.time
    return None if t is None else t - origin


class VideoClock:
    """Presentation time of decoded video frames, robust to broken pts.

    FFmpeg's `guess_correct_pts` rule (`best_effort_timestamp`, which PyAV does
    not expose): use pts unless pts went backwards more often than dts did (e.g.
    B-frames in AVI, which stores no pts).
    """

    def __init__(self, origin: float):
        self.origin = origin
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = None

    def __call__(self, frame) -> Optional[float]:
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        ts = pts if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None) else dts
        if ts is None or frame.time_base is None:
            return None
        return float(ts * frame.time_base) - self.origin
