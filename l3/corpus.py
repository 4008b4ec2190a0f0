"""The bundled small audio-visual corpus: synthetic videos with learnable AVC.

`generate_corpus(root)` writes real mp4 files (h264 + AAC, through
`l3.media.write_video`) of a few seconds each, in classes where the picture
and the sound share the class identity (plus, within a class, the object's
size, which sets the pitch, and the timing of events) and nothing else:

    root/<split>/<class_name>/<youtube_id>_<start:06d>_<end:06d>.mp4
    root/videos.csv    Kinetics style: label,youtube_id,time_start,time_end,split
    root/corpus.json   parameters, class descriptions, per-video metadata

File names follow the Kinetics download layout, so anything that reads
Kinetics reads this corpus. Labels are for evaluation only; L3 never sees
them.

Classes (`CLASSES`, the first `num_classes` are used; picture / sound):

    bouncing_ball  red shaded ball bouncing    / pitch-dropping thud at each floor contact
    siren          blue van, flashing lamp     / wailing tone sweeping +-30 % (lamp follows pitch)
    bird           yellow bird flapping        / bursts of fast 4.5 -> 2.8 kHz down-chirps
    engine         green truck, turning wheels / 70 Hz harmonic buzz, rpm drift, rumble
    drum           striped red drum, stick     / snare + tom hits in a steady accented beat
    bell           purple bell swinging        / inharmonic partials, long decay, struck at swing ends
    water          cyan pond, moving ripples   / band-passed hiss with droplet plinks
    clock          white face, stepping hand   / alternating tick / tock clicks
    whistle        green tube, lit hole        / vibrato tone stepping through a pentatonic tune
    dog            brown dog hopping           / harmonic barks in pairs

Learnable from one frame and one second: the object is in every frame (its
centre stays within 26-74 % of the width, so every 64x64 crop of the frame
resized to 72 holds part of it) and every class sound has an event at least
every ~1 s (siren, engine, water, whistle are continuous); muted stretches
last at most 0.6 s. Every object comes in two sizes, and size sets pitch
(1 / size: the large one sounds ~9 semitones lower) and tempo, so same-class
negatives can be told apart too; event sounds coincide with what is seen
(bounce, lamp, chirp/beak, hit, swing end, droplet, tick, lit hole, hop).

Not trivial: hues overlap (ball, drum, dog are red-brown; engine and whistle
green; water and siren blue), backgrounds are random smooth colour fields
with clutter, a floor, sometimes a shape passing behind, camera pan and
shake, flicker and sensor noise, so the mean colour of a frame says nothing
about the class (tests check this); position, size, speed and pitch vary per
video. The sound has coloured background noise (14-30 dB below the peak),
mains hum, off-screen sounds (speech, horn, knocks, another class's sound),
muted stretches, and `unrelated_fraction` of each split's videos carry music
or speech instead of the object's sound (`sound_related: false`).

Defaults (10 classes x 32 / 6 / 10 videos, 4-6 s, 160x120 at 8 fps, AAC
at 22.05 / 44.1 / 48 kHz, a fifth in stereo): 480 videos, 34 MB, ~62 CPU-s
(~31 s with `workers=2` on 2 idle cores; x264 ~15 %, AAC ~45 %, rendering
the rest). 160x120 is above the small preset's 72-pixel side; 8 fps gives
8 candidate frames per second of audio; mixed rates and channel counts
exercise the builder's resampling and down-mixing. The held-out split has
100 videos for AVC, NMI and SVM evaluation. Object sizes were set with a
proxy run of the small preset (see `OBJECT_SIZE`).

Determinism: each video is drawn from its own `SeedSequence(seed, version,
split, class, index)`, so its content does not depend on `workers`, on the
other videos or on the split sizes; the same seed gives the same arrays and,
with the same FFmpeg build, byte-identical files (`VIDEO_OPTIONS`).
"""

import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import time
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

