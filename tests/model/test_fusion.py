"""The fusion head (section 2.1, Fig. 2): logits = relu([v, a] W1 + b1) W2 + b2 (issue 23, item 1).

Checked against numpy on random embeddings with random weights *and* biases
(so a missing ReLU, a missing bias, swapped concatenation order or a ReLU
after fc2 each move the logits), alone and inside the whole AVC model.
"""

import keras
import numpy as np
import pytest

from l3.core import presets
from l3.model import network as model


def _randomise(layer, rng):
    for w in layer.weights:
        w.assign(rng.normal(0.0, 0.5, w.shape).astype(np.float32))


def _numpy_fusion(fusion, v, a):
    w1, b1 = (np.asarray(x, np.float64) for x in fusion.get_layer("fc1").get_weights())
    w2, b2 = (np.asarray(x, np.float64) for x in fusion.get_layer("fc2").get_weights())
    hidden = np.concatenate([v, a], axis=1) @ w1 + b1
    return np.maximum(hidden, 0.0) @ w2 + b2, hidden


@pytest.mark.parametrize("name", ["small", "paper"])
def test_fusion_is_relu_of_fc1_then_fc2_on_vision_then_audio(name):
    preset = presets.get_preset(name)
    rng = np.random.default_rng(3)
    fusion = model.build_fusion(preset)
    for layer in ("fc1", "fc2"):
        _randomise(fusion.get_layer(layer), rng)
    d = preset.embedding_dim
    v = rng.normal(0, 1, (16, d)).astype(np.float32)
    a = rng.normal(0, 1, (16, d)).astype(np.float32)
    want, hidden = _numpy_fusion(fusion, v, a)
    # The ReLU clips a good share of the hidden units (else it would go unseen).
    assert 0.2 < np.mean(hidden < 0) < 0.8
    got = keras.ops.convert_to_numpy(fusion([v, a]))
    assert got.shape == (16, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # Some logits are negative: no ReLU after fc2.
    assert (want < 0).any()


def test_avc_model_logits_are_the_fusion_of_its_embeddings():
    preset = presets.SMALL
    keras.utils.set_random_seed(5)
    m = model.build_avc_model(preset)
    nets = model.subnetworks(m)
    rng = np.random.default_rng(4)
    for layer in ("fc1", "fc2"):
        _randomise(nets["fusion"].get_layer(layer), rng)
    image = rng.uniform(0, 1, (4, preset.image_size, preset.image_size, 3)).astype(np.float32)
    waveform = rng.normal(0, 0.1, (4, preset.clip_samples)).astype(np.float32)
    v = keras.ops.convert_to_numpy(nets["vision"](image, training=False))
    a = keras.ops.convert_to_numpy(nets["audio"](waveform, training=False))
    want, _ = _numpy_fusion(nets["fusion"], v, a)
    got = keras.ops.convert_to_numpy(m({"image": image, "waveform": waveform}, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
