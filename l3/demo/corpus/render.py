"""Rendering a planned video: frames uint8 [T, H, W, 3] and audio float32 [samples(, 2)].

Everything random here comes from the plan's two seeds (`VideoPlan.seeds`),
so the same plan renders the same arrays.
"""

import math
from typing import Tuple

import numpy as np

from l3.demo.corpus.classes import CLASSES, OBJECT_SIZE
from l3.demo.corpus.nuisance import DISTRACTORS, background, music, peak_normalise, speech
from l3.demo.corpus.plan import VideoPlan
from l3.demo.corpus.primitives import add_at, ellipse, filtered_noise, osc, paint


def draw_object(img: np.ndarray, plan: VideoPlan, t: float, margin: int = 0) -> None:
    """Paints the video's object at time t into float32 [H + 2 margin, W + 2 margin, 3]
    (a scene's: in its half of the canvas, `plan.SCENE_ZOOM` times larger)."""
    scene = plan.nuisance.get("scene")
    if scene is None:
        p = plan.p if not margin else dict(plan.p, x0=plan.p["x0"] + margin, y0=plan.p["y0"] + margin)
        CLASSES[plan.label_index].draw(img, t, p, OBJECT_SIZE * min(plan.size))
    else:
        _draw_in_half(img, plan, plan.label_index, plan.p, t, margin)


def draw_bystander(img: np.ndarray, plan: VideoPlan, t: float, margin: int = 0) -> None:
    """Paints a scene's silent object of another class (nothing for other videos), like
    `draw_object`."""
    scene = plan.nuisance.get("scene")
    if scene is not None:
        _draw_in_half(img, plan, scene["label_index"], scene["p"], t, margin)


def _draw_in_half(img: np.ndarray, plan: VideoPlan, label_index: int, p: dict, t: float,
                  margin: int) -> None:
    """Draws object p of class `label_index` into the half of the padded canvas [H + 2m,
    W + 2m, 3] that holds its centre x0 (the left one includes the left margin, the right
    one the right margin): an object never paints over the other half, and motions that
    scale with the canvas width scale with the half's."""
    cut = margin + plan.size[1] // 2
    left = p["x0"] < plan.size[1] / 2
    view = img[:, :cut] if left else img[:, cut:]
    q = dict(p, x0=p["x0"] + margin - (0 if left else cut), y0=p["y0"] + margin)
    CLASSES[label_index].draw(view, t, q, OBJECT_SIZE * min(plan.size) * plan.nuisance["scene"]["zoom"])


def canvas_margin(plan: VideoPlan) -> int:
    """Pixels of canvas around the frame on each side (room for the camera's pan and shake)."""
    return int(math.ceil(plan.nuisance["pan_amp"])) + 3


def camera_path(plan: VideoPlan, rng) -> np.ndarray:
    """int [T, 2]: the (row, column) of each frame's top-left corner in the padded canvas.

    Draws the shake from `rng` (two uniforms per frame when the plan shakes), in
    the order `render_frames` always drew them: right after the background.
    """
    q, m = plan.nuisance, canvas_margin(plan)
    out = np.empty((plan.duration * plan.fps, 2), np.int64)
    for k in range(len(out)):
        t = k / plan.fps
        oy = m + q["pan_amp"] * math.sin(0.5 * t + q["pan"][0])
        ox = m + q["pan_amp"] * math.sin(0.4 * t + q["pan"][1])
        if q["shake"]:
            oy, ox = oy + rng.uniform(-1.5, 1.5), ox + rng.uniform(-1.5, 1.5)
        out[k] = int(np.clip(round(oy), 0, 2 * m)), int(np.clip(round(ox), 0, 2 * m))
    return out


def frame_offsets(plan: VideoPlan) -> np.ndarray:
    """int [T, 2]: `camera_path` as `render_frames` draws it (same random stream, no rendering)."""
    rng = np.random.default_rng(plan.seeds[0])
    m = canvas_margin(plan)
    background(rng, plan.size[0] + 2 * m, plan.size[1] + 2 * m)   # advances rng as render_frames does
    return camera_path(plan, rng)


def draw_distractor(img: np.ndarray, plan: VideoPlan, t: float, margin: int = 0) -> None:
    """Paints the plan's passing distractor shape (if any) at time t, like `draw_object`."""
    d = plan.nuisance["distractor"]
    if d is None:
        return
    h, w = plan.size
    s = min(h, w)
    x = (d["x0"] + d["speed"] * t) % 1.6 - 0.3
    paint(img, d["y"] * h + margin, x * w + margin, d["r"] * s * 1.6,
          ellipse(d["r"] * s, 1.5 * d["r"] * s), d["colour"])


def render_frames(plan: VideoPlan) -> np.ndarray:
    """uint8 [duration * fps, H, W, 3]."""
    rng = np.random.default_rng(plan.seeds[0])
    h, w = plan.size
    q = plan.nuisance
    m = canvas_margin(plan)
    bg = background(rng, h + 2 * m, w + 2 * m)
    offsets = camera_path(plan, rng)
    n = plan.duration * plan.fps
    frames = np.empty((n, h, w, 3), np.float32)
    for k, (oy, ox) in enumerate(offsets):
        t = k / plan.fps
        img = bg.copy()
        draw_distractor(img, plan, t, m)   # passes behind the object
        draw_bystander(img, plan, t, m)    # a scene's silent object, in the other half
        draw_object(img, plan, t, m)
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
        main = peak_normalise(CLASSES[plan.label_index].sound(rng, plan.p, sr, n))
        for a, b in q["gaps"]:   # muted stretch, 20 ms fades
            main *= np.clip(np.maximum(a - t, t - b) / 0.02, 0, 1)
    else:
        main = peak_normalise(music(rng, sr, n) if plan.soundtrack == "music" else speech(rng, sr, n))
    side = []
    for kind, a, b, level, extra in q["offscreen"]:
        k = int(round((b - a) * sr))
        if extra is not None:
            other, p2 = extra
            src = CLASSES[other].sound(rng, p2, sr, k)
        else:
            src = DISTRACTORS[kind](rng, sr, k)
        buf = np.zeros(n)
        add_at(buf, peak_normalise(src) * 10 ** (level / 20), round(a * sr))
        side.append(buf)
    tilt = {"white": 0.0, "pink": -0.5, "brown": -1.0}[q["noise"]]
    noise_db = -q["snr_db"]
    chans = []
    common = filtered_noise(rng, n, sr, 20, None, tilt)
    for ch in range(plan.channels):
        noise = common if plan.channels == 1 else 0.8 * common + 0.6 * filtered_noise(rng, n, sr, 20, None, tilt)
        x = noise * 10 ** (noise_db / 20)
        if q["hum"]:
            x = x + 10 ** ((noise_db - 6) / 20) * osc(np.full(n, float(q["hum"])), sr, (1, 0.5, 0.3))
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

