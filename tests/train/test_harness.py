"""The shared training harness (l3/train/harness.py) of the baselines and the ImageNet
probe: resume equals an uninterrupted run, NaN stops before a save, L2 from
`l3.model.network.l2_penalty` (numpy), clipping, the loss history."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from l3.model import network
from l3.train import NonFiniteLossError
from l3.train.harness import Harness


def _model(seed):
    keras.utils.set_random_seed(seed)
    x = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu", name="fc1")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    return keras.Model(x, keras.layers.Dense(3, name="fc2")(h))


def _stream(poison_at=None):
    """An endless shuffled stream of (x [4, 4], y [4]) batches whose randomness depends on
    the element index (so its position matters); batch number `poison_at` (0-based,
    as trained) holds a NaN."""
    def make(i):
        x = tf.random.stateless_normal([4], tf.stack([i, tf.constant(7, tf.int64)]))
        return x, tf.cast(i % 3, tf.int32)

    def poison(j, batch):
        x, y = batch
        return tf.where(j == (-1 if poison_at is None else poison_at), x + np.nan, x), y

    return (tf.data.Dataset.range(10_000).map(make).batch(4).shuffle(8, seed=1)
            .enumerate().map(poison).prefetch(2))


def _loss(model, poisoned=None):
    """Cross-entropy of the model on a batch. A batch holding a NaN (`_stream(poison_at)`)
    is made non-finite in a fixed way, so that the test does not depend on whether this
    CPU's relu kernel passes a NaN on or turns it into 0: `poisoned="loss"` makes the
    loss NaN; `poisoned="gradient"` keeps the loss finite (the NaN input replaced by 0)
    and makes every gradient flowing back from the logits NaN."""
    def loss_fn(batch):
        x, y = batch
        bad = tf.reduce_any(tf.math.is_nan(x))
        if poisoned is not None:
            x = tf.where(tf.math.is_nan(x), 0.0, x)
        logits = model(x, training=True)
        if poisoned == "gradient":
            logits = _nan_gradient_if(bad, logits)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        if poisoned == "loss":
            loss += tf.where(bad, np.nan, 0.0)
        return loss
    return loss_fn


def _nan_gradient_if(bad, v):
    """v unchanged; its gradient is NaN where `bad` (a bool scalar), else passed on."""
    @tf.custom_gradient
    def f(v):
        return tf.identity(v), lambda dy: dy + tf.where(bad, np.nan, 0.0)
    return f(v)


def _harness(model, ckpt=None, poisoned=None, **kw):
    return Harness(model, _loss(model, poisoned), optimizer=keras.optimizers.Adam(0.05),
                   weight_decay=1e-2, checkpoint_dir=ckpt, log_every=2, **kw)


def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    whole = _model(0)
    _harness(whole, str(tmp_path / "a")).fit(_stream(), 7, checkpoint_input=True)
    first = _model(0)
    _harness(first, str(tmp_path / "b")).fit(_stream(), 3, checkpoint_input=True)
    assert tf.train.latest_checkpoint(str(tmp_path / "b")).endswith("ckpt-3")
    # A new process would start from other random weights: they must all be replaced.
    resumed = _model(1)
    h = _harness(resumed, str(tmp_path / "b"))
    history = h.fit(_stream(), 7, checkpoint_input=True)
    assert int(h.step.numpy()) == 7 and history.steps == 4 and history.examples == 16
    for a, b in zip(whole.weights, resumed.weights):  # BN statistics and Adam's effect too
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Finished: fitting again to the same step trains nothing and changes nothing.
    again = _model(2)
    assert _harness(again, str(tmp_path / "b")).fit(_stream(), 7, checkpoint_input=True).steps == 0
    for a, b in zip(whole.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("poisoned, what", [("loss", r"loss is nan"),
                                             ("gradient", r"83 gradient values are NaN/Inf")])
def test_non_finite_loss_or_gradient_stops_before_any_save(tmp_path, poisoned, what):
    """Step 4 (batch 3) is non-finite: in its loss, or only in its gradients (the loss
    finite). Either stops the run at step 4 with ckpt-2 the last save, and the message
    says which: a NaN gradient at the logits reaches all 83 trainable values (fc1 32 + 8,
    bn 8 + 8, fc2 24 + 3) through the batch norm."""
    m = _model(0)
    h = _harness(m, str(tmp_path), poisoned=poisoned, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match=f"model: {what} at step 4: stopped; "
                                                 r"last checkpoint: .*ckpt-2"):
        h.fit(_stream(poison_at=3), 10)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".index")) == ["ckpt-2.index"]


def test_l2_penalty_is_half_wd_sum_of_squares_of_kernels_only():
    m = _model(3)
    wd = 0.3
    kernels = [m.get_layer("fc1").kernel, m.get_layer("fc2").kernel]
    assert {v.path for v in network.weight_decay_variables(m)} == {v.path for v in kernels}
    want = 0.5 * wd * sum(np.sum(np.square(v.numpy(), dtype=np.float64)) for v in kernels)
    np.testing.assert_allclose(float(network.l2_penalty(m, wd)), want, rtol=1e-6)
    assert float(network.l2_penalty(m, 0.0)) == 0.0


def test_decay_adds_wd_w_to_kernel_gradients_and_nothing_elsewhere():
    """One SGD step with and without decay from equal weights: the difference is
    -lr * wd * w on kernels and 0 on biases and batch norm (decay inside the tape)."""
    batch = next(iter(_stream()))
    lr, wd, after = 0.1, 0.5, {}
    for decay in (0.0, wd):
        m = _model(4)
        start = {v.path: v.numpy().copy() for v in m.trainable_variables}
        Harness(m, _loss(m), optimizer=keras.optimizers.SGD(lr), weight_decay=decay).fit(
            tf.data.Dataset.from_tensors(batch), 1)
        after[decay] = {v.path: v.numpy() for v in m.trainable_variables}
    kernels = {"fc1/kernel", "fc2/kernel"}
    for path, w0 in start.items():
        want = -lr * wd * w0 if path in kernels else np.zeros_like(w0)
        np.testing.assert_allclose(after[wd][path] - after[0.0][path], want, atol=1e-6,
                                   err_msg=path)


def test_clipping_bounds_the_update_to_the_global_norm():
    m = _model(5)
    x = np.full((4, 4), 1e4, np.float32)  # huge inputs: huge gradients
    start = [v.numpy().copy() for v in m.trainable_variables]
    Harness(m, _loss(m), optimizer=keras.optimizers.SGD(1.0), clip_global_norm=0.25).fit(
        tf.data.Dataset.from_tensors((x, np.array([0, 1, 2, 0], np.int32))), 1)
    step = np.sqrt(sum(np.sum((v.numpy() - s) ** 2) for v, s in zip(m.trainable_variables, start)))
    assert step == pytest.approx(0.25, rel=1e-4)


def test_history_is_the_mean_loss_of_each_window_and_prepare_runs_outside_the_tape():
    m = _model(6)
    batches = [next(iter(_stream().skip(i))) for i in range(5)]
    want = [float(_loss(m)(b)) for b in batches]  # learning rate 0: the weights stay
    scale = tf.Variable(1.0)  # used only in prepare: never trained

    def prepare(batch, step):
        x, y = batch
        return x * scale, y

    h = Harness(m, _loss(m), optimizer=keras.optimizers.SGD(0.0), prepare=prepare, log_every=2)
    ds = tf.data.Dataset.from_tensor_slices(tuple(np.stack([b[i] for b in batches]) for i in (0, 1)))
    history = h.fit(ds)  # until the dataset ends
    np.testing.assert_allclose(history.windows, [np.mean(want[:2]), np.mean(want[2:4]), want[4]],
                               rtol=1e-5)
    assert history.mean == pytest.approx(np.mean(want), rel=1e-5) and history.steps == 5
    assert float(scale.numpy()) == 1.0 and all(v is not scale for v in h.variables)
