"""Writing test media (tests, benchmarks, the demo corpus): videos in many containers, WAV.

`write_video` encodes RGB frames uint8 [T, H, W, 3] and float32 audio
[samples(, channels)] with PyAV; `write_wav` writes 16-bit PCM.
"""

import fractions
import os
import wave
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import av
import numpy as np
import soxr

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
    """A frame rate as a Fraction (float rates: denominator at most 1001)."""
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
