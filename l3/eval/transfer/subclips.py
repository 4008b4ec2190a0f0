"""Equally spaced 1 s subclips of a clip (section 3.3, after Aytar et al.'s SoundNet set-up).

`num_subclips` windows per clip (10 per 5 s ESC-50 clip, 60 per 30 s DCASE
clip) start at `round(linspace(0, len - window, N))`: the first starts at 0
and the last ends at the clip's end. A clip shorter than one window is zero
padded at the end (its N subclips are then equal).
"""

import numpy as np

SUBCLIP_SECONDS = 1.0  # the encoder's input: section 2.2


def subclip_starts(num_samples: int, clip_samples: int, num_subclips: int) -> np.ndarray:
    """Start samples of `num_subclips` equally spaced windows: int64 [num_subclips].

    The first window starts at 0 and the last ends at `num_samples` (all start
    at 0 when the clip is no longer than one window).
    """
    if num_subclips < 1:
        raise ValueError(f"num_subclips must be >= 1, got {num_subclips}")
    span = max(int(num_samples) - int(clip_samples), 0)
    return np.round(np.linspace(0.0, span, num_subclips)).astype(np.int64)


def extract_subclips(waveform: np.ndarray, clip_samples: int, num_subclips: int) -> np.ndarray:
    """float [samples] -> float32 [num_subclips, clip_samples] (zero padded if short)."""
    x = np.asarray(waveform, np.float32).reshape(-1)
    if len(x) < clip_samples:
        x = np.pad(x, (0, clip_samples - len(x)))
    starts = subclip_starts(len(x), clip_samples, num_subclips)
    return np.stack([x[s:s + clip_samples] for s in starts])
