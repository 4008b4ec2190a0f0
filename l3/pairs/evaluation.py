"""The fixed held-out AVC pairs and their scoring: the one home of both.

Every tool that reports AVC accuracy (training's periodic evaluation,
`l3-eval-avc`, the Kinetics baselines, the demo) scores the same pairs:

    ds = evaluation.evaluation_pairs(pattern, preset, num_pairs=10_000, seed=0)
    result = evaluation.evaluate_pairs(predict, ds)   # predict(image, waveform) -> P [b]

`evaluation_pairs` (= `l3.pairs.make_dataset(..., training=False)`): the
same files, seed and `num_pairs` give the same pairs in the same order
whatever the batch size; images are float32 [b, S, S, 3] in [0, 1], waveforms
float32 [b, N], labels int32 [b] (1 = corresponds), exactly half of every
even prefix positive. One pair per record read; records in file order (the
shards interleaved `cycle_length` at a time), each usable video once per
pass, passes repeated until `num_pairs`, then a fixed-seed shuffle of 256
draws; pairs made in groups of 64 (`EVAL_GROUP`) alternating positive and
negative.
"""

import collections
import math
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from l3.core.presets import Preset
from l3.pairs import options as options_lib
from l3.pairs import sampling
from l3.records import shard_reader

# Not from the paper (it does not say how many pairs it scored): enough that
# the accuracy's standard error is under 0.5 % (sqrt(0.25 / 10000)).
DEFAULT_NUM_PAIRS = 10_000
DEFAULT_SEED = 0


def evaluation_pairs(file_pattern: Union[str, Sequence[str]], preset: Preset, *,
                     num_pairs: Optional[int] = DEFAULT_NUM_PAIRS, seed: int = DEFAULT_SEED,
                     batch_size: int = 64, include_metadata: bool = False,
                     on_damaged_shard: str = "stop") -> tf.data.Dataset:
    """The fixed evaluation pairs of `file_pattern` (see the module docstring).

    `num_pairs=None` gives one pair per usable video (one pass); a damaged
    shard stops the evaluation with one line naming it (the default), or is
    skipped from its damage on with a warning (`on_damaged_shard="skip"`); the
    same for a record holding frames that are not whole JPEGs (with "skip" they
    are never drawn, one warning per record names it).
    """
    options = options_lib.PipelineOptions(batch_size=batch_size, seed=seed, num_pairs=num_pairs,
                                          include_metadata=include_metadata,
                                          on_damaged_shard=on_damaged_shard)
    return evaluation_dataset(options_lib.resolve_files(file_pattern), preset, options)


@tf.autograph.experimental.do_not_convert
def evaluation_dataset(files: List[str], preset: Preset, options,
                       input_context=None) -> tf.data.Dataset:
    """The evaluation pairs of `files` (sorted paths) under `options` (`PipelineOptions`;
    damaged shards stop it unless `on_damaged_shard="skip"`); see the module docstring."""
    o = options
    files = options_lib.shard_files(files, input_context)
    batch = options_lib.batch_size(o, preset, input_context)
    options_lib.pairs_per_video(o, training=False)  # refuses K > 1
    shuffle_pairs = o.shuffle_pairs if o.shuffle_pairs is not None else options_lib.DEFAULT_SHUFFLE_PAIRS
    parallel = o.num_parallel_calls
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    sampler = sampling.PairSampler(preset, training=False, pairs_per_video=1)
    base_seed = tf.constant([o.seed, pipeline_id], tf.int64)
    stats = sampling.scan_videos(files)
    if stats.num_usable_ids < 2:
        raise ValueError(f"{files}: {stats.num_usable_ids} usable video(s); AVC negatives need two")
    num_pairs = stats.num_usable if o.num_pairs is None else o.num_pairs
    epochs = 1 if o.num_pairs is None else math.ceil(num_pairs / stats.num_usable)
    cycle = min(o.cycle_length or options_lib.DEFAULT_CYCLE_LENGTH, len(files))
    on_damage = options_lib.on_damage(o, "stop")

    # 1. Records, file order, `cycle` shards interleaved (sequentially: the order is fixed).
    ds = tf.data.Dataset.from_tensor_slices(shard_reader.shard_table(files)).repeat(epochs)
    ds = ds.interleave(lambda path, size: shard_reader.read_shard_positions(
                           path, size, on_damage).map(lambda record, index, _: (record, path, index)),
                       cycle_length=cycle, block_length=1).prefetch(cycle)
    # 2. Per record one draw (a whole JPEG frame inside the audio, a window containing
    #    its time), seeded by the record's place in the stream; frames that are not
    #    whole JPEGs reported per record (warning, or stop), never drawn.
    ds = ds.enumerate()

    def draw(i, where):
        record, path, index = where
        video = sampler.sample_video(record, tf.random.experimental.stateless_fold_in(base_seed, i))
        bad = sampling.report_bad_frames(video["bad_frames"][None], path[None], index[None],
                                         video["video_id"][:1], on_damage)
        with tf.control_dependencies([bad]):
            return i, {k: tf.identity(v) for k, v in video.items()}

    ds = ds.map(draw, num_parallel_calls=parallel, deterministic=True)
    ds = ds.filter(lambda i, video: video["usable"])
    ds = ds.map(lambda i, video: {k: v[0] for k, v in video.items()
                                  if k not in ("usable", "bad_frames")})
    # 3. A fixed-seed shuffle (the same order on every pass), then the centre crop.
    if shuffle_pairs > 1:
        ds = ds.shuffle(shuffle_pairs, seed=o.seed, reshuffle_each_iteration=False)
    ds = ds.map(sampler.load_frame, num_parallel_calls=parallel, deterministic=True)
    # 4. Groups of EVAL_GROUP alternating positive / negative (any even prefix is
    #    balanced whatever the batch size); a group of one video id only is dropped.
    ds = ds.batch(options_lib.EVAL_GROUP)
    ds = ds.map(sampler.make_pairs, num_parallel_calls=parallel, deterministic=True)
    ds = ds.filter(lambda pairs: pairs["ok"])
    ds = ds.map(lambda pairs: sampling.as_tuple(pairs, o.include_metadata))
    ds = ds.unbatch().take(num_pairs).batch(batch)
    if o.prefetch:
        ds = ds.prefetch(o.prefetch)
    tf_options = tf.data.Options()
    tf_options.deterministic = True
    return ds.with_options(tf_options)


