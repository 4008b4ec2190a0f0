"""The AVC pair pipeline (`l3.pairs.make_dataset`) against the bare rate of its unavoidable work.

    .venv/bin/python benchmarks/bench_pipeline.py --output_json=/tmp/bench_pipeline.json
    # quick look:  --num_videos=16 --rounds=1 --seconds=1 --presets=small
    # real shards: --data_pattern='/data/kinetics_sounds/train-*.tfrecord'
    # several K:   --pairs_per_video=1,4,16
    # batch correlation table:  --correlation  (K = 1, 4, 16, 64)

For each preset, parallelism (every map and the interleave) and K, in one
process and interleaved in short rounds (so a change of load on a shared
machine hits both sides alike; rates are medians over rounds, ratios the
median of the per-round ratios; before each timing the process waits until
the other side's background threads have gone idle, and the pipeline first
runs untimed for 2 s, to take what it buffered meanwhile):

* **pipeline**: training batches of `make_dataset` with default settings
  (after a warm-up of its first block of records);
* **bare**: the work no pipeline can avoid, on the same records and
  parallelism, written with plain TensorFlow ops (`bare_dataset`; never the
  project's functions, so the limit does not inherit their overheads):
  frames and audio held in memory, per pair decode the crop window of a
  stored JPEG (`tf.io.decode_and_crop_jpeg`; frames not at the preset's
  `resize_side`: a DCT-scaled decode, a resize and a crop), a flip, and a
  1-s int16 slice cast to float32, batched. No reading, parsing, sampling,
  dealing or pairing;
* **bytes read per pair**: bytes the process read from files (`rchar` of
  /proc/self/io) while it consumed pipeline batches continuously, after its
  buffers drained (steady state) / pairs; **bytes a pair uses**: its JPEG
  plus a 1-s int16 window;
* **peak RSS**: the largest resident size sampled (every 20 ms) while the
  row ran (the process's, so rows include what earlier rows left).

`--correlation` prints, for K in 1, 4, 16, 64 (blocks of `open_videos`
records dealt in K shuffled rounds), the fraction of pairs in a batch that share
their video with another pair of the batch: per replica (16 pairs) and for a
global batch of 256 (16 consecutive per-replica batches, as one worker
feeding 16 replicas takes them), with each K's peak RSS (a subprocess each).
It reads clones of the records with distinct video ids (1,024 by default:
the fraction needs many more videos than the buffers hold).

Without `--data_pattern` it writes synthetic shards shaped like the builder's:
10-s videos, 4 fps JPEG frames 256x340 (with pixel noise so that JPEGs are
~40 KB, like photos at quality 90), 48 kHz int16 audio: ~2.3 MB a record.
"""

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from l3.core import constants as C  # noqa: E402
from l3.core import fileio  # noqa: E402
from l3.core import presets  # noqa: E402
from l3.pairs import pipeline as pairs  # noqa: E402
from l3.records import schema as records  # noqa: E402


def write_benchmark_shards(directory: str, num_videos: int, seconds: float = 10.0, fps: float = 4.0,
                           num_shards: int = 4) -> List[str]:
    """Synthetic builder-like shards (see the module docstring)."""
    from tests.fixtures.records import SyntheticCorpus  # test-only data: imported only when used
    corpus = SyntheticCorpus(num_videos=num_videos, seconds=seconds, fps=fps, frame_size=(256, 340),
                             frame_noise=12.0)
    return corpus.write(directory, num_shards)


def write_clones(files: Sequence[str], directory: str, count: int, num_shards: int = 16) -> List[str]:
    """`count` records cycling through those of `files`, each with its own video id."""
    source = [tf.train.Example.FromString(r) for r in
              tf.data.TFRecordDataset(list(files)).as_numpy_iterator()]
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, f"clones-{s:05d}.tfrecord") for s in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    try:
        for i in range(count):
            example = tf.train.Example()
            example.CopyFrom(source[i % len(source)])
            example.features.feature[records.VIDEO_ID].bytes_list.value[:] = [f"clone{i:06d}".encode()]
            writers[i % num_shards].write(example.SerializeToString())
    finally:
        for w in writers:
            w.close()
    return paths


