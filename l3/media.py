"""Media I/O with PyAV (FFmpeg): decode videos and audio files, write test media.

Shared by the TFRecord builder, the embedding tool, the audio-transfer tools
and the tests. Nothing here imports TensorFlow, so builder worker processes
stay light.

Clock: every time returned is in seconds on the *container's* clock, shifted so
that the container's start time is 0. Frame times and the audio start are on
that same clock, which is what keeps frames and audio aligned in the records.

Frame sampling (`decode_video`): target times t_k = k / fps from 0; for each,
the latest frame whose presentation time is <= t_k is kept (once: a frame that
is the latest for several targets is stored once), with *its own* presentation
time. This is correct for variable-frame-rate videos, where frame i is not at
i / rate.

Default frame rate: `DEFAULT_FPS` = 4. The paper does not say how frames were
sampled ("a random frame" from the first 10 s). A positive pair is a frame
inside a 1 s audio clip, so anything finer than ~1 s only buys visual
diversity, and frames a few hundred ms apart are near duplicates. At 4 fps every
1 s audio window still contains 4 candidate frames, and the JPEG frames of a
10 s clip (~40 x 25 KB at quality 90, smaller side 256) take about as much
space as its 48 kHz int16 audio (960 KB): ~2 MB a video, ~0.8 TB for the
paper's 400k videos. 25-30 fps would be ~7x that for near-duplicate frames.
"""

import dataclasses
import fractions
import os
import time
import wave
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import av
import numpy as np
import soxr
from av.video.reformatter import VideoReformatter

DEFAULT_FPS = 4.0

# Stable reason codes of `MediaError` (also the skip reasons of the builder).
REASONS = {
    "not_found": "the file does not exist",
    "empty_file": "the file has zero bytes",
    "unreadable": "FFmpeg cannot open it as media (not a media file, truncated header, ...)",
    "no_video_stream": "the file has no video stream",
    "no_audio_stream": "the file has no audio stream",
    "audio_too_short": "less decodable audio than required",
    "decode_error": "decoding failed before any usable frame or audio",
}

_GAP_TOLERANCE_SECONDS = 0.002  # audio timestamp jitter below this is ignored


class MediaError(Exception):
    """A file that cannot be used, with a stable machine-readable `reason` (see `REASONS`)."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # picklable across worker processes
        return (MediaError, (self.reason, self.message))


@dataclasses.dataclass
class DecodedVideo:
    """The first seconds of one video, decoded.

    frames: uint8 RGB arrays [height, width, 3], displayed upright, square
      pixels, smaller side `resize_smaller_side`; in presentation order.
    frame_times: float64 [num_frames], seconds, non-decreasing.
    audio: float32 [samples] mono in [-1, 1] at `sample_rate`; empty when the
      video has no audio and it was not required.
    audio_start: seconds, time of audio[0] on the frames' clock.
    warnings: human-readable notes, e.g. "decode error at 3.2 s (...); kept
      video to 3.2 s and audio to 3.2 s".
    timings: CPU seconds (this process, all its threads; unaffected by other
      load on the machine) spent in "decode" (open, demux, decode), "convert" (scale,
      colour conversion, rotation of the kept frames) and "resample" (soxr;
      the per-packet mono mixdown is part of "decode").
    """

    frames: List[np.ndarray]
    frame_times: np.ndarray
    audio: np.ndarray
    audio_start: float
    sample_rate: int
    warnings: List[str]
    source_size: Tuple[int, int] = (0, 0)  # (width, height) as coded
    rotation: int = 0  # clockwise degrees applied to display upright
    timings: Dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / float(self.sample_rate)


# ----------------------------------------------------------------------------
# Opening and stream selection.


def _open(path: str):
    if not os.path.exists(path):
        raise MediaError("not_found", f"{path} does not exist")
    if os.path.isdir(path):
        raise MediaError("unreadable", f"{path} is a directory")
    if os.path.getsize(path) == 0:
        raise MediaError("empty_file", f"{path} has zero bytes")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError("unreadable", f"cannot open {path}: {e}") from None
    # FFmpeg's "tty" demuxer opens any text file as ANSI art: not a video.
    if container.format.name in ("tty",):
        container.close()
        raise MediaError("unreadable", f"{path} is not a media file (probed as {container.format.name})")
    return container


def _origin(container) -> float:
    """The container's start time in seconds (0 of our clock): the earliest stream start,
    computed exactly from the streams' time bases (`container.start_time` is rounded to us)."""
    starts = [s.start_time * s.time_base for s in container.streams
              if s.start_time is not None and s.time_base is not None]
    if starts:
        return float(min(starts))
    if container.start_time is not None:
        return container.start_time / av.time_base
    return 0.0