def avc_metrics(probability: np.ndarray, label: np.ndarray,
                frame_label: Optional[np.ndarray] = None) -> Dict:
    """Accuracy numbers from P(corresponds) [n] and labels [n] (1 = corresponds).

    Returns {"accuracy", "num_pairs", "accuracy_positive", "accuracy_negative",
    "log_loss"} and, when `frame_label` (class names, bytes or str) has
    non-empty entries, "per_class": {class: {"accuracy", "num_pairs"}} and
    "mean_class_accuracy".
    """
    p = np.asarray(probability, np.float64).reshape(-1)
    y = np.asarray(label).reshape(-1).astype(np.int64)
    if p.shape != y.shape:
        raise ValueError(f"{p.shape[0]} probabilities for {y.shape[0]} labels")
    if not len(y):
        raise ValueError("no pairs to evaluate")
    correct = (p > 0.5) == (y == 1)
    eps = 1e-7
    result = {
        "accuracy": float(correct.mean()),
        "num_pairs": int(len(y)),
        "accuracy_positive": float(correct[y == 1].mean()) if (y == 1).any() else None,
        "accuracy_negative": float(correct[y == 0].mean()) if (y == 0).any() else None,
        "log_loss": float(-np.mean(np.where(y == 1, np.log(p + eps), np.log(1 - p + eps)))),
    }
    if frame_label is not None:
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in np.asarray(frame_label).reshape(-1)]
        groups = collections.defaultdict(list)
        for name, ok in zip(names, correct):
            if name:
                groups[name].append(ok)
        if groups:
            result["per_class"] = {name: {"accuracy": float(np.mean(oks)), "num_pairs": len(oks)}
                                   for name, oks in sorted(groups.items())}
            result["mean_class_accuracy"] = float(
                np.mean([v["accuracy"] for v in result["per_class"].values()]))
    return result


def evaluate_pairs(predict: Callable, dataset: tf.data.Dataset) -> Dict:
    """Scores every pair of `dataset` with `predict(image, waveform) -> P [b]`.

    `dataset` yields (image [b, S, S, 3], waveform [b, N], label [b]) and
    optionally a metadata dict with "frame_label". Returns `avc_metrics`.
    """
    probs, labels, frame_labels = [], [], []
    for element in dataset:
        image, waveform, label = element[:3]
        probs.append(np.asarray(predict(image, waveform)).reshape(-1))
        labels.append(label.numpy())
        if len(element) > 3 and "frame_label" in element[3]:
            frame_labels.append(element[3]["frame_label"].numpy())
    return avc_metrics(np.concatenate(probs), np.concatenate(labels),
                       np.concatenate(frame_labels) if frame_labels else None)
