"""Front ends through the chain: training (in process) a mel preset, `l3-export` records the front end, the exported encoder computes it."""

import json
import os
import subprocess
import sys

import numpy as np
import keras
import tensorflow as tf

from l3.export import writer as export
from l3.model import frontend
from l3.core import presets
from l3.train import loop as train
from tests.fixtures.records import write_synthetic_shards

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_train_mel128_then_export(tmp_path):
    write_synthetic_shards(str(tmp_path / "shards"), num_videos=4, seconds=2.0, fps=4.0,
                           num_shards=1, labels=["a", "b"], learnable=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = tmp_path / "run"
    # In process (l3-train's --preset=small --input_repr=mel128 is this preset key; the
    # binary's flags are checked below and in tests/bin/test_cli.py).
    train.train(train.TrainConfig(train_pattern=str(tmp_path / "shards" / "*.tfrecord"),
                                  model_dir=str(run),
                                  preset=presets.preset_key("small", "mel128"),
                                  global_batch_size=8, train_steps=3, log_every=1,
                                  strategy="one_device"))
    assert json.loads((run / "train_config.json").read_text())["preset"] == "small-mel128"
    bad = subprocess.run([sys.executable, "-m", "l3.bin.train", "--train_pattern=x",
                          f"--model_dir={tmp_path / 'bad'}", "--input_repr=mel64"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode != 0 and "input_repr" in bad.stderr

    info = export.export_checkpoint(str(run), str(tmp_path / "export"))
    assert info["step"] == 3 and info["input_repr"] == "mel128" and info["preset"] == "small-mel128"
    assert info["spectrogram"] == [128, 199]
    enc = keras.models.load_model(str(tmp_path / "export" / "audio_encoder.keras"))
    spec_layer = enc.get_layer("spectrogram")
    assert spec_layer.get_config()["input_repr"] == "mel128"
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 700 * t))[None].astype(np.float32)
    p = presets.get_preset("small-mel128")
    want = frontend.log_spectrogram_numpy(
        x, window=p.stft_window, hop=p.stft_hop, fft_length=p.frontend_fft_length,
        mel_basis=frontend.mel_filterbank(p.sample_rate, p.frontend_fft_length, 128))
    np.testing.assert_allclose(np.asarray(spec_layer(x)), want, atol=1e-5)
    sig = tf.saved_model.load(str(tmp_path / "export" / "audio_encoder")).signatures["serving_default"]
    out = sig(waveform=tf.constant(x))
    np.testing.assert_allclose(out["embedding"].numpy(), np.asarray(enc(x)["embedding"]), atol=1e-5)
