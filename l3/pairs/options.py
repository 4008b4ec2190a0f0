"""What the pair pipelines take: `PipelineOptions`, the shard files, and their defaults.

Shared by the training stream (`l3.pairs.stream`) and the fixed evaluation
pairs (`l3.pairs.evaluation`); `l3.pairs.make_dataset` picks one of them.
"""

import dataclasses
import glob as _glob
from typing import List, Optional, Sequence, Union

import tensorflow as tf

from l3.core import errors

AUTOTUNE = tf.data.AUTOTUNE
EVAL_GROUP = 64            # pairing group of evaluation (fixed, so pairs do not depend on batch size)
DEFAULT_CYCLE_LENGTH = 16  # shards read at once (training: lanes; evaluation: interleave)
# Training defaults, chosen by measurement (WORKSPACE_NOTES.md, "Pairs per record
# read" and "The input position"): K = 16 reads ~1.1x the bytes its pairs use
# (10-s records); blocks of 256 records dealt in K rounds keep no video twice in a
# 16-pair batch and hold ~0.5 GB of draws (paper preset) per block.
DEFAULT_PAIRS_PER_VIDEO = 16
DEFAULT_OPEN_VIDEOS = 256      # records per block (their K draws dealt in K shuffled rounds)
DEFAULT_SHUFFLE_PAIRS = 256    # evaluation: draws in the (fixed-seed) shuffle buffer
ON_DAMAGE = ("skip", "stop")


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How `make_dataset` reads and batches; the defaults are the training/evaluation defaults.

    Attributes:
      batch_size: the *global* batch (default `preset.global_batch_size`). With
        an `input_context`, batches are
        `input_context.get_per_replica_batch_size(batch_size)`.
      seed: the stream's seed; the same seed and files give the same pairs (both
        the training stream and the evaluation pairs are deterministic).
      num_pairs: evaluation: how many pairs (default: one per usable video);
        training: stop after ceil(num_pairs / batch) batches (default: infinite).
      include_metadata: add a dict of [B] tensors after the label: frame_video_id,
        audio_video_id, frame_label, audio_label (strings), frame_time,
        audio_start (seconds, the records' clock; the window is
        [audio_start, audio_start + 1)), frame_index (int32).
      include_position: training: add, last, the stream's position after the
        batch (int64 [P], `l3.pairs.stream.StreamPosition`): what a checkpoint
        keeps of the input.
      cycle_length: shards read at once (default min(16, files)).
      pairs_per_video: draws per record read, K (training; default
        DEFAULT_PAIRS_PER_VIDEO). Evaluation draws one (a larger value is refused).
      open_videos: training: records per block; a block's draws are dealt in K
        rounds, each a shuffle of its records (memory: ~2 blocks of
        open_videos x K draws of ~130 KB in flight).
      shuffle_pairs: evaluation: the fixed-seed shuffle buffer, in draws
        (default 256).
      num_parallel_calls: parallelism of each map and of the shard reading.
      scan: count (and log) the videos excluded as too short before building
        (default: in evaluation only; evaluation needs the count anyway when
        `num_pairs` is None).
      prefetch: batches prefetched (AUTOTUNE by default; 0 for none).
      on_damaged_shard: a shard cut short or failing a CRC: "skip" its rest
        with a warning naming it (the default: a long job goes on) or "stop"
        at once naming the file and byte offset (`l3.records.shard_reader`).
        Default: "skip" in training, "stop" in evaluation. Frames that are not
        JPEG are never drawn; in training "stop" also stops on them
        (`l3.pairs.stream`).
    """

    batch_size: Optional[int] = None
    seed: int = 0
    num_pairs: Optional[int] = None
    include_metadata: bool = False
    include_position: bool = False
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


def shard_files(files: List[str], input_context) -> List[str]:
    """This input pipeline's files: every num_input_pipelines-th, from its id."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < n:
        raise ValueError(f"{len(files)} files for {n} input pipelines: each pipeline needs at least one "
                         "file (write more shards)")
    return files[i::n]


def batch_size(options: PipelineOptions, preset, input_context) -> int:
    """The batch of one replica (the global batch split by the input context)."""
    global_batch = options.batch_size or preset.global_batch_size
    batch = (input_context.get_per_replica_batch_size(global_batch) if input_context is not None
             else global_batch)
    if batch < 2:
        raise ValueError(f"a batch of {batch} pairs cannot hold a negative's donor; use >= 2")
    return batch


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


def on_damage(options: PipelineOptions, default: str) -> str:
    """The damaged-shard policy the options ask for, else `default` (training "skip",
    evaluation "stop")."""
    policy = options.on_damaged_shard or default
    if policy not in ON_DAMAGE:
        raise ValueError(f"on_damaged_shard must be one of {ON_DAMAGE}, got {policy!r}")
    return policy
