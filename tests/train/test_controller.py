"""The outer loop (`l3.train.controller.Controller`) and its actions, on their own.

The loop function here is a plain tf.function over a step counter (the
contract `Trainer.make_loop_function` fulfils: (stop, n) -> {name: [n]}), so
the tests see exactly which steps ran in which loop. The real step runs
under the same controller in test_train.py and test_steps_per_loop.py."""

import pytest
import tensorflow as tf

from l3.train import actions
from l3.train.controller import Controller
from l3.train.step import STEP_OUTPUTS
from l3.train.utils import SigtermFlag


class Counter:
    """A loop function whose step t (1-based) has cross_entropy t, and NaN at `nan_at`."""

    def __init__(self, nan_at=None):
        self.calls, self.nan_at = [], nan_at
        self.step = tf.Variable(0.0)

    def __call__(self, stop, num_steps):
        self.calls.append((int(num_steps), float(stop)))
        first = self.step.numpy()
        self.step.assign_add(float(num_steps))
        steps = tf.range(first + 1, first + 1 + float(num_steps))
        if self.nan_at is not None:
            steps = tf.where(steps == self.nan_at, float("nan"), steps)
        n = int(num_steps)
        return {"cross_entropy": steps, "l2": tf.zeros([n]), "correct": tf.zeros([n]),
                "stop_requests": tf.fill([n], stop), "nonfinite": tf.zeros([n])}


class Record:
    def __init__(self, name, log, every=None):
        self.name, self.log, self.every = name, log, every

    def __call__(self, state):
        self.log.append((self.name, state.first_step, state.step, state.done, state.stopped))


def test_loops_end_on_every_action_period_and_actions_run_in_order():
    log = []
    counter = Counter()
    state = Controller(counter, start_step=3, total_steps=20, steps_per_loop=8,
                       actions=[Record("a", log, every=5), Record("b", log, every=7)]).run()
    ends = [step for name, _, step, _, _ in log if name == "a"]
    assert ends == [5, 7, 10, 14, 15, 20]
    assert [n for n, _ in counter.calls] == [2, 2, 3, 4, 1, 5]
    assert [name for name, *_ in log] == ["a", "b"] * 6
    assert state.step == 20 and state.completed and log[-1][3]
    assert [o.cross_entropy for o in state.outputs] == [13, 14, 15, 16, 17]  # steps 16..20


def test_a_run_already_at_its_end_calls_the_actions_once():
    log = []
    state = Controller(Counter(), start_step=5, total_steps=5, steps_per_loop=2,
                       actions=[Record("a", log)]).run()
    assert log == [("a", 5, 5, True, None)] and state.outputs == []


def test_preemption_stops_every_worker_at_the_loop_that_carried_the_request(tmp_path):
    flag = SigtermFlag()
    counter = Counter()
    saved = []
    saver = actions.SaveCheckpoints(lambda step: saved.append(step) or f"ckpt-{step}",
                                    str(tmp_path), every=4, saved_step=0, path=None)
    preemption = actions.Preemption(flag)

    class RaiseFlagAt:
        def __call__(self, state):
            if state.step == 7:
                flag.received = True  # what SIGTERM does (SigtermFlag._handle)

    state = Controller(counter, start_step=0, total_steps=100, steps_per_loop=3,
                       stop_requested=preemption.requested,
                       actions=[preemption, saver, RaiseFlagAt()]).run()
    # Loops: 3, 1 (to the checkpoint at 4), 3 (SIGTERM arrives), then one step (to the
    # next checkpoint boundary) carrying the request: all stop at 8, which is saved once.
    assert [n for n, _ in counter.calls] == [3, 1, 3, 1]
    assert [s for _, s in counter.calls] == [0.0, 0.0, 0.0, 1.0]
    assert state.stopped == "preempted" and state.step == 8
    assert saved == [4, 8] and saver.path == "ckpt-8"


def test_a_non_finite_step_stops_before_any_save_naming_the_last_good_checkpoint(tmp_path):
    saved = []
    saver = actions.SaveCheckpoints(lambda step: saved.append(step) or f"ckpt-{step}",
                                    str(tmp_path), every=2, saved_step=0, path=None)
    with pytest.raises(actions.NonFiniteLossError,
                       match=r"training loss is nan at step 5: stopped\. Nothing was saved "
                             r"after step 4; the last good checkpoint is ckpt-4\."):
        Controller(Counter(nan_at=5), start_step=0, total_steps=10, steps_per_loop=4,
                   actions=[actions.StopOnNonFinite(saver), saver]).run()
    assert saved == [2, 4]


def test_step_outputs_are_named_in_one_order():
    assert STEP_OUTPUTS == ("cross_entropy", "l2", "correct", "stop_requests", "nonfinite")
