"""The AVC training step (section 2.2): model, optimiser and one distributed step.

`Trainer` owns what a step needs and nothing of the outer loop
(`l3.train.controller` runs loops of steps and the actions between them):

  per replica:  image, waveform, label = device_inputs(batch)   # uint8 -> [0, 1], jitter
                loss = sum(cross-entropy) / global batch + L2 / replicas
                gradients, all-reduced (summed) by the optimiser; Adam
  all replicas: the step's named outputs (`STEP_OUTPUTS`), summed over replicas

Choices, and why:

* **Weight decay** is an L2 term in the loss, `0.5 * wd * sum ||w||^2` over
  conv and dense kernels (`model.weight_decay_variables`): the
  `wd * tf.nn.l2_loss(w)` of 2017 TensorFlow, whose gradient adds `wd * w`.
  (Keras' `regularizers.l2(wd)` is `wd * sum w^2`, twice this: an
  openl3-style run with 1e-5 there matches `--weight_decay=2e-5` here.)
  It is computed inside the tape; each replica adds `1 / num_replicas` of
  it, so the all-reduced gradient carries it once. Not AdamW: decoupled
  decay is scaled by the learning rate and would vanish at 1e-4.
* **Batch norm** normalises with statistics over groups of `bn_group_size`
  pairs of a replica's batch ("ghost" batch norm, `l3.model.network`;
  None: the replica's whole batch). The paper's BN saw the 16 pairs of one
  GPU; the paper preset's group of 16 gives every replica count those
  statistics. The moving averages are averaged across replicas every step,
  so every replica (and worker) holds the same inference statistics.
  `sync_batch_norm=True` normalises with statistics of the global batch
  instead (Keras' synchronized BatchNormalization), at one all-reduce per
  BN layer per step.
* **Frames arrive as uint8** (a quarter of float32's bytes on the host and
  the copy): the step scales them to [0, 1] and adds the brightness and
  saturation jitter on the device (`device_inputs`, `l3.ops.image.jitter_batch`),
  seeded by (seed, optimizer step, replica), so a resumed run draws the
  same jitter. Float images are taken as finished.
* **Non-finite values** are counted in the gradients and the BN statistics
  too, not only in the loss: a NaN can hide from the loss (max-pooling drops
  NaNs) yet reach the weights. (fp16: loss scaling skips a step whose
  gradients overflow and lowers the scale, by design; those are not counted.)
"""

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from l3.model import network as model_lib
from l3.ops import image as image_lib
from l3.train import precision

JITTER_STREAM = 0x6A17  # the on-device jitter's seed stream (apart from the pipeline's)

# The step's outputs, in the order they travel in one all-reduce (float32 scalars,
# summed over replicas, identical on every worker).
STEP_OUTPUTS = ("cross_entropy", "l2", "correct", "stop_requests", "nonfinite")


@dataclasses.dataclass(frozen=True)
class StepOutputs:
    """What one training step reports (host side; identical on every worker).

    Attributes:
      cross_entropy: the mean cross-entropy over the global batch.
      l2: the weight-decay term, 0.5 * wd * sum ||kernel||^2.
      correct: pairs of the global batch classified right.
      stop_requests: replicas whose worker asked to stop (SIGTERM) this step.
      nonfinite: NaN/Inf values in the gradients and the BN statistics.
    """

    cross_entropy: float
    l2: float
    correct: float
    stop_requests: float
    nonfinite: float

    @property
    def loss(self) -> float:
        """The optimised loss: cross-entropy + L2."""
        return self.cross_entropy + self.l2

    @classmethod
    def from_tensors(cls, outputs: Mapping[str, tf.Tensor]) -> "StepOutputs":
        """One step's outputs ({name: scalar}, as `make_train_function` returns them)."""
        return cls(**{name: float(outputs[name]) for name in STEP_OUTPUTS})

    @classmethod
    def rows(cls, outputs: Mapping[str, tf.Tensor]) -> List["StepOutputs"]:
        """A loop's outputs ({name: [n]}, as `make_loop_function` returns them), per step."""
        columns = [np.asarray(outputs[name], np.float64) for name in STEP_OUTPUTS]
        return [cls(*map(float, values)) for values in zip(*columns)]