def _frame_time(frame, origin: float) -> Optional[float]:
    t = frame.time
    return None if t is None else t - origin


class _VideoClock:
    """Presentation time of decoded video frames, robust to broken pts.

    FFmpeg's `guess_correct_pts` rule (`best_effort_timestamp`, which PyAV does
    not expose): use pts unless pts went backwards more often than dts did (e.g.
    B-frames in AVI, which stores no pts).
    """

    def __init__(self, origin: float):
        self.origin = origin
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts = self.last_dts = None

    def __call__(self, frame) -> Optional[float]:
        pts, dts = frame.pts, frame.dts
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        ts = pts if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None) else dts
        if ts is None or frame.time_base is None:
            return None
        return float(ts * frame.time_base) - self.origin


# ----------------------------------------------------------------------------
# Audio: planar float conversion, mixdown, gap filling.

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


def _audio_frame_to_mono(frame) -> np.ndarray:
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


class _AudioCollector:
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
            raise _StreamChange(f"audio sample rate changed from {self.rate} to {frame.sample_rate} Hz")
        mono = _audio_frame_to_mono(frame)
        t = _frame_time(frame, self.origin)
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


class _StreamChange(Exception):
    """A stream parameter changed mid-stream; treated like a decode error."""


def _resample(x: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """float32 [samples] at `rate` -> float32 [samples'] at `sample_rate` (soxr, high quality)."""
    if rate == sample_rate or len(x) == 0:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)


# ----------------------------------------------------------------------------
# Video: geometry and frame sampling.


def _rotation_clockwise(frame, stream) -> int:
    """Clockwise degrees (0, 90, 180, 270) to rotate the coded image to display it upright."""
    ccw = frame.rotation  # display matrix side data (counter-clockwise)
    if not ccw:
        tag = stream.metadata.get("rotate")  # legacy tag, clockwise
        if tag:
            try:
                return int(round(float(tag) / 90.0)) * 90 % 360
            except ValueError:
                return 0
        return 0
    return int(round(-ccw / 90.0)) * 90 % 360


def _output_size(width: int, height: int, sar, smaller_side: int) -> Tuple[int, int]:
    """Coded size and sample aspect ratio -> (width, height) with square pixels and the
    smaller side `smaller_side` (before rotation, which does not change the smaller side)."""
    display_w = width * (float(sar) if sar else 1.0)
    scale = smaller_side / min(display_w, height)
    return max(1, int(round(display_w * scale))), max(1, int(round(height * scale)))


_EPS = 1e-6  # seconds: timestamps are exact rationals, their float differences are not


