"""Pairs per second of the AVC pair pipeline (`l3.pairs`) against a plain Python generator.

    .venv/bin/python benchmarks/bench_pipeline.py --output_json=/tmp/bench_pipeline.json
    # quick look:  --num_videos=16 --measure_batches=4 --presets=small
    # real shards: --data_pattern='/data/kinetics_sounds/train-*.tfrecord'

For each preset (paper, small) and each parallelism (1 and 2 parallel calls for
every map and the interleave), times training batches of `l3.pairs.make_dataset`
after a warm-up that fills the shuffle buffer, and, in the same run, "the
obvious alternative": a Python generator that reads the same records, parses
them with protobuf, keeps a pool of videos, samples pairs with numpy and
prepares them with PIL (decode, resize, crop, flip, brightness/saturation) and
scipy (decimation) -- the same work, single-threaded (a generator cannot run
in parallel without multiprocessing), timed before and after the tf.data rows
(their mean is the baseline). Prints a table with the ratio and the machine;
`--output_json` keeps every number; `--checkpoint` also measures the size of a
saved training iterator.

Without `--data_pattern` it writes synthetic shards shaped like the builder's:
10-s videos, 4 fps JPEG frames 256x340 (with pixel noise so that JPEGs are
~40 KB, like photos at quality 90), 48 kHz int16 audio: ~2.7 MB a record.
On a shared machine, numbers move with the load: the load average is recorded.

Expected run time with the defaults: a few minutes on 2 cores.
"""

import gc
import io
import itertools
import os
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402
from scipy import signal  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from l3 import audio as audio_lib  # noqa: E402
from l3 import constants as C  # noqa: E402
from l3 import fileio  # noqa: E402
from l3 import pairs, presets  # noqa: E402


def write_benchmark_shards(directory: str, num_videos: int, seconds: float = 10.0, fps: float = 4.0,
                           num_shards: int = 4) -> List[str]:
    """Synthetic builder-like shards (see the module docstring)."""
    from tests.record_fixtures import SyntheticCorpus  # test-only data: imported only when used
    corpus = SyntheticCorpus(num_videos=num_videos, seconds=seconds, fps=fps, frame_size=(256, 340),
                             frame_noise=12.0)
    return corpus.write(directory, num_shards)


# --- the obvious alternative --------------------------------------------------------------------