CORPUS_VERSION = 1
SPLITS = ("train", "val", "test")
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_VIDEOS_PER_CLASS = {"train": 32, "val": 6, "test": 10}
AUDIO_RATES = (48000, 44100, 22050)
AUDIO_RATE_P = (0.2, 0.2, 0.6)      # AAC: half of the CPU time; 22.05 kHz mono encodes 2x faster
STEREO_P = 0.2
OFFSCREEN_P = 0.4
GAP_P = 0.3
HUM_P = 0.2
# Two sizes of every object; size sets pitch and tempo, so a model that looks
# at size and listens to pitch can tell apart same-class videos.
VARIANTS = {"small": 0.8, "large": 1.35}
# Object sizes in the draw functions are fractions of OBJECT_SIZE x the
# frame's smaller side. 1.35: at 1.0 a small ball was 14 px across in the
# small preset's 64x64 crops and a proxy training run learnt vision slowly.
OBJECT_SIZE = 1.35
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def default_corpus_dir() -> pathlib.Path:
    """`$L3_CACHE/corpus-v1`, or `~/.cache/l3/corpus-v1` when L3_CACHE is unset."""
    base = os.environ.get("L3_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "l3")
    return pathlib.Path(base) / f"corpus-v{CORPUS_VERSION}"


# ----------------------------------------------------------------------------
# Drawing: soft-edged shapes painted into a float32 [H, W, 3] canvas in [0, 1].
# Every shape is evaluated only inside its bounding box, in coordinates
# relative to its centre (pixels), so a frame costs well under a millisecond.

def _aa(d):
    """Signed distance (positive inside, pixels) -> coverage with a 1-px ramp."""
    return np.clip(d + 0.5, 0.0, 1.0)


def _disc(r):
    return lambda y, x: _aa(r - np.sqrt(y * y + x * x))


def _ellipse(ry, rx):
    m = min(ry, rx)
    return lambda y, x: _aa((1.0 - np.sqrt((y / ry) ** 2 + (x / rx) ** 2)) * m)


def _rect(hh, hw, angle=0.0):
    c, s = math.cos(angle), math.sin(angle)

    def mask(y, x):
        u, v = x * c + y * s, -x * s + y * c
        return _aa(np.minimum(hw - np.abs(u), hh - np.abs(v)))
    return mask


def _polygon(points):
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
        return _aa(d)
    return mask


def _paint(img, cy, cx, extent, mask_fn, colour, alpha=1.0):
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


def _hsv(h, s, v):
    """Hue in degrees, s and v in [0, 1] -> RGB float32 [3]."""
    h = (h % 360.0) / 60.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.array([r, g, b], np.float32) + np.float32(v - c)


def _shade(colour, r, light=(-0.4, -0.4)):
    """Colour fn of a sphere-like shading: bright towards `light` (fractions of r)."""
    colour = np.asarray(colour, np.float32)

    def fn(y, x):
        d = np.sqrt((y - light[0] * r) ** 2 + (x - light[1] * r) ** 2) / r
        return colour * np.clip(1.25 - 0.45 * d, 0.4, 1.3)[..., None]
    return fn


def _reflect(v, lo, hi):
    """Folds v back and forth into [lo, hi] (a bouncing coordinate)."""
    span = hi - lo
    v = np.mod(v - lo, 2 * span)
    return lo + np.where(v > span, 2 * span - v, v)


def _since(t, events):
    """Seconds since the last event at or before t (inf if none)."""
    i = np.searchsorted(events, t, side="right") - 1
    return t - events[i] if i >= 0 else np.inf


# ----------------------------------------------------------------------------
# Sound synthesis. Every function returns float64 [n] at sample rate `sr`.

def _osc(freq, sr, harmonics=(1.0,), phase0=0.0):
    """Additive oscillator; `freq` is [n] Hz (or a scalar broadcast by caller)."""
    phase = phase0 + 2 * np.pi * np.cumsum(freq) / sr
    out = np.zeros_like(phase)
    for k, a in enumerate(harmonics, 1):
        if a:
            lim = np.asarray(freq) * k < 0.45 * sr  # no aliasing at 22.05 kHz
            out += a * np.sin(k * phase) * lim
    return out


def _band(x, sr, lo=0.0, hi=None, tilt=0.0):
    """FFT filter: keeps [lo, hi] Hz, with spectral slope f**tilt."""
    n = len(x)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    gain = np.where((f >= lo) & (f <= (hi or sr)), 1.0, 0.0) * np.maximum(f, 20.0) ** tilt
    return np.fft.irfft(np.fft.rfft(x) * gain, n)


def _filtered_noise(rng, n, sr, lo=0.0, hi=None, tilt=0.0):
    """Unit-variance Gaussian noise through `_band`."""
    out = _band(rng.standard_normal(n), sr, lo, hi, tilt)
    return out / (np.std(out) + 1e-12)


def _add_at(dst, src, start):
    """dst[start:start+len(src)] += src, clipped to dst."""
    start = int(start)
    if start >= len(dst) or start + len(src) <= 0:
        return
    s0 = max(0, -start)
    e = min(len(src), len(dst) - start)
    dst[start + s0:start + e] += src[s0:e]


def _decay(sr, dur, tau):
    t = np.arange(int(dur * sr)) / sr
    return t, np.exp(-t / tau)


def _place(dst, sr, times, make):
    for i, t0 in enumerate(times):
        _add_at(dst, make(i), round(t0 * sr))


def _periodic(rng, dur, period, jitter=0.03, start=None):
    """Event times every `period` s (+- jitter), first within one period."""
    t = rng.uniform(0.05, period) if start is None else start
    out = []
    while t < dur:
        out.append(t)
        t += period * (1 + rng.uniform(-jitter, jitter))
    return np.array(out)


# ----------------------------------------------------------------------------
# The classes. Each has per-video parameters (`setup`), a frame renderer and a
# sound synthesiser sharing those parameters (and event times) so that the
# picture and the sound move together.

@dataclasses.dataclass(frozen=True)
class AVClass:
    name: str
    visual: str
    audio: str
    hue: float           # main hue in degrees; < 0: neutral (white)
    setup: Callable      # (rng, p, dur) -> None: fills p (events, extra params)
    draw: Callable       # (img, t, p, S) -> None: paints time t; S = OBJECT_SIZE x smaller side
    sound: Callable      # (rng, p, sr, n) -> float64 [n]
    value: Tuple[float, float] = (0.6, 1.0)   # HSV value range of its colour


def _ball_setup(rng, p, dur):
    p["period"] = 0.55 / p["tempo"]
    p["t0"] = rng.uniform(0.05, p["period"])
    p["events"] = np.arange(p["t0"], dur, p["period"])
    p["vx"] = rng.choice([-1, 1]) * rng.uniform(0.05, 0.15)


def _ball_draw(img, t, p, S):
    h, w = img.shape[:2]
    r = 0.12 * S * p["scale"]
    a = 0.28 * S
    y = p["y0"] + a / 2 - a * abs(math.sin(math.pi * (t - p["t0"]) / p["period"]))
    x = float(_reflect(p["x0"] + p["vx"] * w * t, 0.3 * w, 0.7 * w))
    squash = 1.0 + 0.25 * math.exp(-_since(t, p["events"]) / 0.06)
    floor = p["y0"] + a / 2 + 0.9 * r
    _paint(img, floor, x, 1.3 * r, _ellipse(0.15 * r, r), (0.08, 0.08, 0.08), 0.45 - 0.3 * (floor - y) / (a + r))
    _paint(img, y, x, 1.3 * r, _ellipse(r / squash, r * squash), _shade(p["colour"], r))


def _ball_sound(rng, p, sr, n):
    out = np.zeros(n)
    f0 = 230.0 * p["pitch"]

    def thud(i):
        t, env = _decay(sr, 0.35, 0.07)
        f = f0 * (1 + 0.7 * np.exp(-t / 0.015))
        click = rng.standard_normal(len(t)) * np.exp(-t / 0.004) * 0.4
        return (np.sin(2 * np.pi * np.cumsum(f) / sr) * env
                + 0.3 * np.sin(2 * np.pi * 2.3 * np.cumsum(f) / sr) * np.exp(-t / 0.03)
                + click) * rng.uniform(0.75, 1.0)
    _place(out, sr, p["events"], thud)
    return out


def _siren_setup(rng, p, dur):
    p["period"] = 1.3 / p["tempo"]
    p["phi"] = rng.uniform(0, 2 * np.pi)


def _siren_lfo(t, p):
    return np.sin(2 * np.pi * t / p["period"] + p["phi"])


def _siren_draw(img, t, p, S):
    w = img.shape[1]
    s = S * p["scale"]
    x = p["x0"] + 0.1 * w * math.sin(2 * np.pi * t / 5.0 + p["phi"])
    y = p["y0"]
    _paint(img, y, x, 0.25 * s, _rect(0.1 * s, 0.22 * s), p["colour"])
    _paint(img, y - 0.02 * s, x + 0.12 * s, 0.1 * s, _rect(0.04 * s, 0.06 * s), (0.75, 0.85, 0.95))
    for dx in (-0.13, 0.13):
        _paint(img, y + 0.1 * s, x + dx * s, 0.06 * s, _disc(0.05 * s), (0.05, 0.05, 0.05))
    b = 0.5 + 0.5 * float(_siren_lfo(t, p))
    lamp = np.array([0.35, 0.0, 0.0]) + b * np.array([0.65, 0.6, 0.5])
    _paint(img, y - 0.14 * s, x, 0.08 * s, _rect(0.04 * s, 0.07 * s), lamp)


def _siren_sound(rng, p, sr, n):
    t = np.arange(n) / sr
    f = 900.0 * p["pitch"] * (1 + 0.3 * _siren_lfo(t, p))
    return _osc(f, sr, (1.0, 0.35, 0.2, 0.1))


def _bird_setup(rng, p, dur):
    bursts = _periodic(rng, dur, 0.7 / p["tempo"], jitter=0.1)
    chirps = []
    for b in bursts:
        chirps.extend(b + 0.09 * np.arange(rng.integers(2, 5)))
    p["bursts"] = bursts
    p["events"] = np.array([c for c in chirps if c < dur])
    p["phi"] = rng.uniform(0, 2 * np.pi)


def _bird_draw(img, t, p, S):
    w = img.shape[1]
    s = 1.3 * S * p["scale"]
    arg = 2 * np.pi * t / 5.0 + p["phi"]
    x = p["x0"] + 0.09 * w * math.sin(arg)
    y = p["y0"] + 0.08 * S * math.sin(2 * np.pi * t / 1.7 + p["phi"])
    d = 1.0 if math.cos(arg) >= 0 else -1.0   # facing the direction of travel
    _paint(img, y, x, 0.12 * s, _ellipse(0.06 * s, 0.1 * s), _shade(p["colour"], 0.1 * s))
    _paint(img, y - 0.04 * s, x + d * 0.09 * s, 0.06 * s, _disc(0.045 * s), p["colour"])
    _paint(img, y - 0.05 * s, x + d * 0.1 * s, 0.02 * s, _disc(0.012 * s), (0, 0, 0))
    gape = 0.025 * s if _since(t, p["bursts"]) < 0.35 else 0.006 * s
    beak = [(-0.04 * s - gape, d * 0.12 * s), (-0.04 * s, d * 0.19 * s), (-0.04 * s + gape, d * 0.12 * s)]
    _paint(img, y, x, 0.2 * s, _polygon(beak), (1.0, 0.5, 0.05))
    tip = -0.15 * s * math.cos(2 * np.pi * 3.0 * t + p["phi"])
    wing = [(-0.01 * s, -0.06 * s * d), (-0.01 * s, 0.03 * s * d), (tip, -0.05 * s * d)]
    _paint(img, y, x, 0.17 * s, _polygon(wing), p["colour"] * 0.8)


def _bird_sound(rng, p, sr, n):
    out = np.zeros(n)

    def chirp(i):
        m = int(0.06 * sr)
        t = np.arange(m) / sr
        f = p["pitch"] * 4500.0 * (2800.0 / 4500.0) ** (t / 0.06)
        env = np.sin(np.pi * t / 0.06) ** 2
        return _osc(f, sr, (1.0, 0.15)) * env * rng.uniform(0.6, 1.0)
    _place(out, sr, p["events"], chirp)
    return out


def _engine_setup(rng, p, dur):
    p["phi"] = rng.uniform(0, 2 * np.pi)
    p["jitter"] = rng.uniform(-1, 1, size=1000)


def _engine_x(t, p, w):
    return p["x0"] + 0.12 * w * math.sin(2 * np.pi * t / 6.0 + p["phi"])


def _engine_draw(img, t, p, S):
    w = img.shape[1]
    s = S * p["scale"]
    x = _engine_x(t, p, w)
    y = p["y0"] + 0.8 * p["jitter"][int(t * 97) % 1000]
    d = 1.0 if math.cos(2 * np.pi * t / 6.0 + p["phi"]) >= 0 else -1.0
    _paint(img, y, x, 0.22 * s, _rect(0.08 * s, 0.2 * s), p["colour"])
    _paint(img, y - 0.12 * s, x + d * 0.12 * s, 0.1 * s, _rect(0.06 * s, 0.08 * s), p["colour"] * 0.75)
    _paint(img, y - 0.13 * s, x + d * 0.15 * s, 0.05 * s, _rect(0.03 * s, 0.035 * s), (0.7, 0.85, 0.95))
    angle = 2 * np.pi * 0.9 * t * d
    for dx in (-0.12, 0.12):
        cx, cy = x + dx * s, y + 0.09 * s
        _paint(img, cy, cx, 0.07 * s, _disc(0.06 * s), (0.08, 0.08, 0.08))
        _paint(img, cy, cx, 0.07 * s, _rect(0.008 * s, 0.045 * s, angle), (0.7, 0.7, 0.7))


def _engine_sound(rng, p, sr, n):
    t = np.arange(n) / sr
    f0 = 70.0 * p["pitch"] * (1 + 0.2 * np.sin(2 * np.pi * t / 2.5 + p["phi"]))
    cycles = np.cumsum(f0) / sr
    saw, square = 2 * (cycles % 1) - 1, np.sign(np.sin(2 * np.pi * cycles))
    fire = 1 + 0.5 * np.sin(np.pi * cycles)   # uneven cylinders: a beat at f0 / 2
    buzz = _band((0.6 * saw + 0.4 * square) * fire, sr, 0, 3000)
    return buzz + 0.3 * np.std(buzz) * _filtered_noise(rng, n, sr, 30, 400)


def _drum_setup(rng, p, dur):
    p["events"] = _periodic(rng, dur, 0.3 / p["tempo"], jitter=0.02)
    p["accents"] = np.resize([1.0, 0.55, 0.8, 0.55], len(p["events"]))


def _drum_draw(img, t, p, S):
    s = S * p["scale"]
    since = _since(t, p["events"])
    pulse = 1 + 0.08 * math.exp(-since / 0.08)
    s *= pulse
    x, y = p["x0"], p["y0"]
    base = p["colour"]

    def shell(yy, xx):
        stripe = (np.sin((xx + yy) * 0.5 / (0.02 * s)) > 0.3)[..., None]
        return np.where(stripe, np.float32(0.95), base)
    _paint(img, y + 0.04 * s, x, 0.2 * s, _rect(0.1 * s, 0.13 * s), shell)
    head = np.array([0.9, 0.85, 0.7]) * (1 + 0.15 * math.exp(-since / 0.1))
    _paint(img, y - 0.06 * s, x, 0.15 * s, _ellipse(0.035 * s, 0.13 * s), np.minimum(head, 1))
    lift = 1 - math.exp(-since / 0.1)
    ang = -0.4 - 0.9 * lift
    cx = x + 0.12 * s + 0.13 * s * math.cos(ang)
    cy = y - 0.07 * s + 0.13 * s * math.sin(ang)
    _paint(img, cy, cx, 0.16 * s, _rect(0.012 * s, 0.14 * s, ang), (0.35, 0.2, 0.08))


def _drum_sound(rng, p, sr, n):
    out = np.zeros(n)
    t, env = _decay(sr, 0.3, 0.05)
    snare = _filtered_noise(rng, len(t), sr, 1000, 6000) * env
    f = 160.0 * p["pitch"] * (1 + 0.5 * np.exp(-t / 0.02))
    tom = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.09)
    hit = 0.5 * snare + tom
    _place(out, sr, p["events"], lambda i: hit * p["accents"][i])
    return out


