"""The training loop's actions: what happens between loops of steps (`l3.train.controller`).

Each action is a callable taking the `LoopState` of the loop just run; the
loop (`l3.train.loop`) runs them in this order:

  StopOnNonFinite  a NaN/Inf loss, gradient or BN statistic: raise
                   `NonFiniteLossError` before anything is saved
  Preemption       a stop request (SIGTERM on any worker) came back with the
                   step: every worker ends the run at that same step
  LogProgress      the console line and the `train/` summaries, every N steps
  SaveCheckpoints  every N steps and at the end (also when preempted); a
                   full disk is one `WriteError`, no partial ckpt-<step>
  Evaluate         held-out AVC accuracy every N steps and at the end of a
                   completed run (the chief alone)

An action with an `every` attribute makes loops end on its multiples.
"""

import math
import os
import time
from typing import Callable, List, Optional

from absl import logging
import tensorflow as tf

from l3.core import errors
from l3.train.controller import LoopState
from l3.train.utils import Progress, SigtermFlag, scalar_summary


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; nothing was saved after the last good step."""


class SaveCheckpoints:
    """Saves every `every` steps and at the end of the run (finished or stopped).

    `save(step) -> path` writes the checkpoint of step `step` (on every worker:
    saving may take part in collectives; `distribute.RunCheckpoints.save`).
    `saved_step` and `path` name the last checkpoint (the one resumed from at
    first).
    """

    def __init__(self, save: Callable[[int], str], model_dir: str, every: int, *,
                 saved_step: int, path: Optional[str], say: Callable = logging.info):
        self._save, self.model_dir, self.every = save, model_dir, every
        self.saved_step, self.path, self._say = saved_step, path, say
        self.seconds: List[float] = []  # wall time of each save in this run

    def __call__(self, state: LoopState):
        if state.done:
            if self.saved_step != state.step:
                self.save(state.step)
        elif state.at(self.every):
            self.save(state.step)

    def save(self, step: int) -> str:
        began = time.perf_counter()
        try:
            path = self._save(step)
        except (tf.errors.OpError, OSError) as e:  # full disk: one line, no partial ckpt-<step>
            if not errors.is_write_failure(e):
                raise
            remove_partial_checkpoint(self.model_dir, step)
            raise errors.write_error(os.path.join(self.model_dir, f"ckpt-{step}"), e) from None
        self.seconds.append(time.perf_counter() - began)
        self._say("checkpoint %s (%.2f s)", path, self.seconds[-1])
        self.saved_step, self.path = step, path
        return path


def remove_partial_checkpoint(model_dir: str, step: int) -> None:
    """Deletes what a failed save of ckpt-<step> left (its files and TensorFlow's _temp
    folder); the `checkpoint` state file still names the previous checkpoint."""
    for pattern in (f"ckpt-{step}.*", f"ckpt-{step}_temp*"):
        for path in tf.io.gfile.glob(os.path.join(model_dir, pattern)):
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


class StopOnNonFinite:
    """Raises `NonFiniteLossError` at the first step with a NaN/Inf loss, gradient or BN
    statistic, naming the step and the last good checkpoint (`checkpoints`)."""

    def __init__(self, checkpoints: SaveCheckpoints):
        self.checkpoints = checkpoints

    def __call__(self, state: LoopState):
        for step, out in enumerate(state.outputs, start=state.first_step + 1):
            if math.isfinite(out.loss) and not out.nonfinite:
                continue
            what = (f"training loss is {out.loss}" if not math.isfinite(out.loss) else
                    f"{int(out.nonfinite)} gradient or batch-norm values are NaN/Inf")
            raise NonFiniteLossError(
                f"{what} at step {step}: stopped. Nothing was saved after step "
                f"{self.checkpoints.saved_step}; the last good checkpoint is "
                f"{self.checkpoints.path or 'none'}. Try a lower --learning_rate, or "
                f"--mixed_precision=bf16/none instead of fp16.")


class Preemption:
    """SIGTERM on any worker ends the run for all at the same step.

    `requested()` feeds this worker's flag into the next loop (the step sums
    the requests of all replicas); a loop whose steps carry a request ends
    the run as "preempted" (SaveCheckpoints then saves that step).
    """

    def __init__(self, flag: SigtermFlag):
        self.flag = flag

    def requested(self) -> bool:
        return self.flag.received

    def __call__(self, state: LoopState):
        if any(out.stop_requests for out in state.outputs):
            state.stopped = "preempted"


class LogProgress:
    """Adds every step to `progress`; reports every `every` steps and on the last loop."""

    def __init__(self, progress: Progress, every: int):
        self.progress, self.every = progress, every

    def __call__(self, state: LoopState):
        for out in state.outputs:
            self.progress.add(out.cross_entropy, out.l2, out.correct, state.seconds_per_step)
        if state.outputs and (state.at(self.every) or state.done):
            self.progress.report(state.step)


class Evaluate:
    """AVC accuracy on fixed held-out pairs every `every` steps and at the end of a
    completed run; `evaluate(step) -> {"accuracy", "log_loss", "num_pairs"}`.

    The chief alone evaluates (on its first device, no collectives): the other
    workers pass `evaluate=None` and keep only `every`, so that their loops end
    on the same steps as the chief's."""

    def __init__(self, evaluate: Optional[Callable[[int], dict]], every: int, writer,
                 say: Callable = logging.info):
        self._evaluate, self.every, self.writer, self._say = evaluate, every, writer, say
        self.accuracy: Optional[float] = None

    def __call__(self, state: LoopState):
        if self._evaluate is None:
            return
        if state.completed or (not state.done and state.at(self.every)):
            self.run(state.step)

    def run(self, step: int) -> float:
        result = self._evaluate(step)
        with self.writer.as_default():
            scalar_summary("avc_accuracy", result["accuracy"], step)
            scalar_summary("avc_log_loss", result["log_loss"], step)
        self._say("eval @ step %d: AVC accuracy %.4f on %d held-out pairs",
                  step, result["accuracy"], result["num_pairs"])
        self.accuracy = result["accuracy"]
        return self.accuracy
