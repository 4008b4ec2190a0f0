"""Model: every size of docs/DESIGN.md, exact parameter counts, config and .keras round trips."""

import numpy as np
import keras
import pytest
import tensorflow as tf

from l3.model import network as model
from l3.core import presets

PAPER, SMALL = presets.PAPER, presets.SMALL


def _trunk_params(in_channels, filters):
    """3x3 convs without bias + BN gamma/beta (trainable) per conv."""
    total, c = 0, in_channels
    for f in filters:
        total += 9 * c * f + 2 * f + 9 * f * f + 2 * f
        c = f
    return total


@pytest.fixture(scope="module")
def paper_avc():
    return model.build_avc_model(PAPER)


def _trainable(m):
    return sum(int(np.prod(v.shape)) for v in m.trainable_variables)


def test_paper_sizes(paper_avc):
    nets = model.subnetworks(paper_avc)
    v, a = nets["vision"], nets["audio"]
    assert v.input.shape[1:] == (224, 224, 3)
    assert a.input.shape[1:] == (48000,)
    assert a.get_layer("spectrogram").output.shape[1:] == (257, 199, 1)
    assert v.get_layer("conv1_1").output.shape[1:] == (112, 112, 64)
    assert v.get_layer("conv4_2_bn").output.shape[1:] == (14, 14, 512)
    assert v.get_layer("conv4_2_relu").output.shape[1:] == (14, 14, 512)
    assert a.get_layer("conv1_1").output.shape[1:] == (129, 100, 64)
    assert a.get_layer("conv4_2_bn").output.shape[1:] == (16, 12, 512)
    assert v.output.shape[1:] == a.output.shape[1:] == (512,)
    fusion = nets["fusion"]
    assert fusion.get_layer("concat").output.shape[1:] == (1024,)
    assert fusion.get_layer("fc1").kernel.shape == (1024, 128)
    assert fusion.get_layer("fc2").kernel.shape == (128, 2)
    assert paper_avc.output.shape[1:] == (2,)
    enc_v = model.build_encoder(v, PAPER, "vision")
    enc_a = model.build_encoder(a, PAPER, "audio")
    assert enc_v.output["conv4_2_pooled"].shape[1:] == (8192,)
    assert enc_a.output["conv4_2_pooled"].shape[1:] == (6144,)
    assert PAPER.vision_transfer_dim == 8192 and PAPER.audio_transfer_dim == 6144


def test_paper_parameter_counts(paper_avc):
    nets = model.subnetworks(paper_avc)
    assert _trainable(nets["vision"]) == _trunk_params(3, (64, 128, 256, 512)) == 4_687_296
    assert _trainable(nets["audio"]) == _trunk_params(1, (64, 128, 256, 512)) == 4_686_144
    assert _trainable(nets["fusion"]) == 1024 * 128 + 128 + 128 * 2 + 2 == 131_458
    assert _trainable(paper_avc) == 4_687_296 + 4_686_144 + 131_458
    # BN moving statistics: 2 per channel per conv, not trainable
    assert nets["vision"].count_params() - _trainable(nets["vision"]) == 2 * 2 * (64 + 128 + 256 + 512)


def test_small_sizes_and_counts():
    m = model.build_avc_model(SMALL)
    nets = model.subnetworks(m)
    assert nets["vision"].input.shape[1:] == (64, 64, 3)
    assert nets["audio"].input.shape[1:] == (16000,)
    assert nets["audio"].get_layer("spectrogram").output.shape[1:] == (129, 199, 1)
    assert nets["vision"].get_layer("conv4_2_bn").output.shape[1:] == SMALL.vision_conv4_shape == (4, 4, 64)
    assert nets["audio"].get_layer("conv4_2_bn").output.shape[1:] == SMALL.audio_conv4_shape == (8, 12, 64)
    assert _trainable(nets["vision"]) == _trunk_params(3, (8, 16, 32, 64)) == 73_848
    assert _trainable(nets["audio"]) == _trunk_params(1, (8, 16, 32, 64)) == 73_704
    assert _trainable(nets["fusion"]) == 128 * 128 + 128 + 258 == 16_770
    enc = model.build_encoder(nets["audio"], SMALL, "audio")
    assert enc.output["conv4_2_pooled"].shape[1:] == (SMALL.audio_transfer_dim,) == (768,)