def _bell_setup(rng, p, dur):
    p["period"] = 1.4 / p["tempo"]
    p["phi"] = rng.uniform(0, 2 * np.pi)
    first = (np.pi / 2 - p["phi"]) % np.pi * p["period"] / (2 * np.pi)
    p["events"] = np.arange(first, dur, p["period"] / 2)   # swing extremes


def _bell_draw(img, t, p, S):
    s = S * p["scale"]
    th = 0.4 * math.sin(2 * np.pi * t / p["period"] + p["phi"])
    py, px = p["y0"] - 0.14 * s, p["x0"]   # pivot
    c, sn = math.cos(th), math.sin(th)
    body = [(0.02, -0.05), (0.02, 0.05), (0.24, 0.12), (0.24, -0.12)]
    pts = [(dy * s * c + dx * s * sn, -dy * s * sn + dx * s * c) for dy, dx in body]
    _paint(img, py, px, 0.3 * s, _polygon(pts), _shade(p["colour"], 0.2 * s, (0.5, -0.6)))
    _paint(img, py, px, 0.05 * s, _disc(0.035 * s), p["colour"] * 0.7)
    lag = 0.6 * th
    cy, cx = py + 0.25 * s * math.cos(lag), px - 0.25 * s * math.sin(lag)
    _paint(img, cy, cx, 0.05 * s, _disc(0.03 * s), (0.15, 0.1, 0.05))


def _bell_sound(rng, p, sr, n):
    out = np.zeros(n)
    f = 600.0 * p["pitch"]
    ratios = (0.5, 1.0, 1.19, 1.5, 2.0, 2.53, 3.01)
    amps = (0.5, 1.0, 0.6, 0.4, 0.5, 0.25, 0.15)
    taus = (1.0, 0.7, 0.5, 0.45, 0.35, 0.25, 0.15)
    t = np.arange(int(2.0 * sr)) / sr
    strike = sum(a * np.sin(2 * np.pi * r * f * t + k) * np.exp(-t / tau)
                 for k, (r, a, tau) in enumerate(zip(ratios, amps, taus)))
    _place(out, sr, p["events"], lambda i: strike * rng.uniform(0.7, 1.0))
    return out


