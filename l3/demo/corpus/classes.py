"""The ten classes: per-video parameters, a frame renderer and a sound, sharing events.

Each `AVClass` has per-video parameters (`setup`), a frame renderer (`draw`)
and a sound synthesiser (`sound`) sharing those parameters (and event times)
so that the picture and the sound move together. The table of classes is in
the `l3.demo.corpus` docstring.
"""

import dataclasses
import math
from typing import Callable, Tuple

import numpy as np

from l3.demo.corpus.primitives import (band, decay, disc, ellipse, filtered_noise, osc, paint, periodic,
                                  place, polygon, rect, reflect, shade, time_since)

# Two sizes of every object; size sets pitch and tempo, so a model that looks
# at size and listens to pitch can tell apart same-class videos.
VARIANTS = {"small": 0.8, "large": 1.35}
# Object sizes in the draw functions are fractions of OBJECT_SIZE x the
# frame's smaller side. 1.35: at 1.0 a small ball was 14 px across in the
# small preset's 64x64 crops and a proxy training run learnt vision slowly.
OBJECT_SIZE = 1.35


@dataclasses.dataclass(frozen=True)
class AVClass:
    """One class: its descriptions, its hue, and three functions sharing the dict `p`.

    `p` is one video's parameters: variant, scale, pitch, tempo, x0 and y0
    (pixels), colour float32 [3] (`l3.demo.corpus.plan.class_params`), plus what
    `setup` adds (e.g. events: float64 [k], seconds of the visible events).
    """

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
    x = float(reflect(p["x0"] + p["vx"] * w * t, 0.3 * w, 0.7 * w))
    squash = 1.0 + 0.25 * math.exp(-time_since(t, p["events"]) / 0.06)
    floor = p["y0"] + a / 2 + 0.9 * r
    paint(img, floor, x, 1.3 * r, ellipse(0.15 * r, r), (0.08, 0.08, 0.08), 0.45 - 0.3 * (floor - y) / (a + r))
    paint(img, y, x, 1.3 * r, ellipse(r / squash, r * squash), shade(p["colour"], r))


def _ball_sound(rng, p, sr, n):
    out = np.zeros(n)
    f0 = 230.0 * p["pitch"]

    def thud(i):
        t, env = decay(sr, 0.35, 0.07)
        f = f0 * (1 + 0.7 * np.exp(-t / 0.015))
        click = rng.standard_normal(len(t)) * np.exp(-t / 0.004) * 0.4
        return (np.sin(2 * np.pi * np.cumsum(f) / sr) * env
                + 0.3 * np.sin(2 * np.pi * 2.3 * np.cumsum(f) / sr) * np.exp(-t / 0.03)
                + click) * rng.uniform(0.75, 1.0)
    place(out, sr, p["events"], thud)
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
    paint(img, y, x, 0.25 * s, rect(0.1 * s, 0.22 * s), p["colour"])
    paint(img, y - 0.02 * s, x + 0.12 * s, 0.1 * s, rect(0.04 * s, 0.06 * s), (0.75, 0.85, 0.95))
    for dx in (-0.13, 0.13):
        paint(img, y + 0.1 * s, x + dx * s, 0.06 * s, disc(0.05 * s), (0.05, 0.05, 0.05))
    b = 0.5 + 0.5 * float(_siren_lfo(t, p))
    lamp = np.array([0.35, 0.0, 0.0]) + b * np.array([0.65, 0.6, 0.5])
    paint(img, y - 0.14 * s, x, 0.08 * s, rect(0.04 * s, 0.07 * s), lamp)


def _siren_sound(rng, p, sr, n):
    t = np.arange(n) / sr
    f = 900.0 * p["pitch"] * (1 + 0.3 * _siren_lfo(t, p))
    return osc(f, sr, (1.0, 0.35, 0.2, 0.1))


