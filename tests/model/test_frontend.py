"""Front ends (l3/model/frontend.py): mel filters vs librosa, log-mel vs librosa, DFT
as FFT and as matmul, and the same numbers under the JAX and PyTorch backends."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import librosa
import numpy as np
import pytest

from l3.core import constants as C, presets
from l3.model import frontend

SR = C.SAMPLE_RATE


def _signals(sr=SR):
    """[6, sr]: tone, chirp, noise, quiet noise, silence, int16 tone in noise with a gap."""
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    mixed = np.round((0.3 * np.sin(2 * np.pi * 1000 * t) + 0.01 * rng.standard_normal(sr))
                     * 32767) / 32768
    mixed[sr // 3: sr // 2] = 0.0
    return np.stack([0.5 * np.sin(2 * np.pi * 440.0 * t),
                     0.8 * np.sin(2 * np.pi * (100 + 0.1 * sr * t) * t),
                     rng.uniform(-1, 1, sr), 1e-3 * rng.standard_normal(sr),
                     np.zeros(sr), mixed]).astype(np.float32)


@pytest.mark.parametrize("sr,n_fft,n_mels", [(48000, 2048, 128), (48000, 2048, 256),
                                              (16000, 1024, 128), (16000, 1024, 256)])
def test_mel_filterbank_is_librosas_slaney_and_has_no_empty_filter(sr, n_fft, n_mels):
    ours = frontend.mel_filterbank(sr, n_fft, n_mels)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=False, norm="slaney",
                              dtype=np.float64)
    assert ours.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours, ref.T, rtol=1e-9, atol=1e-12)
    assert np.all(ours.max(axis=0) > 0), "a mel filter falls between two FFT bins"
    htk = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=True, dtype=np.float64)
    assert np.abs(ours - htk.T).max() > 1e-3  # the scale choice is visible, not a no-op


def test_presets_fft_lengths_leave_no_empty_mel_filter_but_512_would():
    for name in ("paper", "small"):
        for repr_ in ("mel128", "mel256"):
            p = presets.get_preset(name, repr_)
            fb = frontend.mel_filterbank(p.sample_rate, p.frontend_fft_length, C.MEL_BANDS[repr_])
            assert np.all(fb.max(axis=0) > 0)
    assert np.any(frontend.mel_filterbank(48000, 512, 256).max(axis=0) == 0)


@pytest.mark.parametrize("repr_", ["mel128", "mel256"])
def test_log_mel_layer_matches_librosa_melspectrogram(repr_):
    """librosa frames the n_fft-long frame with the window in its middle: shift by the offset."""
    p = presets.get_preset("paper", repr_)
    x = _signals()
    layer = frontend.LogSpectrogram(p.stft_window, p.stft_hop, p.frontend_fft_length, p.log_offset,
                                    input_repr=repr_, sample_rate=p.sample_rate)
    got = np.asarray(layer(x))
    assert got.shape == (6, C.MEL_BANDS[repr_], 199, 1)
    offset = (p.frontend_fft_length - p.stft_window) // 2
    shifted = np.pad(x.astype(np.float64), [(0, 0), (offset, 0)])
    mel = librosa.feature.melspectrogram(
        y=shifted, sr=p.sample_rate, n_fft=p.frontend_fft_length, hop_length=p.stft_hop,
        win_length=p.stft_window, window="hann", center=False, power=1.0, n_mels=C.MEL_BANDS[repr_])
    want = np.log(mel + C.LOG_OFFSET)  # [6, bands, frames']
    frames = want.shape[-1]
    assert frames > 190
    np.testing.assert_allclose(got[..., :frames, 0], want, atol=1e-4, rtol=0)


def test_dft_matmul_equals_fft_in_float64():
    x = _signals()
    fft = np.asarray(frontend.log_spectrogram(x, dft="fft"))
    mm = np.asarray(frontend.log_spectrogram(x, dft="matmul"))
    np.testing.assert_allclose(mm, fft, atol=1e-6, rtol=0)
    np.testing.assert_allclose(mm, frontend.log_spectrogram_numpy(x), atol=1e-6, rtol=0)


def test_float32_front_end_is_measurably_worse_in_quiet_bands():
    """Why the default is float64: the float32 error, on the same signals."""
    x = _signals()
    want = frontend.log_spectrogram_numpy(x)
    err32 = np.abs(np.asarray(frontend.log_spectrogram(x, precision="float32", dft="matmul")) - want)
    err64 = np.abs(np.asarray(frontend.log_spectrogram(x)) - want)
    assert err64.max() < 1e-5 < 1e-3 < err32.max()


BACKEND_CHECK = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from tests.model.test_frontend import _signals
    import keras
    from l3.model import frontend, network as model
    from l3.core import presets
    x = _signals()
    want = frontend.log_spectrogram_numpy(x)
    out = {"backend": keras.backend.backend()}
    for dft in ("fft", "matmul"):
        for precision in ("float64", "float32"):
            got = keras.ops.convert_to_numpy(frontend.log_spectrogram(x, precision=precision, dft=dft))
            out[f"{dft}_{precision}"] = float(np.abs(got - want).max())
    p = presets.get_preset("paper", "mel128")
    layer = frontend.LogSpectrogram(p.stft_window, p.stft_hop, p.frontend_fft_length,
                                    input_repr="mel128", sample_rate=p.sample_rate)
    got = keras.ops.convert_to_numpy(layer(x))
    ref = frontend.log_spectrogram_numpy(x, fft_length=p.frontend_fft_length,
                                         mel_basis=frontend.mel_filterbank(48000, 2048, 128))
    out["mel128"] = float(np.abs(got - ref).max())
    m = model.build_avc_model(presets.SMALL)
    out["avc_shape"] = list(m({"image": np.zeros((2, 64, 64, 3), "float32"),
                               "waveform": x[:2, :16000]}, training=False).shape)
    if out["backend"] == "jax":
        import jax
        jitted = jax.jit(lambda w: frontend.log_spectrogram(w))  # as model.predict / a jit step
        out["jit_float64"] = float(np.abs(np.asarray(jitted(x)) - want).max())
        out["x64_after"] = bool(jax.config.jax_enable_x64)
    out["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(out))
""")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_backend(backend: str, script: str, *args, timeout=600) -> dict:
    """Runs `script` in a fresh process under KERAS_BACKEND=backend; its last line is JSON."""
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", script, ROOT, *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_backend(got):
    # float64: the numpy reference to round-off; float32 is worse in quiet bands.
    for dft in ("fft", "matmul"):
        assert got[f"{dft}_float64"] < 1e-5, got
        assert got[f"{dft}_float32"] > 1e-3, got
    assert got["mel128"] < 1e-5, got
    assert got["avc_shape"] == [2, 2]


def test_jax_backend_without_tensorflow():
    got = run_backend("jax", BACKEND_CHECK)
    assert got["backend"] == "jax"
    assert got["tensorflow_imported"] is False, "import l3.model under JAX must not load TensorFlow"
    assert got["x64_after"] is False, "the front end must not leave 64-bit JAX switched on"
    assert got["jit_float64"] < 1e-5, got
    _check_backend(got)


@pytest.mark.torch
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_torch_backend_without_tensorflow():
    got = run_backend("torch", BACKEND_CHECK)
    assert got["backend"] == "torch" and got["tensorflow_imported"] is False
    _check_backend(got)
