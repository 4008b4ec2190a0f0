"""The fixed held-out AVC pairs and their scoring: the one home of both.

Every tool that reports AVC accuracy (training's periodic evaluation,
`l3-eval-avc`, the Kinetics baselines, the demo) scores the same pairs:

    ds = evaluation.evaluation_pairs(pattern, preset, num_pairs=10_000, seed=0)
    result = evaluation.evaluate_pairs(predict, ds)   # predict(image, waveform) -> P [b]

`evaluation_pairs` is `l3.pairs.make_dataset(..., training=False)`: the same
files, seed and `num_pairs` give the same pairs in the same order whatever
the batch size; images are float32 [b, S, S, 3] in [0, 1], waveforms float32
[b, N], labels int32 [b] (1 = corresponds), exactly half of every even prefix
positive.
"""

import collections
from typing import Callable, Dict, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from l3.core.presets import Preset
from l3.pairs import pipeline

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
    skipped from its damage on with a warning (`on_damaged_shard="skip"`).
    """
    options = pipeline.PipelineOptions(batch_size=batch_size, seed=seed, num_pairs=num_pairs,
                                       include_metadata=include_metadata, deterministic=True,
                                       on_damaged_shard=on_damaged_shard)
    return pipeline.make_dataset(file_pattern, preset, training=False, options=options)


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