def _inputs(preset, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 1, (batch, preset.image_size, preset.image_size, 3)).astype("float32"),
            "waveform": rng.uniform(-1, 1, (batch, preset.clip_samples)).astype("float32")}


def _perturb_bn(m):
    """Non-trivial BN statistics, so a round trip that drops them is caught."""
    rng = np.random.default_rng(1)
    for layer in m._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))


def test_config_round_trip_rebuilds_identical_network():
    m = model.build_avc_model(SMALL)
    _perturb_bn(m)
    clone = keras.Model.from_config(m.get_config())
    clone.set_weights(m.get_weights())
    x = _inputs(SMALL)
    np.testing.assert_allclose(clone(x, training=False), m(x, training=False), atol=1e-5)
    assert [l.name for l in clone.layers] == [l.name for l in m.layers]


def test_keras_file_round_trip(tmp_path):
    m = model.build_avc_model(SMALL)
    _perturb_bn(m)
    path = tmp_path / "avc.keras"
    m.save(path)
    loaded = keras.models.load_model(path)
    x = _inputs(SMALL)
    np.testing.assert_allclose(loaded(x, training=False), m(x, training=False), atol=1e-5)


def test_endpoint_relationships():
    """conv4_2_relu = relu(conv4_2_bn); pool4 = spatial max of conv4_2_relu."""
    m = model.build_avc_model(SMALL)
    v = model.subnetworks(m)["vision"]
    probe = keras.Model(v.input, [v.get_layer("conv4_2_bn").output,
                                  v.get_layer("conv4_2_relu").output, v.output])
    pre, post, emb = probe(_inputs(SMALL)["image"], training=False)
    np.testing.assert_allclose(post, np.maximum(pre, 0), atol=1e-6)
    np.testing.assert_allclose(emb, np.max(post, axis=(1, 2)), atol=1e-6)
    enc = model.build_encoder(v, SMALL, "vision")
    out = enc(_inputs(SMALL)["image"], training=False)
    np.testing.assert_allclose(out["conv4_2_pooled"], np.reshape(post, (2, -1)), atol=1e-6)  # pool 1x1


def test_weight_decay_variables_are_kernels_only():
    m = model.build_avc_model(SMALL)
    names = [v.path for v in model.weight_decay_variables(m)]
    assert len(names) == 8 + 8 + 2
    assert all(n.endswith("kernel") for n in names)


@pytest.mark.parametrize("name,repr_,spec,conv4,pool,dim,params", [
    ("paper", "linear", (257, 199, 1), (16, 12, 512), (4, 4), 6144, 4_686_144),
    ("paper", "mel128", (128, 199, 1), (8, 12, 512), (2, 4), 6144, 4_686_144),
    ("paper", "mel256", (256, 199, 1), (16, 12, 512), (4, 4), 6144, 4_686_144),
    ("small", "linear", (129, 199, 1), (8, 12, 64), (2, 4), 768, 73_704),
    ("small", "mel128", (128, 199, 1), (8, 12, 64), (2, 4), 768, 73_704),
    ("small", "mel256", (256, 199, 1), (16, 12, 64), (4, 4), 768, 73_704),
])
def test_audio_sizes_and_counts_per_front_end(name, repr_, spec, conv4, pool, dim, params):
    """The front end has no weights: every front end has the same parameters, its own shapes."""
    p = presets.get_preset(name, repr_)
    a = model.build_audio_network(p)
    assert a.get_layer("spectrogram").output.shape[1:] == spec
    assert a.get_layer("conv4_2_bn").output.shape[1:] == p.audio_conv4_shape == conv4
    assert p.audio_transfer_pool == pool
    enc = model.build_encoder(a, p, "audio")
    assert enc.output["conv4_2_pooled"].shape[1:] == (p.audio_transfer_dim,) == (dim,)
    assert _trainable(a) == params
    assert a.count_params() - params == 2 * 2 * sum(p.block_filters)  # BN moving statistics only
    assert a.get_layer("spectrogram").get_config()["input_repr"] == repr_


def test_model_module_is_backend_neutral():
    """l3/model/network.py and l3/model/frontend.py import no TensorFlow (checked under JAX in test_frontend)."""
    import l3.model
    import l3.model.frontend
    import l3.model.network
    for module in (l3.model, l3.model.network, l3.model.frontend):
        with open(module.__file__) as f:
            assert "tensorflow" not in f.read().replace("TensorFlow", "")
