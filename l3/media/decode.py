"""Decoding a video: sampled RGB frames and mono audio on one clock (`decode_video`).

`_VideoDecoder` reads one opened container in stages, one method each:
`open_streams` (stream choice, threads, geometry), `read` (the demux loop;
`on_packet` per packet, `on_video_frame` per decoded frame, `convert` per
kept frame) and `finish` (the end of the frame sampling, audio resampling,
warnings and errors). See the `l3.media` docstring for the clock and the
frame-sampling rule.
"""

import dataclasses
import fractions
import time
from typing import Dict, List, Optional, Tuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from l3.media.audio_stream import AudioCollector, StreamChange, resample
from l3.media.packets import PacketDecoder
from l3.media.source import MediaError, VideoClock, open_media, origin_seconds
from l3.media.video_frames import FrameSampler, finish_before, output_size, rotation_clockwise

DEFAULT_FPS = 4.0   # why 4: the `l3.media` docstring


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
    container = open_media(path)
    try:
        decoder = _VideoDecoder(container, path, max_seconds=max_seconds, fps=fps,
                                side=resize_smaller_side, sample_rate=sample_rate,
                                min_audio_seconds=min_audio_seconds, require_audio=require_audio)
        decoder.open_streams(threads)
        decoder.read()
        return decoder.finish(t0)
    finally:
        container.close()