def _water_setup(rng, p, dur):
    p["events"] = np.sort(rng.uniform(0, dur, size=rng.poisson(5 * p["tempo"] * dur)))
    p["drops"] = rng.uniform(-1, 1, size=(len(p["events"]), 2))


def _water_draw(img, t, p, S):
    s = S * p["scale"]
    x, y = p["x0"], p["y0"]
    base = p["colour"]
    k = 1.0 / (0.025 * s)

    def ripples(yy, xx):
        wave = np.sin(yy * k + 0.3 * np.sin(xx * k * 0.4) - 2 * np.pi * 1.5 * t)
        return base * (0.8 + 0.25 * wave)[..., None]
    _paint(img, y, x, 0.25 * s, _ellipse(0.11 * s, 0.23 * s), ripples)
    for (dy, dx), te in zip(p["drops"], p["events"]):
        age = t - te
        if 0 <= age < 0.3:
            _paint(img, y + 0.05 * s * dy - 0.3 * s * age, x + 0.16 * s * dx, 0.04 * s,
                   _disc(0.025 * s), (0.95, 0.98, 1.0), 1 - age / 0.3)


def _water_sound(rng, p, sr, n):
    hiss = _filtered_noise(rng, n, sr, 400, 4000, tilt=-0.5)
    env = np.interp(np.arange(n), np.linspace(0, n, 12), rng.uniform(0.6, 1.0, 12))
    out = 0.35 * hiss * env

    def plink(i):
        t, e = _decay(sr, 0.08, 0.03)
        f = 700.0 * p["pitch"] * rng.uniform(0.8, 1.25) * (1 + 1.3 * np.minimum(t / 0.025, 1))
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * e
    _place(out, sr, p["events"], plink)
    return out


def _clock_setup(rng, p, dur):
    p["events"] = _periodic(rng, dur, 0.5 / p["tempo"], jitter=0.0)
    p["angle0"] = rng.uniform(0, 2 * np.pi)


def _clock_draw(img, t, p, S):
    s = S * p["scale"]
    x, y = p["x0"], p["y0"]
    r = 0.13 * s
    _paint(img, y, x, 1.2 * r, _disc(r * 1.1), (0.12, 0.12, 0.12))
    _paint(img, y, x, 1.2 * r, _disc(r), p["colour"])
    for k in range(4):
        a = k * np.pi / 2
        _paint(img, y - 0.8 * r * math.cos(a), x + 0.8 * r * math.sin(a), 0.2 * r,
               _rect(0.12 * r, 0.04 * r + 0.5, a), (0.1, 0.1, 0.1))
    steps = np.searchsorted(p["events"], t, side="right")
    a = p["angle0"] + steps * np.pi / 6
    hand_c = (y - 0.35 * r * math.cos(a), x + 0.35 * r * math.sin(a))
    _paint(img, hand_c[0], hand_c[1], 0.5 * r, _rect(0.05 * r + 0.3, 0.4 * r, a - np.pi / 2), (0, 0, 0))
    _paint(img, y, x, 0.15 * r, _disc(0.1 * r), (0.8, 0.05, 0.05))


def _clock_sound(rng, p, sr, n):
    out = np.zeros(n)
    t, _ = _decay(sr, 0.04, 1.0)

    def click(i):
        fa, fb = (3200.0, 5100.0) if i % 2 == 0 else (2300.0, 4100.0)
        fa, fb = fa * p["pitch"], min(fb * p["pitch"], 0.45 * sr)
        return (np.sin(2 * np.pi * fa * t) + 0.6 * np.sin(2 * np.pi * fb * t)) * np.exp(-t / 0.008)
    _place(out, sr, p["events"], click)
    return out


_PENTATONIC = np.array([0, 2, 4, 7, 9, 12, 14])


def _whistle_setup(rng, p, dur):
    p["events"] = _periodic(rng, dur, 0.3 / p["tempo"], jitter=0.2, start=0.0)
    p["notes"] = _PENTATONIC[rng.integers(0, len(_PENTATONIC), len(p["events"]))]
    p["angle"] = rng.uniform(-0.6, 0.6)


def _whistle_draw(img, t, p, S):
    s = S * p["scale"]
    x, y, a = p["x0"], p["y0"], p["angle"]
    _paint(img, y, x, 0.3 * s, _rect(0.045 * s, 0.25 * s, a), p["colour"])
    i = max(np.searchsorted(p["events"], t, side="right") - 1, 0)
    lit = int(p["notes"][i]) % 5
    for k in range(5):
        u = (-0.15 + 0.07 * k) * s
        col = (1.0, 1.0, 0.9) if k == lit else (0.1, 0.15, 0.1)
        _paint(img, y + u * math.sin(a), x + u * math.cos(a), 0.03 * s, _disc(0.018 * s), col)