def _named(totals: tf.Tensor) -> Dict[str, tf.Tensor]:
    """[..., 5] -> {name: [...]} in `STEP_OUTPUTS` order."""
    return dict(zip(STEP_OUTPUTS, tf.unstack(totals, axis=-1)))


class Trainer:
    """Model, optimiser and the distributed training step, for one strategy.

    `step_fn(batch, stop)` (call inside a tf.function) trains one step on
    `batch` = (image [b, S, S, 3] uint8 or float32, waveform [b, N], label
    [b]) per replica, with `stop` a float32 scalar (1: this worker asks to
    stop), and returns {name: float32 scalar} for the names of
    `STEP_OUTPUTS` (`StepOutputs` on the host), identical on every worker.
    """

    def __init__(self, preset, strategy, *, global_batch_size: int, learning_rate: float,
                 weight_decay: float, mixed_precision: str = "none", jit_compile: bool = False,
                 sync_batch_norm: bool = False, bn_group_size: Optional[int] = None,
                 seed: int = 0):
        replicas = strategy.num_replicas_in_sync
        if global_batch_size % replicas:
            raise ValueError(f"global batch {global_batch_size} is not divisible by "
                             f"{replicas} replicas")
        if sync_batch_norm and bn_group_size:
            raise ValueError("sync_batch_norm (global-batch statistics) and bn_group_size "
                             f"{bn_group_size} (groups within a replica) exclude each other")
        model_lib.check_bn_group_size(bn_group_size, global_batch_size // replicas)
        self.preset, self.strategy = preset, strategy
        self.global_batch_size, self.weight_decay = global_batch_size, weight_decay
        self.mixed_precision = mixed_precision
        self._jitter_seed = tf.constant([seed, JITTER_STREAM], tf.int64)
        with strategy.scope(), precision.dtype_policy(mixed_precision):
            self.model = model_lib.build_avc_model(preset, bn_group_size=bn_group_size)
            optimizer = keras.optimizers.Adam(learning_rate)
            if mixed_precision == "fp16":
                optimizer = precision.ReplicaSyncedLossScaleOptimizer(optimizer)
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
        bn_layers = [layer for layer in _all_layers(self.model)
                     if isinstance(layer, keras.layers.BatchNormalization)]
        for layer in bn_layers:
            layer.synchronized = sync_batch_norm
        # Per-replica BN: average the moving statistics so replicas agree.
        self._bn_stats = [v for layer in bn_layers
                          for v in (layer.moving_mean, layer.moving_variance)]
        self._moving_stats = [] if sync_batch_norm or replicas == 1 else self._bn_stats
        self._decay_vars = model_lib.weight_decay_variables(self.model)
        if jit_compile and sync_batch_norm and replicas > 1 and not all(
                "GPU" in d.upper() for d in strategy.extended.worker_devices):
            # MirroredStrategy all-reduces inside XLA only between GPUs (elsewhere it needs
            # a merge_call, which a compiled function cannot make): synchronized BN's
            # all-reduces would fail to compile.
            logging.warning("jit_compile with sync_batch_norm on %d replicas that are not all "
                            "GPUs: the step runs without XLA (TensorFlow all-reduces inside "
                            "XLA only between GPUs)", replicas)
            jit_compile = False
        self.jit_compile = jit_compile
        self._forward_backward = (tf.function(self._gradients, jit_compile=True)
                                  if jit_compile else self._gradients)

    def _gradients(self, image, waveform, label):
        """Per replica: (cross-entropy share, L2 share, correct, gradients)."""
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model({"image": image, "waveform": waveform}, training=True)
            logits = tf.cast(logits, tf.float32)
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits)
            data_loss = tf.nn.compute_average_loss(xent, global_batch_size=self.global_batch_size)
            l2 = self.weight_decay * tf.add_n(
                [tf.nn.l2_loss(tf.cast(v.value, tf.float32)) for v in self._decay_vars])
            l2 = l2 / replicas  # summed over replicas by the gradient all-reduce
            loss = data_loss + l2
            if self.mixed_precision == "fp16":
                loss = self.optimizer.scale_loss(loss)
        grads = tape.gradient(loss, self.model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(label, tf.int32)),
            tf.float32))
        return data_loss, l2, correct, grads

    def device_inputs(self, batch):
        """Per replica, on its device: the pipeline's batch -> (image float32
        [b, S, S, 3] in [0, 1], waveform, label).

        uint8 images (the training pipeline's) get the [0, 1] scaling and the
        brightness/saturation jitter here (`l3.ops.image.jitter_batch`), seeded by
        (seed, optimizer step, replica id); float images pass unchanged.
        """
        image, waveform, label = batch[:3]
        if image.dtype == tf.uint8:
            ctx = tf.distribute.get_replica_context()
            seed = tf.random.experimental.stateless_fold_in(
                self._jitter_seed, tf.cast(self.optimizer.iterations, tf.int64))
            seed = tf.random.experimental.stateless_fold_in(seed, ctx.replica_id_in_sync_group)
            image = image_lib.jitter_batch(image, seed)
        return image, waveform, label

    def _replica_step(self, batch, stop):
        image, waveform, label = self.device_inputs(batch)
        data_loss, l2, correct, grads = self._forward_backward(image, waveform, label)
        watched = [] if self.mixed_precision == "fp16" else list(grads)
        self.optimizer.apply(grads, self.model.trainable_variables)
        ctx = tf.distribute.get_replica_context()
        if self._moving_stats:
            means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                                   [tf.identity(v.value) for v in self._moving_stats])
            for v, mean in zip(self._moving_stats, means):
                v.assign(mean)
        watched += [tf.identity(v.value) for v in self._bn_stats]
        nonfinite = tf.add_n([tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.float32))
                              for x in watched])
        # One all-reduce for all five (order: STEP_OUTPUTS).
        totals = tf.stack([data_loss, l2, correct, tf.cast(stop, tf.float32), nonfinite])
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, totals)

    def _step_totals(self, batch, stop) -> tf.Tensor:
        """One distributed step; float32 [5] in `STEP_OUTPUTS` order."""
        totals = self.strategy.run(self._replica_step, args=(batch, stop))
        return self.strategy.experimental_local_results(totals)[0]

    def step_fn(self, batch, stop) -> Dict[str, tf.Tensor]:
        """One distributed step (inside a tf.function); see the class docstring."""
        return _named(self._step_totals(batch, stop))

    def make_train_function(self, next_batch: Callable) -> Callable:
        """tf.function(stop: float32 scalar) -> {name: scalar}, reading `next_batch()` each call."""
        @tf.function
        def train_function(stop):
            return self.step_fn(next_batch(), stop)
        return train_function

    def make_loop_function(self, next_batch: Callable) -> Callable:
        """tf.function(stop, num_steps: int32) -> {name: [num_steps]}, one entry per step.

        A `tf.while_loop` over `next_batch()` inside the function (orbit's
        `steps_per_loop`): one Python dispatch and host sync per loop, not per
        step. Every loop length runs the same graph, so in deterministic mode
        the weights do not depend on how the steps were grouped into loops.
        `StepOutputs.rows` turns the result into one `StepOutputs` per step.
        """
        @tf.function
        def loop_function(stop, num_steps):
            def body(i, rows):
                return i + 1, rows.write(i, self._step_totals(next_batch(), stop))

            rows = tf.TensorArray(tf.float32, size=num_steps,
                                  element_shape=[len(STEP_OUTPUTS)])
            # Explicit, not AutoGraph's `for` (which re-reads this file's source).
            _, rows = tf.while_loop(lambda i, _: i < num_steps, body, (tf.constant(0), rows))
            return _named(rows.stack())
        return loop_function

    def make_predict_function(self, jit_compile: bool = False) -> Callable:
        """tf.function(image, waveform) -> P(corresponds) [b], on this worker's first device."""
        @tf.function(jit_compile=jit_compile)
        def predict(image, waveform):
            return model_lib.correspondence(self.model, image, waveform, training=False)
        return predict


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
