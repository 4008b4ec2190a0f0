"""The AVC pair pipeline (section 2.2): builder shards -> batches of frame-audio pairs.

    ds = pairs.make_dataset("data/train-*.tfrecord", presets.PAPER, training=True)
    image, waveform, label = next(iter(ds))
    # image [B, 224, 224, 3] float32 in [0, 1]; waveform [B, 48000] float32;
    # label [B] int32, 1 = the frame and the audio correspond.

Sampling (section 2.2, "Training data sampling"):

* **Positive**: a random video, a random frame of it, and a 1-s window that
  *contains the frame's time* (s <= t < s + 1, s the window's first sample
  on the records' clock: audio_start + k / 48000), its start uniform over all
  such windows that lie inside the audio. Frames outside the audio's extent
  are never sampled (no window could contain them).
* **Negative**: a frame of one video and a 1-s window of a *different* video
  id (never the same id, even when a shard repeats a video). The negative's
  window is drawn the same way as a positive's (containing a random frame time
  of its own video), so where a window sits in its track says nothing about
  the label (uniform windows would over-sample track ends for negatives only).
* **Balance: exactly half of every batch** (per replica; odd batches alternate
  the extra one). Bernoulli(0.5) would give a 16-pair replica batch 8 +- 2
  positives (a quarter of batches at <= 6 or >= 10), noise in the loss's
  class prior for nothing; exact halves also give every batch the negatives
  the donor scheme below needs, and make evaluation chance exactly 50 %.
* **Videos shorter than one window** (or without any frame inside the audio)
  are skipped; `scan_videos` counts and logs them (evaluation always scans;
  training does not by default, because a scan reads the whole training set).

How (all in tf.data, no py_function, so the iterator checkpoints):

1. file names (sorted; sharded per input pipeline; reshuffled each epoch in
   training) -> `interleave` of TFRecord readers (`cycle_length` files at once);
2. per record, in a parallel map: parse, draw a frame (among those inside the
   audio) and a window containing its time, keep only that JPEG string and the
   int16 window (~130 KB, against ~2 MB for the whole record); seeds are
   stateless, folded from the record's position in the stream;
3. `shuffle` over these light elements (`shuffle_videos` of them), then decode
   the one JPEG and augment (`l3.image.train_image`; `eval_image` in
   evaluation). Two fast paths give the same views: a frame already at the
   preset's `resize_side` (the builder writes the paper's 256) has only its
   crop window decoded (`decode_and_crop_jpeg`; the resize would be an
   identity), and a frame much larger than `resize_side` (256 for the small
   preset's 72) is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain;
4. batch, then per batch: labels (exactly half positive); each negative's
   frame gets the window of a *donor*, the next negative in cyclic order whose
   video id differs (so each negative window is used once and no window twice;
   any other video when no negative qualifies); int16 -> float, decimation to
   the preset's rate, random gain (training).

Checkpoints: `tf.train.Checkpoint(iterator=iter(ds))` saves and restores the
stream mid-epoch. With `deterministic=True` the dataset uses tf.data's symbolic
checkpointing: only cursors and the shuffle buffer are saved (~130 KB a
buffered video: 33 MB with the default 256) and a restored iterator continues
with exactly the elements an uninterrupted one would have produced, also after
repeated save/restore cycles. Non-deterministic pipelines cannot be
checkpointed symbolically (tf.data refuses), so their checkpoints also hold
every in-flight record and prefetched batch (measured 220 MB for the paper
preset and 140 MB for the small one at 32 pairs a batch; see
`benchmarks/bench_pipeline.py --checkpoint`). Two TF 2.21 symbolic-checkpoint
bugs shape the code: restoring a *parallel* interleave can hang (so
deterministic pipelines read with a sequential interleave and a prefetch), and
an `enumerate` after the shuffle broke a second restore ("Expected 9
components but got 0"; so per-batch seeds travel with the elements).
Under a strategy, the `DistributedIterator` of `distribute_datasets_from_function`
is not checkpointable at all in TF 2.21; `checkpointable_distributed_input`
feeds the replicas from a plain iterator that is.

Decimation (small preset, 48 kHz -> 16 kHz): the window is sliced with a margin
of half the filter length on each side (zeros beyond the track's ends), then
decimated with `l3.audio.decimate` and cropped, so the clip equals the
corresponding piece of the whole decimated track: no zero-padding edge effect
inside the clip.

Evaluation pairs (`training=False`) are fixed: files in sorted order, the same
stateless draws, a seeded shuffle, pairing in groups of `EVAL_GROUP`
alternating positive / negative (any even prefix is exactly balanced), so the
same files and seed give the same `num_pairs` pairs in the same order, whatever
the batch size. `num_pairs=None` gives one pair per usable video (one pass).
"""