def _whistle_sound(rng, p, sr, n):
    idx = np.searchsorted(p["events"], np.arange(n) / sr, side="right") - 1
    semis = p["notes"][np.maximum(idx, 0)]
    t = np.arange(n) / sr
    f = 880.0 * p["pitch"] * 2 ** (semis / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    return _osc(f, sr, (1.0, 0.08, 0.03)) + 0.05 * _filtered_noise(rng, n, sr, 2000, 6000)


def _dog_setup(rng, p, dur):
    pairs = _periodic(rng, dur, 0.8 / p["tempo"], jitter=0.1)
    p["events"] = np.sort(np.concatenate([pairs, pairs + 0.22]))
    p["events"] = p["events"][p["events"] < dur]


def _dog_draw(img, t, p, S):
    s = S * p["scale"]
    hop = 0.05 * s * math.exp(-_since(t, p["events"]) / 0.1)
    x, y = p["x0"], p["y0"] - hop
    col = p["colour"]
    _paint(img, y, x, 0.18 * s, _ellipse(0.08 * s, 0.15 * s), _shade(col, 0.15 * s))
    _paint(img, y - 0.09 * s, x + 0.13 * s, 0.1 * s, _disc(0.07 * s), col)
    _paint(img, y - 0.12 * s, x + 0.07 * s, 0.08 * s, _ellipse(0.06 * s, 0.025 * s), col * 0.6)
    _paint(img, y - 0.11 * s, x + 0.15 * s, 0.02 * s, _disc(0.012 * s), (0, 0, 0))
    for dx in (-0.1, 0.1):
        _paint(img, y + 0.1 * s, x + dx * s, 0.08 * s, _rect(0.05 * s, 0.018 * s), col * 0.8)


def _dog_sound(rng, p, sr, n):
    out = np.zeros(n)

    def bark(i):
        t, _ = _decay(sr, 0.16, 1.0)
        f0 = 420.0 * p["pitch"] * (1 + 0.3 * np.exp(-t / 0.04))
        env = np.minimum(t / 0.01, 1) * np.exp(-t / 0.05)
        harm = [1.0, 0.8, 0.9, 0.6, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05]
        return _osc(f0, sr, harm) * env
    _place(out, sr, p["events"], bark)
    return out


CLASSES: Tuple[AVClass, ...] = (
    AVClass("bouncing_ball", "red shaded ball bouncing, squashing at each floor contact",
            "short thud whose pitch drops, one per floor contact (0.4-0.7 s apart)",
            5, _ball_setup, _ball_draw, _ball_sound),
    AVClass("siren", "blue van with wheels and a lamp that flashes with the pitch",
            "wailing harmonic tone sweeping +-30 % around 900 Hz every ~1.3 s",
            220, _siren_setup, _siren_draw, _siren_sound),
    AVClass("bird", "yellow bird with flapping wing, beak opens while it sings",
            "bursts of 2-4 fast down-chirps 4.5 -> 2.8 kHz",
            52, _bird_setup, _bird_draw, _bird_sound),
    AVClass("engine", "green truck with cab and spinning wheels, driving to and fro, vibrating",
            "continuous 70 Hz buzz with rich harmonics and slow rpm drift, low rumble",
            120, _engine_setup, _engine_draw, _engine_sound),
    AVClass("drum", "red drum with white stripes; the stick strikes and the head flashes",
            "snare + tom hits in a steady accented beat (~3.3 per s)",
            355, _drum_setup, _drum_draw, _drum_sound),
    AVClass("bell", "purple bell swinging on its pivot, clapper lagging",
            "inharmonic partials around 600 Hz with a long decay, struck at each swing end",
            285, _bell_setup, _bell_draw, _bell_sound),
    AVClass("water", "cyan pond with moving ripples; droplets splash with each plink",
            "continuous band-passed hiss (0.4-4 kHz) with rising droplet plinks",
            190, _water_setup, _water_draw, _water_sound),
    AVClass("clock", "white clock face with a hand that steps at each tick",
            "alternating high tick / lower tock clicks every ~0.5 s",
            -1, _clock_setup, _clock_draw, _clock_sound),
    AVClass("whistle", "green tube tilted, its lit hole follows the note",
            "pure vibrato tone stepping through a pentatonic tune around 880 Hz",
            140, _whistle_setup, _whistle_draw, _whistle_sound),
    AVClass("dog", "brown dog that hops at each bark",
            "harmonic barks around 420 Hz in pairs",
            28, _dog_setup, _dog_draw, _dog_sound, value=(0.35, 0.55)),
)


# ----------------------------------------------------------------------------
# Nuisances: sounds that belong to no class, backgrounds, camera.

_VOWELS = ((730, 1090), (270, 2290), (530, 1840), (300, 870), (660, 1720), (400, 2000))


def _speech(rng, sr, n):
    """Babble: syllables of a harmonic voice through two vowel formants."""
    out = np.zeros(n)
    f0 = rng.uniform(100, 220)
    t0 = 0
    while t0 < n:
        m = int(rng.uniform(0.12, 0.25) * sr)
        f1, f2 = _VOWELS[rng.integers(len(_VOWELS))]
        t = np.arange(m) / sr
        f = f0 * (1 + 0.15 * rng.uniform(-1, 1) * t / t[-1])
        phase = 2 * np.pi * np.cumsum(f) / sr
        syl = np.zeros(m)
        for k in range(1, int(3500 / f0)):
            a = math.exp(-((k * f0 - f1) / 150) ** 2) + 0.5 * math.exp(-((k * f0 - f2) / 200) ** 2)
            if a > 1e-3:
                syl += a * np.sin(k * phase)
        _add_at(out, syl * np.sin(np.pi * t / t[-1]), t0)
        t0 += m + (int(rng.uniform(0.1, 0.4) * sr) if rng.random() < 0.25 else 0)
    return out


def _music(rng, sr, n):
    """Plucked triads changing every two beats over a kick drum."""
    out = np.zeros(n)
    beat = 60.0 / rng.uniform(90, 140)
    root = 220.0 * 2 ** (rng.integers(0, 12) / 12)
    t, env = _decay(sr, 2 * beat, 0.5)
    tk, ek = _decay(sr, 0.2, 0.05)
    kick = np.sin(2 * np.pi * np.cumsum(60 * (1 + 2 * np.exp(-tk / 0.01))) / sr) * ek
    for b, start in enumerate(np.arange(0, n / sr, beat)):
        _add_at(out, 0.8 * kick, start * sr)
        if b % 2 == 0:
            deg = rng.choice([0, 5, 7, 9])
            for step in (0, 4, 7):
                f = root * 2 ** ((deg + step) / 12)
                _add_at(out, 0.3 * env * _osc(np.full(len(t), f), sr, (1, 0.5, 0.25, 0.12)), start * sr)
    return out


def _horn(rng, sr, n):
    f = rng.uniform(350, 500)
    t = np.arange(n) / sr
    env = np.minimum(1, np.minimum(t / 0.02, (t[-1] - t) / 0.05))
    return env * (_osc(np.full(n, f), sr, (1, 0, 0.33, 0, 0.2)) + _osc(np.full(n, 1.26 * f), sr, (1, 0, 0.33)))


def _knock(rng, sr, n):
    out = np.zeros(n)
    t, env = _decay(sr, 0.12, 0.02)
    hit = _filtered_noise(rng, len(t), sr, 100, 800) * env + np.sin(2 * np.pi * 150 * t) * env
    _place(out, sr, np.arange(rng.integers(2, 5)) * rng.uniform(0.12, 0.2), lambda i: hit)
    return out


_DISTRACTORS = {"speech": _speech, "horn": _horn, "knock": _knock}


def _peak_normalise(x):
    return x / (np.max(np.abs(x)) + 1e-9)


def _background(rng, h, w):
    """Random smooth colour field with a floor band and clutter: float32 [h, w, 3]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    g = ((yy - h / 2) * math.sin(a) + (xx - w / 2) * math.cos(a)) / max(h, w) + 0.5
    c0 = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.25, 0.85))
    c1 = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.25, 0.85))
    img = c0 * (1 - g[..., None]) + c1 * g[..., None]
    for _ in range(3):   # low-frequency texture
        ky, kx = rng.uniform(-0.15, 0.15, 2)
        img += (0.05 * np.cos(yy * ky + xx * kx + rng.uniform(0, 6.3)))[..., None] * rng.uniform(0.5, 1.5, 3)
    if rng.random() < 0.5:   # floor
        top = int(h * rng.uniform(0.65, 0.8))
        img[top:] = img[top:] * 0.4 + 0.6 * _hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.2, 0.7))
    s = min(h, w)
    for _ in range(rng.integers(0, 4)):   # clutter
        col = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.45), rng.uniform(0.15, 0.95))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.04, 0.18, 2) * s
        shape = _ellipse(ry, rx) if rng.random() < 0.5 else _rect(ry, rx, rng.uniform(0, np.pi))
        _paint(img, cy, cx, max(ry, rx) * 1.5, shape, col, rng.uniform(0.5, 1.0))
    return img.astype(np.float32)


# ----------------------------------------------------------------------------
# One video: a plan (every random choice, cheap) and its rendering.

@dataclasses.dataclass(frozen=True)
class CorpusParams:
    """Everything that determines the corpus. Stored in corpus.json."""

    num_classes: int = 10
    videos_per_class: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_VIDEOS_PER_CLASS))
    seconds: int = 5
    duration_jitter: int = 1
    fps: int = 8
    size: Tuple[int, int] = (120, 160)
    seed: int = 0
    unrelated_fraction: float = 0.05

    def __post_init__(self):
        if not 1 <= self.num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [1, {len(CLASSES)}]")
        if set(self.videos_per_class) - set(SPLITS):
            raise ValueError(f"splits must be among {SPLITS}")
        if self.seconds - self.duration_jitter < 1 or min(self.size) < 32:
            raise ValueError("videos need >= 1 s and >= 32 pixels")

    def to_json(self) -> dict:
        return {"version": CORPUS_VERSION, "num_classes": self.num_classes,
                "videos_per_class": {k: int(self.videos_per_class.get(k, 0)) for k in SPLITS},
                "seconds": self.seconds, "duration_jitter": self.duration_jitter,
                "fps": self.fps, "size": list(self.size), "seed": self.seed,
                "unrelated_fraction": self.unrelated_fraction}

    @classmethod
    def from_json(cls, d: dict) -> "CorpusParams":
        d = {k: v for k, v in d.items() if k != "version"}
        d["size"] = tuple(d["size"])
        return cls(**d)


@dataclasses.dataclass
class VideoPlan:
    """Every random choice of one video; `render_video` turns it into arrays."""

    split: str
    label_index: int
    index: int
    youtube_id: str
    time_start: int
    duration: int
    fps: int
    size: Tuple[int, int]
    sample_rate: int
    channels: int
    sound_related: bool
    soundtrack: str                 # "class", "music" or "speech"
    p: dict                         # class parameters (events, scale, pitch, ...)
    nuisance: dict                  # gaps, off-screen sounds, noise, camera
    seeds: Tuple[int, int]          # video and audio rendering streams

    @property
    def label(self) -> str:
        return CLASSES[self.label_index].name

    @property
    def video_id(self) -> str:
        """Kinetics clip name: `{youtube_id}_{start:06d}_{end:06d}`."""
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_start + self.duration:06d}"

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.label}/{self.video_id}.mp4"

    def meta(self) -> dict:
        """JSON-ready metadata (stored per video in corpus.json)."""
        p, q = self.p, self.nuisance
        return {
            "video_id": self.video_id, "youtube_id": self.youtube_id, "path": self.relpath,
            "split": self.split, "label": self.label, "label_index": self.label_index,
            "time_start": self.time_start, "time_end": self.time_start + self.duration,
            "duration": self.duration, "fps": self.fps, "height": self.size[0],
            "width": self.size[1], "sample_rate": self.sample_rate, "channels": self.channels,
            "sound_related": self.sound_related, "soundtrack": self.soundtrack,
            "silent_gaps": [[round(a, 3), round(b, 3)] for a, b in q["gaps"]],
            "offscreen": [{"kind": k, "start": round(a, 3), "end": round(b, 3), "level_db": round(l, 1)}
                          for k, a, b, l, _ in q["offscreen"]],
            "noise": q["noise"], "snr_db": round(q["snr_db"], 1), "hum": q["hum"],
            "distractor_object": q["distractor"] is not None,
            "variant": p["variant"], "scale": round(p["scale"], 3), "pitch": round(p["pitch"], 3), "tempo": round(p["tempo"], 3),
            "position": [round(p["y0"] / self.size[0], 3), round(p["x0"] / self.size[1], 3)],
            "colour": [round(float(c), 3) for c in p["colour"]],
            "events": [round(float(e), 3) for e in p.get("events", ())],
        }


def _youtube_id(seed: int, split: str, label_index: int, index: int) -> str:
    h = hashlib.sha256(f"l3-corpus/{seed}/{split}/{label_index}/{index}".encode()).digest()
    return "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in h[:11])


def _class_params(rng, cls: AVClass, dur: float, size) -> dict:
    h, w = size
    variant = str(rng.choice(list(VARIANTS)))
    scale = VARIANTS[variant] * math.exp(rng.uniform(-0.08, 0.08))
    if cls.hue < 0:
        colour = _hsv(0, rng.uniform(0, 0.08), rng.uniform(0.85, 1.0))
    else:
        colour = _hsv(cls.hue + rng.uniform(-10, 10), rng.uniform(0.65, 1.0), rng.uniform(*cls.value))
    # Bigger sounds lower (pitch ~ 1 / size, as for bells, balls, drums) and moves slower.
    p = {"variant": variant, "scale": scale,
         "pitch": math.exp(rng.uniform(-0.03, 0.03)) / scale,
         "tempo": scale ** -0.5 * math.exp(rng.uniform(-0.1, 0.1)),
         "x0": rng.uniform(0.38, 0.62) * w, "y0": rng.uniform(0.4, 0.6) * h, "colour": colour}
    cls.setup(rng, p, dur)
    return p


def plan_corpus(params: CorpusParams) -> List[VideoPlan]:
    """All videos' plans, in split / class / index order. Cheap (no rendering)."""
    plans = []
    for split in SPLITS:
        n = int(params.videos_per_class.get(split, 0))
        total = n * params.num_classes
        split_rng = np.random.default_rng([params.seed, CORPUS_VERSION, SPLIT_SEEDS[split], 7919])
        unrelated = set(split_rng.permutation(total)[:round(params.unrelated_fraction * total)].tolist())
        for c in range(params.num_classes):
            for i in range(n):
                plans.append(_plan_video(params, split, c, i, (c * n + i) in unrelated))
    return plans


def _plan_video(params: CorpusParams, split: str, c: int, i: int, unrelated: bool) -> VideoPlan:
    ss = np.random.SeedSequence([params.seed, CORPUS_VERSION, SPLIT_SEEDS[split], c, i])
    plan_ss, video_ss, audio_ss = ss.spawn(3)
    rng = np.random.default_rng(plan_ss)
    j = params.duration_jitter
    dur = int(params.seconds + rng.integers(-j, j + 1))
    time_start = int(rng.integers(0, 300))
    sr = int(rng.choice(AUDIO_RATES, p=AUDIO_RATE_P))
    channels = 2 if rng.random() < STEREO_P else 1
    cls = CLASSES[c]
    p = _class_params(rng, cls, dur, params.size)
    soundtrack = str(rng.choice(["music", "speech"])) if unrelated else "class"
    gaps = []
    if rng.random() < GAP_P and dur >= 2:
        g0 = rng.uniform(0.3, dur - 0.9)
        gaps.append((g0, g0 + rng.uniform(0.3, 0.6)))
    offscreen = []
    if rng.random() < OFFSCREEN_P:
        for _ in range(rng.integers(1, 3)):
            kind = str(rng.choice(["speech", "horn", "knock", "class"], p=[0.35, 0.2, 0.2, 0.25]))
            length = rng.uniform(0.4, 1.5)
            start = rng.uniform(0, max(dur - length, 0.01))
            level = rng.uniform(-16, -10) if kind == "class" else rng.uniform(-14, -6)
            extra = None
            if kind == "class" and params.num_classes > 1:
                other = int((c + rng.integers(1, params.num_classes)) % params.num_classes)
                kind = f"class:{CLASSES[other].name}"
                extra = (other, _class_params(rng, CLASSES[other], length, params.size))
            elif kind == "class":
                kind = "horn"
            offscreen.append((kind, start, start + length, level, extra))
    distractor = None
    if rng.random() < 0.2:   # something unrelated crosses the picture
        distractor = {"colour": _hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.2, 0.9)),
                      "y": rng.uniform(0.2, 0.8), "r": rng.uniform(0.06, 0.14),
                      "speed": rng.choice([-1, 1]) * rng.uniform(0.15, 0.4), "x0": rng.uniform(0, 1)}
    nuisance = {
        "gaps": gaps, "offscreen": offscreen,
        "noise": str(rng.choice(["white", "pink", "brown"])), "snr_db": rng.uniform(14, 30),
        "hum": int(rng.choice([50, 60])) if rng.random() < HUM_P else 0,
        "gain": rng.uniform(0.35, 0.85), "distractor": distractor,
        "pan": rng.uniform(0, 2 * np.pi, 2), "pan_amp": rng.uniform(0, 5) * min(params.size) / 120,
        "shake": rng.random() < 0.3, "flicker": rng.uniform(0, 0.12), "sensor": rng.uniform(0, 0.025),
    }
    return VideoPlan(split=split, label_index=c, index=i, youtube_id=_youtube_id(params.seed, split, c, i),
                     time_start=time_start, duration=dur, fps=params.fps, size=tuple(params.size),
                     sample_rate=sr, channels=channels, sound_related=not unrelated,
                     soundtrack=soundtrack, p=p, nuisance=nuisance,
                     seeds=(int(video_ss.generate_state(1)[0]), int(audio_ss.generate_state(1)[0])))


