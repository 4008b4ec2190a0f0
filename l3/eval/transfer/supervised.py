"""Supervised vision and audio classifiers of the Table 1 baselines (section 3.2).

"The vision network has an identical feature extraction trunk as our vision
subnetwork, on top of which two fully connected layers are attached (sizes:
512x128 and 128x34)"; "the audio classification network is constructed
analogously". `build_classifier` is that: the L3 trunk (`vision_network` or
`audio_network`, reachable by that layer name) + fc1 (D -> 128, ReLU) + fc2
(128 -> K), K = the number of classes in the training labels (34 for
Kinetics-Sounds).

Training examples are read straight from labelled records (`l3.records`):
per video, one random frame (`l3.ops.image.train_image`: resize, random crop,
flip, colour jitter) or one random 1 s audio window (`l3.ops.audio.random_gain`,
then `l3.ops.audio.decimate` to the preset's rate). Evaluation views are
deterministic: the middle frame (centre crop) and the centred 1 s window.
Randomness is stateless, from (seed, position in the stream), so a run is
reproducible.

Optimisation follows the AVC training (section 2.2): Adam, the preset's
learning rate, L2 weight decay (`preset.weight_decay`) on conv and dense
kernels added to the loss as `0.5 * wd * sum(w^2)` (`l3.model.network.l2_penalty`;
the convention of `l3.train`, 2017 TensorFlow's `wd * tf.nn.l2_loss(w)`, whose
gradient adds `wd * w`), in the shared training harness (`l3.train.harness`).
"""

from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from l3.ops import audio as audio_lib
from l3.ops import image as image_lib
from l3.model import network as model_lib
from l3.pairs import sampling
from l3.records import schema as records
from l3.records import shard_reader
from l3.train import harness
from l3.core.presets import Preset

HASH_BUCKETS = 2**62
SHUFFLE_BUFFER = 512  # light elements: one JPEG or one 1 s window (192 KB) each


@tf.autograph.experimental.do_not_convert
def read_class_names(paths: Sequence[str], on_damage: str = "skip") -> List[str]:
    """The sorted distinct non-empty labels of the records in `paths` (damaged shards:
    `l3.records.shard_reader`, as `on_damage` says)."""
    spec = {records.LABEL: tf.io.FixedLenFeature([], tf.string, default_value="")}
    ds = shard_reader.read_shards(list(paths), on_damage)
    ds = ds.map(lambda x: tf.io.parse_single_example(x, spec)[records.LABEL],
                num_parallel_calls=tf.data.AUTOTUNE)
    names = {label.decode() for label in ds.as_numpy_iterator()}
    names.discard("")
    return sorted(names)


def video_hash(video_id):
    """int64 tensor in [0, HASH_BUCKETS): a fixed hash of a (string tensor) video id.

    FarmHash fingerprint (`tf.strings.to_hash_bucket_fast`): stable across runs
    and machines, independent of shard layout and labels.
    """
    return tf.strings.to_hash_bucket_fast(video_id, HASH_BUCKETS)


def is_held_out(video_id, threshold: int):
    """bool tensor: the video is held out (`video_hash(video_id) < threshold`)."""
    return video_hash(video_id) < threshold


