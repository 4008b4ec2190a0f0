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

from l3.export import writer as export
from l3.core import fileio, presets
from l3.model import network as model
from tests.fixtures import transfer_reference

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


# --- ONNX and LiteRT (issue 14) ----------------------------------------------

RUNTIMES = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    out, x = sys.argv[1], np.load(sys.argv[2])
    feeds = {"audio_encoder": ["waveform"], "vision_encoder": ["image"], "avc": ["image", "waveform"]}
    result = {}
    for name, keys in feeds.items():
        sess = ort.InferenceSession(f"{out}/{name}.onnx", providers=["CPUExecutionProvider"])
        result[f"onnx_inputs:{name}"] = [i.name for i in sess.get_inputs()]
        outs = sess.run(None, {k: x[k] for k in keys})
        result.update({f"onnx:{name}:{o.name}": v.tolist() for o, v in zip(sess.get_outputs(), outs)})
        interp = Interpreter(model_path=f"{out}/{name}.tflite")
        sig = interp.get_signature_list()["serving_default"]
        result[f"litert_inputs:{name}"] = sorted(sig["inputs"])
        got = interp.get_signature_runner("serving_default")(**{k: x[k] for k in keys})
        result.update({f"litert:{name}:{k}": v.tolist() for k, v in got.items()})
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def all_formats(tmp_path_factory):
    from tests.model.test_backends import test_inputs
    m = _perturbed_model(SMALL)
    root = tmp_path_factory.mktemp("formats")
    out = str(root / "export")
    info = export.export_model(m, SMALL, out, formats=export.FORMATS)
    x = test_inputs(SMALL)
    np.savez(root / "inputs.npz", **x)
    loaded = export.ExportedModel(out)
    ref = {"audio_encoder": loaded.embed_audio(x["waveform"]),
           "vision_encoder": loaded.embed_images(x["image"]),
           "avc": {"correspondence": loaded.correspondence(x["image"], x["waveform"])}}
    return out, info, str(root / "inputs.npz"), ref


def test_all_formats_listed_with_sha256(all_formats):
    out, info, _, _ = all_formats
    assert info["formats"] == ["savedmodel", "keras", "onnx", "litert"]
    assert info["input_repr"] == "linear" and info["preset"] == "small"
    assert info["frontend_precision"] == {"savedmodel": "float64", "keras": "float64",
                                          "onnx": "float64", "litert": "float32"}
    on_disk = sorted(os.path.relpath(os.path.join(d, f), out)
                     for d, _, fs in os.walk(out) for f in fs if f != "export.json")
    listed = [a["path"] for a in info["artifacts"]]
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)
    for name in ("audio_encoder", "vision_encoder", "avc"):
        assert {name + ".onnx", name + ".tflite", name + ".keras",
                name + "/saved_model.pb"} <= set(listed)
    for a in info["artifacts"]:
        assert a["sha256"] == fileio.file_sha256(os.path.join(out, a["path"]))
        assert a["bytes"] == os.path.getsize(os.path.join(out, a["path"]))


def test_onnx_and_litert_run_without_tensorflow_and_match_savedmodels(all_formats):
    out, _, inputs, ref = all_formats
    proc = subprocess.run([sys.executable, "-c", RUNTIMES, out, inputs],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["tensorflow_imported"] is False
    assert got["onnx_inputs:avc"] == ["image", "waveform"]
    assert got["litert_inputs:avc"] == ["image", "waveform"]
    assert got["onnx_inputs:audio_encoder"] == got["litert_inputs:audio_encoder"] == ["waveform"]
    # ONNX keeps the float64 front end; LiteRT's is float32 (WORKSPACE_NOTES.md)
    for runtime, rtol in (("onnx", 1e-5), ("litert", 2e-3)):
        for name, outputs in ref.items():
            for key, want in outputs.items():
                value = np.asarray(got[f"{runtime}:{name}:{key}"])
                assert value.shape == want.shape, (runtime, name, key)
                np.testing.assert_allclose(value, want, rtol=rtol, atol=rtol * np.abs(want).max(),
                                           err_msg=f"{runtime} {name} {key}")


def test_unknown_format_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--formats"):
        export.export_model(model.build_avc_model(SMALL), SMALL, str(tmp_path / "x"), formats=["tfjs"])
    assert not os.path.exists(tmp_path / "x")


def test_mel_export_records_its_front_end(tmp_path):
    mel = presets.get_preset("small", "mel256")
    info = export.export_model(model.build_avc_model(mel), mel, str(tmp_path / "e"), formats=["keras"])
    with open(tmp_path / "e" / "export.json") as f:
        on_disk = json.load(f)
    assert on_disk["input_repr"] == "mel256" and on_disk["preset"] == "small-mel256" == info["preset"]
    assert on_disk["spectrogram"] == [256, 199]
    assert presets.get_preset(on_disk["preset"]) == mel
    assert sorted(os.listdir(tmp_path / "e")) == ["audio_encoder.keras", "avc.keras", "export.json",
                                                  "vision_encoder.keras"]


def test_l3_export_binary_formats_flag(tmp_path):
    m = _perturbed_model(SMALL)
    tf.train.Checkpoint(model=m, step=tf.Variable(3, dtype=tf.int64)).save(str(tmp_path / "run" / "ckpt"))
    (tmp_path / "run" / "train_config.json").write_text(json.dumps({"preset": "small"}))
    cmd = [sys.executable, "-m", "l3.bin.export", f"--model_dir={tmp_path / 'run'}"]
    bad = subprocess.run(cmd + [f"--output_dir={tmp_path / 'bad'}", "--formats=keras,tfjs"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--formats" in bad.stderr and "tfjs" in bad.stderr
    assert not (tmp_path / "bad").exists()
    ok = subprocess.run(cmd + [f"--output_dir={tmp_path / 'out'}", "--formats=keras"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert info["formats"] == ["keras"] and info["step"] == 3 and info["input_repr"] == "linear"
    assert "as keras" in ok.stdout
