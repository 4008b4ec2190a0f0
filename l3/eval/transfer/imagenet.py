"""ImageNet linear probe of the vision features (section 3.4, Table 3).

Protocol (the paper follows Zhang et al. [36] for the features and
Szegedy et al., Inception-v3 [33], for training):

* features: the frozen vision trunk's conv4_2 after ReLU, max-pooled with
  kernel = stride to 4x4x512 = 8192-D (`conv4_2_pooled` of the export's
  `vision_encoder`; 4x4x64 = 1024-D for the small preset);
* classifier: one fully connected layer (features -> 1000 logits), the only
  trained weights; cross-entropy with label smoothing 0.1 ([33], section 7);
* optimiser: Adam (the paper's one change from [33]'s RMSProp), learning rate
  decayed by 0.94 every 2 epochs and gradients clipped to global norm 2.0, as
  in [33]. [33]'s base rate 0.045 is an RMSProp rate; Adam's is
  `DEFAULT_LEARNING_RATE` (not from the paper: Adam's usual 1e-3);
* input: 224x224 (the export's `image_size`), values in [0, 1];
* training augmentation, Inception style ([33]'s `inception_preprocessing`):
  a random crop covering 5 %-100 % of the image area with aspect ratio in
  [3/4, 4/3] (`sample_distorted_bounding_box`, min_object_covered 0.1, 100
  attempts, the whole image as fallback), resized to 224x224, random
  horizontal flip. [33]'s colour distortion is left out: it is an optional
  extra in that code and the paper does not name it;
* evaluation: smaller side resized to 256 then the central 224x224 crop
  (the central 87.5 %, as [33]'s eval crop); top-1 and top-5 on the
  `validation` split (the ILSVRC 2012 validation set, 50k images).

Data: TFDS `imagenet2012`. It needs the ILSVRC 2012 tar files in a manual
directory; `load_builder` prepares the dataset from them on first use.

Paper: 32.3 % top-1 for L3-Net features, 12.9 % for the same architecture
with random weights (`random_trunk=True`).
"""

import dataclasses
import logging
import os
import time
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from l3.core import constants as C
from l3.export import reader as export_reader
from l3.core import fileio
from l3.ops import image as image_lib
from l3.model import network as model_lib
from l3.core import presets as presets_lib
from l3.train import harness

DATASET = "imagenet2012"
TRAIN_SPLIT = "train"
EVAL_SPLIT = "validation"

# Szegedy et al. [33] (Inception-v3) and its released `inception_preprocessing`.
CROP_AREA_RANGE = (0.05, 1.0)
CROP_ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
CROP_MIN_OBJECT_COVERED = 0.1
CROP_MAX_ATTEMPTS = 100
LABEL_SMOOTHING = 0.1
LR_DECAY_RATE = 0.94
LR_DECAY_EPOCHS = 2
CLIP_GLOBAL_NORM = 2.0
# Not from the paper: Adam's usual rate ([33]'s 0.045 is for RMSProp).
DEFAULT_LEARNING_RATE = 1e-3
# Not from the paper: a budget that lets a linear layer on frozen features
# converge (the rate has decayed to 0.94^14 = 0.42 of its start by then).
DEFAULT_EPOCHS = 30
DEFAULT_BATCH_SIZE = C.GLOBAL_BATCH
SHUFFLE_BUFFER = 10_000

