"""The AVC pair pipeline (section 2.2): builder shards -> batches of frame-audio pairs.

    ds = pairs.make_dataset("data/train-*.tfrecord", presets.PAPER, training=True)
    image, waveform, label = next(iter(ds))
    # image [B, 224, 224, 3] uint8 (training: cropped and flipped; the training
    # step scales and jitters it on the device, `l3.ops.image.jitter_batch`; evaluation:
    # float32 in [0, 1]); waveform [B, 48000] float32;
    # label [B] int32, 1 = the frame and the audio correspond.
    ds = pairs.make_dataset(files, preset, training=False,
                            options=pairs.PipelineOptions(batch_size=64, num_pairs=2048))

Sampling (section 2.2, "Training data sampling"):

* **Positive**: a random video, a random frame of it, and a 1-s window that
  *contains the frame's time* (s <= t < s + 1, s the window's first sample
  on the records' clock), its start uniform over all such windows inside the
  audio. Frames outside the audio's extent are never sampled.
* **Negative**: a frame of one video and a 1-s window of a *different* video
  id (never the same id, even when a shard repeats a video), drawn the same
  way as a positive's, so where a window sits in its track says nothing
  about the label.
* **Balance: exactly half of every batch** (per replica; odd batches alternate
  the extra one): no noise in the loss's class prior, every batch holds the
  negatives the donor scheme needs, and evaluation chance is exactly 50 %.
* **Several pairs per record read** (training, `pairs_per_video` = K, default
  16): each parsed record gives K independent draws (frame, window), so a
  pair costs 1/K of a record's read and parse. The K draws of `open_videos`
  records are dealt out round-robin, then shuffled in a small buffer, so a
  batch rarely holds two draws of one video (measured: WORKSPACE_NOTES.md,
  "Pairs per record read"). Evaluation draws one pair per record read.
* **Videos shorter than one window** (or without any frame inside the audio)
  are skipped; `l3.pairs.sampling.scan_videos` counts and logs them (evaluation
  always scans; training does not by default: a scan reads the whole set).

Evaluation pairs (`training=False`) are fixed: the same files and seed give
the same `num_pairs` pairs in the same order, whatever the batch size;
`num_pairs=None` gives one pair per usable video (one pass). Iterators
checkpoint (`tf.train.Checkpoint(iterator=iter(ds))`); deterministic
pipelines symbolically (small checkpoints, exact resume).
"""

import dataclasses
import glob as _glob
import math
from typing import List, Optional, Sequence, Union

import tensorflow as tf

from l3.core import errors
from l3.pairs import sampling as pair_ops
from l3.records import shard_reader
from l3.core.presets import Preset

AUTOTUNE = tf.data.AUTOTUNE
EVAL_GROUP = 64            # pairing group of evaluation (fixed, so pairs do not depend on batch size)
DEFAULT_CYCLE_LENGTH = 16  # shards read at once
# Training defaults, chosen by measurement (WORKSPACE_NOTES.md, "Pairs per record
# read"): K = 16 reads ~1.1x the bytes its pairs use (10-s records); 512 open
# records keep the same-video fraction of a 16-pair batch and of a 256-pair
# global batch within a point of K = 1's.
DEFAULT_PAIRS_PER_VIDEO = 16
DEFAULT_OPEN_VIDEOS = 512      # records dealt out round-robin (~130 KB a draw held: K x 512 draws)
DEFAULT_SHUFFLE_PAIRS = 256   # draws in the shuffle buffer for K = 1 (~130 KB each) ...
DEFAULT_SHUFFLE_DEALT = 64     # ... and for K > 1 (the round-robin already spreads a video's draws)



