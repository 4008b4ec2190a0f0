r"""TFRecord builder throughput on generated 10-s clips, and where the time goes.

  .venv/bin/python benchmarks/bench_builder.py --num_videos=16 --workers=2 \
      --output_json=/tmp/bench_builder.json

Clips are YouTube-like by default: 640x360 H.264 at 30 fps with 44.1 kHz stereo
AAC (so audio is resampled), a smooth textured scene panning across the frame. They are generated once into
--media_dir and reused. The build runs `l3_tfrecords.builder.build` with the
builder's defaults (4 fps, smaller side 256, JPEG quality 90, first 10 s).

Reported: videos/s and decoded seconds/s (seconds of media turned into records
per wall second), both also per core used; the same per core computed from CPU
time (what an idle core would do: wall numbers drop when other jobs share the
cores, CPU-time numbers do not); and the CPU seconds per stage
summed over workers: decode (open, demux, decode every frame), convert (scale
and colour-convert the kept frames), resample (soxr to 48 kHz), jpeg (PIL
encode), write (Example serialization + TFRecord write, in the parent).
"""

import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import av
import numpy as np
from absl import app, flags
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.machine import machine_info  # noqa: E402
from l3.core import fileio  # noqa: E402
from l3 import media
# l3.records imports TensorFlow, which the builder's shard writer needs: importing it here
# keeps that import out of the timed build.
from l3.records import schema as records  # noqa: E402,F401
from l3_tfrecords import builder, inputs  # noqa: E402

STAGES = ("decode", "convert", "resample", "jpeg", "write")


