"""Nuisances: sounds that belong to no class (speech, music, horn, knocks) and backgrounds.

Sounds are float64 [n] at rate `sr`; a background is float32 [h, w, 3] in
about [0, 1]. The camera's pan, shake, flicker and sensor noise are drawn in
the plan (`l3.demo.corpus.plan`) and applied by `l3.demo.corpus.render`.
"""

import math

import numpy as np

from l3.demo.corpus.primitives import add_at, decay, ellipse, filtered_noise, hsv, osc, paint, place, rect

_VOWELS = ((730, 1090), (270, 2290), (530, 1840), (300, 870), (660, 1720), (400, 2000))


def speech(rng, sr, n):
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
        add_at(out, syl * np.sin(np.pi * t / t[-1]), t0)
        t0 += m + (int(rng.uniform(0.1, 0.4) * sr) if rng.random() < 0.25 else 0)
    return out


def music(rng, sr, n):
    """Plucked triads changing every two beats over a kick drum."""
    out = np.zeros(n)
    beat = 60.0 / rng.uniform(90, 140)
    root = 220.0 * 2 ** (rng.integers(0, 12) / 12)
    t, env = decay(sr, 2 * beat, 0.5)
    tk, ek = decay(sr, 0.2, 0.05)
    kick = np.sin(2 * np.pi * np.cumsum(60 * (1 + 2 * np.exp(-tk / 0.01))) / sr) * ek
    for b, start in enumerate(np.arange(0, n / sr, beat)):
        add_at(out, 0.8 * kick, start * sr)
        if b % 2 == 0:
            deg = rng.choice([0, 5, 7, 9])
            for step in (0, 4, 7):
                f = root * 2 ** ((deg + step) / 12)
                add_at(out, 0.3 * env * osc(np.full(len(t), f), sr, (1, 0.5, 0.25, 0.12)), start * sr)
    return out


def horn(rng, sr, n):
    """A two-tone car horn for all n samples: float64 [n]."""
    f = rng.uniform(350, 500)
    t = np.arange(n) / sr
    env = np.minimum(1, np.minimum(t / 0.02, (t[-1] - t) / 0.05))
    return env * (osc(np.full(n, f), sr, (1, 0, 0.33, 0, 0.2)) + osc(np.full(n, 1.26 * f), sr, (1, 0, 0.33)))


def knock(rng, sr, n):
    """Two to four knocks on wood from sample 0: float64 [n]."""
    out = np.zeros(n)
    t, env = decay(sr, 0.12, 0.02)
    hit = filtered_noise(rng, len(t), sr, 100, 800) * env + np.sin(2 * np.pi * 150 * t) * env
    place(out, sr, np.arange(rng.integers(2, 5)) * rng.uniform(0.12, 0.2), lambda i: hit)
    return out


DISTRACTORS = {"speech": speech, "horn": horn, "knock": knock}


def peak_normalise(x):
    """x / max |x| (any shape); all-zero stays zero."""
    return x / (np.max(np.abs(x)) + 1e-9)


def background(rng, h, w):
    """Random smooth colour field with a floor band and clutter: float32 [h, w, 3]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    g = ((yy - h / 2) * math.sin(a) + (xx - w / 2) * math.cos(a)) / max(h, w) + 0.5
    c0 = hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.25, 0.85))
    c1 = hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.25, 0.85))
    img = c0 * (1 - g[..., None]) + c1 * g[..., None]
    for _ in range(3):   # low-frequency texture
        ky, kx = rng.uniform(-0.15, 0.15, 2)
        img += (0.05 * np.cos(yy * ky + xx * kx + rng.uniform(0, 6.3)))[..., None] * rng.uniform(0.5, 1.5, 3)
    if rng.random() < 0.5:   # floor
        top = int(h * rng.uniform(0.65, 0.8))
        img[top:] = img[top:] * 0.4 + 0.6 * hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.2, 0.7))
    s = min(h, w)
    for _ in range(rng.integers(0, 4)):   # clutter
        col = hsv(rng.uniform(0, 360), rng.uniform(0, 0.45), rng.uniform(0.15, 0.95))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.04, 0.18, 2) * s
        shape = ellipse(ry, rx) if rng.random() < 0.5 else rect(ry, rx, rng.uniform(0, np.pi))
        paint(img, cy, cx, max(ry, rx) * 1.5, shape, col, rng.uniform(0.5, 1.0))
    return img.astype(np.float32)

