"""Audio front ends as backend-neutral Keras layers (section 2.2; mel: issue 15).

The front end is the first layer of the audio encoder, so an exported encoder
takes raw waveform and can never drift from its front end. It is written with
`keras.ops` only (no TensorFlow import), so the same `.keras` encoder runs
under the TensorFlow, JAX and PyTorch backends.

  linear  log(|STFT| + offset): the paper's 257 bands x 199 frames (48 kHz).
  mel128  log(mel(|STFT|) + offset): 128 mel bands x 199 frames,
  mel256  the same with 256 bands; the paper's 0.01 s window and half-window
          hop, a longer zero-padded FFT (`Preset.mel_fft_length`) so that no
          mel filter falls between two FFT bins.

Shapes (paper preset): waveform [batch, 48000] float32 at 48 kHz in [-1, 1]
-> image [batch, bands, 199 frames, 1] (bands 257, 128 or 256), frequency on
axis 1 (low to high), time on axis 2.

Precision: the spectrum is computed in float64 by default (`precision`): a
float32 FFT's round-off is ~1e-7 of the loudest band, which the logarithm
turns into errors of 1e-2 and more in quiet bands. TensorFlow and PyTorch
compute float64 natively; under JAX the layer enables 64-bit types for its
own computation only (`jax.enable_x64` as a context manager, thread-local,
restored on exit), never globally. `precision="float32"` exists for runtimes
without float64 (the LiteRT export). The output is float32 whatever the
dtype policy, so mixed precision starts at conv1_1.
"""

import contextlib
from typing import Optional

import numpy as np
import keras
from keras import ops

from l3.core import constants as C

LINEAR = "linear"
INPUT_REPRS = C.INPUT_REPRS
MEL_BANDS = C.MEL_BANDS
PRECISIONS = ("float64", "float32")
DFTS = ("fft", "matmul")


def periodic_hann(window: int) -> np.ndarray:
    """Periodic Hann window float64 [window] (the paper does not name the window)."""
    n = np.arange(window)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / window)


def frame_indices(samples: int, window: int, hop: int) -> np.ndarray:
    """int32 [frames, window]: sample index of each frame's samples (no padding)."""
    frames = 1 + (samples - window) // hop
    if frames < 1:
        raise ValueError(f"{samples} samples are fewer than one {window}-sample window")
    return (np.arange(frames)[:, None] * hop + np.arange(window)[None, :]).astype(np.int32)


