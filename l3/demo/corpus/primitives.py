"""Drawing and sound primitives the classes and nuisances are made of.

Drawing: soft-edged shapes painted into a float32 [H, W, 3] canvas in [0, 1].
Every shape is a mask function `(y, x) -> coverage` evaluated only inside
its bounding box, in coordinates relative to its centre (pixels; y [h, 1],
x [1, w] float32), so a frame costs well under a millisecond.

Sound: every synthesis function returns float64 [n] at sample rate `sr`.
"""

import math

import numpy as np


# ----------------------------------------------------------------------------
# Drawing: mask functions, painting, colour.

def aa(d):
    """Signed distance (positive inside, pixels) -> coverage with a 1-px ramp."""
    return np.clip(d + 0.5, 0.0, 1.0)


def disc(r):
    return lambda y, x: aa(r - np.sqrt(y * y + x * x))


def ellipse(ry, rx):
    m = min(ry, rx)
    return lambda y, x: aa((1.0 - np.sqrt((y / ry) ** 2 + (x / rx) ** 2)) * m)


def rect(hh, hw, angle=0.0):
    c, s = math.cos(angle), math.sin(angle)

    def mask(y, x):
        u, v = x * c + y * s, -x * s + y * c
        return aa(np.minimum(hw - np.abs(u), hh - np.abs(v)))
    return mask


def polygon(points):
    """Convex polygon, vertices [(y, x), ...] relative to the paint centre, any winding."""
    p = np.asarray(points, np.float64)
    area = np.sum(p[:, 1] * np.roll(p[:, 0], -1) - np.roll(p[:, 1], -1) * p[:, 0])
    sign = -1.0 if area > 0 else 1.0   # interior on the left of each edge when area > 0

    def mask(y, x):
        d = np.inf
        for (y0, x0), (y1, x1) in zip(p, np.roll(p, -1, axis=0)):
            ly, lx = y1 - y0, x1 - x0
            n = math.hypot(ly, lx) or 1.0
            d = np.minimum(d, sign * ((x - x0) * ly - (y - y0) * lx) / n)
        return aa(d)
    return mask


def paint(img, cy, cx, extent, mask_fn, colour, alpha=1.0):
    """Blends `colour` ([3] or fn(y, x) -> [h, w, 3]) where `mask_fn` covers."""
    h, w = img.shape[:2]
    y0, y1 = max(int(cy - extent) - 1, 0), min(int(cy + extent) + 2, h)
    x0, x1 = max(int(cx - extent) - 1, 0), min(int(cx + extent) + 2, w)
    if y0 >= y1 or x0 >= x1:
        return
    y = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    x = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    m = (mask_fn(y, x) * alpha)[..., None]
    region = img[y0:y1, x0:x1]
    col = colour(y, x) if callable(colour) else np.asarray(colour, np.float32)
    region += m * (col - region)


def hsv(h, s, v):
    """Hue in degrees, s and v in [0, 1] -> RGB float32 [3]."""
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.array([r, g, b], np.float32) + np.float32(v - c)


def shade(colour, r, light=(-0.4, -0.4)):
    """Colour fn of a sphere-like shading: bright towards `light` (fractions of r)."""
    colour = np.asarray(colour, np.float32)

    def fn(y, x):
        d = np.sqrt((y - light[0] * r) ** 2 + (x - light[1] * r) ** 2) / r
        return colour * np.clip(1.25 - 0.45 * d, 0.4, 1.3)[..., None]
    return fn


def reflect(v, lo, hi):
    """Folds v back and forth into [lo, hi] (a bouncing coordinate)."""
    span = hi - lo
    v = np.mod(v - lo, 2 * span)
    return lo + np.where(v > span, 2 * span - v, v)


def time_since(t, events):
    """Seconds since the last event at or before t (inf if none)."""
    i = np.searchsorted(events, t, side="right") - 1
    return t - events[i] if i >= 0 else np.inf


# ----------------------------------------------------------------------------
# Sound synthesis: float64 [n] at sample rate `sr`.

def osc(freq, sr, harmonics=(1.0,), phase0=0.0):
    """Additive oscillator; `freq` is [n] Hz (or a scalar broadcast by caller)."""
    phase = phase0 + 2 * np.pi * np.cumsum(freq) / sr
    out = np.zeros_like(phase)
    for k, a in enumerate(harmonics, 1):
        if a:
            lim = np.asarray(freq) * k < 0.45 * sr  # no aliasing at 22.05 kHz
            out += a * np.sin(k * phase) * lim
    return out


def band(x, sr, lo=0.0, hi=None, tilt=0.0):
    """FFT filter: keeps [lo, hi] Hz, with spectral slope f**tilt."""
    n = len(x)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    gain = np.where((f >= lo) & (f <= (hi or sr)), 1.0, 0.0) * np.maximum(f, 20.0) ** tilt
    return np.fft.irfft(np.fft.rfft(x) * gain, n)


def filtered_noise(rng, n, sr, lo=0.0, hi=None, tilt=0.0):
    """Unit-variance Gaussian noise through `band`."""
    out = band(rng.standard_normal(n), sr, lo, hi, tilt)
    return out / (np.std(out) + 1e-12)


def add_at(dst, src, start):
    """dst[start:start+len(src)] += src, clipped to dst."""
    start = int(start)
    if start >= len(dst) or start + len(src) <= 0:
        return
    s0 = max(0, -start)
    e = min(len(src), len(dst) - start)
    dst[start + s0:start + e] += src[s0:e]


def decay(sr, dur, tau):
    t = np.arange(int(dur * sr)) / sr
    return t, np.exp(-t / tau)


def place(dst, sr, times, make):
    for i, t0 in enumerate(times):
        add_at(dst, make(i), round(t0 * sr))


def periodic(rng, dur, period, jitter=0.03, start=None):
    """Event times every `period` s (+- jitter), first within one period."""
    t = rng.uniform(0.05, period) if start is None else start
    out = []
    while t < dur:
        out.append(t)
        t += period * (1 + rng.uniform(-jitter, jitter))
    return np.array(out)

