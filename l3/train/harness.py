"""A small training harness for one-device supervised training: the Table 1
baselines (`l3.eval.transfer.supervised`, `kinetics_baselines.train_fusion`) and
the ImageNet linear probe (`l3.eval.transfer.imagenet`).

The AVC training (`l3.train.loop`) has its own loop (distribution strategies,
per-worker input state, steps per call); this is the plain one-device
version of the same guarantees:

  each step (one tf.function call):
      batch = prepare(batch, step)                 # outside the tape (frozen trunks, jitter)
      loss  = loss_fn(batch)                       # data loss, float32 scalar
      total = loss + l2_penalty(model, weight_decay)   # 0.5 * wd * sum ||w||^2 (one function)
      gradients of total w.r.t. model.trainable_variables, optionally clipped
      to a global norm, applied by the optimizer
  between steps, on the host:
      a non-finite loss or gradient stops the run (`NonFiniteLossError`, as
      l3-train) before anything is saved after it, so the last checkpoint is
      the last good state;
      every `log_every` steps: a log line (mean loss, steps/s, ETA) and one
      entry of the returned history (the mean data loss of those steps);
      every `checkpoint_every` steps and at the end of `fit`: a checkpoint.

Resume: with `checkpoint_dir`, `fit` first restores the latest checkpoint
there (the model's variables, the optimizer, the step and, with
`checkpoint_input=True`, the input iterator's position) and trains on to
`until`; a run killed and started again ends with the weights of an
uninterrupted one (deterministic ops, checkpointed input).
"""

import dataclasses
import math
import time
from typing import Callable, Dict, List, Optional

from absl import logging
import keras
import tensorflow as tf

from l3.model import network as model_lib
from l3.train import NonFiniteLossError
from l3.train.utils import format_duration

CHECKPOINTS_KEPT = 2


@dataclasses.dataclass
class History:
    """What one `Harness.fit` call trained: the mean data loss of each `log_every`
    steps (and of the last, shorter window), of all its steps, and their number."""

    windows: List[float] = dataclasses.field(default_factory=list)
    mean: float = float("nan")
    steps: int = 0
    examples: int = 0  # rows of the batches' first tensor


