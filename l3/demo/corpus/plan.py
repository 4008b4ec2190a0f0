"""The plan of a corpus: its parameters and every random choice of every video (cheap).

`plan_corpus(params)` gives one `VideoPlan` per video, in split / class /
index order, without rendering anything. Each video's plan is drawn from its
own `SeedSequence(seed, version, split, class, index)`, so it does not
depend on the other videos, the split sizes or the number of workers.
"""

import dataclasses
import hashlib
import math
from typing import List, Mapping, Tuple

import numpy as np

from l3.demo.corpus.classes import CLASSES, VARIANTS, AVClass
from l3.demo.corpus.primitives import hsv

CORPUS_VERSION = 1
SPLITS = ("train", "val", "test", "scene")
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2, "scene": 3}
DEFAULT_VIDEOS_PER_CLASS = {"train": 32, "val": 6, "test": 10, "scene": 10}
# The "scene" split, for sound-source localization only (never trained on): two objects
# of different classes side by side, each in the middle of its half of the frame, drawn
# SCENE_ZOOM times the other splits' size; the video's sound is the one of its label's
# object, the other one (the bystander) is silent. See `scene_params`.
SCENE_ZOOM = 1.5
AUDIO_RATES = (48000, 44100, 22050)
AUDIO_RATE_P = (0.2, 0.2, 0.6)      # AAC: half of the CPU time; 22.05 kHz mono encodes 2x faster
STEREO_P = 0.2
OFFSCREEN_P = 0.4
GAP_P = 0.3
HUM_P = 0.2
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


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
        if self.num_classes < 2 and self.videos_per_class.get("scene", 0):
            raise ValueError("the scene split needs at least two classes (a bystander of "
                             "another class); set videos_per_class['scene'] to 0")

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
            "scene": None if q.get("scene") is None else {
                "bystander": CLASSES[q["scene"]["label_index"]].name, "side": q["scene"]["side"],
                "zoom": q["scene"]["zoom"]},
            "variant": p["variant"], "scale": round(p["scale"], 3), "pitch": round(p["pitch"], 3), "tempo": round(p["tempo"], 3),
            "position": [round(p["y0"] / self.size[0], 3), round(p["x0"] / self.size[1], 3)],
            "colour": [round(float(c), 3) for c in p["colour"]],
            "events": [round(float(e), 3) for e in p.get("events", ())],
        }


def _youtube_id(seed: int, split: str, label_index: int, index: int) -> str:
    h = hashlib.sha256(f"l3-corpus/{seed}/{split}/{label_index}/{index}".encode()).digest()
    return "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in h[:11])


def class_params(rng, cls: AVClass, dur: float, size) -> dict:
    """One video's parameters of class `cls` (see `AVClass`), for `dur` seconds at size (H, W)."""
    h, w = size
    variant = str(rng.choice(list(VARIANTS)))
    scale = VARIANTS[variant] * math.exp(rng.uniform(-0.08, 0.08))
    if cls.hue < 0:
        colour = hsv(0, rng.uniform(0, 0.08), rng.uniform(0.85, 1.0))
    else:
        colour = hsv(cls.hue + rng.uniform(-10, 10), rng.uniform(0.65, 1.0), rng.uniform(*cls.value))
    # Bigger sounds lower (pitch ~ 1 / size, as for bells, balls, drums) and moves slower.
    p = {"variant": variant, "scale": scale,
         "pitch": math.exp(rng.uniform(-0.03, 0.03)) / scale,
         "tempo": scale ** -0.5 * math.exp(rng.uniform(-0.1, 0.1)),
         "x0": rng.uniform(0.38, 0.62) * w, "y0": rng.uniform(0.4, 0.6) * h, "colour": colour}
    cls.setup(rng, p, dur)
    return p


def default_videos_per_class(num_classes: int) -> dict:
    """DEFAULT_VIDEOS_PER_CLASS, without the scene split for one class (a scene's bystander
    is of another class)."""
    return {s: n for s, n in DEFAULT_VIDEOS_PER_CLASS.items() if num_classes > 1 or s != "scene"}


def scene_params(rng, params: CorpusParams, c: int, p: dict, dur: float) -> dict:
    """Moves the video's object (class c, parameters p, changed in place) to the middle of
    one half of the frame (a fair coin picks which) and draws a silent bystander of another
    class for the other half: {"zoom", "side", "label_index", "p"} (`VideoPlan.nuisance["scene"]`).
    x0, y0 stay in frame pixels; `render.draw_object` draws each object inside its own
    half of the canvas, so motions that scale with the width scale with the half."""
    h, w = params.size
    other = int((c + rng.integers(1, params.num_classes)) % params.num_classes)
    q = class_params(rng, CLASSES[other], dur, params.size)
    side = "left" if rng.random() < 0.5 else "right"
    for obj, half in ((p, side), (q, "right" if side == "left" else "left")):
        obj["x0"] = (0.25 if half == "left" else 0.75) * w + rng.uniform(-0.02, 0.02) * w
        obj["y0"] = rng.uniform(0.45, 0.55) * h
    return {"zoom": SCENE_ZOOM, "side": side, "label_index": other, "p": q}


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
                plans.append(plan_video(params, split, c, i, (c * n + i) in unrelated))
    return plans


def plan_video(params: CorpusParams, split: str, c: int, i: int, unrelated: bool) -> VideoPlan:
    """The plan of video `i` of class `c` in `split`; `unrelated`: music or speech instead."""
    ss = np.random.SeedSequence([params.seed, CORPUS_VERSION, SPLIT_SEEDS[split], c, i])
    plan_ss, video_ss, audio_ss = ss.spawn(3)
    rng = np.random.default_rng(plan_ss)
    j = params.duration_jitter
    dur = int(params.seconds + rng.integers(-j, j + 1))
    time_start = int(rng.integers(0, 300))
    sr = int(rng.choice(AUDIO_RATES, p=AUDIO_RATE_P))
    channels = 2 if rng.random() < STEREO_P else 1
    cls = CLASSES[c]
    p = class_params(rng, cls, dur, params.size)
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
                extra = (other, class_params(rng, CLASSES[other], length, params.size))
            elif kind == "class":
                kind = "horn"
            offscreen.append((kind, start, start + length, level, extra))
    distractor = None
    if rng.random() < 0.2:   # something unrelated crosses the picture
        distractor = {"colour": hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.2, 0.9)),
                      "y": rng.uniform(0.2, 0.8), "r": rng.uniform(0.06, 0.14),
                      "speed": rng.choice([-1, 1]) * rng.uniform(0.15, 0.4), "x0": rng.uniform(0, 1)}
    scene = None
    if split == "scene":   # drawn last: the other splits' random streams stay as they were
        scene = scene_params(rng, params, c, p, dur)
        distractor = None
    nuisance = {
        "gaps": gaps, "offscreen": offscreen, "scene": scene,
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