class _FrameSampler:
    """Keeps, for each target time t0 + k / fps, the latest frame with pts <= target.

    t0 is the first frame's time, so the first frame is always kept even when
    the video starts a little after the container (e.g. after audio priming).
    Times are made non-decreasing (a frame earlier than its predecessor takes
    the predecessor's time).
    """

    def __init__(self, fps: float, max_seconds: Optional[float], convert):
        self.fps = fps
        self.max_seconds = max_seconds
        self.convert = convert
        self.k = 0
        self.t0 = None
        self.prev = None
        self.prev_t = None
        self.prev_end = None
        self.prev_taken = False
        self.frames: List[np.ndarray] = []
        self.times: List[float] = []
        self.done = False
        self.last_time = 0.0

    def _target(self) -> float:
        return self.t0 + self.k / self.fps

    @property
    def last_end(self) -> float:
        """End time of the last frame seen (seconds)."""
        return self.prev_end if self.prev_end is not None else self.last_time

    def _in_range(self, t: float) -> bool:
        return self.max_seconds is None or t < self.max_seconds

    def _take_prev(self) -> None:
        if not self.prev_taken:
            self.frames.append(self.convert(self.prev))
            self.times.append(self.prev_t)
            self.prev_taken = True

    def push(self, frame, t: float, duration: float) -> None:
        if self.done:
            return
        if self.t0 is None:
            self.t0 = t
        if self.prev_t is not None and t < self.prev_t:
            t = self.prev_t
        self.last_time = t
        while self._target() < t - _EPS and self._in_range(self._target()):
            if self.prev is not None:
                self._take_prev()
            self.k += 1
        if not self._in_range(t):
            self.done = True
            return
        self.prev, self.prev_t, self.prev_end, self.prev_taken = frame, t, t + duration, False

    def finish(self) -> None:
        """End of stream: the last frame counts for targets before it stops displaying."""
        if self.prev is not None and not self.done:
            target = self._target()
            if self._in_range(target) and target < self.prev_end - _EPS:
                self._take_prev()
        self.prev = None
        self.done = True


# ----------------------------------------------------------------------------
# Public decoding API.


def decode_video(path: str, *, max_seconds: Optional[float] = 10.0, fps: float = DEFAULT_FPS,
                 resize_smaller_side: int = 256, sample_rate: int = 48000,
                 min_audio_seconds: float = 0.0, require_audio: bool = True,
                 threads: int = 0) -> DecodedVideo:
    """Decodes the first `max_seconds` of a video: sampled RGB frames and mono audio.

    Args:
      path: any container FFmpeg reads.
      max_seconds: keep frames and audio before this time (None: everything).
      fps: frame sampling rate (see the module docstring for the VFR rule).
      resize_smaller_side: frames are rotated upright, resampled to square
        pixels, and resized so that their smaller side is this.
      sample_rate: output audio rate (soxr, high quality).
      min_audio_seconds: raise `audio_too_short` below this much audio.
      require_audio: raise `no_audio_stream` when there is no audio; if False,
        such a video decodes with empty audio.
      threads: decoder threads (0: FFmpeg's choice; the builder uses 1 per process).

    Returns:
      `DecodedVideo`: frames uint8 [H, W, 3], frame_times float64 [num_frames],
      audio float32 [samples] at `sample_rate`.

    Raises:
      MediaError with a reason from `REASONS`.
    """
    t0 = time.process_time()
    container = _open(path)
    try:
        return _decode_video(container, path, max_seconds, fps, resize_smaller_side, sample_rate,
                             min_audio_seconds, require_audio, threads, t0)
    finally:
        container.close()