def python_generator_pairs(files: Sequence[str], preset, batch_size: int, seed: int = 0,
                           pool_size: int = 64) -> Iterator[tuple]:
    """Infinite batches (image, waveform, label) as numpy, made in plain Python.

    Same sampling rules as `l3.pairs` (a pool of parsed videos stands in for
    the shuffle buffer), same image and audio operations, done with PIL, numpy
    and scipy.
    """
    rng = np.random.default_rng(seed)
    taps = audio_lib._lowpass_taps(preset.decimation) if preset.decimation > 1 else None  # pylint: disable=protected-access
    window = int(round(preset.clip_seconds * C.SAMPLE_RATE))

    def records():
        while True:
            for path in rng.permutation(list(files)):
                for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
                    yield raw

    def parse(raw):
        f = tf.train.Example.FromString(raw).features.feature
        audio = np.frombuffer(f["audio"].bytes_list.value[0], "<i2")
        times = np.asarray(f["frame_times"].float_list.value, np.float64)
        start = f["audio_start"].float_list.value[0]
        pos = np.floor((times - start) * C.SAMPLE_RATE)
        inside = np.flatnonzero((pos >= 0) & (pos < len(audio)))
        if len(audio) < window or not len(inside):
            return None
        return {"id": f["video_id"].bytes_list.value[0], "frames": f["frames"].bytes_list.value,
                "audio": audio, "pos": pos, "inside": inside}

    def window_of(video):
        p = int(video["pos"][rng.choice(video["inside"])])
        k = rng.integers(max(p - window + 1, 0), min(p, len(video["audio"]) - window) + 1)
        return video["audio"][k:k + window].astype(np.float32) / 32768.0

    def image_of(video):
        jpeg = video["frames"][rng.choice(video["inside"])]
        im = Image.open(io.BytesIO(jpeg)).convert("RGB")
        scale = preset.resize_side / min(im.size)
        im = im.resize((max(preset.resize_side, round(im.size[0] * scale)),
                        max(preset.resize_side, round(im.size[1] * scale))), Image.BILINEAR)
        s = preset.image_size
        left, top = rng.integers(0, im.size[0] - s + 1), rng.integers(0, im.size[1] - s + 1)
        im = im.crop((left, top, left + s, top + s))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im = ImageEnhance.Color(im).enhance(rng.uniform(*C.SATURATION_RANGE))
        x = np.asarray(im, np.float32) / 255.0 + rng.uniform(-C.BRIGHTNESS_MAX_DELTA, C.BRIGHTNESS_MAX_DELTA)
        return np.clip(x, 0.0, 1.0)

    source = records()
    pool: List[dict] = []
    while len(pool) < pool_size:
        video = parse(next(source))
        if video is not None:
            pool.append(video)
    while True:
        labels = rng.permutation(np.arange(batch_size) < batch_size // 2).astype(np.int32)
        images, waves = [], []
        for label in labels:
            i = rng.integers(len(pool))
            video = pool[i]
            audio_video = video
            while label == 0 and audio_video["id"] == video["id"]:
                audio_video = pool[rng.integers(len(pool))]
            images.append(image_of(video))
            wave = window_of(audio_video)
            if taps is not None:
                wave = signal.upfirdn(taps, wave, down=preset.decimation)[len(taps) // 2 // preset.decimation:]
                wave = wave[:preset.clip_samples]
            waves.append(wave * rng.uniform(1 - C.VOLUME_MAX_CHANGE, 1 + C.VOLUME_MAX_CHANGE))
            fresh = parse(next(source))  # each video is used once, then replaced
            while fresh is None:
                fresh = parse(next(source))
            pool[i] = fresh
        yield np.stack(images), np.stack(waves).astype(np.float32), labels


# --- measuring --------------------------------------------------------------------------------

def _time_batches(iterator, warmup: int, batches: int, batch_size: int) -> Dict[str, float]:
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    return {"pairs_per_s": batches * batch_size / seconds, "seconds": seconds, "batches": batches}


def _settle(seconds: float = 1.0) -> None:
    """Collects dropped iterators: until then their prefetch threads keep decoding
    and slow whatever is timed next (measured: the generator ran 35 % slower)."""
    gc.collect()
    time.sleep(seconds)


def measure_checkpoint(files: Sequence[str], preset, batch_size: int, directory: str) -> Dict[str, float]:
    """Bytes of `tf.train.Checkpoint(iterator=...)` of a training iterator after a warm-up,
    deterministic (symbolic checkpoint) and not (explicit: every buffer is saved)."""
    out = {}
    for symbolic in (False, True):
        ds = pairs.make_dataset(files, preset, training=True,
                                options=pairs.PipelineOptions(
                                    batch_size=batch_size, deterministic=symbolic))
        it = iter(ds)
        for _ in range(3):
            next(it)
        time.sleep(2.0)  # let prefetch buffers fill, as in a training run
        prefix = os.path.join(directory, f"ckpt_{preset.name}_{int(symbolic)}")
        start = time.perf_counter()
        try:
            path = tf.train.Checkpoint(iterator=it).save(prefix)
        except Exception as e:  # pylint: disable=broad-except
            out[_CKPT_KIND[symbolic]] = f"failed: {type(e).__name__}: {str(e)[:200]}"
            continue
        seconds = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
                   if f.startswith(os.path.basename(path)))
        out[_CKPT_KIND[symbolic]] = {"bytes": size, "save_seconds": seconds}
        del it, ds
        _settle()
    return out


_CKPT_KIND = {False: "non-deterministic (explicit)", True: "deterministic (symbolic)"}


def run_benchmark(data_pattern: Optional[str] = None, preset_names: Sequence[str] = ("paper", "small"),
                  parallel_calls: Sequence[int] = (1, 2), batch_size: int = 32, num_videos: int = 48,
                  warmup_batches: int = 3, measure_batches: int = 10, generator: bool = True,
                  checkpoint: bool = False, work_dir: Optional[str] = None,
                  deterministic: Sequence[bool] = (False,)) -> dict:
    """Runs the whole comparison; returns every number (see the module docstring)."""
    work_dir = work_dir or tempfile.mkdtemp(prefix="bench_pipeline_")
    result = {"machine": machine_info(), "batch_size": batch_size, "rows": []}
    if data_pattern:
        files = pairs.resolve_files(data_pattern)
    else:
        start = time.perf_counter()
        files = write_benchmark_shards(os.path.join(work_dir, "shards"), num_videos)
        result["shards_written_seconds"] = time.perf_counter() - start
    result["data"] = {"files": len(files), "bytes": sum(os.path.getsize(f) for f in files),
                      "synthetic": not data_pattern}
    for name in preset_names:
        preset = presets.get_preset(name)
        baseline = None
        if generator:
            # Timed before and after the tf.data rows (the mean is the baseline), so a
            # change of load on a shared machine shows up instead of skewing the ratio.
            gen = python_generator_pairs(files, preset, batch_size)
            before = _time_batches(gen, 1, max(2, measure_batches // 2), batch_size)["pairs_per_s"]
            baseline = before
        rows = []
        for calls, det in itertools.product(parallel_calls, deterministic):
            ds = pairs.make_dataset(files, preset, training=True,
                                    options=pairs.PipelineOptions(
                                        batch_size=batch_size, num_parallel_calls=calls, seed=0, deterministic=det))
            iterator = iter(ds)
            timing = _time_batches(iterator, warmup_batches, measure_batches, batch_size)
            del iterator, ds
            _settle()
            row = {"preset": name, "parallel_calls": calls, "deterministic": det,
                   "tf_data_pairs_per_s": timing["pairs_per_s"],
                   "python_generator_pairs_per_s": baseline,
                   "ratio": timing["pairs_per_s"] / baseline if baseline else None,
                   "measure_seconds": timing["seconds"]}
            rows.append(row)
            print(_format_row(row), flush=True)
        if generator:
            after = _time_batches(gen, 0, max(2, measure_batches // 2), batch_size)["pairs_per_s"]
            baseline = (before + after) / 2
            result.setdefault("python_generator", {})[name] = {"before": before, "after": after}
            for row in rows:
                row["python_generator_pairs_per_s"] = baseline
                row["ratio"] = row["tf_data_pairs_per_s"] / baseline
        result["rows"] += rows
        if checkpoint:
            result.setdefault("checkpoint", {})[name] = measure_checkpoint(files, preset, batch_size, work_dir)
    result["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


def _format_row(row) -> str:
    gen = row["python_generator_pairs_per_s"]
    return (f"| {row['preset']:6s} | {row['parallel_calls']:14d} | {str(row['deterministic']):13s} | "
            f"{row['tf_data_pairs_per_s']:15.1f} | "
            + (f"{gen:19.1f} | {row['ratio']:5.2f} |" if gen else f"{'-':>19s} | {'-':>5s} |"))


def format_table(result: dict) -> str:
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores_usable']} usable cores of {m['cpu_count']}, "
             f"{len(m['gpus'])} GPU(s), TF {m['tensorflow']}, load average {m['load_average']} -> "
             f"{result.get('load_average_end')}",
             f"data: {result['data']['files']} files, {result['data']['bytes'] / 1e6:.0f} MB"
             f"{' (synthetic)' if result['data']['synthetic'] else ''}; training batches of "
             f"{result['batch_size']}",
             "| preset | parallel calls | deterministic | tf.data pairs/s | python generator /s | ratio |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [_format_row(r) for r in result["rows"]]
    for name, ck in result.get("checkpoint", {}).items():
        for kind, v in ck.items():
            size = f"{v['bytes'] / 1e6:.1f} MB in {v['save_seconds']:.2f} s" if isinstance(v, dict) else v
            lines.append(f"iterator checkpoint ({name}, {kind}): {size}")
    return "\n".join(lines)


FLAGS = flags.FLAGS


def _define_flags():
    """Flags exist only when run as a script, so tests can import this module
    beside other modules that define flags of the same names."""
    flags.DEFINE_string("data_pattern", None, "Builder shards to read (default: write synthetic ones).")
    flags.DEFINE_list("presets", ["paper", "small"], "Presets to measure.")
    flags.DEFINE_list("parallel_calls", ["1", "2"], "num_parallel_calls values.")
    flags.DEFINE_integer("batch_size", 32, "Pairs per batch.")
    flags.DEFINE_integer("num_videos", 48, "Synthetic videos to write.")
    flags.DEFINE_integer("warmup_batches", 3, "Batches before timing (fills the shuffle buffer).")
    flags.DEFINE_integer("measure_batches", 10, "Batches timed.")
    flags.DEFINE_bool("generator", True, "Also time the Python generator.")
    flags.DEFINE_bool("checkpoint", False, "Also measure the iterator checkpoint size.")
    flags.DEFINE_string("work_dir", None, "Where synthetic shards and checkpoints go (default: a temp dir).")
    flags.DEFINE_list("deterministic", ["false"], "tf.data orders to time (false, true).")
    flags.DEFINE_string("output_json", None, "Write every number here.")
    

def main(argv):
    del argv
    result = run_benchmark(FLAGS.data_pattern, FLAGS.presets, [int(c) for c in FLAGS.parallel_calls],
                           FLAGS.batch_size, FLAGS.num_videos, FLAGS.warmup_batches, FLAGS.measure_batches,
                           FLAGS.generator, FLAGS.checkpoint, FLAGS.work_dir,
                           [d.lower() in ("1", "true", "yes") for d in FLAGS.deterministic])
    print(format_table(result))
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, result)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