def draw_object(img: np.ndarray, plan: VideoPlan, t: float, margin: int = 0) -> None:
    """Paints the video's object at time t into float32 [H + 2 margin, W + 2 margin, 3]."""
    p = plan.p if not margin else dict(plan.p, x0=plan.p["x0"] + margin, y0=plan.p["y0"] + margin)
    CLASSES[plan.label_index].draw(img, t, p, OBJECT_SIZE * min(plan.size))


def render_frames(plan: VideoPlan) -> np.ndarray:
    """uint8 [duration * fps, H, W, 3]."""
    rng = np.random.default_rng(plan.seeds[0])
    h, w = plan.size
    s = min(h, w)
    q = plan.nuisance
    m = int(math.ceil(q["pan_amp"])) + 3
    bg = _background(rng, h + 2 * m, w + 2 * m)
    n = plan.duration * plan.fps
    frames = np.empty((n, h, w, 3), np.float32)
    for k in range(n):
        t = k / plan.fps
        img = bg.copy()
        d = q["distractor"]
        if d is not None:   # passes behind the object
            x = (d["x0"] + d["speed"] * t) % 1.6 - 0.3
            _paint(img, d["y"] * h + m, x * w + m, d["r"] * s * 1.6, _ellipse(d["r"] * s, 1.5 * d["r"] * s),
                   d["colour"])
        draw_object(img, plan, t, m)
        oy = m + q["pan_amp"] * math.sin(0.5 * t + q["pan"][0])
        ox = m + q["pan_amp"] * math.sin(0.4 * t + q["pan"][1])
        if q["shake"]:
            oy, ox = oy + rng.uniform(-1.5, 1.5), ox + rng.uniform(-1.5, 1.5)
        oy, ox = int(np.clip(round(oy), 0, 2 * m)), int(np.clip(round(ox), 0, 2 * m))
        frames[k] = img[oy:oy + h, ox:ox + w]
    t = np.arange(n) / plan.fps
    frames *= (255 * (1 + q["flicker"] * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 2 * np.pi))))[
        :, None, None, None].astype(np.float32)
    # Sensor noise: one grain field, a random window of it per frame (cheap).
    grain = rng.standard_normal((2 * h, 2 * w, 1), dtype=np.float32) * np.float32(255 * q["sensor"])
    for k, (gy, gx) in enumerate(zip(rng.integers(0, h, n), rng.integers(0, w, n))):
        frames[k] += grain[gy:gy + h, gx:gx + w]
    return np.clip(frames + 0.5, 0, 255, out=frames).astype(np.uint8)


