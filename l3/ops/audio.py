"""TensorFlow audio ops of the input pipeline (section 2.2): volume jitter, decimation.

These run in tf.data, outside the model. The spectrogram front ends, which
live inside the audio encoder, are backend-neutral Keras layers in
`l3.model.frontend`.
"""

import numpy as np
import tensorflow as tf

from l3.core import constants as C


def random_gain(waveform, seed, max_change: float = C.VOLUME_MAX_CHANGE):
    """Volume augmentation: one gain in [1 - max_change, 1 + max_change] per clip.

    Args:
      waveform: float32 [samples] (one clip) or [batch, samples].
      seed: int32/int64 [2], a stateless random seed.
    Returns: same shape and dtype; each clip scaled by its own uniform gain.
    """
    waveform = tf.convert_to_tensor(waveform)
    shape = tf.concat([tf.shape(waveform)[:-1], [1]], axis=0)
    gain = tf.random.stateless_uniform(shape, seed, 1.0 - max_change, 1.0 + max_change,
                                       dtype=waveform.dtype)
    return waveform * gain


def _lowpass_taps(factor: int, taps_per_phase: int = 32, beta: float = 8.0) -> np.ndarray:
    """Kaiser-windowed sinc low-pass at 0.9 x the new Nyquist, unit DC gain."""
    n = factor * taps_per_phase * 2 + 1
    t = np.arange(n) - (n - 1) / 2
    cutoff = 0.9 / factor  # as a fraction of the old Nyquist
    h = cutoff * np.sinc(cutoff * t) * np.kaiser(n, beta)
    return (h / h.sum()).astype(np.float32)


def decimation_margin(factor: int) -> int:
    """Input samples the decimation filter reaches on each side of an output sample."""
    return len(_lowpass_taps(factor)) // 2 if factor > 1 else 0


def decimate(waveform, factor: int):
    """Integer-factor resampling with a linear-phase anti-alias FIR filter.

    Pass band up to 0.75 x the new Nyquist (flat within 0.001 dB), -80 dB from
    the new Nyquist on (193-tap Kaiser-windowed sinc); output sample i is
    aligned with input sample i * factor (zero padding at both ends).

    Used by the pipeline to feed the 48 kHz records to a preset whose encoder
    runs at 48000 / factor Hz (the small preset: factor 3 -> 16 kHz).

    Args:
      waveform: float32 [samples] or [batch, samples]; samples a multiple of `factor`.
    Returns: float32 [samples // factor] or [batch, samples // factor].
    """
    if factor == 1:
        return waveform
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    squeeze = waveform.shape.rank == 1
    x = waveform[tf.newaxis] if squeeze else waveform
    taps = _lowpass_taps(factor)  # symmetric, odd length: output i is centred on input i * factor
    half = len(taps) // 2
    x = tf.pad(x, [[0, 0], [half, half]])
    kernel = tf.constant(taps[:, None, None])
    y = tf.nn.conv1d(x[..., tf.newaxis], kernel, stride=factor, padding="VALID")[..., 0]
    return y[0] if squeeze else y
