"""Console progress, TensorBoard scalars and the SIGTERM flag of the training loop (`l3.train`).

Nothing here touches the model: `Progress` turns per-step totals into the
log line (loss, accuracy, pairs/s, ETA) and the `train/` summaries;
`SigtermFlag` turns a preemption signal into a flag the loop reads;
`loop_length` cuts the run into loops of `steps_per_loop` steps.
"""

import math
import signal
import threading
from typing import Callable, Optional, Sequence

import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2


def scalar_summary(name: str, value: float, step: int) -> None:
    """tf.summary.scalar without needing the tensorboard package (same event format)."""
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR)
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=metadata)


def format_duration(seconds: float) -> str:
    """Seconds -> "1h05m" or "4m07s"."""
    seconds = int(seconds)
    h, m = seconds // 3600, seconds // 60 % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{seconds % 60:02d}s"


def loop_length(step: int, total: int, steps_per_loop: int,
                boundaries: Sequence[Optional[int]] = ()) -> int:
    """Steps in the next loop from `step`: at most `steps_per_loop`, never past
    `total` nor past the next multiple of any (non-zero) period in `boundaries`."""
    n = min(steps_per_loop, total - step)
    for every in boundaries:
        if every:
            n = min(n, every - step % every)
    return n


class Progress:
    """Accumulates steps between log lines; writes the console line and the summaries."""

    def __init__(self, *, global_batch_size: int, train_steps: int, learning_rate: float,
                 writer, say: Callable):
        self.batch, self.total, self.learning_rate = global_batch_size, train_steps, learning_rate
        self.writer, self.say = writer, say
        self.last = {"loss": None, "accuracy": None, "pairs_per_second": None}
        self._reset()

    def _reset(self):
        self.sums = {"loss": 0.0, "l2": 0.0, "correct": 0.0}
        self.steps, self.timed, self.seconds = 0, 0, 0.0

    def add(self, xent: float, l2: float, correct: float, seconds: Optional[float]):
        """One step's totals; `seconds` None for an untimed step (tracing)."""
        for key, value in (("loss", xent), ("l2", l2), ("correct", correct)):
            self.sums[key] += value
        self.steps += 1
        if seconds is not None:
            self.timed, self.seconds = self.timed + 1, self.seconds + seconds

    def report(self, step: int):
        """Logs the steps added since the last report (as of `step`) and writes their summaries."""
        n, batch, total = self.steps, self.batch, self.total
        rate = self.timed * batch / self.seconds if self.timed else float("nan")
        self.last = {"loss": self.sums["loss"] / n,
                     "accuracy": self.sums["correct"] / (n * batch), "pairs_per_second": rate}
        with self.writer.as_default():
            for name, value in (("loss", self.last["loss"]),
                                ("loss_total", (self.sums["loss"] + self.sums["l2"]) / n),
                                ("avc_accuracy", self.last["accuracy"]),
                                ("learning_rate", float(self.learning_rate)),
                                ("pairs_per_second", rate)):
                if math.isfinite(value):
                    scalar_summary(name, value, step)
        eta = (total - step) * self.seconds / max(self.timed, 1)
        self.say("step %d/%d (%.1f%%) loss %.4f acc %.3f | %.0f pairs/s | eta %s",
                 step, total, 100.0 * step / total, self.last["loss"], self.last["accuracy"],
                 rate, format_duration(eta))
        self._reset()


class SigtermFlag:
    """Records SIGTERM (e.g. preemption) instead of dying; restores the old handler on exit."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.received = True
        logging.warning("SIGTERM received: saving a checkpoint after this step, then stopping")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