def _bird_setup(rng, p, dur):
    bursts = periodic(rng, dur, 0.7 / p["tempo"], jitter=0.1)
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
    paint(img, y, x, 0.12 * s, ellipse(0.06 * s, 0.1 * s), shade(p["colour"], 0.1 * s))
    paint(img, y - 0.04 * s, x + d * 0.09 * s, 0.06 * s, disc(0.045 * s), p["colour"])
    paint(img, y - 0.05 * s, x + d * 0.1 * s, 0.02 * s, disc(0.012 * s), (0, 0, 0))
    gape = 0.025 * s if time_since(t, p["bursts"]) < 0.35 else 0.006 * s
    beak = [(-0.04 * s - gape, d * 0.12 * s), (-0.04 * s, d * 0.19 * s), (-0.04 * s + gape, d * 0.12 * s)]
    paint(img, y, x, 0.2 * s, polygon(beak), (1.0, 0.5, 0.05))
    tip = -0.15 * s * math.cos(2 * np.pi * 3.0 * t + p["phi"])
    wing = [(-0.01 * s, -0.06 * s * d), (-0.01 * s, 0.03 * s * d), (tip, -0.05 * s * d)]
    paint(img, y, x, 0.17 * s, polygon(wing), p["colour"] * 0.8)


def _bird_sound(rng, p, sr, n):
    out = np.zeros(n)

    def chirp(i):
        m = int(0.06 * sr)
        t = np.arange(m) / sr
        f = p["pitch"] * 4500.0 * (2800.0 / 4500.0) ** (t / 0.06)
        env = np.sin(np.pi * t / 0.06) ** 2
        return osc(f, sr, (1.0, 0.15)) * env * rng.uniform(0.6, 1.0)
    place(out, sr, p["events"], chirp)
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
    paint(img, y, x, 0.22 * s, rect(0.08 * s, 0.2 * s), p["colour"])
    paint(img, y - 0.12 * s, x + d * 0.12 * s, 0.1 * s, rect(0.06 * s, 0.08 * s), p["colour"] * 0.75)
    paint(img, y - 0.13 * s, x + d * 0.15 * s, 0.05 * s, rect(0.03 * s, 0.035 * s), (0.7, 0.85, 0.95))
    angle = 2 * np.pi * 0.9 * t * d
    for dx in (-0.12, 0.12):
        cx, cy = x + dx * s, y + 0.09 * s
        paint(img, cy, cx, 0.07 * s, disc(0.06 * s), (0.08, 0.08, 0.08))
        paint(img, cy, cx, 0.07 * s, rect(0.008 * s, 0.045 * s, angle), (0.7, 0.7, 0.7))


def _engine_sound(rng, p, sr, n):
    t = np.arange(n) / sr
    f0 = 70.0 * p["pitch"] * (1 + 0.2 * np.sin(2 * np.pi * t / 2.5 + p["phi"]))
    cycles = np.cumsum(f0) / sr
    saw, square = 2 * (cycles % 1) - 1, np.sign(np.sin(2 * np.pi * cycles))
    fire = 1 + 0.5 * np.sin(np.pi * cycles)   # uneven cylinders: a beat at f0 / 2
    buzz = band((0.6 * saw + 0.4 * square) * fire, sr, 0, 3000)
    return buzz + 0.3 * np.std(buzz) * filtered_noise(rng, n, sr, 30, 400)


def _drum_setup(rng, p, dur):
    p["events"] = periodic(rng, dur, 0.3 / p["tempo"], jitter=0.02)
    p["accents"] = np.resize([1.0, 0.55, 0.8, 0.55], len(p["events"]))


def _drum_draw(img, t, p, S):
    s = S * p["scale"]
    since = time_since(t, p["events"])
    pulse = 1 + 0.08 * math.exp(-since / 0.08)
    s *= pulse
    x, y = p["x0"], p["y0"]
    base = p["colour"]

    def shell(yy, xx):
        stripe = (np.sin((xx + yy) * 0.5 / (0.02 * s)) > 0.3)[..., None]
        return np.where(stripe, np.float32(0.95), base)
    paint(img, y + 0.04 * s, x, 0.2 * s, rect(0.1 * s, 0.13 * s), shell)
    head = np.array([0.9, 0.85, 0.7]) * (1 + 0.15 * math.exp(-since / 0.1))
    paint(img, y - 0.06 * s, x, 0.15 * s, ellipse(0.035 * s, 0.13 * s), np.minimum(head, 1))
    lift = 1 - math.exp(-since / 0.1)
    ang = -0.4 - 0.9 * lift
    cx = x + 0.12 * s + 0.13 * s * math.cos(ang)
    cy = y - 0.07 * s + 0.13 * s * math.sin(ang)
    paint(img, cy, cx, 0.16 * s, rect(0.012 * s, 0.14 * s, ang), (0.35, 0.2, 0.08))


