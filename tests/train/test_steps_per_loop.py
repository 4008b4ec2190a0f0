"""`steps_per_loop`: several training steps per tf.function call (l3.train, l3.train.utils).

In deterministic mode the grouping of steps into loops must not change the
weights: 1 and 4 steps per loop end bit-identical after the same steps, with
the same logged losses at the same steps, while the loop function is really
called 4x less often.
"""

import numpy as np
import pytest
import tensorflow as tf

from l3.core import presets
from l3.train import loop as train
from l3.train.utils import loop_length

SMALL = presets.SMALL
_MAKE_LOOP_FUNCTION = train.Trainer.make_loop_function


@pytest.fixture(scope="module")
def shards(learnable_shards):
    """conftest's learnable shards (8 videos, 4 classes, 3 s each)."""
    return learnable_shards


def test_loop_length_stops_at_every_boundary():
    assert loop_length(0, 100, 8) == 8
    assert loop_length(96, 100, 8) == 4                      # the end of the run
    assert loop_length(0, 100, 8, (5,)) == 5                 # a log step
    assert loop_length(5, 100, 8, (5, 12)) == 5              # next: 10 (log) before 12
    assert loop_length(10, 100, 8, (5, 12, None, 0)) == 2    # 12 (checkpoint); None/0 ignored
    assert loop_length(3, 100, 1, (5,)) == 1
    # Cutting a run into loops covers every step once and lands on every boundary.
    step, ends = 0, []
    while step < 50:
        step += loop_length(step, 50, 8, (10, 7))
        ends.append(step)
    assert {7, 10, 14, 20, 21, 28, 30, 35, 40, 42, 49, 50} <= set(ends)
    assert all(b - a <= 8 for a, b in zip([0] + ends, ends))


def test_loop_function_runs_n_steps_in_one_call():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    trainer = train.Trainer(SMALL, strategy, global_batch_size=4, learning_rate=1e-3,
                            weight_decay=1e-5)
    rng = np.random.default_rng(0)
    batch = (tf.constant(rng.uniform(size=(4, 64, 64, 3)), tf.float32),
             tf.constant(0.1 * rng.normal(size=(4, SMALL.clip_samples)), tf.float32),
             tf.constant([0, 1, 0, 1], tf.int32))
    loop = trainer.make_loop_function(lambda: batch)
    out = loop(tf.constant(0.0), tf.constant(3, tf.int32))
    assert set(out) == set(train.STEP_OUTPUTS)
    rows = train.StepOutputs.rows(out)
    assert len(rows) == 3 and int(trainer.optimizer.iterations.numpy()) == 3
    assert all(r.stop_requests == 0.0 and r.nonfinite == 0.0 for r in rows)
    rows = train.StepOutputs.rows(loop(tf.constant(1.0), tf.constant(2, tf.int32)))  # same trace
    assert len(rows) == 2 and int(trainer.optimizer.iterations.numpy()) == 5
    assert all(r.stop_requests == 1.0 for r in rows)  # the stop request travels with every step
    assert rows[0].cross_entropy != rows[1].cross_entropy  # two steps (the weights moved)
    assert 0 <= rows[0].correct <= 4 and rows[0].l2 > 0


def _run(shards, model_dir, steps_per_loop, monkeypatch):
    calls = []

    def counting(self, next_batch):
        fn = _MAKE_LOOP_FUNCTION(self, next_batch)

        def counted(stop, num_steps):
            calls.append(int(num_steps))
            return fn(stop, num_steps)
        return counted
    monkeypatch.setattr(train.Trainer, "make_loop_function", counting)
    summary = train.train(train.TrainConfig(
        train_pattern=shards, model_dir=str(model_dir), preset="small", global_batch_size=8,
        strategy="one_device", train_steps=8, log_every=8, checkpoint_every=1000,
        deterministic=True, steps_per_loop=steps_per_loop))
    return summary, calls


def test_one_and_four_steps_per_loop_give_identical_weights(shards, tmp_path, monkeypatch):
    one, calls1 = _run(shards, tmp_path / "spl1", 1, monkeypatch)
    four, calls4 = _run(shards, tmp_path / "spl4", 4, monkeypatch)
    assert calls1 == [1] * 8 and calls4 == [4, 4]
    assert one["step"] == four["step"] == 8
    assert one["loss"] == four["loss"] and one["accuracy"] == four["accuracy"]
    assert one["weights_sha256"] == four["weights_sha256"]


def test_steps_per_loop_must_be_positive():
    with pytest.raises(ValueError, match="steps_per_loop"):
        train.TrainConfig(train_pattern="x", model_dir="m", steps_per_loop=0).resolved()
