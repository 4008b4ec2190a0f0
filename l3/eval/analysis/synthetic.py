"""Stand-ins for a trained model and a labelled test set, so the analysis runs anywhere.

The analysis notebook and tests use these when no demo model is at hand:

* `write_labelled_shards`: tiny labelled videos in the TFRecord schema. Each
  class has its own colour, a bright square whose position moves with the
  class, and a tone at its own pitch, plus noise per video; so class
  structure exists for a network to pick up (even a random one, a little).
* `random_export`: an export directory of an *untrained* AVC model
  (`l3.export.export_model`), seeded.

Neither is a substitute for real data: numbers computed on them say only that
the code runs.
"""

import os
from typing import List, Optional, Sequence

import numpy as np
import keras
import tensorflow as tf

from l3.core import constants as C
from l3.export import writer as export_lib
from l3.model import network as model_lib
from l3.records import schema as records
from l3.core.presets import get_preset

DEFAULT_CLASSES = ("playing accordion", "playing bass guitar", "lawn mowing",
                   "tap dancing", "typing", "playing xylophone")


def _square(class_index: int, height: int, width: int):
    """(top, left, side) of the class's bright square."""
    side = height // 3
    return (class_index * side // 2) % (height - side), (class_index * 37) % (width - side), side


def _frame(rng, class_index: int, num_classes: int, height: int, width: int) -> np.ndarray:
    hue = class_index / max(num_classes, 1)
    base = np.array([0.5 + 0.5 * np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)])
    img = base * 0.6 + 0.15 * rng.standard_normal((height, width, 3))
    top, left, side = _square(class_index, height, width)
    img[top:top + side, left:left + side] = 1.0 - base
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _audio(rng, class_index: int, samples: int, rate: int) -> np.ndarray:
    t = np.arange(samples) / rate
    pitch = 220.0 * 2 ** (class_index * 7 / 12)  # a fifth apart: distinct bands
    tone = np.sin(2 * np.pi * pitch * t + rng.uniform(0, 2 * np.pi))
    # Classes alternate steady and pulsed tones, so time structure differs too.
    if class_index % 2:
        tone *= (np.sin(2 * np.pi * (2 + class_index) * t) > 0)
    wave = 0.4 * tone + 0.05 * rng.standard_normal(samples)
    return (np.clip(wave, -1, 1) * 32000).astype(np.int16)


def write_labelled_shards(directory: str, *, num_videos: int = 24, num_shards: int = 2,
                          seconds: float = 2.0, fps: float = 2.0,
                          classes: Sequence[str] = DEFAULT_CLASSES, split: str = "test",
                          frame_size=(96, 128), seed: int = 0,
                          boxes_path: Optional[str] = None) -> List[str]:
    """Writes `num_videos` labelled videos (classes round-robin) to `{split}-*.tfrecord`.

    Returns the shard paths. Frames are JPEGs of `frame_size` (height, width),
    audio is 48 kHz int16 starting at time 0. `boxes_path`: also write the bright
    square's box in every frame there (l3-boxes format, `l3.eval.localization_io`).
    """
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [os.path.join(directory, records.shard_name(split, i, num_shards))
             for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    samples = int(round(seconds * C.SAMPLE_RATE))
    frame_times = list(np.arange(int(seconds * fps)) / fps)
    try:
        for v in range(num_videos):
            c = v % len(classes)
            frames = [tf.io.encode_jpeg(_frame(rng, c, len(classes), *frame_size)).numpy()
                      for _ in frame_times]
            ex = records.make_example(video_id=f"{split}_{v:04d}", frames=frames,
                                      frame_times=frame_times,
                                      audio=_audio(rng, c, samples, C.SAMPLE_RATE),
                                      label=classes[c], split=split, source="synthetic")
            writers[v % num_shards].write(ex.SerializeToString())
    finally:
        for w in writers:
            w.close()
    if boxes_path is not None:
        from l3.eval import localization_io  # noqa: PLC0415
        h, w = frame_size
        videos = {}
        for v in range(num_videos):
            top, left, side = _square(v % len(classes), h, w)
            box = [left / w, top / h, (left + side) / w, (top + side) / h]
            videos[f"{split}_{v:04d}"] = {"label": classes[v % len(classes)], "frames": [
                {"time": float(t), "boxes": [box]} for t in frame_times]}
        localization_io.write_truth(boxes_path, videos)
    return paths


def random_export(export_dir: str, preset_name: str = "small", seed: int = 0,
                  step: Optional[int] = 0) -> dict:
    """Exports a randomly initialised (seeded) AVC model; returns export.json's dict."""
    preset = get_preset(preset_name)
    keras.utils.set_random_seed(seed)
    avc = model_lib.build_avc_model(preset)
    return export_lib.export_model(avc, preset, export_dir, step=step,
                                   source=f"random init, seed {seed}")