import glob as _glob
import math
from typing import Callable, List, Optional, Sequence, Union

import tensorflow as tf

from l3 import pair_ops
from l3.presets import Preset

AUTOTUNE = tf.data.AUTOTUNE
EVAL_GROUP = 64            # pairing group of evaluation (fixed, so pairs do not depend on batch size)
DEFAULT_CYCLE_LENGTH = 16  # shards read at once
DEFAULT_SHUFFLE_VIDEOS = 256  # light elements (~130 KB each) in the shuffle buffer

VideoStats = pair_ops.VideoStats
scan_videos = pair_ops.scan_videos


def resolve_files(file_pattern: Union[str, Sequence[str]]) -> List[str]:
    """A glob, or a list of paths and globs -> sorted, de-duplicated paths (ValueError if none)."""
    patterns = [file_pattern] if isinstance(file_pattern, (str, bytes)) else list(file_pattern)
    files = set()
    for pattern in patterns:
        pattern = pattern.decode() if isinstance(pattern, bytes) else str(pattern)
        if any(ch in pattern for ch in "*?["):
            files.update(tf.io.gfile.glob(pattern) or _glob.glob(pattern))
        else:
            files.add(pattern)
    if not files:
        raise ValueError(f"no files match {file_pattern!r}")
    return sorted(files)


def _shard_files(files: List[str], input_context) -> List[str]:
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < n:
        raise ValueError(f"{len(files)} files for {n} input pipelines: each pipeline needs at least one "
                         "file (write more shards)")
    return files[i::n]


