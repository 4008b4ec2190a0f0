"""Audio: the spectrogram front end (TensorFlow backend) vs the numpy reference, gain, decimation."""

import librosa
import numpy as np
import pytest
import tensorflow as tf

from l3.ops import audio
from l3.core import constants as C, presets
from l3.model import frontend, network as model

SR = C.SAMPLE_RATE


def _signals():
    t = np.arange(SR) / SR
    rng = np.random.default_rng(0)
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    chirp = 0.8 * np.sin(2 * np.pi * (100 + 5000 * t) * t)
    noise = rng.uniform(-1, 1, SR)
    quiet = 1e-3 * rng.standard_normal(SR)
    silence = np.zeros(SR)
    # real-world-like: int16-quantised tone in noise with a silent stretch
    mixed = np.round((0.3 * np.sin(2 * np.pi * 1000 * t) + 0.01 * rng.standard_normal(SR))
                     * 32767) / 32768
    mixed[SR // 3: SR // 2] = 0.0
    return np.stack([tone, chirp, noise, quiet, silence, mixed]).astype(np.float32)


def test_shape_paper():
    spec = frontend.log_spectrogram(tf.zeros([2, SR]))
    assert spec.shape == (2, C.SPECTROGRAM_BANDS, C.SPECTROGRAM_FRAMES, 1) == (2, 257, 199, 1)
    assert spec.dtype == tf.float32


def test_matches_numpy_reference_eager():
    x = _signals()
    got = frontend.log_spectrogram(x).numpy()
    want = frontend.log_spectrogram_numpy(x)
    assert got.shape == want.shape == (6, 257, 199, 1)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_matches_numpy_reference_in_tf_function_and_tf_data():
    x = _signals()
    want = frontend.log_spectrogram_numpy(x)
    fn = tf.function(lambda w: frontend.log_spectrogram(w))
    np.testing.assert_allclose(fn(x).numpy(), want, atol=1e-4, rtol=0)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(3).map(frontend.log_spectrogram)
    got = np.concatenate(list(ds.as_numpy_iterator()))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_silence_is_finite_and_equals_log_offset():
    spec = frontend.log_spectrogram(tf.zeros([1, SR])).numpy()
    np.testing.assert_allclose(spec, np.log(C.LOG_OFFSET), atol=1e-6)


def test_tone_peaks_at_its_band():
    t = np.arange(SR) / SR
    freq = 3000.0
    spec = frontend.log_spectrogram(np.sin(2 * np.pi * freq * t)[None].astype(np.float32)).numpy()
    peak_band = spec[0, :, :, 0].mean(axis=1).argmax()
    assert peak_band == round(freq / (SR / C.FFT_LENGTH))


def test_layer_small_preset_and_config_round_trip():
    p = presets.SMALL
    layer = frontend.LogSpectrogram(p.stft_window, p.stft_hop, p.fft_length, p.log_offset)
    out = layer(tf.zeros([3, p.clip_samples]))
    assert out.shape == (3, 129, 199, 1)
    clone = frontend.LogSpectrogram.from_config(layer.get_config())
    assert (clone.window, clone.hop, clone.fft_length, clone.log_offset) == (160, 80, 256, p.log_offset)


def test_layer_stays_float32_under_mixed_precision():
    import keras
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = frontend.LogSpectrogram()
        assert layer(tf.zeros([1, SR])).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_random_gain_one_gain_per_clip_within_10_percent():
    x = tf.ones([500, 100])
    seeds = tf.constant([7, 11])
    y = audio.random_gain(x, seeds).numpy()
    gains = y[:, 0]
    assert np.all(y == gains[:, None]), "a clip must get one gain"
    assert gains.min() >= 0.9 and gains.max() <= 1.1
    assert gains.min() < 0.92 and gains.max() > 1.08, "gains should cover the range"
    # deterministic in the seed, and usable inside tf.data
    np.testing.assert_array_equal(audio.random_gain(x, seeds).numpy(), y)
    ds = tf.data.Dataset.from_tensor_slices(tf.ones([4, 10])).map(
        lambda w: audio.random_gain(w, tf.constant([1, 2])))
    for w in ds:
        assert 0.9 <= float(w[0]) <= 1.1


@pytest.mark.parametrize("freq,passes", [(1000.0, True), (6000.0, True), (9000.0, False), (12000.0, False)])
def test_decimate_by_3(freq, passes):
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * freq * t).astype(np.float32)
    y = audio.decimate(x, 3).numpy()
    assert y.shape == (16000,)
    rms = np.sqrt(np.mean(y[1000:-1000] ** 2))
    if passes:  # in the pass band: the same tone at 16 kHz
        t16 = np.arange(16000) / 16000
        ref = np.sin(2 * np.pi * freq * t16)
        np.testing.assert_allclose(y[1000:-1000], ref[1000:-1000], atol=2e-3)
    else:  # above the new Nyquist (8 kHz): removed, not aliased to 4 kHz
        assert rms < 0.01
    batched = audio.decimate(np.stack([x, x]), 3).numpy()
    np.testing.assert_allclose(batched[1], y, atol=1e-6)