FeatureFn = Callable[[tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Training and evaluation settings of the probe; defaults are the protocol's."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    label_smoothing: float = LABEL_SMOOTHING
    max_train_examples: Optional[int] = None  # smoke runs: the same n examples every epoch
    max_eval_examples: Optional[int] = None
    seed: int = 0


# --- preprocessing ------------------------------------------------------------

def inception_crop(jpeg: tf.Tensor, image_size: int, seed) -> tf.Tensor:
    """Training view: random-area, random-aspect crop, resize, random flip.

    Args:
      jpeg: string [] (JPEG bytes); only the crop is decoded.
      seed: int [2], a stateless seed.
    Returns: float32 [image_size, image_size, 3] in [0, 1].
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    shape = tf.image.extract_jpeg_shape(jpeg)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
        min_object_covered=CROP_MIN_OBJECT_COVERED, aspect_ratio_range=CROP_ASPECT_RANGE,
        area_range=CROP_AREA_RANGE, max_attempts=CROP_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image_lib.to_float(image), [image_size, image_size],
                            method="bilinear", antialias=True)
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), [image_size, image_size, 3])


def center_view(jpeg: tf.Tensor, image_size: int, resize_side: int) -> tf.Tensor:
    """Evaluation view: JPEG string [] -> float32 [S, S, 3] in [0, 1], the decoded image's
    `l3.ops.image.eval_image` (smaller side to `resize_side`, then `center_crop`)."""
    image = tf.image.decode_jpeg(jpeg, channels=3)
    image = image_lib.eval_image(image, resize_side=resize_side, image_size=image_size)
    return tf.clip_by_value(image, 0.0, 1.0)


# --- data ---------------------------------------------------------------------

def load_builder(data_dir: Optional[str] = None, manual_dir: Optional[str] = None):
    """The TFDS `imagenet2012` builder, prepared (from `manual_dir`'s tars) if it is not yet.

    `download_and_prepare` returns at once when the dataset is already prepared
    under `data_dir`, so this is cheap after the first run.
    """
    builder = tfds.builder(DATASET, data_dir=data_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder.download_and_prepare(download_config=config)
    return builder


@tf.autograph.experimental.do_not_convert
def make_dataset(builder, split: str, *, training: bool, image_size: int, resize_side: int,
                 batch_size: int, seed: int = 0, epoch: int = 0,
                 max_examples: Optional[int] = None) -> tf.data.Dataset:
    """(image float32 [B, S, S, 3] in [0, 1], label int64 [B]) batches of one pass over `split`.

    Training passes are shuffled (files and a `SHUFFLE_BUFFER` window) and
    augmented with per-example stateless seeds derived from (seed, epoch,
    index), so a pass is reproducible and each epoch differs. Evaluation
    passes are in order and keep the last partial batch.
    """
    # A capped smoke run keeps one file order, so every epoch sees the same subset.
    read_config = tfds.ReadConfig(shuffle_seed=seed if max_examples else seed + epoch)
    ds = builder.as_dataset(split=split, shuffle_files=training, read_config=read_config,
                            decoders={"image": tfds.decode.SkipDecoding()})
    if max_examples is not None:
        ds = ds.take(max_examples)
    if training:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed + epoch)
        base = tf.constant([seed, epoch], tf.int64)

        def prepare(index, example):
            s = tf.random.experimental.stateless_fold_in(base, index)
            return inception_crop(example["image"], image_size, s), example["label"]

        ds = ds.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda ex: (center_view(ex["image"], image_size, resize_side), ex["label"]),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


# --- the frozen trunk ---------------------------------------------------------

def load_trunk(export_dir: Optional[str] = None, *, random_trunk: bool = False,
               preset_name: Optional[str] = None, seed: int = 0):
    """The frozen feature extractor: image float32 [b, S, S, 3] -> conv4_2_pooled [b, P].

    With `export_dir`, the export's `vision_encoder` SavedModel signature (the
    trained L3 trunk). With `random_trunk`, the same architecture with fresh
    random weights (the paper's "Ours random"), sized by the export's preset
    when `export_dir` is given, else by `preset_name`.

    Returns: (feature_fn, preset, description dict). `feature_fn.variables`
    lists the trunk's variables (weights and batch-norm statistics), which
    the probe's training must leave as they are.
    """
    if export_dir is None and not random_trunk:
        raise ValueError("give export_dir, or random_trunk=True (with export_dir or preset_name)")
    if export_dir is not None:
        info = export_reader.read_export_info(export_dir)
        if preset_name is not None and preset_name != info["preset"]:
            raise ValueError(f"export {export_dir!r} is preset {info['preset']!r}, not {preset_name!r}")
        preset_name = info["preset"]
    preset = presets_lib.get_preset(preset_name)
    if random_trunk:
        keras.utils.set_random_seed(seed)
        vision = model_lib.build_vision_network(preset)
        encoder = model_lib.build_encoder(vision, preset, model_lib.VISION)
        encoder.trainable = False

        def features(image):
            return encoder(image, training=False)["conv4_2_pooled"]

        features.variables = list(encoder.weights)
        return features, preset, {"trunk": "random", "seed": seed, "preset": preset.name}
    exported = export_reader.ExportedModel(export_dir)
    saved = exported.saved(export_reader.VISION_ENCODER)  # keeps the SavedModel alive
    if exported.image_size != preset.image_size:
        raise ValueError(f"export image_size {exported.image_size} != preset {preset.image_size}")

    def features(image):
        return saved(image=image)["conv4_2_pooled"]

    features.exported, features.variables = exported, saved.variables

    return features, preset, {"trunk": "export", "export_dir": os.path.abspath(export_dir),
                              "preset": preset.name, "step": exported.info.get("step")}


# --- training and evaluation ----------------------------------------------------

def learning_rate_at(epoch: int, base: float) -> float:
    """[33]'s schedule: base x 0.94 ^ floor(epoch / 2)."""
    return base * LR_DECAY_RATE ** (epoch // LR_DECAY_EPOCHS)


def train_and_evaluate(builder, features: FeatureFn, preset, config: ProbeConfig,
                       *, log_every: int = 100, checkpoint_dir: Optional[str] = None,
                       checkpoint_every: int = 0) -> Dict:
    """Trains the linear layer on `features` of the train split; evaluates on validation.

    The training runs in the shared harness (`l3.train.harness`): the frozen
    features are computed before the gradient tape (`prepare`), only the
    linear layer is in it; NaN stop; with `checkpoint_dir`, a checkpoint at
    every epoch's end (and every `checkpoint_every` steps, if > 0), and a
    rerun resumes where it stopped, inside an epoch too (a pass is
    reproducible, so the batches already trained are skipped).

    Returns a dict: top1, top5 (fractions), num_train_examples (seen in the
    last epoch; after a resume, since the resume), num_eval_examples,
    train_loss (mean step loss per epoch), feature_dim, num_classes, seconds.
    """
    start = time.time()
    num_classes = builder.info.features["label"].num_classes
    size = preset.image_size
    probe = keras.layers.Dense(num_classes, name="linear")
    keras.utils.set_random_seed(config.seed)
    feature_dim = int(features(tf.zeros([1, size, size, 3]))[0].shape[-1])
    probe.build((None, feature_dim))
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                   label_smoothing=config.label_smoothing)

    def prepare(batch, step):  # the frozen trunk, outside the tape
        images, labels = batch
        return tf.stop_gradient(features(images)), labels

    def loss(batch):
        x, labels = batch
        return loss_fn(tf.one_hot(labels, num_classes), probe(x))

    # Where a resumed run is: the epoch, the step it began at, each epoch's loss sum and steps.
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    epoch_start = tf.Variable(0, dtype=tf.int64, trainable=False)
    # (any length: a resumed run may ask for more epochs than the one that wrote them)
    loss_sums, loss_steps = (tf.Variable(tf.zeros([config.epochs], tf.float64), trainable=False,
                                         shape=tf.TensorShape([None])) for _ in range(2))
    trainer = harness.Harness(probe, loss, optimizer=optimizer, prepare=prepare,
                              clip_global_norm=CLIP_GLOBAL_NORM, name="imagenet probe",
                              log_every=log_every, checkpoint_dir=checkpoint_dir,
                              checkpoint_every=checkpoint_every,
                              state={"epoch": epoch_var, "epoch_start": epoch_start,
                                     "loss_sums": loss_sums, "loss_steps": loss_steps})
    trainer.restore()
    for v in (loss_sums, loss_steps):  # as many entries as epochs
        v.assign(tf.pad(v[:config.epochs], [[0, tf.maximum(config.epochs - tf.shape(v)[0], 0)]]))
    seen = 0
    for epoch in range(int(epoch_var.numpy()), config.epochs):
        optimizer.learning_rate.assign(learning_rate_at(epoch, config.learning_rate))
        done = int(trainer.step.numpy() - epoch_start.numpy())  # > 0 only when resumed
        ds = make_dataset(builder, TRAIN_SPLIT, training=True, image_size=size,
                          resize_side=preset.resize_side, batch_size=config.batch_size,
                          seed=config.seed, epoch=epoch, max_examples=config.max_train_examples)
        history = trainer.fit(ds.skip(done))
        seen = history.examples
        if history.steps:
            loss_sums[epoch].assign(loss_sums[epoch] + history.mean * history.steps)
            loss_steps[epoch].assign(loss_steps[epoch] + history.steps)
        logging.info("epoch %d: %d examples, mean loss %.4f", epoch, seen, history.mean)
        epoch_var.assign(epoch + 1)
        epoch_start.assign(trainer.step)
        trainer.save()
    with np.errstate(invalid="ignore"):
        losses = (loss_sums.numpy() / loss_steps.numpy()).tolist()

    @tf.function
    def eval_step(images, labels):
        logits = probe(features(images))
        labels = tf.cast(labels, tf.int32)
        top1 = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.int64))
        top5 = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, min(5, num_classes)), tf.int64))
        return top1, top5

    correct1 = correct5 = evaluated = 0
    ds = make_dataset(builder, EVAL_SPLIT, training=False, image_size=size,
                      resize_side=preset.resize_side, batch_size=config.batch_size,
                      max_examples=config.max_eval_examples)
    for images, labels in ds:
        c1, c5 = eval_step(images, labels)
        correct1 += int(c1)
        correct5 += int(c5)
        evaluated += int(labels.shape[0])
    if evaluated == 0:
        raise ValueError(f"the {EVAL_SPLIT!r} split gave no examples")
    return {
        "top1": correct1 / evaluated,
        "top5": correct5 / evaluated,
        "num_train_examples": seen,
        "num_eval_examples": evaluated,
        "train_loss": losses,
        "feature_dim": feature_dim,
        "num_classes": num_classes,
        "seconds": time.time() - start,
    }


