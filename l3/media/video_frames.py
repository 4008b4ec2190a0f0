"""Video frames: display geometry (rotation, square pixels) and sampling at a fixed rate.

Frame sampling: target times t_k = t0 + k / fps; for each, the latest frame
whose presentation time is <= t_k is kept once, with its own time.
"""

from typing import List, Optional, Tuple

import numpy as np


def rotation_clockwise(frame, stream) -> int:
    """Clockwise degrees (0, 90, 180, 270) to rotate the coded image to display it upright."""
    ccw = frame.rotation  # display matrix side data (counter-clockwise)
    if not ccw:
        tag = stream.metadata.get("rotate")  # legacy tag, clockwise
        if tag:
            try:
                return int(round(float(tag) / 90.0)) * 90 % 360
            except ValueError:
                return 0
        return 0
    return int(round(-ccw / 90.0)) * 90 % 360


def output_size(width: int, height: int, sar, smaller_side: int) -> Tuple[int, int]:
    """Coded size and sample aspect ratio -> (width, height) with square pixels and the
    smaller side `smaller_side` (before rotation, which does not change the smaller side)."""
    display_w = width * (float(sar) if sar else 1.0)
    scale = smaller_side / min(display_w, height)
    return max(1, int(round(display_w * scale))), max(1, int(round(height * scale)))


_EPS = 1e-6  # seconds: timestamps are exact rationals, their float differences are not


class FrameSampler:
    """Keeps, for each target time t0 + k / fps, the latest frame with pts <= target.

    t0 is the first frame's time, so the first frame is always kept even when
    the video starts a little after the container (e.g. after audio priming).
    Times are made non-decreasing (a frame earlier than its predecessor takes
    the predecessor's time).
    """

    def __init__(self, fps: float, max_seconds: Optional[float], convert):
        self.fps = fps
        self.max_seconds = max_seconds
        self.convert = convert
        self.k = 0
        self.t0 = None
        self.prev = None
        self.prev_t = None
        self.prev_end = None
        self.prev_taken = False
        self.frames: List[np.ndarray] = []
        self.times: List[float] = []
        self.done = False
        self.last_time = 0.0

    def _target(self) -> float:
        return self.t0 + self.k / self.fps

    @property
    def last_end(self) -> float:
        """End time of the last frame seen (seconds)."""
        return self.prev_end if self.prev_end is not None else self.last_time

    def _in_range(self, t: float) -> bool:
        return self.max_seconds is None or t < self.max_seconds

    def _take_prev(self) -> None:
        if not self.prev_taken:
            self.frames.append(self.convert(self.prev))
            self.times.append(self.prev_t)
            self.prev_taken = True

    def push(self, frame, t: float, duration: float) -> None:
        if self.done:
            return
        if self.t0 is None:
            self.t0 = t
        if self.prev_t is not None and t < self.prev_t:
            t = self.prev_t
        self.last_time = t
        while self._target() < t - _EPS and self._in_range(self._target()):
            if self.prev is not None:
                self._take_prev()
            self.k += 1
        if not self._in_range(t):
            self.done = True
            return
        self.prev, self.prev_t, self.prev_end, self.prev_taken = frame, t, t + duration, False

    def finish(self) -> None:
        """End of stream: the last frame counts for targets before it stops displaying."""
        if self.prev is not None and not self.done:
            target = self._target()
            if self._in_range(target) and target < self.prev_end - _EPS:
                self._take_prev()
        self.prev = None
        self.done = True


def finish_before(sampler: FrameSampler, error_time: float) -> None:
    """After a decode error: the last clean frame counts up to the error time only."""
    if sampler.prev is not None and not sampler.done:
        sampler.prev_end = min(sampler.prev_end, max(error_time, sampler.prev_t + 1e-9))
    sampler.finish()