def _librosa_log_spectrogram(x: np.ndarray, preset) -> np.ndarray:
    """log(|librosa.stft| + offset), [n, samples] -> [n, bands, frames] (float64).

    librosa frames are `n_fft` long with the `win_length` window centred in
    them; our frames start at t * hop with the window at the frame's start
    (zero padding after it). Padding the signal by (n_fft - win) / 2 on each
    side makes librosa's frame t cover the same samples; the magnitude does
    not see where a frame sits in the FFT buffer.
    """
    pad = (preset.fft_length - preset.stft_window) // 2
    out = []
    for row in np.asarray(x, np.float64):
        s = librosa.stft(np.pad(row, (pad, pad)), n_fft=preset.fft_length,
                         hop_length=preset.stft_hop, win_length=preset.stft_window,
                         window="hann", center=False)  # scipy's periodic Hann
        out.append(np.log(np.abs(s) + preset.log_offset))
    return np.stack(out)


def _real_signals(sr: int) -> np.ndarray:
    """Tones, white noise, a speech-like chirp, silence: float32 [6, sr] (one second)."""
    t = np.arange(sr) / sr
    rng = np.random.default_rng(11)
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    two_tones = 0.3 * np.sin(2 * np.pi * 1234.5 * t) + 0.2 * np.sin(2 * np.pi * 0.3 * sr * t)
    noise = 0.3 * rng.standard_normal(sr)
    # Exponential sweep 150 Hz -> 0.4 sr with a syllable-like envelope and a little noise.
    f0, f1 = 150.0, 0.4 * sr
    phase = 2 * np.pi * f0 * (np.power(f1 / f0, t) - 1) / np.log(f1 / f0)
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t)) ** 2
    chirp = 0.6 * envelope * np.sin(phase) + 1e-3 * rng.standard_normal(sr)
    quantised = np.round(chirp * 32767) / 32768  # as decoded from 16-bit PCM
    silence = np.zeros(sr)
    return np.stack([tone, two_tones, noise, chirp, quantised, silence]).astype(np.float32)


@pytest.mark.parametrize("preset", [presets.PAPER, presets.SMALL], ids=lambda p: p.name)
def test_model_spectrogram_matches_librosa(preset):
    """The audio network's own front end (its "spectrogram" layer) against librosa."""
    layer = model.build_audio_network(preset).get_layer("spectrogram")
    x = _real_signals(preset.sample_rate)
    got = np.asarray(layer(x))[..., 0]
    want = _librosa_log_spectrogram(x, preset)
    assert got.shape == want.shape == (6, preset.spectrogram_bands, preset.spectrogram_frames)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got[-1], np.log(preset.log_offset), atol=1e-6)  # silence
    assert got[2].min() > np.log(preset.log_offset) + 1.0  # noise fills every band