class Harness:
    """Trains `model`'s trainable variables on batches from a dataset.

    Args:
      model: a Keras model or layer; its `trainable_variables` are trained and
        its `weight_decay_variables` (trainable conv and dense kernels) decayed.
      loss_fn: batch -> float32 scalar data loss, called inside the gradient tape.
      optimizer: a Keras optimizer (built here on the trainable variables).
      weight_decay: the L2 coefficient of `l3.model.network.l2_penalty`.
      prepare: optional (batch, step int64 []) -> batch, run in the step's
        tf.function before the tape (inputs that need no gradient).
      clip_global_norm: clip the gradients to this global norm, if given.
      name: for log lines and errors.
      log_every: steps per log line and history entry.
      checkpoint_dir, checkpoint_every: where and how often (0: only at the
        end of `fit`) to checkpoint; None: no checkpoints, no resume.
      state: more trackables to checkpoint with the model (e.g. an epoch counter).
    """

    def __init__(self, model, loss_fn: Callable, *, optimizer: keras.optimizers.Optimizer,
                 weight_decay: float = 0.0, prepare: Optional[Callable] = None,
                 clip_global_norm: Optional[float] = None, name: str = "model",
                 log_every: int = 100, checkpoint_dir: Optional[str] = None,
                 checkpoint_every: int = 0, state: Optional[Dict[str, object]] = None):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.weight_decay, self.prepare, self.clip = weight_decay, prepare, clip_global_norm
        self.name, self.log_every = name, max(1, int(log_every))
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, checkpoint_every
        self.state, self._restored = dict(state or {}), False
        self.variables = list(model.trainable_variables)
        if not self.variables:
            raise ValueError(f"{name}: nothing to train (no trainable variables)")
        optimizer.build(self.variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="harness_step")
        self._step_fn = tf.function(self._train_step, reduce_retracing=True)

    # --- one step ----------------------------------------------------------------------
    def _train_step(self, batch):
        """(data loss, L2 term, non-finite gradient values): float32 scalars."""
        if self.prepare is not None:
            batch = self.prepare(batch, self.step.value())
        with tf.GradientTape() as tape:
            loss = tf.cast(self.loss_fn(batch), tf.float32)
            l2 = tf.cast(model_lib.l2_penalty(self.model, self.weight_decay), tf.float32)
            total = loss + l2
        grads = tape.gradient(total, self.variables)
        nonfinite = tf.add_n([tf.reduce_sum(tf.cast(~tf.math.is_finite(g), tf.float32))
                              for g in grads if g is not None])
        if self.clip is not None:
            grads, _ = tf.clip_by_global_norm(grads, self.clip)
        self.optimizer.apply(grads, self.variables)
        self.step.assign_add(1)
        return loss, l2, nonfinite

    # --- checkpoints -------------------------------------------------------------------
    def _manager(self, iterator=None) -> Optional[tf.train.CheckpointManager]:
        if self.checkpoint_dir is None:
            return None
        objects = {"model": self.model, "optimizer": self.optimizer, "step": self.step,
                   **self.state}
        if iterator is not None:
            objects["iterator"] = iterator
        return tf.train.CheckpointManager(tf.train.Checkpoint(**objects), self.checkpoint_dir,
                                          max_to_keep=CHECKPOINTS_KEPT)

    def restore(self, iterator=None) -> int:
        """Restores the latest checkpoint in `checkpoint_dir`, if any (model, optimizer,
        step, `state`, and the input position into `iterator` when given); returns the step."""
        self._restored = True
        manager = self._manager(iterator)
        if manager is not None and manager.latest_checkpoint:
            manager.checkpoint.restore(manager.latest_checkpoint).expect_partial()
            logging.info("%s: resumed from %s (step %d)", self.name, manager.latest_checkpoint,
                         int(self.step.numpy()))
        return int(self.step.numpy())

    def save(self) -> Optional[str]:
        """Checkpoints model, optimizer, step and `state` now (no input position); returns the path."""
        manager = self._manager()
        return None if manager is None else manager.save(checkpoint_number=int(self.step.numpy()))

    # --- the loop ----------------------------------------------------------------------
    def fit(self, dataset: tf.data.Dataset, until: Optional[int] = None, *,
            checkpoint_input: bool = False) -> History:
        """Trains on `dataset` until the step counter reaches `until` (None: until the
        dataset ends); returns the History of this call.

        With `checkpoint_dir`, the first call (unless `restore` was called)
        resumes from the latest checkpoint there; `checkpoint_input` adds the
        input iterator's position to the checkpoints (exact resume; use it when
        `dataset` is the same stream every run). Checkpoints every
        `checkpoint_every` steps and at the end. Raises NonFiniteLossError at a
        non-finite loss or gradient, before any further checkpoint.
        """
        iterator = iter(dataset)
        manager = self._manager(iterator if checkpoint_input else None)
        if not self._restored:
            self.restore(iterator if checkpoint_input else None)
        step = saved = int(self.step.numpy())
        if manager is not None and manager.latest_checkpoint is None:
            saved = None
        history, window, total = History(), [], 0.0
        start, first = time.time(), step
        while until is None or step < until:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            loss, l2, nonfinite = (float(x) for x in self._step_fn(batch))
            step += 1
            if not math.isfinite(loss + l2) or nonfinite:
                what = (f"loss is {loss + l2}" if not math.isfinite(loss + l2)
                        else f"{int(nonfinite)} gradient values are NaN/Inf")
                last = manager.latest_checkpoint if manager is not None else None
                raise NonFiniteLossError(f"{self.name}: {what} at step {step}: stopped; "
                                         f"last checkpoint: {last or 'none'}")
            window.append(loss)
            total += loss
            history.steps += 1
            history.examples += int(tf.nest.flatten(batch)[0].shape[0])
            if len(window) == self.log_every or step == until:
                history.windows.append(sum(window) / len(window))
                window = []
                rate = (step - first) / max(time.time() - start, 1e-9)
                eta = f", eta {format_duration((until - step) / rate)}" if until else ""
                logging.info("%s step %d%s: loss %.4f (%.2f steps/s%s)", self.name, step,
                             f"/{until}" if until else "", history.windows[-1], rate, eta)
            if manager is not None and self.checkpoint_every and step % self.checkpoint_every == 0:
                manager.save(checkpoint_number=step)
                saved = step
        if window:
            history.windows.append(sum(window) / len(window))
        if manager is not None and saved != step:
            manager.save(checkpoint_number=step)
        if history.steps:
            history.mean = total / history.steps
        return history
