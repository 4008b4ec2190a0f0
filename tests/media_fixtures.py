"""Real test media generated with PyAV, whose content says what it is.

* Frame colour encodes the frame's index: red and green are two base-15
  digits (levels 8 + 16 k, far enough apart to survive H.264 and JPEG), blue
  encodes the video id. A white block marks the top-left corner (orientation).
* Audio is a tone whose pitch encodes the video id (`pitch_for`), switched on
  for the first half of every second: each burst starts on a whole second of
  the source clock, so burst onsets give the audio's timing.
* `make_bad_files` writes every kind of bad input the builder must skip.
"""

import os
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from l3 import media
from l3_tfrecords import workers

_LEVELS = 15


def _level(k: int) -> int:
    return 8 + 16 * k


def index_color(index: int, video_id: int = 0) -> Tuple[int, int, int]:
    """RGB encoding frame `index` (< 225) and `video_id` (< 15)."""
    return (_level(index % _LEVELS), _level((index // _LEVELS) % _LEVELS), _level(video_id % _LEVELS))


def color_index(rgb: Sequence[float]) -> Tuple[int, int]:
    """Inverse of `index_color`: (frame index, video id) from an RGB triple."""
    k = [int(np.clip(np.round((float(c) - 8) / 16), 0, _LEVELS - 1)) for c in rgb[:3]]
    return k[0] + _LEVELS * k[1], k[2]


def frame_color(image: np.ndarray) -> np.ndarray:
    """Mean RGB of the central quarter of an [H, W, 3] image (away from the marker)."""
    h, w = image.shape[:2]
    return image[h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(-1, 3).mean(0)


def make_frames(count: int, height: int = 48, width: int = 64, video_id: int = 0,
                marker: bool = True) -> np.ndarray:
    """uint8 [count, height, width, 3]: flat `index_color` frames, white top-left marker."""
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i] = index_color(i, video_id)
        if marker:
            frames[i, : height // 4, : width // 4] = 255
    return frames


def marker_corner(image: np.ndarray) -> str:
    """Which corner ("tl", "tr", "bl", "br") of an [H, W, 3] image holds the white marker."""
    h, w = image.shape[:2]
    corners = {"tl": image[: h // 8, : w // 8], "tr": image[: h // 8, -w // 8:],
               "bl": image[-h // 8:, : w // 8], "br": image[-h // 8:, -w // 8:]}
    return max(corners, key=lambda k: corners[k].mean())


def pitch_for(video_id: int) -> float:
    return 300.0 + 100.0 * video_id


def tone_bursts(seconds: float, sample_rate: int, video_id: int = 0, channels: int = 1,
                amplitude: float = 0.5) -> np.ndarray:
    """float32 [samples] (or [samples, channels]): `pitch_for(video_id)` on in [k, k + 0.5)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = amplitude * np.sin(2 * np.pi * pitch_for(video_id) * t) * ((t % 1.0) < 0.5)
    x = x.astype(np.float32)
    return x if channels == 1 else np.repeat(x[:, None], channels, axis=1)


def burst_onsets(audio: np.ndarray, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """Times (seconds from audio[0]) where the tone switches on, found on a centred 2 ms envelope."""
    win = max(1, int(0.002 * sample_rate))
    env = np.convolve(np.abs(audio), np.ones(win) / win, mode="same")
    on = env > 0.3 * amplitude
    return (np.flatnonzero(on[1:] & ~on[:-1]) + 1) / sample_rate


def dominant_frequency(audio: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1.0 / sample_rate)[np.argmax(spectrum)])


def make_video(path: str, *, seconds: float = 2.0, fps: float = 25.0, size: Tuple[int, int] = (64, 48),
               sample_rate: int = 44100, channels: int = 2, video_id: int = 0, audio: bool = True,
               audio_seconds: Optional[float] = None, frame_times: Optional[Sequence[float]] = None,
               **write_kwargs) -> Dict[str, np.ndarray]:
    """Writes a test video; returns the truth: frames, frame_times, audio.

    size is (width, height). `audio_seconds` (default: `seconds`) makes the
    audio shorter or longer than the video.
    """
    count = len(frame_times) if frame_times is not None else int(round(seconds * fps))
    frames = make_frames(count, size[1], size[0], video_id)
    times = np.asarray(frame_times if frame_times is not None else np.arange(count) / fps, np.float64)
    wave = None
    if audio:
        wave = tone_bursts(seconds if audio_seconds is None else audio_seconds, sample_rate,
                           video_id, channels)
    media.write_video(path, frames, fps, wave, sample_rate, frame_times=frame_times,
                      **write_kwargs)
    return {"frames": frames, "frame_times": times, "audio": wave}


def make_bad_files(folder: str) -> Dict[str, str]:
    """Writes one file per bad-input kind into `folder`; returns {file name: expected reason}."""
    os.makedirs(folder, exist_ok=True)
    expected = {}

    def path(name):
        return os.path.join(folder, name)

    open(path("zero_bytes.mp4"), "wb").close()
    expected["zero_bytes.mp4"] = "empty_file"
    with open(path("text_renamed.mp4"), "w") as f:
        f.write("this is not a video\n" * 100)
    expected["text_renamed.mp4"] = "unreadable"
    make_video(path("no_audio.mp4"), seconds=1.0, audio=False)
    expected["no_audio.mp4"] = "no_audio_stream"
    make_video(path("short_audio.mkv"), seconds=1.0, audio_seconds=0.4)
    expected["short_audio.mkv"] = "audio_too_short"
    media.write_wav(path("audio_only.wav"), tone_bursts(1.5, 16000), 16000)
    os.replace(path("audio_only.wav"), path("audio_only.avi"))
    expected["audio_only.avi"] = "no_video_stream"
    make_video(path("whole.mp4"), seconds=2.0)
    with open(path("whole.mp4"), "rb") as f:
        data = f.read()
    os.remove(path("whole.mp4"))
    with open(path("truncated.mp4"), "wb") as f:  # moov atom at the end is cut off
        f.write(data[: len(data) // 2])
    expected["truncated.mp4"] = "unreadable"
    return expected


def corrupt_middle(src: str, dst: str, fraction: float = 0.5, length: int = 4000, seed: int = 0) -> None:
    """Copies `src` to `dst` with `length` random bytes written at `fraction` of the file."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    start = int(len(data) * fraction)
    data[start: start + length] = np.random.default_rng(seed).integers(0, 256, length, np.uint8).tobytes()
    with open(dst, "wb") as f:
        f.write(bytes(data))


def misbehaving_process_video(item, settings, threads=0):
    """`l3_tfrecords.workers.process_video`, except that a video whose id contains "crash"
    kills its process and one containing "hang" never returns (worker-failure tests;
    module-level so that worker processes can import it)."""
    if "crash" in item.video_id:
        os._exit(3)
    if "hang" in item.video_id:
        time.sleep(3600)
    return workers.process_video(item, settings, threads)


def corrupt_packets(src: str, dst: str, kind: str = "audio", start: int = 5, every: int = 3,
                    count: Optional[int] = None) -> list:
    """Copies `src` to `dst` with the payload of packets `start`, `start + every`, ... of its
    first `kind` stream inverted (every byte XOR 0xFF), the container's framing intact;
    returns those packets' (pts seconds, duration seconds). Payloads are found by their
    bytes at or after `packet.pos` (Matroska's pos is its block header)."""
    import av  # local: the other fixtures do not need PyAV at import
    data = bytearray(open(src, "rb").read())
    with av.open(src) as container:
        stream = getattr(container.streams, kind)[0]
        packets = [(p.pos, bytes(p), float(p.pts * p.time_base), float(p.duration * p.time_base))
                   for p in container.demux(stream) if p.size and p.pos is not None]
    chosen = packets[start::every][:count]
    for pos, payload, _, _ in chosen:
        at = data.find(payload, pos)
        assert at >= 0, "payload not found in the file"
        data[at:at + len(payload)] = bytes(b ^ 0xFF for b in payload)
    with open(dst, "wb") as f:
        f.write(data)
    return [(t, d) for _, _, t, d in chosen]