def make_dataset(file_pattern: Union[str, Sequence[str]], preset: Preset, *, training: bool,
                 batch_size: Optional[int] = None, input_context=None, seed: int = 0,
                 num_pairs: Optional[int] = None, include_metadata: bool = False,
                 deterministic: Optional[bool] = None, cycle_length: Optional[int] = None,
                 shuffle_videos: Optional[int] = None, num_parallel_calls: int = AUTOTUNE,
                 scan: Optional[bool] = None, prefetch: int = AUTOTUNE) -> tf.data.Dataset:
    """Batches of AVC pairs from builder shards.

    Args:
      file_pattern: a glob, or a list of paths (or globs). Files are sorted.
      preset: sizes (`clip_samples`, `decimation`, `resize_side`, `image_size`).
      training: True: infinite, reshuffled each epoch, augmented, exactly
        balanced random labels per batch, non-deterministic order unless
        `deterministic`. False: the fixed evaluation pairs (module docstring).
      batch_size: the *global* batch (default `preset.global_batch_size`). With
        `input_context`, batches are `input_context.get_per_replica_batch_size(batch_size)`
        and files are sharded by `input_context.input_pipeline_id`.
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
      shuffle_videos: shuffle buffer, in sampled videos (default 256).
      num_parallel_calls: parallelism of each map and of the interleave.
      scan: count (and log) the videos excluded as too short before building
        (default: in evaluation only; evaluation needs the count anyway when
        `num_pairs` is None).
      prefetch: batches prefetched (AUTOTUNE by default; 0 for none).

    Returns:
      A dataset of `(image [B, S, S, 3] float32 in [0, 1], waveform [B,
      preset.clip_samples] float32, label [B] int32)` (+ metadata dict).
    """
    files = _shard_files(resolve_files(file_pattern), input_context)
    global_batch = batch_size or preset.global_batch_size
    batch = (input_context.get_per_replica_batch_size(global_batch) if input_context is not None
             else global_batch)
    if batch < 2:
        raise ValueError(f"a batch of {batch} pairs cannot hold a negative's donor; use >= 2")
    if deterministic is None:
        deterministic = not training
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    cycle_length = min(cycle_length or DEFAULT_CYCLE_LENGTH, len(files))
    shuffle_videos = DEFAULT_SHUFFLE_VIDEOS if shuffle_videos is None else shuffle_videos
    sampler = pair_ops.PairSampler(preset, training=training)
    base_seed = tf.constant([seed, pipeline_id], tf.int64)

    if scan if scan is not None else not training:
        stats = scan_videos(files)
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

    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat(epochs)
    if deterministic:
        # TF 2.21: restoring a symbolic checkpoint of a *parallel* interleave can
        # hang (depends on where the cursor stopped); a sequential interleave
        # with a prefetch behind it reads in the background just as well.
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length, block_length=1)
        ds = ds.prefetch(cycle_length)
    else:
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length, block_length=1,
                           num_parallel_calls=num_parallel_calls, deterministic=False)
    ds = ds.enumerate()
    ds = ds.map(lambda i, record: sampler.sample_video(
                    record, tf.random.experimental.stateless_fold_in(base_seed, i)),
                num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    ds = ds.filter(lambda video: video["usable"])
    if shuffle_videos > 1:
        # Evaluation: the same order on every iteration of the dataset (fixed pairs).
        ds = ds.shuffle(shuffle_videos, seed=seed, reshuffle_each_iteration=training)
    ds = ds.map(sampler.load_frame, num_parallel_calls=num_parallel_calls, deterministic=deterministic)

    ds = ds.batch(batch if training else EVAL_GROUP, drop_remainder=training)
    ds = ds.map(sampler.make_pairs, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    # A group whose videos all share one id cannot hold a negative: dropped
    # (only possible with fewer distinct videos than a batch, at epoch seams).
    ds = ds.filter(lambda pairs: pairs["ok"])
    ds = ds.map(lambda pairs: pair_ops.as_tuple(pairs, include_metadata))
    if training:
        if num_pairs is not None:
            ds = ds.take(math.ceil(num_pairs / batch))
    else:
        ds = ds.unbatch().take(num_pairs).batch(batch)
    if prefetch:
        ds = ds.prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = deterministic
    # Only cursors and the shuffle buffer go into an iterator checkpoint; tf.data
    # supports it for deterministic pipelines only.
    options.experimental_symbolic_checkpoint = deterministic
    return ds.with_options(options)


def dataset_fn(file_pattern: Union[str, Sequence[str]], preset: Preset, global_batch_size: int,
               seed: int, training: bool, **kwargs) -> Callable:
    """`input_context -> dataset` for `strategy.distribute_datasets_from_function`.

    Each input pipeline reads its own files and yields per-replica batches of
    `input_context.get_per_replica_batch_size(global_batch_size)`; extra keyword
    arguments go to `make_dataset`.
    """
    def fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        return make_dataset(file_pattern, preset, training=training, batch_size=global_batch_size,
                            input_context=input_context, seed=seed, **kwargs)
    return fn


def checkpointable_distributed_input(strategy: tf.distribute.Strategy, dataset_function: Callable,
                                     input_context: Optional[tf.distribute.InputContext] = None):
    """Per-replica batches from a *plain* tf.data iterator, which a checkpoint can hold.

    The `DistributedIterator` of `strategy.distribute_datasets_from_function` is
    not `Trackable` in TF 2.21 (`tf.train.Checkpoint(iterator=...)` raises), so a
    training loop that must resume mid-epoch reads this worker's per-replica
    batches itself, stacked `[local_replicas, per_replica_batch, ...]`, and hands
    slice r to local replica r with `experimental_distribute_values_from_function`.

    Args:
      strategy: MirroredStrategy, MultiWorkerMirroredStrategy, OneDevice or default.
      dataset_function: `input_context -> dataset`, e.g. `dataset_fn(...)`.
      input_context: this worker's (default: one pipeline, all replicas local).
    Returns:
      (iterator, next_batch): `iterator` to put in the checkpoint; `next_batch()`
      returns the next element as per-replica values for `strategy.run`.
    """
    replicas = strategy.num_replicas_in_sync
    context = input_context or tf.distribute.InputContext(1, 0, replicas)
    local = replicas // context.num_input_pipelines
    iterator = iter(dataset_function(context).batch(local, drop_remainder=True))

    def next_batch():
        stacked = next(iterator)
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.nest.map_structure(lambda x: x[ctx.replica_id_in_sync_group % local], stacked))

    return iterator, next_batch
