"""The outer training loop: loops of steps, and actions between them (orbit's Controller).

  state = start
  until an action ends the run or the last step is done:
      outputs = loop_function(stop, n)        # n steps in one tf.function call
      for action in actions: action(state)    # NaN stop, preemption, log, checkpoint, eval

`Controller` knows nothing of what the actions do: each is a callable taking
the `LoopState` of the loop just run (`l3.train.actions`), in order; one may
end the run by setting `state.stopped` (preemption) or by raising (a
non-finite loss). An action with an `every` attribute (steps) makes every
loop end on its multiples, so logs, checkpoints and evaluations fall on the
same steps whatever `steps_per_loop` is. After the last loop the actions run
once more only if no loop ran at all (a resumed run already at its end):
every run ends with one call whose `state.done` is True.
"""

import dataclasses
import time
from typing import Callable, List, Optional, Sequence

import tensorflow as tf

from l3.train.step import StepOutputs
from l3.train.utils import loop_length

# Not from the paper: steps per tf.function call on GPUs. A paper step (16 pairs
# per GPU) is ~1-2 ms of math on a current GPU, comparable to one call's
# dispatch and host sync; 8 steps a call amortise those to a few percent while
# SIGTERM and NaN checks still come within ~8 steps (README "Running at scale").
GPU_STEPS_PER_LOOP = 8


def default_steps_per_loop(steps_per_loop: Optional[int]) -> int:
    """`steps_per_loop`, or GPU_STEPS_PER_LOOP with GPUs and 1 without."""
    return steps_per_loop or (GPU_STEPS_PER_LOOP if tf.config.list_logical_devices("GPU") else 1)


@dataclasses.dataclass
class LoopState:
    """What the actions see after a loop.

    Attributes:
      step: the step count after the loop (optimizer steps taken in the run).
      total_steps: the run's last step.
      outputs: the loop's steps, in order (`StepOutputs`; empty if none ran).
      seconds_per_step: the loop's wall time per step; None for a loop that
        traced the function (the run's first) or ran no step.
      stopped: None, or why the run ends before `total_steps` (an action sets
        it: "preempted").
    """

    step: int
    total_steps: int
    outputs: List[StepOutputs]
    seconds_per_step: Optional[float] = None
    stopped: Optional[str] = None

    @property
    def first_step(self) -> int:
        """The step count before this loop."""
        return self.step - len(self.outputs)

    @property
    def done(self) -> bool:
        """Whether this is the run's last loop (finished, or stopped by an action)."""
        return self.stopped is not None or self.step >= self.total_steps

    @property
    def completed(self) -> bool:
        return self.stopped is None and self.step >= self.total_steps

    def at(self, every: Optional[int]) -> bool:
        """Whether this loop ended on a multiple of `every` (None/0: never)."""
        return bool(every) and self.step % every == 0


class Controller:
    """Runs `loop_function` from `start_step` to `total_steps` in loops, the actions after each.

    Args:
      loop_function: (stop float32 scalar, num_steps int32) -> {name: [num_steps]}
        (`Trainer.make_loop_function`).
      start_step, total_steps: the run's first and last step counts.
      steps_per_loop: at most this many steps per call.
      actions: callables `action(state: LoopState)`, run in order after every loop.
      stop_requested: () -> bool, read before every loop: this worker asks to stop
        (the request travels with the step to every worker: `StepOutputs.stop_requests`).
    """

    def __init__(self, loop_function: Callable, *, start_step: int, total_steps: int,
                 steps_per_loop: int, actions: Sequence[Callable],
                 stop_requested: Callable[[], bool] = lambda: False):
        if steps_per_loop < 1:
            raise ValueError(f"steps_per_loop must be >= 1, got {steps_per_loop}")
        self.loop_function, self.actions = loop_function, list(actions)
        self.start_step, self.total_steps = start_step, total_steps
        self.steps_per_loop, self.stop_requested = steps_per_loop, stop_requested
        self.boundaries = [getattr(a, "every", None) for a in self.actions]

    def run_loop(self, step: int) -> LoopState:
        """Runs the next loop from `step`; returns its state (before the actions)."""
        n = loop_length(step, self.total_steps, self.steps_per_loop, self.boundaries)
        began = time.perf_counter()
        result = self.loop_function(tf.constant(float(self.stop_requested())),
                                    tf.constant(n, tf.int32))
        outputs = StepOutputs.rows({name: value.numpy() for name, value in result.items()})
        # The first call traces and compiles: not timed.
        seconds = (time.perf_counter() - began) / n if step > self.start_step else None
        return LoopState(step + n, self.total_steps, outputs, seconds)

    def run(self) -> LoopState:
        """Loops until an action stops the run or `total_steps`; returns the last state."""
        step = self.start_step
        while True:
            state = (self.run_loop(step) if step < self.total_steps
                     else LoopState(step, self.total_steps, []))
            for action in self.actions:
                action(state)
            if state.done:
                return state
            step = state.step