def protocol(config: ProbeConfig, preset, feature_dim: int) -> Dict:
    """What was done, for the results file."""
    return {
        "dataset": f"TFDS {DATASET}: train on '{TRAIN_SPLIT}', report on '{EVAL_SPLIT}'",
        "feature": (f"frozen vision trunk, conv4_2 after ReLU, max-pool kernel=stride "
                    f"{list(preset.vision_transfer_pool)}, flattened: {feature_dim}-D"),
        "classifier": "one linear layer (dense, with bias) to the 1000 classes; trunk frozen "
                      "(batch norm in inference mode)",
        "loss": f"softmax cross-entropy, label smoothing {config.label_smoothing}",
        "optimizer": (f"Adam, learning rate {config.learning_rate} x {LR_DECAY_RATE}^floor(epoch/"
                      f"{LR_DECAY_EPOCHS}), gradient global-norm clip {CLIP_GLOBAL_NORM}"),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "input_size": preset.image_size,
        "train_augmentation": (f"Inception crop: area {list(CROP_AREA_RANGE)}, aspect "
                               f"[{CROP_ASPECT_RANGE[0]:.3f}, {CROP_ASPECT_RANGE[1]:.3f}], "
                               f"min_object_covered {CROP_MIN_OBJECT_COVERED}, resize to "
                               f"{preset.image_size}, random horizontal flip; no colour distortion"),
        "eval_preprocessing": (f"smaller side to {preset.resize_side}, central "
                               f"{preset.image_size}x{preset.image_size} crop"),
        "max_train_examples": config.max_train_examples,
        "max_eval_examples": config.max_eval_examples,
        "seed": config.seed,
    }


