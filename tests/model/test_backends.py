"""Same weights, same outputs: `.keras` encoders written by `l3-export` under the
TensorFlow, JAX and PyTorch backends (each in its own process)."""

import importlib.util
import os

import numpy as np
import keras
import pytest

from l3.export import writer as export
from l3.model import network as model
from l3.core import presets
from tests.model.test_frontend import run_backend

PRESET = presets.SMALL  # what the README's main job (the demo) exports
MEL = presets.get_preset("small", "mel128")

LOAD_AND_RUN = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import keras
from l3.model import frontend  # registers the front-end layer for loading
out_dir, inputs = sys.argv[2], np.load(sys.argv[3])
result = {}
for name, key in (("audio_encoder", "waveform"), ("vision_encoder", "image"),
                  ("mel/audio_encoder", "waveform")):
    enc = keras.models.load_model(f"{out_dir}/{name}.keras")
    got = enc(inputs[key], training=False)
    for k, v in got.items():
        result[f"{name}:{k}"] = keras.ops.convert_to_numpy(v)
np.savez(sys.argv[4], **result)
import json
print(json.dumps({"backend": keras.backend.backend(), "tensorflow": "tensorflow" in sys.modules}))
"""


def _perturbed(preset, seed):
    keras.utils.set_random_seed(seed)
    m = model.build_avc_model(preset)
    rng = np.random.default_rng(seed)
    for layer in m._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
    return m


def test_inputs(preset=PRESET):
    """chirp, noise, silence; a test image (colour bars, a disc, a gradient) and noise."""
    sr, n = preset.sample_rate, preset.clip_samples
    t = np.arange(n) / sr
    rng = np.random.default_rng(3)
    waveform = np.stack([0.8 * np.sin(2 * np.pi * (100 + 0.2 * sr * t) * t),
                         0.3 * rng.standard_normal(n).clip(-1, 1), np.zeros(n)]).astype(np.float32)
    s = preset.image_size
    yy, xx = np.mgrid[0:s, 0:s] / (s - 1)
    bars = np.stack([(xx * 8).astype(int) % 2, (xx * 4).astype(int) % 2, (xx * 2).astype(int) % 2], -1)
    disc = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.1)[..., None]
    test_image = np.where(disc, np.stack([yy, 1 - yy, xx], -1), bars).astype(np.float32)
    image = np.stack([test_image, rng.uniform(0, 1, (s, s, 3)), np.zeros((s, s, 3))]).astype(np.float32)
    return {"waveform": waveform, "image": image}


test_inputs.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("backends")
    out = str(root / "export")
    export.export_model(_perturbed(PRESET, 0), PRESET, out, formats=["keras"])
    export.export_model(_perturbed(MEL, 1), MEL, os.path.join(out, "mel"), formats=["keras"])
    x = test_inputs()
    inputs = str(root / "inputs.npz")
    np.savez(inputs, **x)
    ref = {}
    for name, key in (("audio_encoder", "waveform"), ("vision_encoder", "image"),
                      ("mel/audio_encoder", "waveform")):
        enc = keras.models.load_model(os.path.join(out, name + ".keras"))
        for k, v in enc(x[key], training=False).items():
            ref[f"{name}:{k}"] = np.asarray(v)
    return out, inputs, ref, root


def _compare(backend, exported):
    out, inputs, ref, root = exported
    result_path = str(root / f"{backend}.npz")
    info = run_backend(backend, LOAD_AND_RUN, out, inputs, result_path)
    assert info == {"backend": backend, "tensorflow": False}
    got = np.load(result_path)
    assert sorted(got.files) == sorted(ref)
    for key, want in ref.items():
        assert np.abs(want).max() > 1e-3, f"{key}: a degenerate output would compare equal"
        # float32 convolutions in another library's order: agreement to ~1e-6 of the scale
        np.testing.assert_allclose(got[key], want, rtol=1e-4, atol=1e-4 * np.abs(want).max(),
                                   err_msg=f"{backend} {key}")


def test_jax_loads_the_tensorflow_keras_files_and_agrees(exported):
    _compare("jax", exported)


@pytest.mark.torch
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_torch_loads_the_tensorflow_keras_files_and_agrees(exported):
    _compare("torch", exported)