def _decode_video(container, path, max_seconds, fps, side, sample_rate, min_audio_seconds,
                  require_audio, threads, t0) -> DecodedVideo:
    if not container.streams.video:
        raise MediaError("no_video_stream", f"{path} has no video stream")
    vstream = container.streams.video[0]
    astream = container.streams.audio[0] if container.streams.audio else None
    if astream is None and require_audio:
        raise MediaError("no_audio_stream", f"{path} has no audio stream")
    if threads:
        vstream.codec_context.thread_count = threads
    else:
        vstream.codec_context.thread_type = "AUTO"
    origin = _origin(container)
    sar = vstream.sample_aspect_ratio or vstream.codec_context.sample_aspect_ratio
    rotation = {"cw": 0}
    clock = _VideoClock(origin)
    rate = vstream.average_rate or vstream.guessed_rate or fractions.Fraction(25)
    default_duration = 1.0 / float(rate)

    convert_seconds = [0.0]
    reformatter = VideoReformatter()  # keeps one swscale context for the whole video

    def convert(frame) -> np.ndarray:
        c0 = time.process_time()
        out_w, out_h = _output_size(frame.width, frame.height, sar, side)
        # AREA: proper averaging when shrinking (most videos are larger than 256).
        img = reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24",
                                   interpolation="AREA").to_ndarray()
        cw = _rotation_clockwise(frame, vstream)
        rotation["cw"] = cw
        if cw:
            img = np.ascontiguousarray(np.rot90(img, k=-cw // 90))  # rot90 turns counter-clockwise
        convert_seconds[0] += time.process_time() - c0
        return img

    sampler = _FrameSampler(fps, max_seconds, convert)
    audio = _AudioCollector(origin, max_seconds) if astream is not None else None
    warnings: List[str] = []
    clean_started = False
    last_video_t = None

    def on_video(frame) -> None:
        nonlocal clean_started, last_video_t
        t = clock(frame)
        if t is None:  # no timestamp: continue the previous frame's clock
            t = 0.0 if last_video_t is None else last_video_t + default_duration
        if frame.is_corrupt:
            if clean_started:
                raise _CorruptFrame(t)
            warnings.append(f"dropped a corrupt frame at {t:.2f} s before the first clean one")
            return
        clean_started = True
        last_video_t = t
        duration = (float(frame.duration * frame.time_base)
                    if frame.duration and frame.time_base else default_duration)
        sampler.push(frame, t, duration)

    streams = [vstream] + ([astream] if astream is not None else [])
    error = None
    try:
        for packet in container.demux(*streams):
            if packet.stream.type == "video":
                if sampler.done:
                    continue
                for frame in packet.decode():
                    on_video(frame)
            elif audio is not None and not audio.done:
                for frame in packet.decode():
                    audio.push(frame)
            if sampler.done and (audio is None or audio.done):
                break
            if _past(packet, origin, max_seconds):  # one stream ended early: stop reading
                if not sampler.done:  # the frames the decoder still holds (B-frames)
                    for frame in vstream.decode(None):
                        on_video(frame)
                break
    except _CorruptFrame as e:
        error = (e.time, "corrupt video frame")
    except (av.error.FFmpegError, _StreamChange, EOFError, OSError, ValueError) as e:
        t = max(sampler.last_time, audio.end if audio is not None else 0.0)
        error = (t, str(e) or type(e).__name__)
    if error is None:
        sampler.finish()
    else:
        _finish_before(sampler, error[0])
    t_decode = time.process_time()

    if not sampler.frames:
        message = f"no decodable video frame in {path}"
        if error is not None:
            message += f" (decode error at {error[0]:.1f} s: {error[1]})"
        raise MediaError("decode_error", message)

    t1 = time.process_time()
    if audio is not None:
        raw, audio_start, raw_rate = audio.result()
        wave_out = _resample(raw, raw_rate, sample_rate) if raw_rate else np.zeros(0, np.float32)
        if audio.gaps > 0:
            warnings.append(f"filled {audio.gaps:.3f} s of missing audio with silence")
    else:
        wave_out, audio_start = np.zeros(0, np.float32), 0.0
    t2 = time.process_time()

    if error is not None:
        video_end = sampler.times[-1] if sampler.times else 0.0
        audio_end = audio_start + len(wave_out) / sample_rate
        warnings.append(f"decode error at {error[0]:.1f} s ({error[1]}); kept video to "
                        f"{video_end:.1f} s and audio to {audio_end:.1f} s")
    else:
        warnings += _early_end_warnings(container, origin, max_seconds, {
            "video": (vstream, sampler.last_end),
            "audio": (astream, audio_start + len(wave_out) / sample_rate)})
    if astream is not None and len(wave_out) == 0 and require_audio:
        raise MediaError("audio_too_short" if error is None else "decode_error",
                         f"no decodable audio in {path}"
                         + (f" (decode error at {error[0]:.1f} s: {error[1]})" if error else ""))
    seconds = len(wave_out) / sample_rate
    if seconds < min_audio_seconds:
        raise MediaError("audio_too_short", f"{seconds:.2f} s of audio in {path}, "
                         f"need {min_audio_seconds:.2f} s" + (f" ({warnings[-1]})" if error else ""))
    if len(wave_out) and not np.any(wave_out):
        warnings.append("audio is digital silence")
    coded = (vstream.codec_context.width, vstream.codec_context.height)
    return DecodedVideo(frames=sampler.frames, frame_times=np.asarray(sampler.times, np.float64),
                        audio=wave_out, audio_start=float(audio_start), sample_rate=sample_rate,
                        warnings=warnings, source_size=coded, rotation=rotation["cw"],
                        timings={"decode": t_decode - t0 - convert_seconds[0],
                                 "convert": convert_seconds[0], "resample": t2 - t1})


_EARLY_END_TOLERANCE = 0.5  # seconds; streams of one file legitimately differ this much


def _early_end_warnings(container, origin, max_seconds, ends) -> List[str]:
    """Says when a stream stopped well before the duration its header declares: a
    truncated or damaged file that FFmpeg read to a silent early end."""
    out = []
    for kind, (stream, end) in ends.items():
        if stream is None:
            continue
        if stream.duration is not None and stream.time_base is not None:
            start = float(stream.start_time * stream.time_base) - origin if stream.start_time else 0.0
            declared = start + float(stream.duration * stream.time_base)
        elif container.duration is not None:
            declared = container.duration / av.time_base
        else:
            continue
        expected = declared if max_seconds is None else min(declared, max_seconds)
        if end < expected - _EARLY_END_TOLERANCE:
            out.append(f"{kind} ends at {end:.1f} s but the file declares {declared:.1f} s "
                       f"(truncated or damaged?); kept {end:.1f} s")
    return out


# Packets this far past `max_seconds` mean every stream still being read has
# ended before it (muxers interleave streams within ~1 s; 10 s is generous).
_READ_PAST_SECONDS = 10.0


def _past(packet, origin: float, max_seconds: Optional[float]) -> bool:
    if max_seconds is None or packet.pts is None or packet.time_base is None:
        return False
    return float(packet.pts * packet.time_base) - origin > max_seconds + _READ_PAST_SECONDS


class _CorruptFrame(Exception):
    def __init__(self, t: float):
        super().__init__(f"corrupt frame at {t:.2f} s")
        self.time = t


def _finish_before(sampler: _FrameSampler, error_time: float) -> None:
    """After a decode error: the last clean frame counts up to the error time only."""
    if sampler.prev is not None and not sampler.done:
        sampler.prev_end = min(sampler.prev_end, max(error_time, sampler.prev_t + 1e-9))
    sampler.finish()


def decode_audio(path: str, *, sample_rate: int, max_seconds: Optional[float] = None
                 ) -> Tuple[np.ndarray, float]:
    """Decodes the first audio stream of any file FFmpeg reads (wav, flac, mp3, ogg, videos).

    Returns:
      (float32 mono [samples] at `sample_rate`, start seconds of sample 0 on the
      container's clock, usually 0).
    Raises:
      MediaError (`not_found`, `empty_file`, `unreadable`, `no_audio_stream`,
      `decode_error`). A decode error after some audio keeps what decoded.
    """
    container = _open(path)
    try:
        if not container.streams.audio:
            raise MediaError("no_audio_stream", f"{path} has no audio stream")
        stream = container.streams.audio[0]
        audio = _AudioCollector(_origin(container), max_seconds)
        error = None
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    audio.push(frame)
                if audio.done:
                    break
        except (av.error.FFmpegError, _StreamChange, EOFError, OSError, ValueError) as e:
            error = str(e) or type(e).__name__
        raw, start, rate = audio.result()
        if len(raw) == 0:
            raise MediaError("decode_error", f"no decodable audio in {path}"
                             + (f": {error}" if error else ""))
        return _resample(raw, rate, sample_rate), float(start)
    finally:
        container.close()


# ----------------------------------------------------------------------------
# Writing (tests, benchmarks, the demo corpus).

# extension -> (FFmpeg format, video codecs it takes, audio codecs it takes); the
# first codec of each list is the one used when the requested codec does not fit.
CONTAINER_CODECS = {
    ".mp4": ("mp4", ("libx264", "h264", "mpeg4", "mjpeg"), ("aac", "libmp3lame", "libopus", "flac")),
    ".m4v": ("mp4", ("libx264", "h264", "mpeg4"), ("aac", "libmp3lame")),
    ".mov": ("mov", ("libx264", "h264", "mpeg4", "mjpeg"), ("aac", "libmp3lame", "pcm_s16le")),
    ".mkv": ("matroska", ("libx264", "h264", "mpeg4", "mjpeg", "libvpx", "ffv1"),
             ("aac", "flac", "libopus", "vorbis", "libmp3lame", "pcm_s16le", "mp2")),
    ".webm": ("webm", ("libvpx",), ("libopus", "vorbis")),
    ".ogg": ("ogg", ("libvpx",), ("libopus", "vorbis", "flac")),
    ".ogv": ("ogg", ("libvpx",), ("libopus", "vorbis", "flac")),
    # AVI stores no presentation times, so no B-frame codecs (libx264) here; and
    # no negative times: mp3 priming makes the muxer shift video after frame 0.
    ".avi": ("avi", ("mpeg4", "mjpeg"), ("pcm_s16le", "libmp3lame", "mp2")),
    ".mpeg": ("mpeg", ("mpeg2video", "mpeg1video"), ("mp2",)),
    ".mpg": ("mpeg", ("mpeg2video", "mpeg1video"), ("mp2",)),
    ".ts": ("mpegts", ("libx264", "mpeg2video"), ("aac", "mp2")),
}

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def container_codecs(path: str, video_codec: str, audio_codec: str) -> Tuple[str, str, str]:
    """(format, video codec, audio codec) for writing `path`: the requested codecs when the
    container takes them, else the container's defaults (`CONTAINER_CODECS`)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in CONTAINER_CODECS:
        raise ValueError(f"cannot write {ext!r}; known: {sorted(CONTAINER_CODECS)}")
    fmt, vcodecs, acodecs = CONTAINER_CODECS[ext]
    return (fmt, video_codec if video_codec in vcodecs else vcodecs[0],
            audio_codec if audio_codec in acodecs else acodecs[0])


def _as_fraction(x) -> fractions.Fraction:
    return x if isinstance(x, fractions.Fraction) else fractions.Fraction(x).limit_denominator(1001)


def _audio_rate_for(codec_name: str, rate: int) -> int:
    """`rate` if the encoder takes it, else the closest it takes (e.g. opus: 48 kHz)."""
    rates = av.codec.Codec(codec_name, "w").audio_rates
    if not rates or rate in rates:
        return rate
    return min(rates, key=lambda r: (abs(r - rate), -r))


def write_video(path: str, frames: Union[np.ndarray, Iterable[np.ndarray]], fps: float,
                audio: Optional[np.ndarray] = None, sample_rate: int = 48000, *,
                video_codec: str = "libx264", audio_codec: str = "aac", pix_fmt: str = "yuv420p",
                rotate: Optional[int] = None, sar: Optional[Tuple[int, int]] = None,
                frame_times: Optional[Sequence[float]] = None,
                video_options: Optional[Dict[str, str]] = None) -> None:
    """Encodes frames (and audio) into a video file.

    Args:
      path: output file; the extension picks the container (`CONTAINER_CODECS`:
        mp4, m4v, mov, mkv, webm, ogg/ogv, avi, mpeg/mpg, ts). Codecs the
        container cannot hold are replaced by its defaults.
      frames: uint8 [T, H, W, 3] RGB, or an iterable of [H, W, 3].
      fps: frame rate; frame i is at i / fps unless `frame_times` is given.
      audio: float32 [samples] or [samples, channels] in [-1, 1] (1, 2 or 6
        channels), starting at time 0. Encoders with a fixed set of rates (opus)
        get it resampled to the closest one.
      sample_rate: audio rate in Hz.
      rotate: the phone-style `rotate` tag: clockwise degrees a player turns
        the stored frames to show them upright (written as a display matrix).
      sar: sample (pixel) aspect ratio (num, den); display width = width * sar.
      frame_times: seconds per frame (variable frame rate), increasing.
      video_options: encoder options, e.g. {"preset": "ultrafast"}.
    """
    fmt, vcodec, acodec = container_codecs(path, video_codec, audio_codec)
    frame_iter = iter(frames)
    first = next(frame_iter, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    height, width = first.shape[:2]
    rate = _as_fraction(fps)
    container = av.open(path, mode="w", format=fmt)
    try:
        vstream = container.add_stream(vcodec, rate=rate, options=dict(video_options or {}))
        vstream.width, vstream.height = width, height
        formats = [f.name for f in (av.codec.Codec(vcodec, "w").video_formats or [])]
        vstream.pix_fmt = pix_fmt if (not formats or pix_fmt in formats) else formats[0]
        if frame_times is not None:
            vstream.codec_context.time_base = fractions.Fraction(1, 90000)
            pts_of = lambda i: int(round(frame_times[i] * 90000))  # noqa: E731
        else:
            vstream.codec_context.time_base = 1 / rate
            pts_of = lambda i: i  # noqa: E731
        if sar is not None:
            vstream.codec_context.sample_aspect_ratio = fractions.Fraction(*sar)
        if rotate:
            vstream.set_display_rotation(-float(rotate))  # PyAV takes counter-clockwise
        astream, chunks = None, []
        if audio is not None:
            x = np.asarray(audio, np.float32)
            x = x[:, None] if x.ndim == 1 else x
            if x.shape[1] not in _LAYOUTS:
                raise ValueError(f"audio must have 1, 2 or 6 channels, got {x.shape[1]}")
            out_rate = _audio_rate_for(acodec, sample_rate)
            if out_rate != sample_rate:
                x = soxr.resample(x, sample_rate, out_rate, quality="HQ").astype(np.float32)
            options = {"strict": "experimental"} if acodec == "vorbis" else {}
            astream = container.add_stream(acodec, rate=out_rate, layout=_LAYOUTS[x.shape[1]],
                                           options=options)
            astream.codec_context.time_base = fractions.Fraction(1, out_rate)
            chunks = _audio_frames(np.clip(x, -1.0, 1.0), out_rate)
        _mux_interleaved(container, vstream, astream, first, frame_iter, pts_of,
                         frame_times, rate, chunks)
    finally:
        container.close()


def _audio_frames(x: np.ndarray, rate: int, size: int = 1024) -> List[Tuple[float, "av.AudioFrame"]]:
    """float32 [samples, channels] -> [(start seconds, planar float AudioFrame)]."""
    out = []
    layout = _LAYOUTS[x.shape[1]]
    for start in range(0, len(x), size):
        chunk = np.ascontiguousarray(x[start:start + size].T)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, start
        frame.time_base = fractions.Fraction(1, rate)
        out.append((start / rate, frame))
    return out


def _mux_interleaved(container, vstream, astream, first, frame_iter, pts_of, frame_times,
                     rate, chunks) -> None:
    """Encodes video frames and audio chunks in time order, so packets interleave as in real files.

    Audio runs `lookahead` seconds ahead so that an audio encoder's first packet
    (negative pts for its priming delay) reaches the muxer before any video
    packet: containers without negative times (AVI, MPEG) then shift all
    streams at once instead of shifting video after its first packet.
    """
    lookahead = 0.5
    next_chunk = 0

    def audio_until(t: Optional[float]) -> None:
        nonlocal next_chunk
        while next_chunk < len(chunks) and (t is None or chunks[next_chunk][0] <= t):
            for packet in astream.encode(chunks[next_chunk][1]):
                container.mux(packet)
            next_chunk += 1

    i, img = 0, first
    while img is not None:
        t = frame_times[i] if frame_times is not None else i / float(rate)
        audio_until(t + lookahead)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img, np.uint8), format="rgb24")
        frame.pts = pts_of(i)
        for packet in vstream.encode(frame):
            container.mux(packet)
        i += 1
        img = next(frame_iter, None)
    for packet in vstream.encode():
        container.mux(packet)
    if astream is not None:
        audio_until(None)
        for packet in astream.encode():
            container.mux(packet)


def write_wav(path: str, audio: np.ndarray, sample_rate: int) -> None:
    """Writes float [samples] or [samples, channels] in [-1, 1] as 16-bit PCM WAV."""
    x = np.asarray(audio, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
