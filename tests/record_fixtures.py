"""Synthetic TFRecord shards whose frames and audio encode identity and time.

Written with `l3.records.make_example` (the real schema), without the video
builder, so that any test can have a corpus in a fraction of a second:

    corpus = SyntheticCorpus(num_videos=8, seconds=4.0, fps=4.0)
    paths = corpus.write(tmp_dir, num_shards=2)
    # or: paths = write_synthetic_shards(tmp_dir, num_videos=8, seconds=4.0, fps=4.0, num_shards=2)

What a video holds (video `i`, id `synth00000`, `synth00001`, ...):

* frames at t_k = k / fps for t_k < seconds (float32, the records' clock),
  each made of three horizontal bands of uniform colour (saturation and value
  0.7) whose *hue* is a code in 0..63: band 0 = identity % 64, band 1 =
  (k // 64) % 64, band 2 = k % 64. Hue survives everything the pipeline does
  to a frame (resize, crop, flip, brightness and saturation jitter, JPEG), and
  the bands are tall enough that a 224-of-256 (or 64-of-72) crop keeps the
  centre of each. `decode_frame` reads them back.
* audio at `sample_rate`, starting at `audio_start` seconds on the same clock
  and lasting `audio_seconds` (default: `seconds`), a function of the
  *absolute* time tau = audio_start + n / sample_rate:
  a tone at `identity_frequency(identity)` (200 + 90 * (identity % 64) Hz,
  below 6 kHz so that it survives decimation to 16 kHz) plus white noise
  drawn per video, which makes every 1-s window unique: `decode_audio` finds
  the video by pitch and the window's start by cross-correlation, to the
  sample, whatever the gain.

Identity is the video index, except in `learnable=True` mode with labels,
where it is the class index (labels sorted): the frame colour and the pitch
then say the class, the noise is quieter and the tone louder, so a small
model learns audio-visual correspondence (and classification) in a few hundred
steps. Labels, if given, are assigned cyclically: video i gets
labels[i % len(labels)] (pass one label per video to set each).

Video i goes to shard i % num_shards, named `records.shard_name(split, ...)`.
"""

import colorsys
import dataclasses
import functools
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

HUE_LEVELS = 64          # codes per band
_SATURATION = 0.7        # leaves room for +-32/255 brightness and 1.5x saturation
_VALUE = 0.7             # without clipping (clipping would move the hue)
_BAND_ROWS = (1 / 6, 1 / 2, 5 / 6)  # where decode_frame samples each band

Number = Union[float, int]


def identity_frequency(identity: int) -> float:
    """Pitch (Hz) of the identity tone: 200 + 90 * (identity % 64), at most 5870 Hz."""
    return 200.0 + 90.0 * (identity % HUE_LEVELS)


def _per_video(value, n: int, name: str) -> Tuple[float, ...]:
    if value is None or np.isscalar(value):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name}: {len(value)} values for {n} videos")
    return value


