"""Audio of one stream: planar float conversion, mono mixdown, gap filling, resampling.

`decode_audio` decodes the first audio stream of a file; `AudioCollector`
also serves `l3.media.decode` for the audio of a video.
"""

import logging
from typing import List, Optional, Sequence, Tuple

import av
import numpy as np
import soxr

from l3.media.packets import PacketDecoder
from l3.media.source import MediaError, frame_time, open_media, origin_seconds

log = logging.getLogger(__name__)

_GAP_TOLERANCE_SECONDS = 0.002  # audio timestamp jitter below this is ignored

# ITU-R BS.775 downmix weights; LFE is dropped. Weights are normalised to sum to
# 1, so content identical on every channel passes unchanged and nothing clips.
_CHANNEL_WEIGHTS = {"FC": 0.7071, "BL": 0.7071, "BR": 0.7071, "SL": 0.7071, "SR": 0.7071,
                    "BC": 0.7071, "LFE": 0.0, "LFE2": 0.0}


def mixdown_weights(channel_names: Sequence[str]) -> np.ndarray:
    """Per-channel weights, summing to 1, for the mono mixdown: float64 [channels].

    Stereo gives (L + R) / 2; 5.1 gives L, R at 1, C, Ls, Rs at -3 dB, LFE 0.
    """
    w = np.array([_CHANNEL_WEIGHTS.get(n, 1.0) for n in channel_names], np.float64)
    if w.sum() <= 0:
        w = np.ones(len(channel_names))
    return w / w.sum()


_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854776e18}


def frame_to_mono(frame) -> np.ndarray:
    """One decoded audio frame to float32 mono [samples]."""
    fmt = frame.format
    names = [c.name for c in frame.layout.channels]
    channels = len(names)
    data = frame.to_ndarray()
    if not fmt.is_planar:  # packed: [1, samples * channels]
        data = data.reshape(-1, channels).T
    data = data[:, :frame.samples]
    base = fmt.name.rstrip("p")
    if base in _INT_SCALE:
        x = data.astype(np.float64)
        if base == "u8":
            x -= 128.0
        x /= _INT_SCALE[base]
    else:
        x = data.astype(np.float64)
    if channels == 1:
        return x[0].astype(np.float32)
    return (mixdown_weights(names) @ x).astype(np.float32)


class AudioCollector:
    """Accumulates mono samples of one stream, placed by timestamp (gaps filled with silence)."""

    def __init__(self, origin: float, max_seconds: Optional[float]):
        self.origin = origin
        self.max_seconds = max_seconds
        self.rate = None
        self.start = None
        self.chunks: List[np.ndarray] = []
        self.count = 0
        self.gaps = 0.0
        self.done = False

    @property
    def end(self) -> float:
        """End time (seconds) of what was collected."""
        return 0.0 if self.start is None else self.start + self.count / self.rate

    def push(self, frame) -> None:
        if self.done or frame.samples == 0:
            return
        if self.rate is None:
            self.rate = frame.sample_rate
        elif frame.sample_rate != self.rate:
            raise StreamChange(f"audio sample rate changed from {self.rate} to {frame.sample_rate} Hz")
        mono = frame_to_mono(frame)
        t = frame_time(frame, self.origin)
        if self.start is None:
            self.start = 0.0 if t is None else t
        elif t is not None:
            gap = t - self.end
            if gap > _GAP_TOLERANCE_SECONDS:  # missing packets: keep the clock right
                n = int(round(gap * self.rate))
                self.chunks.append(np.zeros(n, np.float32))
                self.count += n
                self.gaps += n / self.rate
            elif gap < -_GAP_TOLERANCE_SECONDS:  # overlap: drop what was already played
                mono = mono[min(len(mono), int(round(-gap * self.rate))):]
        self.chunks.append(mono)
        self.count += len(mono)
        if self.max_seconds is not None and self.end >= self.max_seconds:
            self.done = True

    def result(self) -> Tuple[np.ndarray, float, int]:
        """(float32 mono [samples] at the source rate, start seconds, rate), trimmed to [0, max)."""
        if self.start is None:
            return np.zeros(0, np.float32), 0.0, self.rate or 0
        x = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        start = self.start
        if start < 0:  # samples before the container start (e.g. codec priming)
            drop = int(round(-start * self.rate))
            x, start = x[drop:], max(0.0, start + drop / self.rate)
        if self.max_seconds is not None:
            keep = max(0, int(np.ceil((self.max_seconds - start) * self.rate - 1e-9)))
            x = x[:keep]
        return x, start, self.rate


class StreamChange(Exception):
    """A stream parameter changed mid-stream; treated like a decode error."""


def resample(x: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """float32 [samples] at `rate` -> float32 [samples'] at `sample_rate` (soxr, high quality)."""
    if rate == sample_rate or len(x) == 0:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)


def decode_audio(path: str, *, sample_rate: int, max_seconds: Optional[float] = None
                 ) -> Tuple[np.ndarray, float]:
    """Decodes the first audio stream of any file FFmpeg reads (wav, flac, mp3, ogg, videos).

    Returns:
      (float32 mono [samples] at `sample_rate`, start seconds of sample 0 on the
      container's clock, usually 0).
    Raises:
      MediaError (`not_found`, `empty_file`, `unreadable`, `no_audio_stream`,
      `decode_error`). A decode error after some audio keeps what decoded;
      packets the decoder rejects are lost (logged as a warning), the rest kept.
    """
    container = open_media(path)
    try:
        if not container.streams.audio:
            raise MediaError("no_audio_stream", f"{path} has no audio stream")
        stream = container.streams.audio[0]
        audio = AudioCollector(origin_seconds(container), max_seconds)
        packets = PacketDecoder(origin_seconds(container))
        error = None
        try:
            for packet in container.demux(stream):
                for frame in packets.decode(packet):
                    audio.push(frame)
                if audio.done:
                    break
        except (av.error.FFmpegError, StreamChange, EOFError, OSError, ValueError) as e:
            error = str(e) or type(e).__name__
        raw, start, rate = audio.result()
        lost = packets.warnings()
        if len(raw) == 0:
            raise MediaError("decode_error", f"no decodable audio in {path}"
                             + (f": {error}" if error else "") + "".join(f" ({w})" for w in lost))
        for warning in lost:
            log.warning("%s: %s", path, warning)
        return resample(raw, rate, sample_rate), float(start)
    finally:
        container.close()
