"""The supervised baselines of Table 1 (section 3.2), beside L3 on the same pairs.

On labelled shards (Kinetics-Sounds in the paper: 34 classes):

1. train a supervised vision and a supervised audio classifier
   (`l3.eval.transfer.supervised`: L3 trunk + fc 512x128 (ReLU) + fc 128xK);
2. **supervised direct combination**: a (frame, audio) pair's score is the
   dot product of the two classifiers' K-way softmax outputs; the pair is
   called corresponding when the score exceeds a threshold, the one that
   maximises accuracy on *validation* pairs (`val_pattern`, or a held-out
   part of the training shards);
3. **supervised pretraining**: both trained trunks, frozen (batch norm in
   inference mode), go into the AVC architecture (`l3.model.build_avc_model`);
   only the fusion layers (concat, fc1, fc2) are trained, on the AVC task with
   the pair pipeline (`l3.pairs`), as L3 is;
4. **L3-Net** (when an export is given): the export's `avc` signature.

All rows are scored on the *same* fixed held-out pairs of `eval_pattern`
(`l3.pairs.make_dataset(..., training=False)` with `seed=eval_seed`, the pairs
`l3-eval-avc` uses), as accuracy (a pair is called corresponding when its
probability exceeds 0.5; for the direct combination, when its score exceeds
the threshold) and, for information, ROC AUC.

Paper (Kinetics-Sounds): direct combination 65 %, supervised pretraining
74 %, L3-Net 74 %; chance 50 %.
"""

import dataclasses
import logging
import os
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from sklearn import metrics

from l3.core import constants as C
from l3.eval import avc as evaluate_lib
from l3.export import predictors
from l3.export import reader as export_reader
from l3.core import fileio, temps
from l3.ops import image as image_lib
from l3.model import network as model_lib
from l3.pairs import evaluation
from l3.pairs import pipeline as pairs_lib
from l3.core import presets as presets_lib
from l3.records import schema as records
from l3.records import shard_reader
from l3.eval.transfer import supervised
from l3.train import harness

# Not from the paper (it gives no schedules for the baselines): budgets in
# the range where the classifiers and the fusion head converge on
# Kinetics-Sounds-sized data at batch 256 (~60 steps per epoch of 15k videos).
DEFAULT_CLASSIFIER_STEPS = 10_000
DEFAULT_PRETRAINING_STEPS = 10_000
DEFAULT_VAL_FRACTION = 0.1  # of the training shards, when no validation set is given
DEFAULT_BN_BATCHES = 100    # not from the paper: see supervised.recalibrate_batch_norm
DEFAULT_CHECKPOINT_EVERY = 1000  # steps; a few minutes of paper-preset training on a GPU