def format_table(result: Dict) -> str:
    """The paper's Table 3 rows beside ours."""
    random_trunk = result["trunk"]["trunk"] == "random"
    name = "Ours random" if random_trunk else "Ours (L3-Net)"
    paper = C.PAPER_RESULTS["imagenet_top1_random" if random_trunk else "imagenet_top1"]
    other = C.PAPER_RESULTS["imagenet_top1" if random_trunk else "imagenet_top1_random"]
    other_name = "Ours (L3-Net)" if random_trunk else "Ours random"
    lines = [
        "ImageNet linear probe on conv4_2 (paper Table 3)",
        f"{'method':<22}{'top-1':>10}{'top-5':>10}{'paper top-1':>14}",
        f"{name:<22}{100 * result['top1']:>9.1f}%{100 * result['top5']:>9.1f}%{100 * paper:>13.1f}%",
        f"{other_name:<22}{'-':>10}{'-':>10}{100 * other:>13.1f}%",
        f"({result['num_eval_examples']} validation images, {result['num_train_examples']} "
        f"training images per epoch, {result['protocol']['epochs']} epochs)",
    ]
    return "\n".join(lines)


def run_probe(*, export_dir: Optional[str], data_dir: Optional[str] = None,
              manual_dir: Optional[str] = None, output_json: Optional[str] = None,
              config: ProbeConfig = ProbeConfig(), random_trunk: bool = False,
              preset_name: Optional[str] = None, checkpoint_dir: Optional[str] = None) -> Dict:
    """The whole benchmark: load data and trunk, train, evaluate, write JSON; returns the result.

    With `checkpoint_dir`, the probe's training checkpoints there each epoch and
    a rerun resumes (`train_and_evaluate`).

    Result keys: top1, top5 (fractions), protocol, trunk, paper, num_train_examples,
    num_eval_examples, train_loss, feature_dim, num_classes, seconds.
    """
    builder = load_builder(data_dir, manual_dir)
    features, preset, trunk = load_trunk(export_dir, random_trunk=random_trunk,
                                         preset_name=preset_name, seed=config.seed)
    result = train_and_evaluate(builder, features, preset, config, checkpoint_dir=checkpoint_dir)
    result["trunk"] = trunk
    result["protocol"] = protocol(config, preset, result["feature_dim"])
    result["paper"] = {"top1": C.PAPER_RESULTS["imagenet_top1"],
                       "top1_random": C.PAPER_RESULTS["imagenet_top1_random"]}
    if output_json:
        fileio.write_json(output_json, result)
    return result