def _textured_frames(count: int, width: int, height: int, seed: int):
    """Smooth random texture panning 2 px a frame, plus sensor-like noise: [height, width, 3]
    uint8 per frame. Compresses like ordinary footage (flat colours would flatter
    JPEG and H.264; white noise would punish them)."""
    rng = np.random.default_rng(seed)
    pad = 2 * count + 2
    low = rng.integers(0, 256, (height // 24 + 2, (width + pad) // 24 + 2, 3), np.uint8)
    big = Image.fromarray(low).resize(((width + pad), height), Image.BICUBIC)
    base = np.asarray(big, np.int16)
    for i in range(count):
        img = base[:, 2 * i: 2 * i + width] + rng.integers(-2, 3, (height, width, 3))
        yield np.clip(img, 0, 255).astype(np.uint8)


def make_clips(folder: str, num_videos: int, *, seconds: float = 10.0,
               size: Tuple[int, int] = (640, 360), fps: float = 30.0,
               sample_rate: int = 44100) -> List[str]:
    """Writes (or reuses) `num_videos` H.264/AAC mp4 clips; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(num_videos):
        name = f"clip{i:04d}_{size[0]}x{size[1]}_{fps:g}fps_{seconds:g}s_{sample_rate}.mp4"
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            count = int(round(seconds * fps))
            t = np.arange(int(seconds * sample_rate)) / sample_rate
            audio = 0.3 * np.stack([np.sin(2 * np.pi * (220 + 20 * i) * t),
                                    np.sin(2 * np.pi * (330 + 20 * i) * t)], axis=1)
            tmp = path + ".part.mp4"
            media.write_video(tmp, _textured_frames(count, size[0], size[1], i), fps,
                              audio.astype(np.float32), sample_rate,
                              video_options={"preset": "veryfast"})
            os.replace(tmp, path)
        paths.append(path)
    return paths


def run_benchmark(num_videos: int = 8, workers: int = 1, *, seconds: float = 10.0,
                  size: Tuple[int, int] = (640, 360), fps: float = 30.0,
                  sample_rate: int = 44100, media_dir: Optional[str] = None,
                  build_fps: float = media.DEFAULT_FPS, jpeg_quality: int = 90,
                  num_shards: Optional[int] = None) -> Dict[str, object]:
    """Builds records from generated clips and measures throughput.

    Args:
      workers: decoding processes (0: in the calling process, counted as 1 core).
      media_dir: where clips are cached (default: a temp dir, deleted after).
    Returns:
      A JSON-able dict: "machine", "params", "wall_seconds", "videos_per_second",
      "decoded_seconds_per_second", both also "_per_core", "stage_cpu_seconds",
      "stage_fraction", "bytes_per_video", "frames_per_video".
    """
    own_media = media_dir is None
    media_dir = media_dir or tempfile.mkdtemp(prefix="bench_media_")
    out_dir = tempfile.mkdtemp(prefix="bench_records_")
    try:
        t0 = time.perf_counter()
        paths = make_clips(media_dir, num_videos, seconds=seconds, size=size, fps=fps,
                           sample_rate=sample_rate)
        generate_seconds = time.perf_counter() - t0
        items = [inputs.VideoItem(path=p, video_id=os.path.basename(p)) for p in paths]
        config = builder.BuildConfig(output_dir=out_dir, num_shards=num_shards or max(1, workers),
                                     workers=workers, fps=build_fps, jpeg_quality=jpeg_quality,
                                     progress=False)
        t0 = time.perf_counter()
        result = builder.build(items, config)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        if own_media:
            shutil.rmtree(media_dir, ignore_errors=True)
    summary = result["summary"]
    written = summary["videos_written"]
    cores = max(1, workers)
    stages = {k: summary["cpu_seconds"].get(k, 0.0) for k in STAGES}
    total = sum(stages.values()) or 1.0
    decoded_seconds = written * min(seconds, config.max_seconds)
    return {
        "machine": {**machine_info(), "pyav": av.__version__,
                    "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"]))},
        "params": {"num_videos": num_videos, "workers": workers, "cores_used": cores,
                   "clip_seconds": seconds, "size": list(size), "source_fps": fps,
                   "sample_rate": sample_rate, "build_fps": build_fps,
                   "jpeg_quality": jpeg_quality, "num_shards": config.num_shards},
        "generate_seconds": round(generate_seconds, 3),
        "videos_written": written,
        "skipped_by_reason": summary["skipped_by_reason"],
        "wall_seconds": round(wall, 3),
        "videos_per_second": written / wall,
        "videos_per_second_per_core": written / wall / cores,
        "decoded_seconds_per_second": decoded_seconds / wall,
        "decoded_seconds_per_second_per_core": decoded_seconds / wall / cores,
        # From CPU time instead of wall time: what one otherwise idle core would do
        # (an upper bound: process start-up and inter-process transfer are not counted).
        "cpu_videos_per_second_per_core": written / total,
        "cpu_decoded_seconds_per_second_per_core": decoded_seconds / total,
        "stage_cpu_seconds": {k: round(v, 3) for k, v in stages.items()},
        "stage_fraction": {k: round(v / total, 3) for k, v in stages.items()},
        "bytes_per_video": summary["bytes"] / max(1, written),
        "frames_per_video": summary["frames"] / max(1, written),
    }


def format_table(result: Dict[str, object]) -> str:
    """A human-readable table of one `run_benchmark` result."""
    m, p = result["machine"], result["params"]
    w = p["size"]
    lines = [
        f"machine: {m['cpu']}, {m['cpu_count']} cores ({m['cores_usable']} usable), "
        f"load {m['load_average'][0]:.1f}" if m.get("load_average") else f"machine: {m['cpu']}",
        f"clips: {p['num_videos']} x {p['clip_seconds']:g} s, {w[0]}x{w[1]} H.264 "
        f"{p['source_fps']:g} fps, AAC {p['sample_rate']} Hz stereo; workers {p['workers']}; "
        f"stored {p['build_fps']:g} fps, JPEG q{p['jpeg_quality']}",
        "",
        f"{'metric':<34}{'value':>12}",
        f"{'videos/s':<34}{result['videos_per_second']:>12.2f}",
        f"{'videos/s per core':<34}{result['videos_per_second_per_core']:>12.2f}",
        f"{'decoded seconds/s':<34}{result['decoded_seconds_per_second']:>12.1f}",
        f"{'decoded seconds/s per core':<34}{result['decoded_seconds_per_second_per_core']:>12.1f}",
        f"{'videos/s per core, from CPU time':<34}{result['cpu_videos_per_second_per_core']:>12.2f}",
        f"{'decoded s/s per core, from CPU time':<34}"
        f"{result['cpu_decoded_seconds_per_second_per_core']:>12.1f}",
        f"{'MB per video':<34}{result['bytes_per_video'] / 1e6:>12.2f}",
        f"{'frames per video':<34}{result['frames_per_video']:>12.1f}",
        "",
        f"{'stage (CPU s, all workers)':<34}{'seconds':>12}{'share':>9}",
    ]
    for stage in STAGES:
        lines.append(f"{stage:<34}{result['stage_cpu_seconds'][stage]:>12.2f}"
                     f"{100 * result['stage_fraction'][stage]:>8.1f}%")
    return "\n".join(lines)


def main(argv):
    del argv
    f = flags.FLAGS
    result = run_benchmark(f.num_videos, f.workers, seconds=f.seconds,
                           size=(f.width, f.height), fps=f.source_fps, sample_rate=f.sample_rate,
                           media_dir=f.media_dir, build_fps=f.fps, jpeg_quality=f.jpeg_quality)
    print(format_table(result))
    if f.output_json:
        fileio.write_json(f.output_json, result, indent=1, sort_keys=True)
        print(f"\nwrote {f.output_json}")


if __name__ == "__main__":
    # Flags are defined only when run as a script: tests/tfrecords/test_builder.py imports this
    # module, and absl flags are process-global.
    flags.DEFINE_integer("num_videos", 8, "Clips to generate and build.")
    flags.DEFINE_integer("workers", 1, "Decoding processes (0: in this process).")
    flags.DEFINE_float("seconds", 10.0, "Clip length.")
    flags.DEFINE_integer("width", 640, "Clip width.")
    flags.DEFINE_integer("height", 360, "Clip height.")
    flags.DEFINE_float("source_fps", 30.0, "Clip frame rate.")
    flags.DEFINE_integer("sample_rate", 44100, "Clip audio rate.")
    flags.DEFINE_float("fps", media.DEFAULT_FPS, "Builder --fps.")
    flags.DEFINE_integer("jpeg_quality", 90, "Builder --jpeg_quality.")
    flags.DEFINE_string("media_dir", None, "Cache for generated clips (default: temp, deleted).")
    flags.DEFINE_string("output_json", None, "Write the result here.")
    app.run(main)
