r"""Embedding throughput through an exported model: audio seconds/s and images/s.

  .venv/bin/python benchmarks/bench_embed.py --output_json=/tmp/bench_embed.json
  .venv/bin/python benchmarks/bench_embed.py --presets=paper --audio_seconds=60 --images=128

For each preset, a model with random weights is exported (`l3.export`) and
loaded back as `ExportedModel`, exactly what `l3-embed` and the transfer
tools run. Timed (after one warm-up batch):

* audio: `l3.get_audio_embedding` (center=False) on `--audio_seconds` of noise at the
  encoder's rate with `--hop_s` (window slicing + SavedModel calls).
  Reported as 1 s windows per second and as audio seconds embedded per
  second at that hop (= windows/s x hop_s) and at a 1 s hop (= windows/s);
* images: `ExportedModel.embed_images` on `--images` random images;
* short clips: `--short_clips` clips of 0.5 s (one centred window each),
  one `l3.get_audio_embedding` call per clip vs one call on the list (whose
  windows share batches): clips per second each way.

Decoding is not included (see benchmarks/bench_builder.py for PyAV decode
rates). Wall-clock numbers drop when other jobs share the cores; the CPU
seconds used are reported beside them.
"""

import os
import shutil
import sys
import tempfile
import time
from typing import Dict, Sequence

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.machine import machine_info  # noqa: E402
from l3.export import writer as export  # noqa: E402
from l3.core import fileio, presets as presets_lib
from l3.model import network as model_lib
from l3.embeddings import api, files  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("presets", ["small", "paper"], "Presets to measure.")
flags.DEFINE_float("audio_seconds", 30.0, "Seconds of audio embedded per preset.")
flags.DEFINE_float("hop_s", files.DEFAULT_HOP_SIZE, "Audio window hop.")
flags.DEFINE_integer("images", 64, "Images embedded per preset.")
flags.DEFINE_integer("batch_size", 64, "Encoder batch size.")
flags.DEFINE_integer("short_clips", 64, "0.5 s clips for the per-clip vs list comparison.")
flags.DEFINE_string("output_json", None, "Where to write the report.")


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure_preset(name: str, *, audio_seconds: float, hop_s: float, images: int,
                   batch_size: int, short_clips: int = 64) -> Dict:
    preset = presets_lib.get_preset(name)
    tmp = tempfile.mkdtemp(prefix="bench-embed-")
    try:
        export.export_model(model_lib.build_avc_model(preset), preset, os.path.join(tmp, "export"))
        m = export.ExportedModel(os.path.join(tmp, "export"))
        rng = np.random.default_rng(0)
        audio = (0.1 * rng.standard_normal(int(audio_seconds * m.sample_rate))).astype(np.float32)
        imgs = rng.uniform(0, 1, (images, m.image_size, m.image_size, 3)).astype(np.float32)
        # Warm-up: loads the SavedModels and traces the first batch shape.
        api.get_audio_embedding(audio[: 2 * m.clip_samples], m.sample_rate, m, hop_size=hop_s,
                                center=False, batch_size=batch_size)
        m.embed_images(imgs[:batch_size], batch_size=batch_size)
        out = {}
        a_wall, a_cpu = _timed(lambda: out.setdefault(
            "a", api.get_audio_embedding(audio, m.sample_rate, m, hop_size=hop_s, center=False,
                                         batch_size=batch_size)))
        windows = len(out["a"][1])
        i_wall, i_cpu = _timed(lambda: m.embed_images(imgs, batch_size=batch_size))
        clips = [c for c in (0.1 * rng.standard_normal((short_clips, m.sample_rate // 2))
                             ).astype(np.float32)]
        one_wall, _ = _timed(lambda: [api.get_audio_embedding(c, m.sample_rate, m,
                                                              batch_size=batch_size)
                                      for c in clips])
        list_wall, _ = _timed(lambda: api.get_audio_embedding(clips, m.sample_rate, m,
                                                              batch_size=batch_size))
        return {
            "preset": name, "batch_size": batch_size, "hop_s": hop_s,
            "audio_windows": windows, "audio_wall_s": a_wall, "audio_cpu_s": a_cpu,
            "windows_per_second": windows / a_wall,
            "audio_seconds_per_second_at_hop": windows * hop_s / a_wall,
            "audio_seconds_per_second_at_1s_hop": windows / a_wall,
            "images": images, "image_wall_s": i_wall, "image_cpu_s": i_cpu,
            "images_per_second": images / i_wall,
            "short_clips": short_clips,
            "short_clips_per_second_one_call_each": short_clips / one_wall,
            "short_clips_per_second_one_list_call": short_clips / list_wall,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_benchmark(presets: Sequence[str] = ("small", "paper"), *, audio_seconds: float = 30.0,
                  hop_s: float = files.DEFAULT_HOP_SIZE, images: int = 64,
                  batch_size: int = 64, short_clips: int = 64) -> Dict:
    """Measures every preset; returns {"machine", "results": [...]}."""
    results = [measure_preset(p, audio_seconds=audio_seconds, hop_s=hop_s, images=images,
                              batch_size=batch_size, short_clips=short_clips) for p in presets]
    return {"machine": machine_info(), "results": results}


def format_table(report: Dict) -> str:
    m = report["machine"]
    lines = [f"machine: {m['cpu']} ({m['cores_usable']} cores available, load "
             f"{m['load_average'][0]:.1f}), GPUs: {', '.join(m['gpus']) or 'none'}; "
             f"TensorFlow {m['tensorflow']}",
             f"{'preset':8s} {'batch':>5s} {'windows/s':>10s} {'audio s/s':>10s} "
             f"{'(hop)':>6s} {'audio s/s':>10s} {'(hop)':>6s} {'images/s':>9s} "
             f"{'clips/s 1-by-1':>14s} {'clips/s list':>12s}"]
    for r in report["results"]:
        lines.append(f"{r['preset']:8s} {r['batch_size']:5d} {r['windows_per_second']:10.1f} "
                     f"{r['audio_seconds_per_second_at_hop']:10.1f} {r['hop_s']:6.2f} "
                     f"{r['audio_seconds_per_second_at_1s_hop']:10.1f} {1.0:6.2f} "
                     f"{r['images_per_second']:9.1f} "
                     f"{r['short_clips_per_second_one_call_each']:14.1f} "
                     f"{r['short_clips_per_second_one_list_call']:12.1f}")
    return "\n".join(lines)


def main(argv):
    del argv
    report = run_benchmark(FLAGS.presets, audio_seconds=FLAGS.audio_seconds, hop_s=FLAGS.hop_s,
                           images=FLAGS.images, batch_size=FLAGS.batch_size,
                           short_clips=FLAGS.short_clips)
    print(format_table(report))
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, report)


if __name__ == "__main__":
    app.run(main)