def _drum_sound(rng, p, sr, n):
    out = np.zeros(n)
    t, env = decay(sr, 0.3, 0.05)
    snare = filtered_noise(rng, len(t), sr, 1000, 6000) * env
    f = 160.0 * p["pitch"] * (1 + 0.5 * np.exp(-t / 0.02))
    tom = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.09)
    hit = 0.5 * snare + tom
    place(out, sr, p["events"], lambda i: hit * p["accents"][i])
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
    paint(img, py, px, 0.3 * s, polygon(pts), shade(p["colour"], 0.2 * s, (0.5, -0.6)))
    paint(img, py, px, 0.05 * s, disc(0.035 * s), p["colour"] * 0.7)
    lag = 0.6 * th
    cy, cx = py + 0.25 * s * math.cos(lag), px - 0.25 * s * math.sin(lag)
    paint(img, cy, cx, 0.05 * s, disc(0.03 * s), (0.15, 0.1, 0.05))


def _bell_sound(rng, p, sr, n):
    out = np.zeros(n)
    f = 600.0 * p["pitch"]
    ratios = (0.5, 1.0, 1.19, 1.5, 2.0, 2.53, 3.01)
    amps = (0.5, 1.0, 0.6, 0.4, 0.5, 0.25, 0.15)
    taus = (1.0, 0.7, 0.5, 0.45, 0.35, 0.25, 0.15)
    t = np.arange(int(2.0 * sr)) / sr
    strike = sum(a * np.sin(2 * np.pi * r * f * t + k) * np.exp(-t / tau)
                 for k, (r, a, tau) in enumerate(zip(ratios, amps, taus)))
    place(out, sr, p["events"], lambda i: strike * rng.uniform(0.7, 1.0))
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
    paint(img, y, x, 0.25 * s, ellipse(0.11 * s, 0.23 * s), ripples)
    for (dy, dx), te in zip(p["drops"], p["events"]):
        age = t - te
        if 0 <= age < 0.3:
            paint(img, y + 0.05 * s * dy - 0.3 * s * age, x + 0.16 * s * dx, 0.04 * s,
                  disc(0.025 * s), (0.95, 0.98, 1.0), 1 - age / 0.3)


def _water_sound(rng, p, sr, n):
    hiss = filtered_noise(rng, n, sr, 400, 4000, tilt=-0.5)
    env = np.interp(np.arange(n), np.linspace(0, n, 12), rng.uniform(0.6, 1.0, 12))
    out = 0.35 * hiss * env

    def plink(i):
        t, e = decay(sr, 0.08, 0.03)
        f = 700.0 * p["pitch"] * rng.uniform(0.8, 1.25) * (1 + 1.3 * np.minimum(t / 0.025, 1))
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * e
    place(out, sr, p["events"], plink)
    return out


def _clock_setup(rng, p, dur):
    p["events"] = periodic(rng, dur, 0.5 / p["tempo"], jitter=0.0)
    p["angle0"] = rng.uniform(0, 2 * np.pi)


def _clock_draw(img, t, p, S):
    s = S * p["scale"]
    x, y = p["x0"], p["y0"]
    r = 0.13 * s
    paint(img, y, x, 1.2 * r, disc(r * 1.1), (0.12, 0.12, 0.12))
    paint(img, y, x, 1.2 * r, disc(r), p["colour"])
    for k in range(4):
        a = k * np.pi / 2
        paint(img, y - 0.8 * r * math.cos(a), x + 0.8 * r * math.sin(a), 0.2 * r,
              rect(0.12 * r, 0.04 * r + 0.5, a), (0.1, 0.1, 0.1))
    steps = np.searchsorted(p["events"], t, side="right")
    a = p["angle0"] + steps * np.pi / 6
    hand_c = (y - 0.35 * r * math.cos(a), x + 0.35 * r * math.sin(a))
    paint(img, hand_c[0], hand_c[1], 0.5 * r, rect(0.05 * r + 0.3, 0.4 * r, a - np.pi / 2), (0, 0, 0))
    paint(img, y, x, 0.15 * r, disc(0.1 * r), (0.8, 0.05, 0.05))


