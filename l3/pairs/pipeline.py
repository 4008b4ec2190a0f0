"""The AVC pair pipeline (section 2.2): builder shards -> batches of frame-audio pairs.

    ds = pairs.make_dataset("data/train-*.tfrecord", presets.PAPER, training=True)
    image, waveform, label = next(iter(ds))
    # image [B, 224, 224, 3] uint8 (training: cropped and flipped; the training
    # step scales and jitters it on the device, `l3.ops.image.jitter_batch`; evaluation:
    # float32 in [0, 1]); waveform [B, 48000] float32;
    # label [B] int32, 1 = the frame and the audio correspond.
    ds = pairs.make_dataset(files, preset, training=False,
                            options=pairs.PipelineOptions(batch_size=64, num_pairs=2048))

`make_dataset` picks one of two pipelines that share their sampling ops
(`l3.pairs.sampling`): the training stream (`l3.pairs.stream`: infinite,
augmented, a pure function of seed and position, resumable from a few
hundred bytes) and the fixed evaluation pairs (`l3.pairs.evaluation`).

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
  pair costs 1/K of a record's read and parse. The draws of a block of
  `open_videos` records are dealt in K rounds, each a shuffle of the block's
  records, so a batch does not hold two draws of one video (measured:
  WORKSPACE_NOTES.md, "The input position"). Evaluation draws one pair per
  record read.
* **Videos shorter than one window** (or without any frame inside the audio)
  are skipped; `l3.pairs.sampling.scan_videos` counts and logs them (evaluation
  always scans; training does not by default: a scan reads the whole set).

Both pipelines are deterministic: the same files, seed and options give the
same pairs in the same order.
"""

from typing import Optional, Sequence, Union

import tensorflow as tf

from l3.core.presets import Preset
from l3.pairs import evaluation
from l3.pairs import options as options_lib
from l3.pairs import stream as stream_lib
from l3.pairs.options import (AUTOTUNE, DEFAULT_CYCLE_LENGTH, DEFAULT_OPEN_VIDEOS,  # noqa: F401
                              DEFAULT_PAIRS_PER_VIDEO, DEFAULT_SHUFFLE_PAIRS, EVAL_GROUP,
                              PipelineOptions, pairs_per_video, resolve_files)


@tf.autograph.experimental.do_not_convert
def make_dataset(file_pattern: Union[str, Sequence[str]], preset: Preset, *, training: bool,
                 options: PipelineOptions = PipelineOptions(),
                 input_context: Optional[tf.distribute.InputContext] = None,
                 position: Optional[stream_lib.StreamPosition] = None) -> tf.data.Dataset:
    """Batches of AVC pairs from builder shards.

    Args:
      file_pattern: a glob, or a list of paths (or globs). Files are sorted.
      preset: sizes (`clip_samples`, `decimation`, `resize_side`, `image_size`).
      training: True: the training stream (`l3.pairs.stream`): infinite,
        reshuffled each epoch, augmented, exactly balanced random labels per
        batch. False: the fixed evaluation pairs (`l3.pairs.evaluation`).
      options: batch size, seed, length, metadata, parallelism, damage policy.
      input_context: shards files by `input_pipeline_id` and batches per
        replica, as `strategy.distribute_datasets_from_function` asks.
      position: training: where to start (default: the beginning).

    Returns:
      A dataset of `(image [B, S, S, 3], waveform [B, preset.clip_samples]
      float32, label [B] int32)` (+ the metadata dict with
      `options.include_metadata`; + the stream state dict, last, with
      `options.include_position`); images are uint8 in training
      (`l3.ops.image.jitter_batch` finishes them on the device), float32 in
      [0, 1] in evaluation.
    """
    files = resolve_files(file_pattern)
    if not training:
        if position is not None:
            raise ValueError("evaluation pairs have no position")
        return evaluation.evaluation_dataset(files, preset, options, input_context)
    stream = stream_lib.stream_for(files, preset, options, input_context)
    ds = stream.dataset(position, include_metadata=options.include_metadata)
    if not options.include_position:
        ds = ds.map(lambda *element: element[:-1])
    return ds