@dataclasses.dataclass(frozen=True)
class SyntheticCorpus:
    """A deterministic corpus of `num_videos` coded videos (see the module docstring).

    `seconds`, `audio_start` and `audio_seconds` may be one number or one per video.
    """

    num_videos: int
    seconds: Union[Number, Sequence[Number]] = 4.0
    fps: float = 4.0
    sample_rate: int = 48_000
    labels: Optional[Sequence[str]] = None
    seed: int = 0
    learnable: bool = False
    frame_size: Tuple[int, int] = (96, 128)   # height, width
    audio_start: Union[Number, Sequence[Number]] = 0.0
    audio_seconds: Optional[Union[Number, Sequence[Number]]] = None
    frame_noise: float = 0.0                  # std of pixel noise (0-255 scale); > 0 for realistic JPEG sizes
    split: str = "train"

    def __post_init__(self):
        n = self.num_videos
        set_ = functools.partial(object.__setattr__, self)
        set_("seconds", _per_video(self.seconds, n, "seconds"))
        set_("audio_start", _per_video(self.audio_start, n, "audio_start"))
        audio_seconds = self.seconds if self.audio_seconds is None else self.audio_seconds
        set_("audio_seconds", _per_video(audio_seconds, n, "audio_seconds"))
        set_("labels", None if self.labels is None else tuple(self.labels))
        set_("frame_size", tuple(self.frame_size))

    # --- what each video is ----------------------------------------------------
    def video_id(self, i: int) -> str:
        return f"synth{i:05d}"

    def video_index(self, video_id) -> int:
        if isinstance(video_id, bytes):
            video_id = video_id.decode()
        return int(video_id[len("synth"):])

    def label(self, i: int) -> str:
        return "" if not self.labels else self.labels[i % len(self.labels)]

    @property
    def classes(self) -> Tuple[str, ...]:
        return tuple(sorted(set(self.labels or ())))

    def identity(self, i: int) -> int:
        """What frame colour and pitch say: the class index (learnable, labelled) or the video index."""
        if self.learnable and self.labels:
            return self.classes.index(self.label(i))
        return i

    def frame_times(self, i: int) -> np.ndarray:
        """float32 [frames]: k / fps for every k / fps < seconds (at least one frame)."""
        count = max(1, int(np.ceil(self.seconds[i] * self.fps - 1e-9)))
        return (np.arange(count) / self.fps).astype(np.float32)

    def frame(self, i: int, k: int) -> np.ndarray:
        """uint8 [height, width, 3]: three hue-coded bands (identity, k // 64, k % 64)."""
        h, w = self.frame_size
        codes = (self.identity(i) % HUE_LEVELS, (k // HUE_LEVELS) % HUE_LEVELS, k % HUE_LEVELS)
        image = np.empty((h, w, 3), np.float32)
        edges = np.linspace(0, h, 4).round().astype(int)
        for band, code in enumerate(codes):
            rgb = colorsys.hsv_to_rgb((code + 0.5) / HUE_LEVELS, _SATURATION, _VALUE)
            image[edges[band]:edges[band + 1]] = np.asarray(rgb) * 255.0
        if self.frame_noise:
            rng = np.random.default_rng([self.seed, i, k, 1])
            image += rng.normal(0.0, self.frame_noise, image.shape)
        return np.clip(image.round(), 0, 255).astype(np.uint8)

    def audio(self, i: int) -> np.ndarray:
        """int16 [samples] at `sample_rate`; sample n plays at audio_start + n / sample_rate."""
        sr = self.sample_rate
        n = int(round(self.audio_seconds[i] * sr))
        tau = self.audio_start[i] + np.arange(n) / sr
        tone, noise = (0.45, 0.02) if self.learnable else (0.3, 0.08)
        x = tone * np.sin(2 * np.pi * identity_frequency(self.identity(i)) * tau)
        x += noise * np.random.default_rng([self.seed, i, 2]).standard_normal(n)
        return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)

    def example(self, i: int):
        """The `tf.train.Example` of video i."""
        import io

        from PIL import Image

        from l3 import records

        frames = []
        for k in range(len(self.frame_times(i))):
            buf = io.BytesIO()
            Image.fromarray(self.frame(i, k)).save(buf, format="JPEG", quality=90)
            frames.append(buf.getvalue())
        return records.make_example(
            video_id=self.video_id(i), frames=frames, frame_times=self.frame_times(i).tolist(),
            audio=self.audio(i), audio_start=float(self.audio_start[i]), sample_rate=self.sample_rate,
            label=self.label(i), split=self.split, source=f"synthetic:{i}")

    def write(self, directory: str, num_shards: int = 1) -> List[str]:
        """Writes the shards (video i in shard i % num_shards); returns their paths, sorted."""
        import tensorflow as tf

        from l3 import records

        os.makedirs(directory, exist_ok=True)
        paths = [os.path.join(directory, records.shard_name(self.split, s, num_shards))
                 for s in range(num_shards)]
        writers = [tf.io.TFRecordWriter(p) for p in paths]
        try:
            for i in range(self.num_videos):
                writers[i % num_shards].write(self.example(i).SerializeToString())
        finally:
            for writer in writers:
                writer.close()
        return paths

    # --- reading a pipeline's output back ------------------------------------------
    def decode_frame(self, image) -> Tuple[int, int]:
        """(identity % 64, frame index k) from a frame, raw or augmented.

        image: [height, width, 3], uint8 or float in [0, 1].
        """
        return decode_frame(image)

    def decode_audio(self, waveform, sample_rate: Optional[int] = None) -> Tuple[int, float, float]:
        """(video index, start time in seconds on the records' clock, match score in [0, 1]).

        waveform: float [samples], any gain, at `sample_rate` (the corpus rate,
        or that rate divided by an integer, decimated with `l3.audio.decimate`).
        The score is the normalised correlation with the video's track (~1 for
        a clean match, ~0.1 for an unrelated one).
        """
        rate = sample_rate or self.sample_rate
        w = np.asarray(waveform, np.float64)
        spectrum = np.abs(np.fft.rfft(w * np.hanning(len(w))))
        freqs = np.fft.rfftfreq(len(w), 1.0 / rate)
        band = (freqs > 150) & (freqs < 6000)
        pitch = freqs[band][np.argmax(spectrum[band])]
        code = int(round((pitch - 200.0) / 90.0)) % HUE_LEVELS
        best = (-1, float("nan"), -1.0)
        for i in range(self.num_videos):
            if self.identity(i) % HUE_LEVELS != code:
                continue
            track = _track(self, i, rate)
            if len(track) < len(w):
                continue
            lag, score = _best_lag(track, w)
            if score > best[2]:
                best = (i, float(self.audio_start[i] + lag / rate), score)
        return best


def decode_frame(image) -> Tuple[int, int]:
    """(band-0 code, frame index) of a hue-coded frame; see `SyntheticCorpus.frame`."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    h, w = image.shape[:2]
    half = max(1, h // 24)
    codes = []
    for fraction in _BAND_ROWS:
        row = int(fraction * h)
        rgb = image[max(0, row - half):row + half + 1, w // 4:max(w // 4 + 1, 3 * w // 4)].mean((0, 1))
        hue = colorsys.rgb_to_hsv(*rgb)[0]
        codes.append(int(np.floor(hue * HUE_LEVELS)) % HUE_LEVELS)
    return codes[0], codes[1] * HUE_LEVELS + codes[2]


@functools.lru_cache(maxsize=256)
def _track(corpus: SyntheticCorpus, i: int, rate: int) -> np.ndarray:
    """Video i's audio as float at `rate` (decimated the way the pipeline does)."""
    track = corpus.audio(i).astype(np.float32) / 32768.0
    if rate != corpus.sample_rate:
        factor = corpus.sample_rate // rate
        if factor * rate != corpus.sample_rate:
            raise ValueError(f"{rate} Hz does not divide {corpus.sample_rate} Hz")
        from l3 import audio as audio_lib
        usable = len(track) // factor * factor
        track = audio_lib.decimate(track[:usable], factor).numpy()
    return track.astype(np.float64)


def _best_lag(track: np.ndarray, window: np.ndarray) -> Tuple[int, float]:
    """argmax over lags of the normalised correlation of `window` with track[lag:lag + n]."""
    n, m = len(window), len(track)
    size = 1 << int(np.ceil(np.log2(m + n)))
    corr = np.fft.irfft(np.fft.rfft(track, size) * np.conj(np.fft.rfft(window, size)), size)[:m - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(track ** 2)])
    norms = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-12)) * np.linalg.norm(window)
    score = corr / np.maximum(norms, 1e-12)
    lag = int(np.argmax(score))
    return lag, float(score[lag])


def write_synthetic_shards(directory: str, *, num_videos: int, seconds: Union[Number, Sequence[Number]],
                           fps: float, num_shards: int, sample_rate: int = 48_000,
                           labels: Optional[Sequence[str]] = None, seed: int = 0,
                           learnable: bool = False, **kwargs) -> List[str]:
    """Writes a `SyntheticCorpus` as `num_shards` TFRecord shards; returns their paths.

    Extra keyword arguments (`frame_size`, `audio_start`, `audio_seconds`,
    `frame_noise`, `split`) go to `SyntheticCorpus`.
    """
    corpus = SyntheticCorpus(num_videos=num_videos, seconds=seconds, fps=fps, sample_rate=sample_rate,
                             labels=labels, seed=seed, learnable=learnable, **kwargs)
    return corpus.write(directory, num_shards)