DIRECT = "direct_combination"
PRETRAINING = "supervised_pretraining"
L3 = "l3"
ROW_NAMES = {DIRECT: "Supervised direct", PRETRAINING: "Supervised pretraining", L3: "L3-Net"}
PAPER_ROWS = {DIRECT: C.PAPER_RESULTS["avc_direct_combination"],
              PRETRAINING: C.PAPER_RESULTS["avc_supervised_pretraining"],
              L3: C.PAPER_RESULTS["avc_accuracy_kinetics"]}


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Settings of a baselines run. None means "the preset's" (batch, learning rate)."""

    preset: str = "paper"
    classifier_steps: int = DEFAULT_CLASSIFIER_STEPS
    pretraining_steps: int = DEFAULT_PRETRAINING_STEPS
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    val_fraction: float = DEFAULT_VAL_FRACTION
    # As `l3-eval-avc` (l3.eval.avc's defaults), so the L3 row equals its number.
    num_val_pairs: int = evaluate_lib.DEFAULT_NUM_PAIRS
    num_eval_pairs: int = evaluate_lib.DEFAULT_NUM_PAIRS  # as l3-eval-avc
    eval_seed: int = evaluate_lib.DEFAULT_SEED
    seed: int = 0
    log_every: int = 100
    # Batches of "precise BN" after each classifier's training
    # (supervised.recalibrate_batch_norm); 0 keeps the moving averages.
    bn_batches: int = DEFAULT_BN_BATCHES
    # A damaged shard (l3.records.shard_reader): "skip" its rest with a warning, or "stop".
    on_damaged_shard: str = "skip"
    # With a model_dir: checkpoint each trained model every this many steps (and
    # at its end) under model_dir/checkpoints/, so a rerun resumes; 0: at the end only.
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY


# --- data splits -------------------------------------------------------------------

@tf.autograph.experimental.do_not_convert
def hold_out_validation(train_files: List[str], work_dir: str, fraction: float,
                        on_damage: str = "skip") -> Tuple[List[str], int, str]:
    """Copies held-out validation videos of the training shards into one shard.

    The held-out videos are the round(fraction x n) (at least 1, at most n - 1)
    distinct video ids with the smallest `supervised.video_hash`: a stable
    choice that mixes classes whatever the shard layout (a builder may write
    one class per shard). The classifiers skip the same videos by passing
    the returned threshold as `classification_dataset(exclude_below=...)`, so
    only the validation part is copied.

    Shards are read through `l3.records.shard_reader` (`on_damage`).
    Returns ([the new shard's path], hash threshold, a sentence saying what was done).
    """
    spec = {records.VIDEO_ID: tf.io.FixedLenFeature([], tf.string)}
    hashes = shard_reader.read_shards(train_files, on_damage).map(
        lambda x: supervised.video_hash(tf.io.parse_single_example(x, spec)[records.VIDEO_ID]))
    distinct = np.unique(np.fromiter(hashes.as_numpy_iterator(), np.int64))
    if len(distinct) < 2:
        raise ValueError(f"{len(distinct)} distinct training video(s): cannot hold out validation; "
                         f"give --val_pattern")
    k = min(len(distinct) - 1, max(1, int(round(fraction * len(distinct)))))
    threshold = int(distinct[k - 1]) + 1
    root = os.path.join(work_dir, "split")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"val-00000-of-00001{records.SHARD_SUFFIX}")
    ds = shard_reader.read_shards(train_files, on_damage).filter(
        lambda x: supervised.is_held_out(tf.io.parse_single_example(x, spec)[records.VIDEO_ID],
                                         threshold))
    with fileio.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for serialized in ds.as_numpy_iterator():
            writer.write(serialized)
    return [path], threshold, (f"validation = {k} of {len(distinct)} training videos (smallest "
                               f"hashes of video_id; copied to {root}), excluded from the "
                               f"classifiers' training")


# --- pair scoring ----------------------------------------------------------------------

def _unpack(batch):
    """A pair-pipeline element -> (image, waveform, label)."""
    if isinstance(batch, dict):
        return batch["image"], batch["waveform"], batch["label"]
    return batch[0], batch[1], batch[2]


def pair_dataset(pattern, preset, *, batch_size: int, seed: int,
                 num_pairs: int, on_damage: str = "stop") -> tf.data.Dataset:
    """The fixed held-out pairs of `pattern` (a glob or file list) for `seed` (`l3.pairs.evaluation`)."""
    return evaluation.evaluation_pairs(pattern, preset, num_pairs=num_pairs, seed=seed,
                                       batch_size=batch_size, on_damaged_shard=on_damage)


def _checkpoints(model_dir: Optional[str], name: str) -> Optional[str]:
    """model_dir/checkpoints/<name> (where a model's training resumes from), or None."""
    return None if model_dir is None else os.path.join(model_dir, "checkpoints", name)


def direct_score_fn(vision_classifier: keras.Model, audio_classifier: keras.Model):
    """(image, waveform) -> float32 [b]: <softmax(vision logits), softmax(audio logits)>."""

    @tf.function
    def score(image, waveform):
        p_v = tf.nn.softmax(vision_classifier(image, training=False), axis=-1)
        p_a = tf.nn.softmax(audio_classifier(waveform, training=False), axis=-1)
        return tf.reduce_sum(p_v * p_a, axis=-1)

    return score


def score_pairs(dataset: tf.data.Dataset, scorers: Dict[str, object]) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """One pass over pair batches, every scorer on each: (labels [n], {name: scores [n]})."""
    labels, scores = [], {name: [] for name in scorers}
    for batch in dataset:
        image, waveform, label = _unpack(batch)
        labels.append(np.asarray(label))
        for name, fn in scorers.items():
            scores[name].append(np.asarray(fn(image, waveform), np.float64).reshape(-1))
    if not labels:
        raise ValueError("the pair dataset is empty")
    return (np.concatenate(labels).astype(np.int64),
            {name: np.concatenate(s) for name, s in scores.items()})


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """The threshold t maximising accuracy of "corresponds iff score > t"; returns (t, accuracy).

    Candidates are midpoints between consecutive distinct scores and points
    just outside their range (all positive / all negative). Ties go to the
    smallest best threshold.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2,
                                 [distinct[-1] + 1.0]])
    order = np.argsort(scores)
    s, y = scores[order], labels[order]
    # For each candidate, #(score <= t): negatives there are right, positives above are right.
    below = np.searchsorted(s, candidates, side="right")
    neg_below = np.concatenate([[0], np.cumsum(~y)])[below]
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])[below]
    accuracy = (neg_below + pos_above) / len(s)
    best = int(np.argmax(accuracy))
    return float(candidates[best]), float(accuracy[best])


def _row(labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray) -> Dict:
    """accuracy, accuracy on positives / negatives, ROC AUC of one method's scores."""
    correct = predicted.astype(np.int64) == labels
    both = len(np.unique(labels)) == 2
    return {"accuracy": float(np.mean(correct)),
            "accuracy_positive": float(np.mean(correct[labels == 1])) if both else None,
            "accuracy_negative": float(np.mean(correct[labels == 0])) if both else None,
            "auc": float(metrics.roc_auc_score(labels, scores)) if both else None}


# --- supervised pretraining ---------------------------------------------------------------

def build_pretraining_model(vision_classifier: keras.Model, audio_classifier: keras.Model,
                            preset) -> keras.Model:
    """An AVC model whose trunks are the classifiers' (copied, frozen); fusion fresh and trainable."""
    avc = model_lib.build_avc_model(preset, name="supervised_pretraining_avc")
    for name, classifier in (("vision_network", vision_classifier),
                             ("audio_network", audio_classifier)):
        trunk = avc.get_layer(name)
        trunk.set_weights(supervised.trunk_of(classifier).get_weights())
        trunk.trainable = False  # Keras 3: frozen batch norm runs in inference mode
    return avc


def train_fusion(avc: keras.Model, dataset: tf.data.Dataset, *, steps: int, learning_rate: float,
                 weight_decay: float, log_every: int = 100, seed: int = 0,
                 optimizer: Optional[keras.optimizers.Optimizer] = None,
                 checkpoint_dir: Optional[str] = None, checkpoint_every: int = 0) -> List[float]:
    """Trains `avc`'s trainable (fusion) weights on AVC pair batches; returns mean losses.

    Loss: cross-entropy + `l3.model.network.l2_penalty` (0.5 * wd * sum(w^2))
    of the trainable kernels, in the shared harness (`l3.train.harness`: NaN
    stop, resume from `checkpoint_dir`, progress); `optimizer` replaces
    Adam(learning_rate) when given. The training pipeline's uint8 views
    [b, S, S, 3] get the step's end of the augmentation as AVC training does
    (`l3.ops.image.jitter_batch`, seeded by (seed, step)); float images are
    taken as finished.
    """
    def prepare(batch, step):
        image, waveform, label = _unpack(batch)
        if image.dtype == tf.uint8:
            image = image_lib.jitter_batch(image, tf.stack([tf.constant(seed, tf.int64), step]))
        return image, waveform, tf.cast(label, tf.int32)

    def loss_fn(batch):
        image, waveform, label = batch
        logits = avc({"image": image, "waveform": waveform}, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits))

    trainer = harness.Harness(
        avc, loss_fn, optimizer=optimizer or keras.optimizers.Adam(learning_rate=learning_rate),
        weight_decay=weight_decay, prepare=prepare, name="fusion", log_every=log_every,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    return trainer.fit(dataset, steps, checkpoint_input=checkpoint_dir is not None).windows


# --- the whole benchmark ------------------------------------------------------------------

def run_baselines(*, train_pattern: str, eval_pattern: str, val_pattern: Optional[str] = None,
                  l3_export_dir: Optional[str] = None, output_json: Optional[str] = None,
                  model_dir: Optional[str] = None,
                  config: BaselineConfig = BaselineConfig()) -> Dict:
    """Trains the baselines, scores every row on the fixed eval pairs, writes JSON; returns it.

    `model_dir` (optional) receives the trained models (`vision_classifier.keras`,
    `audio_classifier.keras`, `supervised_pretraining_avc.keras`), their training
    checkpoints (`checkpoints/{vision_classifier,audio_classifier,fusion}/`: a
    run stopped part-way resumes there when started again with the same
    settings) and, when the validation data is carved out of the training
    shards, the split.
    """
    start = time.time()
    preset = presets_lib.get_preset(config.preset)
    batch_size = config.batch_size or preset.global_batch_size
    learning_rate = config.learning_rate or preset.learning_rate
    if l3_export_dir is not None:
        export_preset = export_reader.read_export_info(l3_export_dir)["preset"]
        if export_preset != preset.name:
            raise ValueError(f"the L3 export is preset {export_preset!r} but the baselines use "
                             f"{preset.name!r}: the pairs would differ")
    keras.utils.set_random_seed(config.seed)
    tmp = None
    work_dir = model_dir
    if work_dir is None:
        # registered: removed on SIGTERM/SIGINT, swept by a later run after a SIGKILL
        work_dir = tmp = temps.new_dir("l3-kinetics-baselines", folder=tempfile.gettempdir())
    try:
        train_files = pairs_lib.resolve_files(train_pattern)
        if val_pattern is None:
            val_files, exclude, split = hold_out_validation(train_files, work_dir, config.val_fraction,
                                                            config.on_damaged_shard)
            if tmp is not None:
                split += " (a temporary copy, deleted at the end)"
        else:
            val_files, split = pairs_lib.resolve_files(val_pattern), f"validation = {val_pattern}"
            exclude = 0
        logging.info("%s", split)
        result = _run(preset, config, batch_size, learning_rate, train_files, val_files, exclude,
                      pairs_lib.resolve_files(eval_pattern), l3_export_dir, model_dir)
    finally:
        if tmp is not None:
            temps.discard(tmp)
    result["protocol"] = protocol(config, preset, batch_size, learning_rate, split)
    result["data"] = {"train_pattern": train_pattern, "val_pattern": val_pattern,
                      "eval_pattern": eval_pattern}
    result["seconds"] = time.time() - start
    if output_json:
        fileio.write_json(output_json, result)
    return result


def _run(preset, config: BaselineConfig, batch_size: int, learning_rate: float,
         train_files: List[str], val_files: List[str], exclude_below: int,
         eval_files: List[str], l3_export_dir: Optional[str], model_dir: Optional[str]) -> Dict:
    on_damage = config.on_damaged_shard
    class_names = supervised.read_class_names(train_files, on_damage)
    if len(class_names) < 2:
        raise ValueError(f"the training records have {len(class_names)} labelled classes; need 2+")
    logging.info("%d classes: %s", len(class_names), ", ".join(class_names))

    classifiers, classification = {}, {}
    for offset, modality in enumerate((model_lib.VISION, model_lib.AUDIO)):
        classifier = supervised.build_classifier(preset, modality, len(class_names))
        train_ds = supervised.classification_dataset(
            train_files, preset, class_names, modality=modality, training=True,
            batch_size=batch_size, seed=config.seed + offset, exclude_below=exclude_below,
            on_damage=on_damage)
        losses = supervised.train_classifier(
            classifier, train_ds, steps=config.classifier_steps, learning_rate=learning_rate,
            weight_decay=preset.weight_decay, log_every=config.log_every,
            checkpoint_dir=_checkpoints(model_dir, classifier.name),
            checkpoint_every=config.checkpoint_every)
        supervised.recalibrate_batch_norm(classifier, train_ds, config.bn_batches)
        eval_ds = supervised.classification_dataset(
            eval_files, preset, class_names, modality=modality, training=False,
            batch_size=batch_size, on_damage=on_damage)
        classification[modality] = {**supervised.evaluate_classifier(classifier, eval_ds),
                                    "chance": 1.0 / len(class_names), "train_loss": losses}
        logging.info("%s classifier: %.3f on %d eval videos", modality,
                     classification[modality]["accuracy"], classification[modality]["num_examples"])
        classifiers[modality] = classifier
    direct = direct_score_fn(classifiers[model_lib.VISION], classifiers[model_lib.AUDIO])

    val_labels, val_scores = score_pairs(
        pair_dataset(val_files, preset, batch_size=batch_size, seed=config.eval_seed,
                     num_pairs=config.num_val_pairs, on_damage=on_damage), {DIRECT: direct})
    threshold, val_accuracy = best_threshold(val_scores[DIRECT], val_labels)

    avc = build_pretraining_model(classifiers[model_lib.VISION], classifiers[model_lib.AUDIO],
                                  preset)
    # All training shards, held-out videos included: they only choose the
    # direct combination's threshold, which the fusion layers do not touch.
    pair_train = pairs_lib.make_dataset(
        train_files, preset, training=True,
        options=pairs_lib.PipelineOptions(batch_size=batch_size, seed=config.seed,
                                          on_damaged_shard=on_damage))
    fusion_losses = train_fusion(avc, pair_train, steps=config.pretraining_steps,
                                 learning_rate=learning_rate, weight_decay=preset.weight_decay,
                                 log_every=config.log_every, seed=config.seed,
                                 checkpoint_dir=_checkpoints(model_dir, "fusion"),
                                 checkpoint_every=config.checkpoint_every)

    scorers = {DIRECT: direct, PRETRAINING: predictors.from_model(avc)}
    if l3_export_dir is not None:
        scorers[L3] = predictors.from_export(l3_export_dir)
    labels, scores = score_pairs(
        pair_dataset(eval_files, preset, batch_size=batch_size, seed=config.eval_seed,
                     num_pairs=config.num_eval_pairs, on_damage=on_damage), scorers)
    avc_rows = {DIRECT: {**_row(labels, scores[DIRECT] > threshold, scores[DIRECT]),
                         "threshold": threshold, "val_accuracy": val_accuracy}}
    avc_rows[PRETRAINING] = {**_row(labels, scores[PRETRAINING] > 0.5, scores[PRETRAINING]),
                             "train_loss": fusion_losses}
    if l3_export_dir is not None:
        avc_rows[L3] = {**_row(labels, scores[L3] > 0.5, scores[L3]),
                        "export_dir": os.path.abspath(l3_export_dir)}

    if model_dir is not None:
        os.makedirs(model_dir, exist_ok=True)
        saved = {f"{modality}_classifier.keras": m for modality, m in classifiers.items()}
        for name, model in dict(saved, **{"supervised_pretraining_avc.keras": avc}).items():
            with fileio.atomic_path(os.path.join(model_dir, name)) as tmp:
                model.save(tmp)

    return {
        "avc": avc_rows,
        "rows": [{"method": ROW_NAMES[k], "key": k, "accuracy": v["accuracy"],
                  "paper": PAPER_ROWS[k]} for k, v in avc_rows.items()],
        "classification": classification,
        "class_names": class_names,
        "num_classes": len(class_names),
        "num_eval_pairs": int(len(labels)),
        "eval_positive_fraction": float(np.mean(labels)),
        "num_val_pairs": int(len(val_labels)),
        "paper": {"table": "Table 1, Kinetics-Sounds", "chance": 0.5,
                  **{k: v for k, v in PAPER_ROWS.items()}},
    }


def protocol(config: BaselineConfig, preset, batch_size: int, learning_rate: float,
             split: str) -> Dict:
    """What was done, for the results file."""
    return {
        "classifiers": (f"L3 {preset.name} trunk + fc {preset.embedding_dim}x{preset.fusion_hidden} "
                        f"(ReLU) + fc {preset.fusion_hidden}xK, softmax cross-entropy; examples: one "
                        f"random frame (train_image augmentation) or one random 1 s window "
                        f"(random_gain, decimated x{preset.decimation}) per video; eval: middle "
                        f"frame / centred window"),
        "classifier_steps": config.classifier_steps,
        "batch_norm": (f"moving statistics re-estimated after training as the mean over "
                       f"{config.bn_batches} training batches (precise BN)" if config.bn_batches
                       else "Keras moving averages (momentum 0.99)"),
        "direct_combination": ("score = <softmax_vision, softmax_audio>; corresponds iff score > "
                               "threshold; threshold maximises accuracy on the validation pairs"),
        "supervised_pretraining": ("both classifier trunks frozen (BN in inference mode) in "
                                   "build_avc_model; fusion (concat, fc1, fc2) trained on AVC pairs "
                                   "of the training shards"),
        "pretraining_steps": config.pretraining_steps,
        "l3": "the export's avc signature; corresponds iff P > 0.5",
        "eval_pairs": (f"l3.pairs.make_dataset(eval_pattern, training=False, options="
                       f"PipelineOptions(seed={config.eval_seed}, "
                       f"num_pairs={config.num_eval_pairs})): the same fixed pairs for every row"),
        "validation": split,
        "optimizer": f"Adam, learning rate {learning_rate}, L2 weight decay {preset.weight_decay} "
                     f"on kernels (0.5 * wd * sum(w^2), in the loss)",
        "batch_size": batch_size,
        "preset": preset.name,
        "seed": config.seed,
    }


def format_table(result: Dict) -> str:
    """Table 1 (Kinetics-Sounds column) with our numbers beside the paper's."""
    lines = [f"AVC accuracy on {result['num_eval_pairs']} fixed held-out pairs "
             f"(paper Table 1, Kinetics-Sounds; chance 50%)",
             f"{'method':<26}{'ours':>8}{'paper':>8}"]
    for key in (DIRECT, PRETRAINING, L3):
        ours = result["avc"].get(key)
        ours = f"{100 * ours['accuracy']:.1f}%" if ours else "-"
        lines.append(f"{ROW_NAMES[key]:<26}{ours:>8}{100 * PAPER_ROWS[key]:>7.0f}%")
    k = result["num_classes"]
    cls = result["classification"]
    lines.append(f"supervised classifiers ({k} classes, chance {100 / k:.1f}%): "
                 f"vision {100 * cls['vision']['accuracy']:.1f}%, "
                 f"audio {100 * cls['audio']['accuracy']:.1f}% "
                 f"on {cls['vision']['num_examples']} eval videos")
    return "\n".join(lines)