def render_audio(plan: VideoPlan) -> np.ndarray:
    """float32 [duration * sample_rate] (mono) or [duration * sample_rate, 2], in [-1, 1]."""
    rng = np.random.default_rng(plan.seeds[1])
    sr, q = plan.sample_rate, plan.nuisance
    n = plan.duration * sr
    t = np.arange(n) / sr
    if plan.soundtrack == "class":
        main = _peak_normalise(CLASSES[plan.label_index].sound(rng, plan.p, sr, n))
        for a, b in q["gaps"]:   # muted stretch, 20 ms fades
            main *= np.clip(np.maximum(a - t, t - b) / 0.02, 0, 1)
    else:
        main = _peak_normalise(_music(rng, sr, n) if plan.soundtrack == "music" else _speech(rng, sr, n))
    side = []
    for kind, a, b, level, extra in q["offscreen"]:
        k = int(round((b - a) * sr))
        if extra is not None:
            other, p2 = extra
            src = CLASSES[other].sound(rng, p2, sr, k)
        else:
            src = _DISTRACTORS[kind](rng, sr, k)
        buf = np.zeros(n)
        _add_at(buf, _peak_normalise(src) * 10 ** (level / 20), round(a * sr))
        side.append(buf)
    tilt = {"white": 0.0, "pink": -0.5, "brown": -1.0}[q["noise"]]
    noise_db = -q["snr_db"]
    chans = []
    common = _filtered_noise(rng, n, sr, 20, None, tilt)
    for ch in range(plan.channels):
        noise = common if plan.channels == 1 else 0.8 * common + 0.6 * _filtered_noise(rng, n, sr, 20, None, tilt)
        x = noise * 10 ** (noise_db / 20)
        if q["hum"]:
            x = x + 10 ** ((noise_db - 6) / 20) * _osc(np.full(n, float(q["hum"])), sr, (1, 0.5, 0.3))
        if plan.channels == 2:   # the object's sound follows its side of the picture
            pan = np.pi / 4 + (plan.p["x0"] / plan.size[1] - 0.5) * np.pi / 3
            gain = math.cos(pan) if ch == 0 else math.sin(pan)
            x = x + main * gain * math.sqrt(2)
            for buf, (_, _, _, _, _), side_pan in zip(side, q["offscreen"], (0.3, 1.7)):
                x = x + buf * (side_pan if ch else 2 - side_pan) / 1.7
        else:
            x = x + main + sum(side)
        chans.append(x)
    out = np.stack(chans, -1) if plan.channels == 2 else chans[0]
    out = out * (q["gain"] / (np.max(np.abs(out)) + 1e-9))
    return out.astype(np.float32)


def render_video(plan: VideoPlan) -> Tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [T, H, W, 3], audio float32 [samples] or [samples, 2])."""
    return render_frames(plan), render_audio(plan)


# ----------------------------------------------------------------------------
# Writing the corpus.

# x264: one thread per file (workers parallelise across files); "veryfast"
# halves encode time against "medium" for ~8 % more bytes; CRF 27 (default
# 23) is web-video quality and a third of the bytes (it smooths most of the
# sensor noise away). No B-frames: with them, this libx264 build's output
# depended on what the process had encoded before (bytes and decoded pixels
# differed between runs), without them it is reproducible byte for byte.
VIDEO_OPTIONS = {"threads": "1", "preset": "veryfast", "crf": "27", "x264-params": "bframes=0"}
JSON_NAME, CSV_NAME = "corpus.json", "videos.csv"
_IN_PROGRESS = ".generating.json"


@dataclasses.dataclass(frozen=True)
class CorpusInfo:
    """A generated corpus: where it is and what is in it (from corpus.json)."""

    root: pathlib.Path
    params: CorpusParams
    classes: Tuple[dict, ...]     # {"name", "index", "visual", "audio"}
    videos: Tuple[dict, ...]      # per-video metadata, see VideoPlan.meta
    seconds: float = 0.0          # wall time of the generate_corpus call
    reused: bool = False

    @property
    def class_names(self) -> List[str]:
        return [c["name"] for c in self.classes]

    @property
    def json_path(self) -> pathlib.Path:
        return self.root / JSON_NAME

    @property
    def csv_path(self) -> pathlib.Path:
        return self.root / CSV_NAME

    def split(self, name: str, *, related_only: bool = False) -> List[dict]:
        """Metadata of one split's videos (optionally only those with related sound)."""
        return [v for v in self.videos if v["split"] == name and (v["sound_related"] or not related_only)]

    def paths(self, split: Optional[str] = None) -> List[pathlib.Path]:
        return [self.root / v["path"] for v in self.videos if split in (None, v["split"])]

    def num_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths())


