"""Export: the contract's directory, signatures and shapes; SavedModel == in-memory model."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import keras
import pytest
import tensorflow as tf

from l3 import export, model, presets
from tests import transfer_reference

SMALL = presets.SMALL


def _perturbed_model(preset):
    m = model.build_avc_model(preset)
    rng = np.random.default_rng(0)
    for layer in m._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    transfer_reference.shift_conv4_2_bn(m)  # before/after ReLU differ in conv4_2_pooled
    return m


def _inputs(preset, n=3):
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (n, preset.image_size, preset.image_size, 3)).astype("float32")
    t = np.arange(preset.clip_samples) / preset.sample_rate
    waveform = (0.5 * np.sin(2 * np.pi * 440 * t)[None] + 0.1 * rng.standard_normal(
        (n, preset.clip_samples))).astype("float32")
    return image, waveform


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    m = _perturbed_model(SMALL)
    out = str(tmp_path_factory.mktemp("export") / "export")
    info = export.export_model(m, SMALL, out, step=7, source="ckpt-7")
    image, waveform = _inputs(SMALL)
    nets = model.subnetworks(m)
    # Encoder references from numpy on the network's own conv4_2, not from
    # model.build_encoder (which the export itself uses).
    ref = {
        "audio": transfer_reference.reference_outputs(nets["audio"], "small", "audio", waveform),
        "vision": transfer_reference.reference_outputs(nets["vision"], "small", "vision", image),
        "avc": tf.nn.softmax(m({"image": image, "waveform": waveform}, training=False))[:, 1].numpy(),
    }
    np.savez(os.path.join(out, "..", "inputs.npz"), image=image, waveform=waveform)
    return out, info, ref


def test_directory_and_export_json(exported):
    out, info, _ = exported
    assert sorted(os.listdir(out)) == sorted(
        ["audio_encoder", "vision_encoder", "avc", "export.json",
         "audio_encoder.keras", "vision_encoder.keras", "avc.keras"])
    with open(os.path.join(out, "export.json")) as f:
        on_disk = json.load(f)
    assert on_disk == info
    assert on_disk["preset"] == "small" and on_disk["step"] == 7
    assert on_disk["sample_rate"] == 16000 and on_disk["clip_samples"] == 16000
    assert on_disk["image_size"] == 64 and on_disk["embedding_dim"] == 64
    assert on_disk["source_checkpoint"] == "ckpt-7"


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    out = sys.argv[1]
    x = np.load(sys.argv[2])
    result = {}
    for name in ("audio_encoder", "vision_encoder", "avc"):
        sig = tf.saved_model.load(f"{out}/{name}").signatures["serving_default"]
        _, kwargs = sig.structured_input_signature
        result[name + "_inputs"] = {k: v.shape.as_list() for k, v in kwargs.items()}
        result[name + "_outputs"] = {k: v.shape.as_list() for k, v in sig.structured_outputs.items()}
        feed = {k: tf.constant(x[k]) for k in kwargs}
        result[name] = {k: v.numpy().tolist() for k, v in sig(**feed).items()}
    assert "l3" not in sys.modules
    print(json.dumps(result))
""")


def test_savedmodels_in_fresh_process_match_in_memory_model(exported):
    out, _, ref = exported
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, out, os.path.join(out, "..", "inputs.npz")],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["audio_encoder_inputs"] == {"waveform": [None, 16000]}
    assert got["audio_encoder_outputs"] == {"embedding": [None, 64], "conv4_2_pooled": [None, 768]}
    assert got["vision_encoder_inputs"] == {"image": [None, 64, 64, 3]}
    assert got["vision_encoder_outputs"] == {"embedding": [None, 64], "conv4_2_pooled": [None, 1024]}
    assert got["avc_inputs"] == {"image": [None, 64, 64, 3], "waveform": [None, 16000]}
    assert got["avc_outputs"] == {"correspondence": [None]}
    for key in ("embedding", "conv4_2_pooled"):
        np.testing.assert_allclose(got["audio_encoder"][key], ref["audio"][key], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(got["vision_encoder"][key], ref["vision"][key], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got["avc"]["correspondence"], ref["avc"], atol=1e-6)


def test_keras_files_and_loader(exported):
    out, _, ref = exported
    image, waveform = _inputs(SMALL)
    enc = keras.models.load_model(os.path.join(out, "audio_encoder.keras"))
    np.testing.assert_allclose(enc(waveform, training=False)["embedding"], ref["audio"]["embedding"], atol=1e-5)
    loaded = export.ExportedModel(out)
    got = loaded.embed_audio(waveform, batch_size=2)
    np.testing.assert_allclose(got["conv4_2_pooled"], ref["audio"]["conv4_2_pooled"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(loaded.correspondence(image, waveform), ref["avc"], atol=1e-6)
    with pytest.raises(ValueError, match="expected waveforms"):
        loaded.embed_audio(waveform[:, :100])
    assert loaded.embed_images(image[:0])["embedding"].shape == (0, 64)


def test_export_checkpoint_restores_weights(tmp_path):
    m = _perturbed_model(SMALL)
    step = tf.Variable(42, dtype=tf.int64)
    model_dir = tmp_path / "run"
    ckpt = tf.train.Checkpoint(model=m, step=step)
    ckpt.save(str(model_dir / "ckpt"))
    (model_dir / "train_config.json").write_text(json.dumps({"preset": "small"}))
    info = export.export_checkpoint(str(model_dir), str(tmp_path / "export"))
    assert info["step"] == 42 and info["preset"] == "small"
    image, waveform = _inputs(SMALL)
    want = tf.nn.softmax(m({"image": image, "waveform": waveform}, training=False))[:, 1].numpy()
    got = export.ExportedModel(str(tmp_path / "export")).correspondence(image, waveform)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_missing_export_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="l3-export"):
        export.ExportedModel(str(tmp_path))