# --- measuring --------------------------------------------------------------------------------

class RssPeak:
    """The largest VmRSS (bytes) seen while inside the `with` block, sampled every 20 ms."""

    def __enter__(self):
        self.peak, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("rchar"))


def _wait_idle(seconds: float = 0.25, busy: float = 0.1, limit: float = 20.0) -> None:
    """Waits until this process uses less than `busy` of a core (the idle side's
    background threads have filled their buffers), so they do not take CPU from
    the side timed next."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        before = sum(os.times()[:2])
        time.sleep(seconds)
        if sum(os.times()[:2]) - before < busy * seconds:
            return


BYTES_BATCHES = 64  # long against what the buffers hold, so their level hardly matters
PRE_ROLL = 2.0      # seconds of untimed batches before a pipeline window
def _rate(iterator, seconds: float, batch_size: int) -> float:
    """Pairs/s of batches taken for about `seconds`."""
    start, batches = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        next(iterator)
        batches += 1
    return batches * batch_size / (time.perf_counter() - start)


def record_contents(files: Sequence[str], limit: int = 24):
    """(JPEG strings, int16 tracks [videos, samples] cut to the shortest, bytes a pair uses)."""
    jpegs, tracks = [], []
    for raw in tf.data.TFRecordDataset(list(files)).take(limit).as_numpy_iterator():
        f = tf.train.Example.FromString(raw).features.feature
        jpegs += list(f[records.FRAMES].bytes_list.value)
        tracks.append(np.frombuffer(f[records.AUDIO].bytes_list.value[0], "<i2"))
    shortest = min(len(t) for t in tracks)
    pair_bytes = float(np.mean([len(j) for j in jpegs])) + 2 * C.SAMPLE_RATE * C.CLIP_SECONDS
    return jpegs, np.stack([t[:shortest] for t in tracks]), pair_bytes


def bare_dataset(jpegs, tracks, preset, batch_size: int, parallel: int):
    """Batches of the unavoidable per-pair work on in-memory frames and tracks, written
    with plain TensorFlow ops only (never the project's functions, whose overheads the
    limit must not inherit): per pair, pick a stored JPEG and a track at random; frames
    at the preset's `resize_side` (the builder's 256 for the paper preset): decode only
    a random crop window (`tf.io.decode_and_crop_jpeg`); other frames: decode (DCT-scaled
    by 1/2, 1/4, 1/8 while the smaller side stays >= resize_side), resize the smaller
    side to resize_side, random crop; then a random flip; the audio: a random 1-s slice
    of the int16 track (at 48 kHz; the small preset's decimation is not counted) cast
    to float32. uint8 images, as the pipeline's. No reading, parsing, sampling or
    pairing."""
    size, side = preset.image_size, preset.resize_side
    window = int(round(preset.clip_seconds * C.SAMPLE_RATE))
    tracks = tf.constant(tracks)
    last_start = tracks.shape[1] - window
    jpeg_table = tf.constant(jpegs)

    def decode_sized(jpeg, shape, seed):
        corner = tf.random.stateless_uniform([2], seed, 0, tf.int32.max, tf.int32)
        top, left = corner[0] % (shape[0] - size + 1), corner[1] % (shape[1] - size + 1)
        return tf.io.decode_and_crop_jpeg(jpeg, tf.stack([top, left, size, size]), channels=3)

    def decode_resized(jpeg, shape, seed):
        short = tf.minimum(shape[0], shape[1])
        image = tf.case([(short >= 8 * side, lambda: tf.io.decode_jpeg(jpeg, 3, ratio=8)),
                         (short >= 4 * side, lambda: tf.io.decode_jpeg(jpeg, 3, ratio=4)),
                         (short >= 2 * side, lambda: tf.io.decode_jpeg(jpeg, 3, ratio=2))],
                        default=lambda: tf.io.decode_jpeg(jpeg, 3))
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = side / tf.reduce_min(hw)
        image = tf.image.resize(image, tf.cast(tf.round(hw * scale), tf.int32))
        image = tf.image.stateless_random_crop(image, [size, size, 3], seed)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    def one(i):
        seeds = tf.random.experimental.stateless_split(tf.stack([i, tf.constant(7, tf.int64)]), 4)
        j = tf.random.stateless_uniform([], seeds[0], 0, len(jpegs), tf.int64)
        jpeg = tf.gather(jpeg_table, j)
        shape = tf.io.extract_jpeg_shape(jpeg)
        image = tf.cond(tf.minimum(shape[0], shape[1]) == side,
                        lambda: decode_sized(jpeg, shape, seeds[1]),
                        lambda: decode_resized(jpeg, shape, seeds[1]))
        image = tf.image.stateless_random_flip_left_right(image, seeds[2])
        v = j % tracks.shape[0]
        start = tf.random.stateless_uniform([], seeds[3], 0, last_start, tf.int64)
        audio = tf.slice(tracks, tf.stack([v, start]), [1, window])[0]
        return tf.ensure_shape(image, [size, size, 3]), tf.cast(audio, tf.float32) / 32768.0

    ds = tf.data.Dataset.range(1 << 40).map(one, num_parallel_calls=parallel, deterministic=False)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def measure_row(files, preset, *, parallel: int, pairs_per_video: Optional[int], batch_size: int,
                rounds: int, seconds: float, contents) -> Dict[str, object]:
    """One preset x parallelism x K: pipeline and bare rates interleaved in rounds; medians."""
    jpegs, tracks, pair_bytes = contents
    options = pairs.PipelineOptions(batch_size=batch_size, num_parallel_calls=parallel,
                                    pairs_per_video=pairs_per_video)
    k = pairs.pairs_per_video(options, training=True)
    bare_sets = {"bare": bare_dataset(jpegs, tracks, preset, batch_size, parallel)}
    with RssPeak() as rss:
        pipeline = iter(pairs.make_dataset(files, preset, training=True, options=options))
        # Warm-up: the first block of records (read once per K draws after it).
        for _ in range(3 + -(-options.open_videos // batch_size)):
            next(pipeline)
        rates = {"pipeline": [], "bare": []}
        for _ in range(rounds):
            for key, ds in bare_sets.items():  # a fresh iterator each: nothing runs behind
                _wait_idle()                   # the pipeline's buffers are full: it idles
                bare = iter(ds)
                _rate(bare, PRE_ROLL / 4, batch_size)
                rates[key].append(_rate(bare, seconds, batch_size))
                del bare
                gc.collect()
            # Pre-roll: what the pipeline buffered while it waited is taken first,
            # so the timed window starts and ends at its running buffer level.
            _rate(pipeline, PRE_ROLL, batch_size)
            rates["pipeline"].append(_rate(pipeline, seconds, batch_size))
        # Bytes read from files per pair, in steady state (right after a timed
        # window), over BYTES_BATCHES (the bare side reads no file).
        before = _bytes_read()
        for _ in range(BYTES_BATCHES):
            next(pipeline)
        read, pairs_timed = _bytes_read() - before, BYTES_BATCHES * batch_size
        del pipeline
    med = {key: statistics.median(v) for key, v in rates.items()}
    # Ratios per round (the two sides timed seconds apart), then their median.
    ratio = lambda key: statistics.median(p / b for p, b in zip(rates["pipeline"], rates[key]))
    return {"preset": preset.name, "parallel_calls": parallel, "pairs_per_video": k,
            "pairs_per_s": med["pipeline"], "bare_pairs_per_s": med["bare"], "ratio": ratio("bare"),
            "bytes_read_per_pair": read / pairs_timed, "bytes_per_pair_used": pair_bytes,
            "read_amplification": read / pairs_timed / pair_bytes, "peak_rss_mb": rss.peak / 2**20,
            "rounds": rates, "load_average": list(os.getloadavg())}


def run_benchmark(data_pattern: Optional[str] = None, preset_names: Sequence[str] = ("paper", "small"),
                  parallel_calls: Sequence[int] = (1, 2), pairs_per_video: Sequence[Optional[int]] = (None,),
                  batch_size: int = 32, num_videos: int = 48, rounds: int = 5, seconds: float = 3.0,
                  work_dir: Optional[str] = None) -> dict:
    """Every row (see the module docstring); returns all numbers."""
    work_dir = work_dir or tempfile.mkdtemp(prefix="bench_pipeline_")
    result = {"machine": machine_info(), "batch_size": batch_size, "rows": []}
    files = (pairs.resolve_files(data_pattern) if data_pattern
             else write_benchmark_shards(os.path.join(work_dir, "shards"), num_videos))
    result["data"] = {"files": len(files), "bytes": sum(os.path.getsize(f) for f in files),
                      "records": sum(1 for _ in tf.data.TFRecordDataset(files)),
                      "synthetic": not data_pattern}
    result["data"]["bytes_per_record"] = result["data"]["bytes"] / result["data"]["records"]
    contents = record_contents(files)
    for name in preset_names:
        for calls in parallel_calls:
            for k in pairs_per_video:
                row = measure_row(files, presets.get_preset(name), parallel=calls, pairs_per_video=k,
                                  batch_size=batch_size, rounds=rounds, seconds=seconds,
                                  contents=contents)
                result["rows"].append(row)
                print(format_row(row), flush=True)
    result["load_average_end"] = list(os.getloadavg())
    return result


HEADER = ("| preset | parallel calls | K | pairs/s | bare pairs/s (plain TF ops) | ratio "
          "| bytes read / pair | bytes a pair uses | amplification | peak RSS |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def format_row(r) -> str:
    return (f"| {r['preset']} | {r['parallel_calls']} | {r['pairs_per_video']} | {r['pairs_per_s']:.0f} | "
            f"{r['bare_pairs_per_s']:.0f} | {r['ratio']:.2f} | {r['bytes_read_per_pair'] / 1e3:.0f} KB | "
            f"{r['bytes_per_pair_used'] / 1e3:.0f} KB | {r['read_amplification']:.2f}x | "
            f"{r['peak_rss_mb']:.0f} MB |")


def format_table(result: dict) -> str:
    m, d = result["machine"], result["data"]
    lines = [f"machine: {m['cpu']}, {m['cores_usable']} usable cores of {m['cpu_count']}, "
             f"{len(m['gpus'])} GPU(s), TF {m['tensorflow']}, load average {m['load_average']} -> "
             f"{result.get('load_average_end')}",
             f"data: {d['files']} files, {d['records']} records, {d['bytes_per_record'] / 1e6:.2f} MB a "
             f"record{' (synthetic)' if d['synthetic'] else ''}; training batches of {result['batch_size']}",
             HEADER]
    return "\n".join(lines + [format_row(r) for r in result["rows"]])


# --- within-batch correlation ----------------------------------------------------------------

def same_video_fraction(video_ids: np.ndarray) -> float:
    """video_ids [batches, B] -> mean over batches of the fraction of pairs whose video
    appears at least twice in their batch."""
    out = []
    for batch in video_ids:
        _, inverse, counts = np.unique(batch, return_inverse=True, return_counts=True)
        out.append(float(np.mean(counts[inverse] > 1)))
    return float(np.mean(out))


def correlation_row(files, preset_name: str, k: int, batches: int, replicas: int = 16,
                    per_replica: int = 16) -> Dict[str, object]:
    """Same-video fractions of K's default pipeline (see the module docstring)."""
    options = pairs.PipelineOptions(batch_size=per_replica, pairs_per_video=k, include_metadata=True)
    it = iter(pairs.make_dataset(files, presets.get_preset(preset_name), training=True, options=options))
    for _ in range(4):
        next(it)
    ids = np.stack([next(it)[3]["frame_video_id"].numpy() for _ in range(batches * replicas)])
    return {"pairs_per_video": k, "per_replica_fraction": same_video_fraction(ids),
            "global_fraction": same_video_fraction(ids.reshape(batches, replicas * per_replica)),
            "open_videos": options.open_videos,
            "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))


def run_correlation(files, preset_name: str, ks: Sequence[int], batches: int) -> List[dict]:
    """One subprocess per K (its own peak RSS)."""
    rows = []
    for k in ks:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--correlation_child={k}",
                              f"--data_pattern={','.join(files)}", f"--presets={preset_name}",
                              f"--correlation_batches={batches}"],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(format_correlation(rows[-1]), flush=True)
    return rows


def format_correlation(r) -> str:
    settings = f"blocks of {r['open_videos']} records dealt in K shuffled rounds"
    return (f"| {r['pairs_per_video']} | {settings} | {100 * r['per_replica_fraction']:.2f} % | "
            f"{100 * r['global_fraction']:.2f} % | {r['peak_rss_mb']:.0f} MB |")


CORRELATION_HEADER = ("| K | settings (defaults for K) | same-video fraction, batch 16 | "
                      "global batch 256 | peak RSS |\n| --- | --- | --- | --- | --- |")

FLAGS = flags.FLAGS


def _define_flags():
    """Flags exist only when run as a script, so tests can import this module
    beside other modules that define flags of the same names."""
    flags.DEFINE_string("data_pattern", None, "Builder shards to read (default: write synthetic ones).")
    flags.DEFINE_list("presets", ["paper", "small"], "Presets to measure.")
    flags.DEFINE_list("parallel_calls", ["1", "2"], "num_parallel_calls values.")
    flags.DEFINE_list("pairs_per_video", ["default"], "K values to time ('default': the pipeline's).")
    flags.DEFINE_integer("batch_size", 32, "Pairs per batch.")
    flags.DEFINE_integer("num_videos", 48, "Synthetic videos to write.")
    flags.DEFINE_integer("rounds", 5, "Rounds of (pipeline, bare) timings; medians are reported.")
    flags.DEFINE_float("seconds", 3.0, "Seconds timed per side and round.")
    flags.DEFINE_bool("correlation", False, "Print the within-batch same-video table instead.")
    flags.DEFINE_list("correlation_k", ["1", "4", "16", "64"], "K values of the correlation table.")
    flags.DEFINE_integer("correlation_videos", 1024, "Distinct video ids (clones) it reads.")
    flags.DEFINE_integer("correlation_batches", 20, "Global batches of 256 measured per K.")
    flags.DEFINE_integer("correlation_child", None, "Internal: measure this K, print JSON.")
    flags.DEFINE_string("work_dir", None, "Where synthetic shards go (default: a temp dir).")
    flags.DEFINE_string("output_json", None, "Write every number here.")


def main(argv):
    del argv
    if FLAGS.correlation_child is not None:
        files = FLAGS.data_pattern.split(",")
        print(json.dumps(correlation_row(files, FLAGS.presets[0], FLAGS.correlation_child,
                                         FLAGS.correlation_batches)))
        return
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_pipeline_")
    if FLAGS.correlation:
        files = (pairs.resolve_files(FLAGS.data_pattern) if FLAGS.data_pattern
                 else write_benchmark_shards(os.path.join(work_dir, "shards"), FLAGS.num_videos))
        clones = write_clones(files, os.path.join(work_dir, "clones"), FLAGS.correlation_videos)
        print(f"machine: {machine_info(with_tensorflow=False)}; {FLAGS.correlation_videos} records "
              f"(clones with distinct ids), {FLAGS.presets[0]} preset")
        print(CORRELATION_HEADER, flush=True)
        result = {"machine": machine_info(), "correlation": run_correlation(
            clones, FLAGS.presets[0], [int(k) for k in FLAGS.correlation_k], FLAGS.correlation_batches)}
    else:
        print(HEADER, flush=True)
        result = run_benchmark(FLAGS.data_pattern, FLAGS.presets, [int(c) for c in FLAGS.parallel_calls],
                               [None if k == "default" else int(k) for k in FLAGS.pairs_per_video],
                               FLAGS.batch_size, FLAGS.num_videos, FLAGS.rounds, FLAGS.seconds,
                               work_dir)
        print(format_table(result))
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, result)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
