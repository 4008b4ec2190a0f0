"""AVC training (section 2.2): a custom distributed loop.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy (docs/DESIGN.md), so
the loop is explicit and the same for one device, MirroredStrategy and
MultiWorkerMirroredStrategy:

  for each step:  batch = next(input)                      # per replica
                  strategy.run(replica_step)               # in a tf.function
                    loss = sum(cross-entropy) / global batch + L2 / replicas
                    gradients all-reduced (summed) by the optimiser; Adam

`steps_per_loop` such steps run in one tf.function call (a while loop over
the iterator inside the function); the host logs, evaluates, checkpoints and
checks SIGTERM and NaN between calls.

Choices, and why:

* **Weight decay** is an L2 term in the loss, `0.5 * wd * sum ||w||^2` over
  conv and dense kernels (`model.weight_decay_variables`): the
  `wd * tf.nn.l2_loss(w)` of 2017 TensorFlow, whose gradient adds `wd * w`.
  (Keras' `regularizers.l2(wd)` is `wd * sum w^2`, twice this: an
  openl3-style run with 1e-5 there matches `--weight_decay=2e-5` here.)
  Each replica adds `1 / num_replicas` of it, so the all-reduced gradient
  carries it once. Not AdamW: decoupled decay is scaled by the learning rate
  and would vanish at 1e-4.
* **Batch norm** uses per-replica batch statistics by default, as in the
  paper's synchronous 16-GPU set-up (each GPU normalised its own 16
  examples); the moving averages are averaged across replicas every step,
  so every replica (and worker) holds the same inference statistics.
  `sync_batch_norm=True` normalises with statistics of the global batch
  instead (Keras' synchronized BatchNormalization), at one all-reduce per
  BN layer per step.
* **Checkpoints** (`tf.train.CheckpointManager`, `model_dir/ckpt-<step>`)
  hold `model`, `optimizer`, `step` and, single-worker, the input
  `iterator`, so a resumed run continues the exact input sequence. In
  multi-worker runs each worker's input position is its own: it goes to
  `model_dir/input_state/worker-<i>/` (written by that worker), while the
  model checkpoint is written by the chief only. Saved every
  `checkpoint_every` steps, at the end, and on SIGTERM (all workers stop at
  the same step: the request travels with the step's all-reduce).
* **Non-finite values** in the loss, the gradients or the BN statistics
  (checked every step, agreed by all workers) stop the run
  (`NonFiniteLossError`) before anything is saved, so the last checkpoint is
  the last good state.
* **Frames arrive as uint8** (a quarter of float32's bytes on the host and
  the copy): the step scales them to [0, 1] and adds the brightness and
  saturation jitter on the device (`Trainer.device_inputs`,
  `l3.ops.image.jitter_batch`), seeded by (seed, optimizer step, replica), so a
  resumed run draws the same jitter. Float images are taken as finished.
* **Input**: one tf.data pipeline per worker (`l3.train.distribute.WorkerInput`),
  sharded as `distribute_datasets_from_function` would; its plain iterator is
  checkpointable, the distributed one is not. The price: batches are copied
  to the accelerators inside the step rather than prefetched there
  (`checkpoint_input=False` restores prefetching and gives up exact resume).
  With `data_service_address` the same pipeline runs on tf.data service
  workers instead (`l3.train.inputs` states what a resume then sees).
* **Determinism** (`deterministic=True`): op determinism and seeded
  initialisation; with the input iterator checkpointed, a run killed and
  resumed ends with the same weights as an uninterrupted one.
"""

import math
import os
import time
from typing import Callable, Dict, Optional

from absl import logging
import keras
import tensorflow as tf

from l3.pairs import data_service
from l3.train import distribute
from l3.core import errors
from l3.ops import image as image_lib
from l3.model import network as model_lib
from l3.pairs import evaluation
from l3.pairs import pipeline as pairs
from l3.train import precision
from l3.core import presets as presets_lib
from l3.records import shard_reader
from l3.train import inputs as train_input
from l3.train.config import TrainConfig, write_config
from l3.train.utils import (Progress, SigtermFlag, format_duration, loop_length,
                            scalar_summary)

