"""Audio: the spectrogram front end (TensorFlow backend) vs the numpy reference, gain, decimation."""

import numpy as np
import pytest
import tensorflow as tf

from l3 import audio, constants as C, frontend, presets

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
