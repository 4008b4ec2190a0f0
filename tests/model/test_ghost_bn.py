"""Ghost batch norm (issue 21 item 4): statistics over groups of G examples of the batch.

Against a numpy reference written from the definition (per group: mean and
biased variance over its G examples and every position, per channel; moving
averages from the mean of the group statistics), under TensorFlow and under
JAX (the model code is keras.ops only). Inference and single-group batches
are Keras' BatchNormalization; the training model's weights load into the
plain model that export and evaluation build."""

import numpy as np
import keras
import pytest
import tensorflow as tf

from l3.core import constants as C
from l3.core import presets
from l3.model import network
from tests.model.test_frontend import run_backend

EPS, MOMENTUM = 1e-3, 0.9


def _numpy_ghost(x, gamma, beta, moving_mean, moving_var, group):
    """The reference: (output, new moving mean, new moving variance)."""
    x = x.astype(np.float64)
    g = x.reshape(-1, group, *x.shape[1:])
    axes = tuple(range(1, g.ndim - 1))
    mean = g.mean(axis=axes, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=axes, keepdims=True)
    y = gamma * (g - mean) / np.sqrt(var + EPS) + beta
    flat = tuple(range(g.ndim - 1))
    new_mean = MOMENTUM * moving_mean + (1 - MOMENTUM) * mean.mean(axis=flat)
    new_var = MOMENTUM * moving_var + (1 - MOMENTUM) * var.mean(axis=flat)
    return y.reshape(x.shape), new_mean, new_var


def _inputs(seed=0, shape=(8, 3, 5, 6)):
    rng = np.random.default_rng(seed)
    # Groups with different offsets and scales: whole-batch statistics would differ.
    x = rng.normal(size=shape) * rng.uniform(0.5, 3, (shape[0], 1, 1, 1)) + \
        rng.normal(0, 2, (shape[0], 1, 1, 1))
    c = shape[-1]
    params = dict(gamma=rng.uniform(0.5, 1.5, c), beta=rng.normal(0, 0.5, c),
                  moving_mean=rng.normal(0, 0.1, c), moving_var=rng.uniform(0.5, 2, c))
    return x.astype(np.float32), params


def _layer(cls, params, channels, **kwargs):
    layer = cls(momentum=MOMENTUM, epsilon=EPS, **kwargs)
    layer.build((None, 3, 5, channels))
    layer.set_weights([params["gamma"], params["beta"], params["moving_mean"],
                       params["moving_var"]])
    return layer


def test_training_statistics_are_those_of_each_group():
    x, p = _inputs()
    layer = _layer(network.GhostBatchNormalization, p, x.shape[-1], group_size=4)
    y = layer(x, training=True)
    want, mean, var = _numpy_ghost(x, p["gamma"], p["beta"], p["moving_mean"],
                                   p["moving_var"], 4)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-5, atol=1e-6)
    # Not the whole batch's statistics (what plain batch norm would use).
    whole, _, _ = _numpy_ghost(x, p["gamma"], p["beta"], p["moving_mean"], p["moving_var"], 8)
    assert np.abs(want - whole).max() > 0.1


def test_one_group_and_inference_are_keras_batch_norm():
    x, p = _inputs(1)
    for training, batch in ((True, 4), (True, 3), (False, 8)):
        ghost = _layer(network.GhostBatchNormalization, p, x.shape[-1], group_size=4)
        plain = _layer(keras.layers.BatchNormalization, p, x.shape[-1])
        np.testing.assert_array_equal(np.asarray(ghost(x[:batch], training=training)),
                                      np.asarray(plain(x[:batch], training=training)))
        np.testing.assert_array_equal(ghost.moving_mean.numpy(), plain.moving_mean.numpy())


def test_group_size_must_tile_the_replica_batch():
    network.check_bn_group_size(16, 64)
    network.check_bn_group_size(16, 8)     # one group of the replica's 8
    network.check_bn_group_size(None, 7)
    network.check_bn_group_size(0, 7)
    with pytest.raises(ValueError, match="batch of 24 pairs is not a multiple of bn_group_size 16"):
        network.check_bn_group_size(16, 24)
    x, p = _inputs()
    layer = _layer(network.GhostBatchNormalization, p, x.shape[-1], group_size=3)
    with pytest.raises(ValueError, match="not a multiple of the batch-norm group size 3"):
        layer(x, training=True)


def test_presets_and_the_training_model():
    assert presets.PAPER.bn_group_size == C.PER_REPLICA_BATCH == 16
    assert presets.SMALL.bn_group_size is None
    keras.utils.set_random_seed(0)
    ghost = network.build_avc_model(presets.SMALL, bn_group_size=4)
    plain = network.build_avc_model(presets.SMALL)  # what export and evaluation build
    kinds = lambda m: [type(l).__name__ for l in m._flatten_layers()
                       if isinstance(l, keras.layers.BatchNormalization)]
    assert kinds(ghost) == ["GhostBatchNormalization"] * 16
    assert kinds(plain) == ["BatchNormalization"] * 16
    plain.set_weights(ghost.get_weights())
    rng = np.random.default_rng(0)
    inputs = {"image": rng.uniform(size=(2, 64, 64, 3)).astype(np.float32),
              "waveform": (0.1 * rng.normal(size=(2, 16000))).astype(np.float32)}
    np.testing.assert_array_equal(np.asarray(ghost(inputs, training=False)),
                                  np.asarray(plain(inputs, training=False)))


def test_a_training_checkpoint_restores_into_the_exported_model(tmp_path):
    keras.utils.set_random_seed(1)
    ghost = network.build_avc_model(presets.SMALL, bn_group_size=4)
    for layer in ghost._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.25, np.float32))
    path = tf.train.Checkpoint(model=ghost).save(str(tmp_path / "ckpt"))
    plain = network.build_avc_model(presets.SMALL)
    tf.train.Checkpoint(model=plain).restore(path).assert_existing_objects_matched()
    for a, b in zip(ghost.weights, plain.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


JAX_GHOST = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import keras
from l3.model import network
x = np.load(sys.argv[2])
layer = network.GhostBatchNormalization(group_size=4, momentum=0.9, epsilon=1e-3)
layer.build((None, *x["x"].shape[1:]))
layer.set_weights([x["gamma"], x["beta"], x["moving_mean"], x["moving_var"]])
y = keras.ops.convert_to_numpy(layer(x["x"], training=True))
np.savez(sys.argv[3], y=y, mean=keras.ops.convert_to_numpy(layer.moving_mean),
         var=keras.ops.convert_to_numpy(layer.moving_variance))
print(json.dumps({"backend": keras.backend.backend(), "tensorflow": "tensorflow" in sys.modules}))
"""


def test_ghost_batch_norm_under_jax(tmp_path):
    x, p = _inputs(2)
    np.savez(tmp_path / "in.npz", x=x, **p)
    info = run_backend("jax", JAX_GHOST, str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
    assert info == {"backend": "jax", "tensorflow": False}
    got = np.load(tmp_path / "out.npz")
    want, mean, var = _numpy_ghost(x, p["gamma"], p["beta"], p["moving_mean"],
                                   p["moving_var"], 4)
    np.testing.assert_allclose(got["y"], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["var"], var, rtol=1e-5, atol=1e-6)