class _VideoDecoder:
    """The state of decoding one opened container, shared by its stages."""

    def __init__(self, container, path: str, *, max_seconds: Optional[float], fps: float, side: int,
                 sample_rate: int, min_audio_seconds: float, require_audio: bool):
        self.container = container
        self.path = path
        self.max_seconds = max_seconds
        self.fps = fps
        self.side = side
        self.sample_rate = sample_rate
        self.min_audio_seconds = min_audio_seconds
        self.require_audio = require_audio
        self.warnings: List[str] = []
        self.error: Optional[Tuple[float, str]] = None   # (seconds, what) of the first decode error
        self.rotation = 0            # clockwise degrees, of the last converted frame
        self.convert_seconds = 0.0   # CPU seconds in `convert`
        self.clean_started = False   # a clean (not corrupt) video frame was seen
        self.last_video_t: Optional[float] = None
        self.concealed = 0           # frames dropped after lost video packets
        self.video_lost_seen = 0     # video packets lost so far (of `packets`)
        self.video_broken = False    # a video packet was lost since the last key frame

    # --- stage 1: streams --------------------------------------------------

    def open_streams(self, threads: int) -> None:
        """Picks the first video and audio streams; sets up the clock, sampler and collector."""
        container = self.container
        if not container.streams.video:
            raise MediaError("no_video_stream", f"{self.path} has no video stream")
        self.vstream = vstream = container.streams.video[0]
        self.astream = container.streams.audio[0] if container.streams.audio else None
        if self.astream is None and self.require_audio:
            raise MediaError("no_audio_stream", f"{self.path} has no audio stream")
        if threads:
            vstream.codec_context.thread_count = threads
        else:
            vstream.codec_context.thread_type = "AUTO"
        self.origin = origin_seconds(container)
        self.sar = vstream.sample_aspect_ratio or vstream.codec_context.sample_aspect_ratio
        self.clock = VideoClock(self.origin)
        rate = vstream.average_rate or vstream.guessed_rate or fractions.Fraction(25)
        self.default_duration = 1.0 / float(rate)
        self.reformatter = VideoReformatter()  # keeps one swscale context for the whole video
        self.sampler = FrameSampler(self.fps, self.max_seconds, self.convert)
        self.audio = AudioCollector(self.origin, self.max_seconds) if self.astream is not None else None
        self.packets = PacketDecoder(self.origin)

    # --- stage 2: reading --------------------------------------------------

    def read(self) -> None:
        """Demuxes and decodes until both streams are done; a decode error ends reading."""
        streams = [self.vstream] + ([self.astream] if self.astream is not None else [])
        try:
            for packet in self.container.demux(*streams):
                if self.on_packet(packet):
                    break
        except _CorruptFrame as e:
            self.error = (e.time, "corrupt video frame")
        except (av.error.FFmpegError, StreamChange, EOFError, OSError, ValueError) as e:
            t = max(self.sampler.last_time, self.audio.end if self.audio is not None else 0.0)
            self.error = (t, str(e) or type(e).__name__)
        if self.error is None:
            self.sampler.finish()
        else:
            finish_before(self.sampler, self.error[0])

    def on_packet(self, packet) -> bool:
        """Decodes one packet into the frame sampler or the audio collector.

        Returns True when reading should stop. A packet its decoder rejects is
        lost and counted (`PacketDecoder`, as FFmpeg's CLI); what the demuxer or
        the stream raises ends reading (`read` turns it into `self.error`).
        """
        sampler, audio = self.sampler, self.audio
        if packet.stream.type == "video":
            if sampler.done:
                return False   # skipped, and neither end test below applies to it
            for frame in self.packets.decode(packet):
                self.on_video_frame(frame)
        elif audio is not None and not audio.done:
            for frame in self.packets.decode(packet):
                audio.push(frame)
        if sampler.done and (audio is None or audio.done):
            return True
        if _past(packet, self.origin, self.max_seconds):  # one stream ended early: stop reading
            if not sampler.done:  # the frames the decoder still holds (B-frames)
                for frame in self.vstream.decode(None):
                    self.on_video_frame(frame)
            return True
        return False

    def on_video_frame(self, frame) -> None:
        """Times one decoded video frame and offers it to the sampler (corrupt ones: see below)."""
        t = self.clock(frame)
        if t is None:  # no timestamp: continue the previous frame's clock
            t = 0.0 if self.last_video_t is None else self.last_video_t + self.default_duration
        lost = self.packets.lost_packets("video")
        if lost > self.video_lost_seen:  # a packet was lost: frames refer to it until a key frame
            self.video_lost_seen, self.video_broken = lost, True
        if self.video_broken and self.clean_started:
            if not frame.key_frame or frame.is_corrupt:
                self.concealed += 1  # the decoder's concealment, not the video: not kept
                return
            self.video_broken = False
        if frame.is_corrupt:
            if self.clean_started:
                raise _CorruptFrame(t)
            self.warnings.append(f"dropped a corrupt frame at {t:.2f} s before the first clean one")
            return
        self.clean_started = True
        self.last_video_t = t
        duration = (float(frame.duration * frame.time_base)
                    if frame.duration and frame.time_base else self.default_duration)
        self.sampler.push(frame, t, duration)

    def convert(self, frame) -> np.ndarray:
        """A kept frame -> uint8 RGB [H, W, 3]: square pixels, smaller side `side`, upright."""
        c0 = time.process_time()
        out_w, out_h = output_size(frame.width, frame.height, self.sar, self.side)
        # AREA: proper averaging when shrinking (most videos are larger than 256).
        img = self.reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24",
                                        interpolation="AREA").to_ndarray()
        cw = rotation_clockwise(frame, self.vstream)
        self.rotation = cw
        if cw:
            img = np.ascontiguousarray(np.rot90(img, k=-cw // 90))  # rot90 turns counter-clockwise
        self.convert_seconds += time.process_time() - c0
        return img

    # --- stage 3: finishing ------------------------------------------------

    def finish(self, t0: float) -> DecodedVideo:
        """Resamples the audio, adds warnings, raises if too little decoded; `t0`: CPU time at open."""
        sampler, audio, error, path = self.sampler, self.audio, self.error, self.path
        sample_rate, warnings = self.sample_rate, self.warnings
        t_decode = time.process_time()

        warnings += self.packets.warnings()
        if self.concealed:
            warnings.append(f"dropped {self.concealed} decoded video frames between a lost "
                            "packet and the next key frame (concealment, not the video)")
        if not sampler.frames:
            message = f"no decodable video frame in {path}"
            if error is not None:
                message += f" (decode error at {error[0]:.1f} s: {error[1]})"
            raise MediaError("decode_error", message)

        t1 = time.process_time()
        if audio is not None:
            raw, audio_start, raw_rate = audio.result()
            wave_out = resample(raw, raw_rate, sample_rate) if raw_rate else np.zeros(0, np.float32)
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
            warnings += _early_end_warnings(self.container, self.origin, self.max_seconds, {
                "video": (self.vstream, sampler.last_end),
                "audio": (self.astream, audio_start + len(wave_out) / sample_rate)})
        lost = self.packets.warnings()
        if self.astream is not None and len(wave_out) == 0 and self.require_audio:
            raise MediaError("audio_too_short" if error is None and not lost else "decode_error",
                             f"no decodable audio in {path}"
                             + (f" (decode error at {error[0]:.1f} s: {error[1]})" if error else "")
                             + (f" ({'; '.join(lost)})" if lost else ""))
        audio_end = audio_start + len(wave_out) / sample_rate
        if lost and len(wave_out) and not any(audio_start <= t < audio_end for t in sampler.times):
            raise MediaError("decode_error", f"no decoded frame inside the decoded audio "
                             f"({audio_start:.1f}-{audio_end:.1f} s) of {path} ({'; '.join(lost)})")
        seconds = len(wave_out) / sample_rate
        if seconds < self.min_audio_seconds:
            raise MediaError("audio_too_short", f"{seconds:.2f} s of audio in {path}, "
                             f"need {self.min_audio_seconds:.2f} s" + (f" ({warnings[-1]})" if error else ""))
        if len(wave_out) and not np.any(wave_out):
            warnings.append("audio is digital silence")
        coded = (self.vstream.codec_context.width, self.vstream.codec_context.height)
        return DecodedVideo(frames=sampler.frames, frame_times=np.asarray(sampler.times, np.float64),
                            audio=wave_out, audio_start=float(audio_start), sample_rate=sample_rate,
                            warnings=warnings, source_size=coded, rotation=self.rotation,
                            timings={"decode": t_decode - t0 - self.convert_seconds,
                                     "convert": self.convert_seconds, "resample": t2 - t1})


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
    """Whether `packet` lies `_READ_PAST_SECONDS` past `max_seconds`."""
    if max_seconds is None or packet.pts is None or packet.time_base is None:
        return False
    return float(packet.pts * packet.time_base) - origin > max_seconds + _READ_PAST_SECONDS


class _CorruptFrame(Exception):
    """A corrupt video frame after a clean one: ends reading like a decode error."""

    def __init__(self, t: float):
        super().__init__(f"corrupt frame at {t:.2f} s")
        self.time = t