def load_corpus(root) -> CorpusInfo:
    """Reads `root/corpus.json` of a finished corpus."""
    root = pathlib.Path(root)
    with open(root / JSON_NAME) as f:
        meta = json.load(f)
    return CorpusInfo(root=root, params=CorpusParams.from_json(meta["params"]),
                      classes=tuple(meta["classes"]), videos=tuple(meta["videos"]))


def _write_json(path: pathlib.Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _write_csv(path: pathlib.Path, plans: Sequence[VideoPlan]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for v in plans:
            w.writerow([v.label, v.youtube_id, v.time_start, v.time_start + v.duration, v.split])
    os.replace(tmp, path)


def _partial_path(final: pathlib.Path) -> pathlib.Path:
    # Hidden (glob("*.mp4") skips it) and still ending in .mp4 (picks the container).
    return final.with_name(f".{final.stem}.partial.mp4")


def write_corpus_video(plan: VideoPlan, path) -> None:
    """Renders one planned video and writes it to `path` atomically (temp + rename)."""
    from l3 import media   # PyAV; imported here so planning needs only numpy

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames, audio = render_video(plan)
    tmp = _partial_path(path)
    media.write_video(str(tmp), frames, plan.fps, audio=audio, sample_rate=plan.sample_rate,
                      video_options=VIDEO_OPTIONS)
    os.replace(tmp, path)


def _worker(args) -> str:
    params_json, split, c, i, unrelated, path = args
    plan = _plan_video(CorpusParams.from_json(params_json), split, c, i, unrelated)
    write_corpus_video(plan, path)
    return path


def _stale(root: pathlib.Path, params: CorpusParams) -> Optional[dict]:
    """Params of an existing (finished or interrupted) corpus in root, if they differ."""
    for name in (JSON_NAME, _IN_PROGRESS):
        if (root / name).exists():
            with open(root / name) as f:
                old = json.load(f)["params"]
            if old != params.to_json():
                return old
    return None


def _remove_corpus_files(root: pathlib.Path, old_params: dict) -> None:
    """Deletes exactly the files an earlier generation with `old_params` wrote."""
    try:
        old = plan_corpus(CorpusParams.from_json(old_params))
    except (TypeError, ValueError):
        raise FileExistsError(f"{root} holds a corpus of an unknown version; remove it by hand") from None
    for plan in old:
        for p in (root / plan.relpath, _partial_path(root / plan.relpath)):
            if p.exists():
                p.unlink()
    for name in (JSON_NAME, CSV_NAME, _IN_PROGRESS):
        if (root / name).exists():
            (root / name).unlink()


def generate_corpus(root=None, *, num_classes: int = 10,
                    videos_per_class: Optional[Mapping[str, int]] = None,
                    seconds: int = 5, fps: int = 8, size: Tuple[int, int] = (120, 160),
                    seed: int = 0, workers: int = 1, progress: bool = True,
                    unrelated_fraction: float = 0.05, duration_jitter: int = 1,
                    overwrite: bool = False) -> CorpusInfo:
    """Generates the corpus under `root` (default `default_corpus_dir()`), or reuses it.

    Args:
      root: output folder; created if needed.
      num_classes: the first `num_classes` of `CLASSES` (1-10).
      videos_per_class: {"train": n, "val": n, "test": n}; default 32 / 6 / 10.
      seconds: mean video length in whole seconds; each video is
        seconds +- duration_jitter (uniform integers).
      fps: frame rate of the mp4 files.
      size: (height, width) of the frames.
      seed: everything follows from it; same seed, same videos.
      workers: processes rendering and encoding in parallel (0: all cores).
      progress: show a progress bar (tqdm) and a summary line.
      unrelated_fraction: share of each split's videos whose sound is music or
        speech unrelated to the picture (`sound_related: false` in corpus.json).
      overwrite: if `root` holds a corpus with other parameters, delete its
        files and generate; otherwise that raises FileExistsError.

    Returns: a `CorpusInfo`. If `root/corpus.json` exists with the same
      parameters and every video is there, returns at once (`reused=True`).
      Videos are written atomically, so an interrupted call resumes where it
      stopped.
    """
    start = time.time()
    root = pathlib.Path(root) if root is not None else default_corpus_dir()
    params = CorpusParams(num_classes=num_classes,
                          videos_per_class=dict(videos_per_class or DEFAULT_VIDEOS_PER_CLASS),
                          seconds=seconds, duration_jitter=duration_jitter, fps=fps,
                          size=tuple(size), seed=seed, unrelated_fraction=unrelated_fraction)
    root.mkdir(parents=True, exist_ok=True)
    plans = plan_corpus(params)
    info = _reuse(root, params, plans)   # no lock: corpus.json is written last
    if info is None:
        with _locked(root):   # a second process (pytest-xdist, two demos) waits, then reuses
            info = _reuse(root, params, plans) or _generate(root, params, plans, workers, progress,
                                                            overwrite)
    info = dataclasses.replace(info, seconds=time.time() - start)
    if progress:
        print(f"corpus: {len(plans)} videos in {root} ({'reused' if info.reused else 'generated'}"
              f", {info.num_bytes() / 1e6:.1f} MB, {info.seconds:.1f} s)")
    return info


def _reuse(root: pathlib.Path, params: CorpusParams, plans) -> Optional[CorpusInfo]:
    if not (root / JSON_NAME).exists() or _stale(root, params) is not None:
        return None
    if not all((root / p.relpath).exists() for p in plans):
        return None
    return dataclasses.replace(load_corpus(root), reused=True)


@contextlib.contextmanager
def _locked(root: pathlib.Path):
    """An exclusive lock on root/.lock (POSIX; no locking elsewhere)."""
    try:
        import fcntl
    except ImportError:   # Windows
        yield
        return
    with open(root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _generate(root, params, plans, workers, progress, overwrite) -> CorpusInfo:
    old = _stale(root, params)
    if old is not None:
        if not overwrite:
            raise FileExistsError(f"{root} holds a corpus with other parameters {old}; "
                                  "pass overwrite=True or choose another folder")
        _remove_corpus_files(root, old)
    _write_json(root / _IN_PROGRESS, {"params": params.to_json()})
    for p in root.glob("*/*/.*.partial.mp4"):   # left by a killed run
        p.unlink()
    todo = [(params.to_json(), p.split, p.label_index, p.index, not p.sound_related, str(root / p.relpath))
            for p in plans if not (root / p.relpath).exists()]
    _run(todo, workers, progress)
    classes = [{"name": c.name, "index": i, "visual": c.visual, "audio": c.audio}
               for i, c in enumerate(CLASSES[:params.num_classes])]
    _write_csv(root / CSV_NAME, plans)
    _write_json(root / JSON_NAME, {"generator": f"l3.corpus v{CORPUS_VERSION}", "params": params.to_json(),
                                   "classes": classes, "videos": [p.meta() for p in plans]})
    (root / _IN_PROGRESS).unlink()
    return load_corpus(root)


def _run(todo, workers: int, progress: bool) -> None:
    workers = workers or os.cpu_count() or 1
    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="corpus", unit="video")
    if workers == 1 or len(todo) <= 1:
        for task in todo:
            _worker(task)
            if bar is not None:
                bar.update()
    else:
        import concurrent.futures
        import multiprocessing
        # spawn, not fork: callers (l3-demo) may already hold TensorFlow's threads.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx) as pool:
            for _ in pool.map(_worker, todo, chunksize=4):
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