def hz_to_mel(hz):
    """Slaney's mel scale (librosa's default, `htk=False`): linear below 1 kHz, log above."""
    hz = np.asarray(hz, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    return np.where(hz >= min_log_hz,
                    min_log_mel + np.log(np.maximum(hz, 1e-300) / min_log_hz) / logstep, linear)


def mel_to_hz(mel):
    """Inverse of `hz_to_mel`."""
    mel = np.asarray(mel, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                    f_sp * mel)


def mel_filterbank(sample_rate: int, fft_length: int, n_mels: int,
                   fmin: float = 0.0, fmax: Optional[float] = None) -> np.ndarray:
    """Triangular mel filters float64 [fft_length // 2 + 1, n_mels].

    Slaney's mel scale and area normalisation (each triangle scaled by
    2 / its width in Hz), as `librosa.filters.mel(htk=False, norm="slaney")`
    (its default; openl3's kapre front end used the same), transposed so that
    `magnitude [.., bins] @ filterbank` gives mel bands.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    fft_hz = np.linspace(0.0, sample_rate / 2.0, fft_length // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T


def dft_basis(window: int, fft_length: int) -> np.ndarray:
    """float64 [window, 2 * bins]: the windowed DFT as a matrix, bins = fft_length // 2 + 1.

    `frames [.., window] @ basis` = [real | imag] of the zero-padded rfft of
    the Hann-windowed frames (columns: cos for the real part, -sin for the
    imaginary part).
    """
    n = np.arange(window)[:, None]
    k = np.arange(fft_length // 2 + 1)[None, :]
    angle = 2.0 * np.pi * ((n * k) % fft_length) / fft_length  # exact phase, then one rounding
    hann = periodic_hann(window)[:, None]
    return np.concatenate([hann * np.cos(angle), -hann * np.sin(angle)], axis=1)


def _float64_scope(precision: str):
    """A context in which `precision` is computable on the current backend.

    JAX disables 64-bit types by default (float64 silently becomes float32);
    `jax.enable_x64(True)` turns them on for this thread until the block
    ends, and works inside a traced (jit) call.
    """
    if precision == "float64" and keras.backend.backend() == "jax":
        import jax  # noqa: PLC0415  (only under the JAX backend, where it is loaded already)
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def log_spectrogram(waveform, *, window: int = C.STFT_WINDOW, hop: int = C.STFT_HOP,
                    fft_length: int = C.FFT_LENGTH, log_offset: float = C.LOG_OFFSET,
                    mel_basis: Optional[np.ndarray] = None, precision: str = "float64",
                    dft: str = "fft"):
    """log(|STFT| + log_offset) (or of its mel bands) as a single-channel image.

    Periodic Hann window of `window` samples, `hop` samples apart, no padding,
    each frame zero-padded to `fft_length`.

    `dft` "fft" uses the backend's FFT (`keras.ops.rfft`; fast, the default);
    "matmul" multiplies the frames by `dft_basis`, for converters that have
    no complex types (tf2onnx takes TF's RFFT only into a complex abs, LiteRT
    has no float64 FFT); both agree to float64 round-off.

    Args:
      waveform: float [batch, samples] (any backend tensor or numpy).
      mel_basis: optional float64 [fft_length // 2 + 1, n_mels] filterbank
        applied to the magnitude before the log.
      precision: "float64" (default) or "float32": the dtype of the spectrum.
      dft: "fft" or "matmul" (see above).
    Returns:
      float32 [batch, bands, frames, 1], bands = fft_length // 2 + 1 (or
      n_mels), frames = 1 + (samples - window) // hop.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if dft not in DFTS:
        raise ValueError(f"dft must be one of {DFTS}, got {dft!r}")
    with _float64_scope(precision):
        x = ops.cast(waveform, precision)
        idx = frame_indices(int(x.shape[-1]), window, hop)
        frames = ops.take(x, idx, axis=1)  # [b, t, window]
        if dft == "fft":
            frames = frames * ops.convert_to_tensor(periodic_hann(window), dtype=precision)
            real, imag = ops.rfft(frames, fft_length=fft_length)  # [b, t, f]
        else:
            # einsum, not matmul: Keras 3.15's torch matmul returns float32 for float64 inputs
            basis = ops.convert_to_tensor(dft_basis(window, fft_length), dtype=precision)
            both = ops.einsum("btw,wf->btf", frames, basis)  # [b, t, 2f]
            real, imag = ops.split(both, 2, axis=-1)
        magnitude = ops.sqrt(real * real + imag * imag)
        if mel_basis is not None:
            mel = ops.convert_to_tensor(mel_basis, dtype=precision)
            magnitude = ops.einsum("btf,fm->btm", magnitude, mel)
        log_mag = ops.log(magnitude + log_offset)
        image = ops.expand_dims(ops.transpose(log_mag, (0, 2, 1)), -1)  # [b, f, t, 1]
        return ops.cast(image, "float32")


def log_spectrogram_numpy(waveform: np.ndarray, *, window: int = C.STFT_WINDOW,
                          hop: int = C.STFT_HOP, fft_length: int = C.FFT_LENGTH,
                          log_offset: float = C.LOG_OFFSET,
                          mel_basis: Optional[np.ndarray] = None) -> np.ndarray:
    """Reference implementation with np.fft (float64); same shapes as `log_spectrogram`."""
    x = np.asarray(waveform, np.float64)
    n = np.arange(window)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / window)  # periodic Hann
    frames = 1 + (x.shape[-1] - window) // hop
    idx = np.arange(frames)[:, None] * hop + n[None, :]
    spec = np.abs(np.fft.rfft(x[..., idx] * hann, n=fft_length, axis=-1))  # [b, t, f]
    if mel_basis is not None:
        spec = spec @ mel_basis
    return np.log(spec + log_offset).swapaxes(-1, -2)[..., None].astype(np.float32)


@keras.saving.register_keras_serializable(package="l3")
class LogSpectrogram(keras.layers.Layer):
    """Keras layer: waveform [batch, samples] -> [batch, bands, frames, 1].

    `input_repr` is "linear" (bands = fft_length // 2 + 1) or "mel128" /
    "mel256" (bands = 128 / 256, Slaney mel filters from 0 Hz to
    `sample_rate` / 2). `precision` and `dft`: see `log_spectrogram`.
    Always outputs float32 whatever the dtype policy.
    """

    def __init__(self, window=C.STFT_WINDOW, hop=C.STFT_HOP, fft_length=C.FFT_LENGTH,
                 log_offset=C.LOG_OFFSET, input_repr=LINEAR, sample_rate=C.SAMPLE_RATE,
                 precision="float64", dft="fft", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if input_repr not in INPUT_REPRS:
            raise ValueError(f"input_repr must be one of {INPUT_REPRS}, got {input_repr!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.window, self.hop, self.fft_length, self.log_offset = window, hop, fft_length, log_offset
        if dft not in DFTS:
            raise ValueError(f"dft must be one of {DFTS}, got {dft!r}")
        self.input_repr, self.sample_rate, self.precision = input_repr, sample_rate, precision
        self.dft = dft
        self._mel = (None if input_repr == LINEAR else
                     mel_filterbank(sample_rate, fft_length, MEL_BANDS[input_repr]))

    @property
    def bands(self) -> int:
        return self.fft_length // 2 + 1 if self._mel is None else self._mel.shape[1]

    def call(self, waveform):
        return log_spectrogram(waveform, window=self.window, hop=self.hop,
                               fft_length=self.fft_length, log_offset=self.log_offset,
                               mel_basis=self._mel, precision=self.precision, dft=self.dft)

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[-1] is None else 1 + (input_shape[-1] - self.window) // self.hop
        return (input_shape[0], self.bands, frames, 1)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(window=self.window, hop=self.hop, fft_length=self.fft_length,
                      log_offset=self.log_offset, input_repr=self.input_repr,
                      sample_rate=self.sample_rate, precision=self.precision, dft=self.dft)
        return config