JITTER_STREAM = 0x6A17  # the on-device jitter's seed stream (apart from the pipeline's)
# Not from the paper: steps per tf.function call on GPUs. A paper step (16 pairs
# per GPU) is ~1-2 ms of math on a current GPU, comparable to one call's
# dispatch and host sync; 8 steps a call amortise those to a few percent while
# SIGTERM and NaN checks still come within ~8 steps (README "Running at scale").
GPU_STEPS_PER_LOOP = 8


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; nothing was saved after the last good step."""


class Trainer:
    """Model, optimiser and the distributed training step, for one strategy.

    `step_fn(batch, stop)` (call inside a tf.function) trains one step on
    `batch` = (image [b, S, S, 3] uint8 or float32, waveform [b, N], label
    [b]) per replica (`device_inputs` finishes uint8 images) and
    returns float32 [5], identical on every worker: [cross-entropy (mean over
    the global batch), L2 term, correct predictions, replicas asking to stop,
    non-finite values in the gradients and BN statistics].
    """

    def __init__(self, preset, strategy, *, global_batch_size: int, learning_rate: float,
                 weight_decay: float, mixed_precision: str = "none", jit_compile: bool = False,
                 sync_batch_norm: bool = False, seed: int = 0):
        replicas = strategy.num_replicas_in_sync
        if global_batch_size % replicas:
            raise ValueError(f"global batch {global_batch_size} is not divisible by "
                             f"{replicas} replicas")
        self.preset, self.strategy = preset, strategy
        self.global_batch_size, self.weight_decay = global_batch_size, weight_decay
        self.mixed_precision = mixed_precision
        self._jitter_seed = tf.constant([seed, JITTER_STREAM], tf.int64)
        with strategy.scope(), precision.dtype_policy(mixed_precision):
            self.model = model_lib.build_avc_model(preset)
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
        # A NaN can hide from the loss (max-pooling drops NaNs) yet reach the
        # weights through the gradients or the BN statistics: count those too.
        # (fp16: loss scaling skips steps with non-finite gradients by design.)
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
        totals = tf.stack([data_loss, l2, correct, tf.cast(stop, tf.float32), nonfinite])
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, totals)

    def step_fn(self, batch, stop):
        """One distributed step (inside a tf.function); see the class docstring."""
        totals = self.strategy.run(self._replica_step, args=(batch, stop))
        return self.strategy.experimental_local_results(totals)[0]

    def make_train_function(self, next_batch: Callable) -> Callable:
        """tf.function(stop: float32 scalar) -> totals, reading `next_batch()` each call."""
        @tf.function
        def train_function(stop):
            return self.step_fn(next_batch(), stop)
        return train_function

    def make_loop_function(self, next_batch: Callable) -> Callable:
        """tf.function(stop, num_steps: int32) -> totals [num_steps, 5], one row per step.

        A `tf.while_loop` over `next_batch()` inside the function (orbit's
        `steps_per_loop`): one Python dispatch and host sync per loop, not per
        step. Every loop length runs the same graph, so in deterministic mode
        the weights do not depend on how the steps were grouped into loops.
        """
        @tf.function
        def loop_function(stop, num_steps):
            def body(i, rows):
                return i + 1, rows.write(i, self.step_fn(next_batch(), stop))

            rows = tf.TensorArray(tf.float32, size=num_steps, element_shape=[5])
            # Explicit, not AutoGraph's `for` (which re-reads this file's source).
            _, rows = tf.while_loop(lambda i, _: i < num_steps, body, (tf.constant(0), rows))
            return rows.stack()
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


def _train(config: TrainConfig, strategy, dataset_fn, sigterm) -> Dict:
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    preset = presets_lib.get_preset(config.preset)
    chief = distribute.is_chief(strategy)
    say = logging.info if chief else logging.debug  # progress: the chief's console only
    logging.info("%s", distribute.describe(strategy))
    if chief:
        tf.io.gfile.makedirs(config.model_dir)
        write_config(config, strategy)

    trainer = Trainer(preset, strategy, global_batch_size=config.global_batch_size,
                      learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                      mixed_precision=config.mixed_precision, jit_compile=config.jit_compile,
                      sync_batch_norm=config.sync_batch_norm, seed=config.seed)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

    # Resume? And can this worker's input position be restored (else re-seed the input)?
    latest = tf.train.latest_checkpoint(config.model_dir)
    start_step = distribute.checkpoint_step(latest) if latest else 0
    worker_input, exact_input, input_source = train_input.training_input(
        config, strategy, dataset_fn, latest, start_step)
    checkpoints = distribute.RunCheckpoints(
        config.model_dir, strategy, model=trainer.model, optimizer=trainer.optimizer,
        step=step_var, iterator=worker_input.iterator, keep=config.keep_checkpoints)
    if latest:
        checkpoints.restore(latest, start_step, with_input=exact_input)
        logging.info("resumed from %s (step %d), restored weights digest %s; %s", latest,
                     start_step, model_lib.weights_digest(trainer.model), input_source)
    else:
        say("starting a new run in %s; %s", config.model_dir, input_source)

    steps_per_loop = config.steps_per_loop or (
        GPU_STEPS_PER_LOOP if tf.config.list_logical_devices("GPU") else 1)
    loop_function = trainer.make_loop_function(worker_input.next)
    predict = trainer.make_predict_function(config.jit_compile) if config.eval_pattern else None
    train_writer = eval_writer = tf.summary.create_noop_writer()
    if chief:
        train_writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "train"))
        if predict is not None:
            eval_writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "eval"))

    def run_eval(step):  # the chief alone, on its first device: no collectives
        with tf.device(distribute.first_local_device(strategy)):
            result = evaluation.evaluate_pairs(predict, train_input.eval_dataset(config))
        with eval_writer.as_default():
            scalar_summary("avc_accuracy", result["accuracy"], step)
            scalar_summary("avc_log_loss", result["log_loss"], step)
        say("eval @ step %d: AVC accuracy %.4f on %d held-out pairs",
            step, result["accuracy"], result["num_pairs"])
        return result["accuracy"]

    def save(step):
        step_var.assign(step)
        try:
            path = checkpoints.save(step)
        except (tf.errors.OpError, OSError) as e:  # full disk: one line, no partial ckpt-<step>
            if not errors.is_write_failure(e):
                raise
            _remove_partial_checkpoint(config.model_dir, step)
            raise errors.write_error(os.path.join(config.model_dir, f"ckpt-{step}"), e) from None
        say("checkpoint %s", path)
        return path

    step, total = start_step, config.train_steps
    say("training %s preset to step %d: global batch %d, lr %g, wd %g, %s precision, "
        "%d step(s) per loop", preset.name, total, config.global_batch_size,
        config.learning_rate, config.weight_decay, config.mixed_precision, steps_per_loop)
    progress = Progress(global_batch_size=config.global_batch_size, train_steps=total,
                        learning_rate=config.learning_rate, writer=train_writer, say=say)
    eval_accuracy, stopped, saved_step, path = None, "completed", start_step, latest
    begin = time.time()
    # Loops end on every logging, checkpoint and evaluation step, so those fall
    # on the same steps whatever steps_per_loop is.
    boundaries = (config.log_every, config.checkpoint_every,
                  config.eval_every if predict is not None else None)
    while step < total:
        n = loop_length(step, total, steps_per_loop, boundaries)
        t0 = time.perf_counter()
        rows = loop_function(tf.constant(float(sigterm.received)), tf.constant(n, tf.int32))
        rows = rows.numpy()
        # The first call traces and compiles: not timed.
        seconds = (time.perf_counter() - t0) / n if step > start_step else None
        for xent, l2, correct, stop, nonfinite in rows.astype(float):
            progress.add(xent, l2, correct, seconds)
            step += 1
            if not math.isfinite(xent + l2) or nonfinite:
                what = (f"training loss is {xent + l2}" if not math.isfinite(xent + l2) else
                        f"{int(nonfinite)} gradient or batch-norm values are NaN/Inf")
                raise NonFiniteLossError(
                    f"{what} at step {step}: stopped. Nothing was saved after step "
                    f"{saved_step}; the last good checkpoint is {path or 'none'}. Try a lower "
                    f"--learning_rate, or --mixed_precision=bf16/none instead of fp16.")
        if step % config.log_every == 0 or step == total or stop:
            progress.report(step)
        if stop:  # SIGTERM on some worker: every worker saves this step and stops
            stopped = "preempted"
            break
        if step % config.checkpoint_every == 0 and step < total:
            path, saved_step = save(step), step
        if predict is not None and chief and step % config.eval_every == 0 and step < total:
            eval_accuracy = run_eval(step)
    if saved_step != step:
        path, saved_step = save(step), step
    if predict is not None and chief and stopped == "completed":
        eval_accuracy = run_eval(step)
    train_writer.flush()
    eval_writer.flush()
    digest = model_lib.weights_digest(trainer.model)
    logging.info("%s at step %d after %s; weights sha256 %s", stopped, step,
                 format_duration(time.time() - begin), digest)
    return {"step": step, "start_step": start_step, "train_steps": total, "stopped": stopped,
            **progress.last, "eval_accuracy": eval_accuracy, "checkpoint": path,
            "weights_sha256": digest, "num_replicas": strategy.num_replicas_in_sync,
            "num_workers": distribute.num_workers(strategy), "is_chief": chief,
            "model_dir": config.model_dir}


def _remove_partial_checkpoint(model_dir: str, step: int) -> None:
    """Deletes what a failed save of ckpt-<step> left (its files and TensorFlow's _temp
    folder); the `checkpoint` state file still names the previous checkpoint."""
    for pattern in (f"ckpt-{step}.*", f"ckpt-{step}_temp*"):
        for path in tf.io.gfile.glob(os.path.join(model_dir, pattern)):
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


def train(config: TrainConfig, *, strategy: Optional[tf.distribute.Strategy] = None,
          dataset_fn: Optional[Callable[[int], Callable]] = None) -> Dict:
    """Trains (or resumes) the AVC model; returns a summary dict.

    Args:
      config: the run; `None` fields take the preset's values.
      strategy: overrides `config.strategy` (tests, notebooks).
      dataset_fn: overrides the input: `dataset_fn(seed)` returns a function
        input_context -> dataset of per-replica (image, waveform, label)
        (through the service too, with `config.data_service_address`).

    Returns:
      {"step", "start_step", "train_steps", "stopped" ("completed" or
      "preempted"), "loss", "accuracy" (last log window), "eval_accuracy"
      (last, or None), "pairs_per_second", "checkpoint", "weights_sha256",
      "num_replicas", "num_workers", "is_chief", "model_dir"}.

    Raises:
      NonFiniteLossError: the loss became NaN/Inf (nothing saved after it).
      data_service.DataServiceError: the dispatcher did not answer in time.
      errors.DamagedShardError: a damaged shard with `on_damaged_shard="stop"`.
    """
    config = config.resolved()
    if config.data_service_address:  # fail early and clearly, not in a silent retry loop
        data_service.check_dispatcher(config.data_service_address, config.data_service_timeout_s)
    strategy = strategy or distribute.make_strategy(config.strategy, config.cluster)
    # After the strategy: with a multi-worker cluster TF installs its own SIGTERM
    # handler (coordination service), which would swallow the signal.
    with SigtermFlag() as sigterm:
        try:
            return _train(config, strategy, dataset_fn, sigterm)
        except tf.errors.DataLossError as e:  # --on_damaged_shard=stop: name the shard
            patterns = [p for p in (config.train_pattern, config.eval_pattern) if p]
            raise shard_reader.damaged_shard_error(pairs.resolve_files(patterns), e) from None