@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How `make_dataset` reads and batches; the defaults are the training/evaluation defaults.

    Attributes:
      batch_size: the *global* batch (default `preset.global_batch_size`). With
        an `input_context`, batches are
        `input_context.get_per_replica_batch_size(batch_size)`.
      seed: the stream's seed; the same seed and files give the same pairs
        (training: in deterministic mode).
      num_pairs: evaluation: how many pairs (default: one per usable video);
        training: stop after ceil(num_pairs / batch) batches (default: infinite).
      include_metadata: add a 4th element, a dict of [B] tensors: frame_video_id,
        audio_video_id, frame_label, audio_label (strings), frame_time,
        audio_start (seconds, the records' clock; the window is
        [audio_start, audio_start + 1)), frame_index (int32).
      deterministic: element order; default: False in training, True otherwise.
        Deterministic pipelines checkpoint symbolically (small checkpoints).
      cycle_length: files read at once (default min(16, files)).
      pairs_per_video: draws per record read, K (training; default
        DEFAULT_PAIRS_PER_VIDEO). Evaluation draws one (a larger value is refused).
      open_videos: with K > 1, records whose draws are dealt out round-robin
        (memory: open_videos x K draws of ~130 KB).
      shuffle_pairs: shuffle buffer, in draws (~130 KB each); default 256 for
        K = 1, 64 for K > 1 (the round-robin already spreads a video's draws).
      num_parallel_calls: parallelism of each map and of the interleave.
      scan: count (and log) the videos excluded as too short before building
        (default: in evaluation only; evaluation needs the count anyway when
        `num_pairs` is None).
      prefetch: batches prefetched (AUTOTUNE by default; 0 for none).
      on_damaged_shard: a shard cut short or failing a CRC: "skip" its rest
        with a warning naming it (the default: a long job goes on) or "stop"
        at once naming the file and byte offset (`l3.records.shard_reader`). Default
        "skip", except in deterministic pipelines, which stop: their small
        symbolic iterator checkpoints cannot hold tf.data's error-skipping
        state; asking one to skip makes its checkpoints full ones.
    """

    batch_size: Optional[int] = None
    seed: int = 0
    num_pairs: Optional[int] = None
    include_metadata: bool = False
    deterministic: Optional[bool] = None
    cycle_length: Optional[int] = None
    pairs_per_video: Optional[int] = None
    open_videos: int = DEFAULT_OPEN_VIDEOS
    shuffle_pairs: Optional[int] = None
    num_parallel_calls: int = AUTOTUNE
    scan: Optional[bool] = None
    prefetch: int = AUTOTUNE
    on_damaged_shard: Optional[str] = None


def resolve_files(file_pattern: Union[str, Sequence[str]]) -> List[str]:
    """A glob, or a list of paths and globs -> sorted, de-duplicated paths (ValueError if none)."""
    patterns = [file_pattern] if isinstance(file_pattern, (str, bytes)) else list(file_pattern)
    files = set()
    for pattern in patterns:
        pattern = pattern.decode() if isinstance(pattern, bytes) else str(pattern)
        if any(ch in pattern for ch in "*?["):
            files.update(tf.io.gfile.glob(pattern) or _glob.glob(pattern))
        elif tf.io.gfile.exists(pattern):
            files.add(pattern)
        else:
            raise errors.MissingInputError(f"{pattern} does not exist")
    if not files:
        raise errors.MissingInputError(f"no files match {file_pattern!r}")
    return sorted(files)


def _shard_files(files: List[str], input_context) -> List[str]:
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < n:
        raise ValueError(f"{len(files)} files for {n} input pipelines: each pipeline needs at least one "
                         "file (write more shards)")
    return files[i::n]


def pairs_per_video(options: PipelineOptions, training: bool) -> int:
    """K, the draws per record read, for these options (evaluation: always 1)."""
    k = options.pairs_per_video
    if not training:
        if k not in (None, 1):
            raise ValueError(f"pairs_per_video={k}: evaluation draws one pair per record read "
                             "(independent held-out pairs)")
        return 1
    k = DEFAULT_PAIRS_PER_VIDEO if k is None else k
    if k < 1:
        raise ValueError(f"pairs_per_video must be >= 1, got {k}")
    return k


def _dealt(video, index, per_video: int, open_videos: int) -> tf.data.Dataset:
    """The draws of one record, for the round-robin of `open_videos` records.

    The round-robin deals the K draws of `open_videos` records out one at a
    time, so draws of one video come `open_videos` apart in the stream. It
    is sequential (only slicing happens in it), so a symbolic checkpoint of
    it restores (see `read_records`). The first `open_videos` records give
    1, ..., K draws (record i: 1 + i K // open_videos), so that later records
    replace them at staggered times: reading and parsing then go on at an
    even V / K records per V pairs instead of in bursts of `open_videos`
    records every K rounds. Every draw is still an independent draw of its
    record.
    """
    draws = {k: v for k, v in video.items() if k != "usable"}
    count = tf.where(index < open_videos, 1 + index * per_video // open_videos, per_video)
    return tf.data.Dataset.from_tensor_slices(draws).take(count)


def read_records(files: List[str], *, training: bool, seed: int, epochs: Optional[int],
                 cycle_length: int, deterministic: bool, num_parallel_calls: int,
                 on_damage: str = "skip") -> tf.data.Dataset:
    """Serialized records of `files`: file names (sorted; reshuffled each epoch in
    training; `epochs` passes, None = forever) -> an interleave of TFRecord
    readers, `cycle_length` files at once; a damaged shard is skipped from its
    damage on with a warning, or stops the pipeline (`l3.records.shard_reader`)."""
    ds = tf.data.Dataset.from_tensor_slices(shard_reader.shard_table(files))
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat(epochs)

    def read(path, size):
        return shard_reader.read_shard(path, size, on_damage)

    if deterministic:
        # TF 2.21: restoring a symbolic checkpoint of a *parallel* interleave can
        # hang (depends on where the cursor stopped); a sequential interleave
        # with a prefetch behind it reads in the background just as well.
        ds = ds.interleave(read, cycle_length=cycle_length, block_length=1)
        return ds.prefetch(cycle_length)
    return ds.interleave(read, cycle_length=cycle_length, block_length=1,
                         num_parallel_calls=num_parallel_calls, deterministic=False)


def make_dataset(file_pattern: Union[str, Sequence[str]], preset: Preset, *, training: bool,
                 options: PipelineOptions = PipelineOptions(),
                 input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """Batches of AVC pairs from builder shards.

    Args:
      file_pattern: a glob, or a list of paths (or globs). Files are sorted.
      preset: sizes (`clip_samples`, `decimation`, `resize_side`, `image_size`).
      training: True: infinite, reshuffled each epoch, augmented, exactly
        balanced random labels per batch, non-deterministic order unless
        `options.deterministic`. False: the fixed evaluation pairs.
      options: batch size, seed, length, metadata, order and parallelism.
      input_context: shards files by `input_pipeline_id` and batches per
        replica, as `strategy.distribute_datasets_from_function` asks.

    Returns:
      A dataset of `(image [B, S, S, 3], waveform [B, preset.clip_samples]
      float32, label [B] int32)` (+ the metadata dict); images are uint8 in
      training (`l3.ops.image.jitter_batch` finishes them on the device), float32
      in [0, 1] in evaluation.
    """
    o = options
    files = _shard_files(resolve_files(file_pattern), input_context)
    global_batch = o.batch_size or preset.global_batch_size
    batch = (input_context.get_per_replica_batch_size(global_batch) if input_context is not None
             else global_batch)
    if batch < 2:
        raise ValueError(f"a batch of {batch} pairs cannot hold a negative's donor; use >= 2")
    per_video = pairs_per_video(o, training)
    shuffle_pairs = (o.shuffle_pairs if o.shuffle_pairs is not None
                     else DEFAULT_SHUFFLE_PAIRS if per_video == 1 else DEFAULT_SHUFFLE_DEALT)
    deterministic = (not training) if o.deterministic is None else o.deterministic
    num_pairs, seed, parallel = o.num_pairs, o.seed, o.num_parallel_calls
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    sampler = pair_ops.PairSampler(preset, training=training, pairs_per_video=per_video)
    base_seed = tf.constant([seed, pipeline_id], tf.int64)

    if o.scan if o.scan is not None else not training:
        stats = pair_ops.scan_videos(files)
        if stats.num_usable_ids < 2:
            raise ValueError(f"{files}: {stats.num_usable_ids} usable video(s); AVC negatives need two")
    else:
        stats = None
        pair_ops.check_two_videos(files)

    if training:
        epochs = None
    elif num_pairs is None:
        epochs, num_pairs = 1, stats.num_usable
    else:
        epochs = math.ceil(num_pairs / stats.num_usable)

    # 1. Serialized records (`read_records`; damaged shards as `on_damage` says).
    on_damage = o.on_damaged_shard or ("stop" if deterministic else "skip")
    ds = read_records(files, training=training, seed=seed, epochs=epochs,
                      cycle_length=min(o.cycle_length or DEFAULT_CYCLE_LENGTH, len(files)),
                      deterministic=deterministic, num_parallel_calls=parallel,
                      on_damage=on_damage)
    # 2. Per record: parse, draw K frames (among those inside the audio) and
    #    for each a window containing its time; keep only those JPEG strings and
    #    int16 windows (~130 KB a draw, against ~2 MB for the whole record).
    #    Seeds are stateless, folded from the record's position in the stream.
    #    The enumerate sits *before* the shuffle: after it, TF 2.21 broke a second
    #    symbolic-checkpoint restore ("Expected 9 components but got 0"), so
    #    the per-batch seeds travel with the elements (`pair_seed`).
    ds = ds.enumerate()
    ds = ds.map(lambda i, record: (i, sampler.sample_video(
                    record, tf.random.experimental.stateless_fold_in(base_seed, i))),
                num_parallel_calls=parallel, deterministic=deterministic)
    ds = ds.filter(lambda i, video: video["usable"])
    if per_video == 1:
        ds = ds.map(lambda i, video: {k: v[0] for k, v in video.items() if k != "usable"})
    else:
        ds = ds.interleave(lambda i, video: _dealt(video, i, per_video, o.open_videos),
                           cycle_length=o.open_videos, block_length=1)
    # 3. Shuffle these light elements, then decode the one JPEG and crop, flip
    #    (`l3.ops.image.train_view`, uint8; `eval_image` in evaluation); `load_frame`'s
    #    fast paths (crop-window decode, DCT-domain downscale) give the same views.
    if shuffle_pairs > 1:
        # Evaluation: the same order on every iteration of the dataset (fixed pairs).
        ds = ds.shuffle(shuffle_pairs, seed=seed, reshuffle_each_iteration=training)
    ds = ds.map(sampler.load_frame, num_parallel_calls=parallel, deterministic=deterministic)

    # 4. Batch (evaluation: groups of EVAL_GROUP alternating positive / negative,
    #    so any even prefix is balanced whatever the batch size), then per batch:
    #    labels, each negative's donor window, int16 -> float, decimation, gain.
    ds = ds.batch(batch if training else EVAL_GROUP, drop_remainder=training)
    ds = ds.map(sampler.make_pairs, num_parallel_calls=parallel, deterministic=deterministic)
    # A group whose videos all share one id cannot hold a negative: dropped
    # (only possible with fewer distinct videos than a batch, at epoch seams).
    ds = ds.filter(lambda pairs: pairs["ok"])
    ds = ds.map(lambda pairs: pair_ops.as_tuple(pairs, o.include_metadata))
    if training:
        if num_pairs is not None:
            ds = ds.take(math.ceil(num_pairs / batch))
    else:
        ds = ds.unbatch().take(num_pairs).batch(batch)
    if o.prefetch:
        ds = ds.prefetch(o.prefetch)
    tf_options = tf.data.Options()
    tf_options.deterministic = deterministic
    # Only cursors and the shuffle buffer go into an iterator checkpoint
    # (~130 KB a buffered draw: 8 MB with the default 64); tf.data supports
    # it for deterministic pipelines only. Non-deterministic checkpoints also
    # hold every in-flight record, open draw and prefetched batch (K = 16:
    # ~open_videos x K x 130 KB; benchmarks/bench_pipeline.py --checkpoint).
    # `ignore_errors` (on_damage="skip") cannot be held in a symbolic checkpoint.
    tf_options.experimental_symbolic_checkpoint = deterministic and on_damage == "stop"
    return ds.with_options(tf_options)