def _pick_frame(example, seed, training: bool, bad=None):
    """The JPEG string of a random (training) or the middle (evaluation) frame among the
    record's whole JPEGs (`bad`: `l3.pairs.sampling.bad_frames` of its frames, computed
    here when not given; all of them whole in a sound record); an empty string when it
    has none."""
    frames = example[records.FRAMES]
    if bad is None:
        bad = sampling.bad_frames(frames)
    whole = tf.where(~bad)[:, 0]
    n = tf.size(whole, out_type=tf.int64)
    index = (tf.random.stateless_uniform([], seed, 0, tf.maximum(n, 1), dtype=tf.int64)
             if training else n // 2)
    return tf.gather(tf.concat([tf.gather(frames, whole), [""]], 0), index)


def _finish_frame(jpeg, seed, preset: Preset, training: bool):
    """JPEG string -> float32 [S, S, 3] in [0, 1] (train_image or eval_image)."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    if training:
        return image_lib.train_image(image, seed, resize_side=preset.resize_side,
                                     image_size=preset.image_size)
    return image_lib.eval_image(image, resize_side=preset.resize_side, image_size=preset.image_size)


def _pick_clip(example, seed, preset: Preset, training: bool):
    """A 1 s window of the record's 48 kHz audio, float32 [clip_samples x decimation].

    Random start (training) or centred (evaluation); zero-padded when the
    audio is shorter than the window.
    """
    window = preset.clip_samples * preset.decimation  # samples at the records' 48 kHz
    audio = example[records.AUDIO]
    audio = tf.pad(audio, [[0, tf.maximum(window - tf.shape(audio)[0], 0)]])
    slack = tf.shape(audio, out_type=tf.int64)[0] - window
    if training:
        start = tf.random.stateless_uniform([], seed, 0, slack + 1, dtype=tf.int64)
    else:
        start = slack // 2
    return tf.ensure_shape(audio[start:start + window], [window])


def _finish_clip(clip, seed, preset: Preset, training: bool):
    """48 kHz window -> float32 [preset.clip_samples]: random gain (training), decimation."""
    if training:
        clip = audio_lib.random_gain(clip, seed)
    return tf.ensure_shape(audio_lib.decimate(clip, preset.decimation), [preset.clip_samples])


@tf.autograph.experimental.do_not_convert
def classification_dataset(paths: Sequence[str], preset: Preset, class_names: Sequence[str], *,
                           modality: str, training: bool, batch_size: int, seed: int = 0,
                           shuffle_buffer: int = SHUFFLE_BUFFER,
                           exclude_below: int = 0, on_damage: str = "skip") -> tf.data.Dataset:
    """(input, label int32 [B]) batches from labelled records.

    input: image float32 [B, S, S, 3] in [0, 1] (vision) or waveform float32
    [B, preset.clip_samples] (audio). Records whose label is not in
    `class_names` (e.g. unlabelled) are skipped, and so are held-out videos,
    `is_held_out(video_id, exclude_below)`. Training: shuffled, endless,
    augmented. Evaluation: one deterministic view per record, one pass.

    Each record is reduced to its one JPEG string or 1 s window before the
    shuffle buffer (`shuffle_buffer` of those, not whole records), then
    decoded and augmented. Shards are read by `l3.records.shard_reader.read_shard`
    (`on_damage`: "skip" the rest of a damaged shard with a warning, or "stop").
    """
    if modality not in (model_lib.VISION, model_lib.AUDIO):
        raise ValueError(f"modality must be {model_lib.VISION!r} or {model_lib.AUDIO!r}, "
                         f"got {modality!r}")
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(class_names)),
                                            tf.range(len(class_names), dtype=tf.int32)),
        default_value=-1)
    paths = list(paths)
    files = tf.data.Dataset.from_tensor_slices(shard_reader.shard_table(paths))
    if training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = files.interleave(lambda path, size: shard_reader.read_shard_positions(
                              path, size, on_damage).map(lambda record, i, _: (record, path, i)),
                          cycle_length=min(len(paths), 8), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    base = tf.constant([seed, 0 if modality == model_lib.VISION else 1], tf.int64)

    def pick(index, where):
        serialized, path, record = where
        example = records.parse_example(serialized)
        seeds = tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(base, index), 2)
        if modality == model_lib.VISION:
            # Frames that are not whole JPEGs: never picked, named (warning, or stop).
            bad = sampling.bad_frames(example[records.FRAMES])
            reported = sampling.report_bad_frames(
                tf.reduce_sum(tf.cast(bad, tf.int32))[None], path[None], record[None],
                example[records.VIDEO_ID][None], on_damage)
            with tf.control_dependencies([reported]):
                view = tf.identity(_pick_frame(example, seeds[0], training, bad))
            usable = tf.strings.length(view) > 0   # a record with no whole JPEG: skipped
        else:
            usable = tf.constant(True)
            view = _pick_clip(example, seeds[0], preset, training)
        label = table.lookup(example[records.LABEL])
        label = tf.where(usable, label, -1)
        if exclude_below > 0:
            label = tf.where(is_held_out(example[records.VIDEO_ID], exclude_below), -1, label)
        return view, label, seeds[1]

    finish = _finish_frame if modality == model_lib.VISION else _finish_clip
    ds = ds.enumerate().map(pick, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.filter(lambda view, label, seed_: label >= 0)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda view, label, s: (finish(view, s, preset, training), label),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def build_classifier(preset: Preset, modality: str, num_classes: int) -> keras.Model:
    """L3 trunk + fc1 (D -> fusion_hidden, ReLU) + fc2 (-> num_classes): input -> logits [b, K].

    The trunk is the sub-model layer "vision_network" / "audio_network", with
    the same layer names as in the AVC model, so its weights drop into
    `build_avc_model`'s.
    """
    if modality == model_lib.VISION:
        trunk = model_lib.build_vision_network(preset)
    elif modality == model_lib.AUDIO:
        trunk = model_lib.build_audio_network(preset)
    else:
        raise ValueError(f"modality must be {model_lib.VISION!r} or {model_lib.AUDIO!r}, "
                         f"got {modality!r}")
    name = "image" if modality == model_lib.VISION else "waveform"
    inputs = keras.Input(trunk.input_shape[1:], name=name)
    x = trunk(inputs)
    x = keras.layers.Dense(preset.fusion_hidden, activation="relu", name="fc1")(x)
    logits = keras.layers.Dense(num_classes, name="fc2", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"{modality}_classifier")


def trunk_of(classifier: keras.Model) -> keras.Model:
    """The "vision_network" or "audio_network" sub-model of a classifier."""
    for layer in classifier.layers:
        if layer.name in ("vision_network", "audio_network"):
            return layer
    raise ValueError(f"{classifier.name} has no vision_network/audio_network layer")


def train_classifier(classifier: keras.Model, dataset: tf.data.Dataset, *, steps: int,
                     learning_rate: float, weight_decay: float,
                     log_every: int = 100,
                     optimizer: Optional[keras.optimizers.Optimizer] = None,
                     checkpoint_dir: Optional[str] = None,
                     checkpoint_every: int = 0) -> List[float]:
    """Adam on softmax cross-entropy + `l3.model.network.l2_penalty` (conv and dense kernels),
    in the shared harness (`l3.train.harness`: NaN stop, resume, progress).

    `optimizer` replaces Adam(learning_rate) when given (tests use plain SGD).
    With `checkpoint_dir`, a run resumes from its checkpoints there, input
    position included (`dataset` must be the same stream each run).
    Returns the mean data loss of each `log_every` steps (at least one entry).
    """
    def loss_fn(batch):
        inputs, labels = batch
        logits = classifier(inputs, training=True)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    trainer = harness.Harness(
        classifier, loss_fn, optimizer=optimizer or keras.optimizers.Adam(learning_rate=learning_rate),
        weight_decay=weight_decay, name=classifier.name, log_every=log_every,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    return trainer.fit(dataset, steps, checkpoint_input=checkpoint_dir is not None).windows


def recalibrate_batch_norm(network: keras.Model, dataset: tf.data.Dataset, batches: int) -> int:
    """Re-estimates every batch norm's moving statistics as the mean over `batches` batches.

    "Precise BN" (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021): after
    training, run the frozen network forward on training batches and set each
    moving mean / variance to the average of the per-batch statistics. With
    Keras's momentum 0.99 the moving averages need a few hundred steps to
    forget their initial values and trail the weights by ~100 steps; this
    removes both, so a short run's inference-mode network (used for
    evaluation and as a frozen trunk) matches its training-mode one. Weights
    are not touched. `dataset` yields (input, label) or input batches.
    Returns the number of batches used.
    """
    norms = [layer for layer in network._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms or batches <= 0:
        return 0
    momenta = [bn.momentum for bn in norms]
    sums = [[np.zeros(bn.moving_mean.shape, np.float64),
             np.zeros(bn.moving_variance.shape, np.float64)] for bn in norms]
    count = 0
    try:
        for bn in norms:
            bn.momentum = 0.0  # a training-mode call then leaves exactly this batch's statistics

        forward = tf.function(lambda x: network(x, training=True))
        for batch in dataset.take(batches):
            forward(batch[0] if isinstance(batch, (tuple, list)) else batch)
            for bn, (mean, var) in zip(norms, sums):
                mean += bn.moving_mean.numpy()
                var += bn.moving_variance.numpy()
            count += 1
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
    if count:
        for bn, (mean, var) in zip(norms, sums):
            bn.moving_mean.assign(mean / count)
            bn.moving_variance.assign(var / count)
    return count


def evaluate_classifier(classifier: keras.Model, dataset: tf.data.Dataset) -> Dict:
    """Top-1 accuracy over one pass of an evaluation dataset: {"accuracy", "num_examples"}."""
    correct = total = 0
    predict = tf.function(lambda x: tf.argmax(classifier(x, training=False), -1, output_type=tf.int32))
    for inputs, labels in dataset:
        correct += int(tf.reduce_sum(tf.cast(predict(inputs) == labels, tf.int32)))
        total += int(labels.shape[0])
    return {"accuracy": correct / total if total else float("nan"), "num_examples": total}
