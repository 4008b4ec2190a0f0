"""Where the 1-s audio windows go, and the time each embedding is stamped with.

Everything here is integer sample arithmetic on the encoder's sample axis
(numpy only, no TensorFlow). A window is given by its first sample `s`
(negative when it starts before the signal: that part is zeros) and covers
samples [s, s + window). Its **timestamp is its centre**,
(s + window // 2) / rate seconds, computed from the integer offset, so a
timestamp never accumulates rounding: window k of an hour-long file is
stamped exactly where it was cut.

Hop: window k sits on the grid point g_k = floor(k * hop_size * rate + 0.5),
the sample nearest k * hop_size seconds. When hop_size * rate is a whole
number (0.1 s at 48 or 16 kHz) the hop is exactly that many samples; when it
is not (0.0232 s at 48 kHz = 1113.6 samples) consecutive windows are 1113 or
1114 samples apart and window k stays within half a sample of k * hop_size.
(openl3 truncates the hop to int(hop_size * rate) samples but stamps
k * hop_size, so its timestamps drift from its windows by k times the
truncation: 1.9 s after an hour at that hop.)

Modes (which windows are taken):

* `"centered"` (openl3's `center=True`): window k is centred on g_k, so the
  signal is zero-padded by window // 2 at the start; windows are added until
  one reaches past the last sample (the end is zero-padded too). Timestamps
  k * hop: identical to openl3's.
* `"start"` (`center=False`, l3-embed's historical default): window k starts
  at g_k; only windows that fit entirely are taken. Timestamps are still the
  window centres, 0.5 s + k * hop. (openl3's `center=False` stamps window
  *starts* and zero-pads the end; we keep one convention, centres, in every
  mode, and never embed a half-empty window when not asked to centre.)
* `"hear"` (l3.hear's timestamp embeddings): centred windows on every grid
  point inside the clip, g_k < num_samples, so the timestamps run from 0 to
  the clip's end (HEAR labels events at each timestamp; openl3's rule would
  leave the last half second without one).

In every mode a signal shorter than one window still gives at least one
window (zero padded).
"""

from typing import Tuple

import numpy as np

MODES = ("centered", "start", "hear")


def hop_samples(hop_size: float, rate: int) -> float:
    """hop_size seconds -> samples at `rate` (a float; snapped to an integer within 1e-9)."""
    if isinstance(hop_size, bool) or not isinstance(hop_size, (int, float, np.number)) \
            or not np.isfinite(hop_size) or hop_size <= 0:
        raise ValueError(f"hop_size must be a positive number of seconds, got {hop_size!r}")
    h = float(hop_size) * rate
    if h < 1.0:
        raise ValueError(f"hop_size {hop_size} s is shorter than one sample at {rate} Hz")
    nearest = round(h)
    return float(nearest) if abs(h - nearest) < 1e-9 else h


def grid(count: int, hop: float) -> np.ndarray:
    """Grid points g_k = floor(k * hop + 0.5) for k < count: int64 [count]."""
    return np.floor(np.arange(count, dtype=np.float64) * hop + 0.5).astype(np.int64)


def _count(predicate_k, estimate: int) -> int:
    """Smallest k >= 0 with predicate_k(k) true (predicate monotone), searched from `estimate`."""
    k = max(0, estimate)
    while k > 0 and predicate_k(k - 1):
        k -= 1
    while not predicate_k(k):
        k += 1
    return k


def window_starts(num_samples: int, window: int, hop: float, mode: str) -> np.ndarray:
    """First sample of each window: int64 [T], T >= 1, increasing.

    Args:
      num_samples: length of the signal (samples at the encoder's rate), >= 0.
      window: window length in samples (the encoder's `clip_samples`).
      hop: samples between grid points (`hop_samples`), may be fractional.
      mode: "centered", "start" or "hear" (module docstring).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    half = window // 2
    g = lambda k: int(np.floor(k * hop + 0.5))  # noqa: E731 -- the grid, one point
    if mode == "centered":
        # Last window k: the first whose end g_k - half + window reaches num_samples.
        target = num_samples - window + half
        last = 0 if target <= 0 else _count(lambda k: g(k) >= target, int(np.ceil(target / hop)))
        return grid(last + 1, hop) - half
    if mode == "start":
        room = num_samples - window  # window k fits when g_k <= room
        if room < 0:
            return np.zeros(1, np.int64)
        count = _count(lambda k: g(k) > room, int(room // hop) + 1)
        return grid(count, hop)
    count = max(1, _count(lambda k: g(k) >= num_samples, int(np.ceil(num_samples / hop))))
    return grid(count, hop) - half


def timestamps(starts: np.ndarray, window: int, rate: int, offset_s: float = 0.0) -> np.ndarray:
    """Window centres in seconds: float64 [T] = (starts + window // 2) / rate + offset_s.

    The numerator is an exact integer, so each value is the correctly rounded
    quotient (no accumulation). `offset_s`: the time of sample 0 on the
    caller's clock (a video's audio start).
    """
    centres = np.asarray(starts, np.int64) + window // 2
    return centres.astype(np.float64) / float(rate) + float(offset_s)


def slice_windows(signal: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """float32 [N] -> float32 [len(starts), window]; samples outside [0, N) are zeros."""
    x = np.asarray(signal, np.float32)
    out = np.zeros((len(starts), window), np.float32)
    for row, s in enumerate(np.asarray(starts, np.int64)):
        lo, hi = max(0, s), min(len(x), s + window)
        if hi > lo:
            out[row, lo - s:hi - s] = x[lo:hi]
    return out


def frames_in_windows(frame_times: np.ndarray, starts: np.ndarray, window: int, rate: int,
                      audio_start_s: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """Aligns video frames with the audio windows of the same video.

    Args:
      frame_times: float64 [F] seconds on the video's clock.
      starts: int64 [T] window starts, samples after the audio's first sample,
        which is at `audio_start_s` on the same clock.
    Returns:
      (ranges int64 [F, 2]: windows first..stop-1 contain the frame, i.e.
      start <= frame time < start + window, contiguous because windows are
      equally long and sorted; stop == first when none does;
      nearest int64 [F]: the containing window whose centre is closest to the
      frame, -1 when none contains it).
    """
    starts = np.asarray(starts, np.int64)
    t = (np.asarray(frame_times, np.float64) - float(audio_start_s)) * rate  # in samples
    if len(starts) == 0:
        empty = np.zeros(len(t), np.int64)
        return np.stack([empty, empty], 1), np.full(len(t), -1, np.int64)
    first = np.searchsorted(starts + window, t, side="right")  # first window ending after t
    stop = np.searchsorted(starts, t, side="right")  # windows starting at or before t
    stop = np.maximum(stop, first)
    centres = starts + window // 2
    nearest = np.full(len(t), -1, np.int64)
    for i in np.nonzero(stop > first)[0]:
        cand = np.arange(first[i], stop[i])
        nearest[i] = cand[np.argmin(np.abs(centres[cand] - t[i]))]
    return np.stack([first, stop], 1).astype(np.int64), nearest
