"""Audio front end (section 2.2): log-magnitude spectrogram, volume jitter, decimation.

The spectrogram is a Keras layer so that it lives *inside* the audio encoder:
an exported encoder takes raw waveform and can never drift from its front end.

Shapes (paper preset): waveform [batch, 48000] float32 at 48 kHz in [-1, 1]
-> spectrogram image [batch, 257 bands, 199 frames, 1].
"""

import numpy as np
import keras
import tensorflow as tf

from l3 import constants as C


def log_spectrogram(waveform, *, window: int = C.STFT_WINDOW, hop: int = C.STFT_HOP,
                    fft_length: int = C.FFT_LENGTH, log_offset: float = C.LOG_OFFSET):
    """log(|STFT| + log_offset) as a single-channel image.

    Periodic Hann window of `window` samples (the paper does not name the
    window), `hop` samples apart, no padding, zero-padded to `fft_length`.
    Computed in float64 so that near-silent bands are exact on the log scale
    (float32 FFT round-off is ~1e-7 of the loudest band, which the log turns
    into large errors in the quiet ones); the FFT is a negligible part of the
    network's cost either way.

    Args:
      waveform: float [batch, samples].
    Returns:
      float32 [batch, fft_length // 2 + 1, frames, 1]: frequency on axis 1
      (low to high), time on axis 2, frames = 1 + (samples - window) // hop.
    """
    x = tf.cast(waveform, tf.float64)
    stft = tf.signal.stft(x, frame_length=window, frame_step=hop, fft_length=fft_length,
                          window_fn=tf.signal.hann_window, pad_end=False)  # [b, t, f]
    log_mag = tf.math.log(tf.abs(stft) + log_offset)
    image = tf.transpose(log_mag, [0, 2, 1])[..., tf.newaxis]  # [b, f, t, 1]
    return tf.cast(image, tf.float32)


def log_spectrogram_numpy(waveform: np.ndarray, *, window: int = C.STFT_WINDOW,
                          hop: int = C.STFT_HOP, fft_length: int = C.FFT_LENGTH,
                          log_offset: float = C.LOG_OFFSET) -> np.ndarray:
    """Reference implementation with np.fft (float64); same shapes as `log_spectrogram`."""
    x = np.asarray(waveform, np.float64)
    n = np.arange(window)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / window)  # periodic Hann
    frames = 1 + (x.shape[-1] - window) // hop
    idx = np.arange(frames)[:, None] * hop + n[None, :]
    spec = np.abs(np.fft.rfft(x[..., idx] * hann, n=fft_length, axis=-1))  # [b, t, f]
    return np.log(spec + log_offset).swapaxes(-1, -2)[..., None].astype(np.float32)


@keras.saving.register_keras_serializable(package="l3")
class LogSpectrogram(keras.layers.Layer):
    """Keras layer: waveform [batch, samples] -> [batch, bands, frames, 1].

    Always computes (and outputs) float32 whatever the global dtype policy,
    so mixed precision starts at conv1_1.
    """

    def __init__(self, window=C.STFT_WINDOW, hop=C.STFT_HOP, fft_length=C.FFT_LENGTH,
                 log_offset=C.LOG_OFFSET, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.window, self.hop, self.fft_length, self.log_offset = window, hop, fft_length, log_offset

    def call(self, waveform):
        return log_spectrogram(waveform, window=self.window, hop=self.hop,
                               fft_length=self.fft_length, log_offset=self.log_offset)

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[-1] is None else 1 + (input_shape[-1] - self.window) // self.hop
        return (input_shape[0], self.fft_length // 2 + 1, frames, 1)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(window=self.window, hop=self.hop, fft_length=self.fft_length,
                      log_offset=self.log_offset)
        return config


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