def _clock_sound(rng, p, sr, n):
    out = np.zeros(n)
    t, _ = decay(sr, 0.04, 1.0)

    def click(i):
        fa, fb = (3200.0, 5100.0) if i % 2 == 0 else (2300.0, 4100.0)
        fa, fb = fa * p["pitch"], min(fb * p["pitch"], 0.45 * sr)
        return (np.sin(2 * np.pi * fa * t) + 0.6 * np.sin(2 * np.pi * fb * t)) * np.exp(-t / 0.008)
    place(out, sr, p["events"], click)
    return out


_PENTATONIC = np.array([0, 2, 4, 7, 9, 12, 14])


def _whistle_setup(rng, p, dur):
    p["events"] = periodic(rng, dur, 0.3 / p["tempo"], jitter=0.2, start=0.0)
    p["notes"] = _PENTATONIC[rng.integers(0, len(_PENTATONIC), len(p["events"]))]
    p["angle"] = rng.uniform(-0.6, 0.6)


def _whistle_draw(img, t, p, S):
    s = S * p["scale"]
    x, y, a = p["x0"], p["y0"], p["angle"]
    paint(img, y, x, 0.3 * s, rect(0.045 * s, 0.25 * s, a), p["colour"])
    i = max(np.searchsorted(p["events"], t, side="right") - 1, 0)
    lit = int(p["notes"][i]) % 5
    for k in range(5):
        u = (-0.15 + 0.07 * k) * s
        col = (1.0, 1.0, 0.9) if k == lit else (0.1, 0.15, 0.1)
        paint(img, y + u * math.sin(a), x + u * math.cos(a), 0.03 * s, disc(0.018 * s), col)


def _whistle_sound(rng, p, sr, n):
    idx = np.searchsorted(p["events"], np.arange(n) / sr, side="right") - 1
    semis = p["notes"][np.maximum(idx, 0)]
    t = np.arange(n) / sr
    f = 880.0 * p["pitch"] * 2 ** (semis / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    return osc(f, sr, (1.0, 0.08, 0.03)) + 0.05 * filtered_noise(rng, n, sr, 2000, 6000)


def _dog_setup(rng, p, dur):
    pairs = periodic(rng, dur, 0.8 / p["tempo"], jitter=0.1)
    p["events"] = np.sort(np.concatenate([pairs, pairs + 0.22]))
    p["events"] = p["events"][p["events"] < dur]


def _dog_draw(img, t, p, S):
    s = S * p["scale"]
    hop = 0.05 * s * math.exp(-time_since(t, p["events"]) / 0.1)
    x, y = p["x0"], p["y0"] - hop
    col = p["colour"]
    paint(img, y, x, 0.18 * s, ellipse(0.08 * s, 0.15 * s), shade(col, 0.15 * s))
    paint(img, y - 0.09 * s, x + 0.13 * s, 0.1 * s, disc(0.07 * s), col)
    paint(img, y - 0.12 * s, x + 0.07 * s, 0.08 * s, ellipse(0.06 * s, 0.025 * s), col * 0.6)
    paint(img, y - 0.11 * s, x + 0.15 * s, 0.02 * s, disc(0.012 * s), (0, 0, 0))
    for dx in (-0.1, 0.1):
        paint(img, y + 0.1 * s, x + dx * s, 0.08 * s, rect(0.05 * s, 0.018 * s), col * 0.8)


def _dog_sound(rng, p, sr, n):
    out = np.zeros(n)

    def bark(i):
        t, _ = decay(sr, 0.16, 1.0)
        f0 = 420.0 * p["pitch"] * (1 + 0.3 * np.exp(-t / 0.04))
        env = np.minimum(t / 0.01, 1) * np.exp(-t / 0.05)
        harm = [1.0, 0.8, 0.9, 0.6, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05]
        return osc(f0, sr, harm) * env
    place(out, sr, p["events"], bark)
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
