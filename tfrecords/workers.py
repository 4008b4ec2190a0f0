"""Decoding videos in worker processes: one `VideoResult` per video, in input order.

Videos are decoded in `workers` processes (forkserver/spawn). No TensorFlow is
imported here, so the workers stay light: frames are JPEG-encoded with PIL and
audio turned into int16 in the worker; the parent (`shards.ShardWriter`) builds
the `tf.train.Example`s. A worker that crashes on a file (a segfault in FFmpeg)
is isolated: the videos it had in flight are retried one per fresh process, and
the culprit is skipped with reason `crashed`; a video that hangs longer than the
timeout is killed and skipped (`timeout`).
"""

import collections
import concurrent.futures
import dataclasses
import io
import logging
import multiprocessing
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from typing import Dict, Iterable, Iterator, List, Optional

import numpy as np
from PIL import Image

from l3 import media

from .inputs import VideoItem

log = logging.getLogger(__name__)

# Skip reasons beyond `media.REASONS`.
BUILDER_REASONS = {
    "crashed": "the decoding process died on this file (e.g. a segfault in FFmpeg)",
    "timeout": "decoding took longer than the per-video timeout (a hang in FFmpeg?)",
    "internal_error": "an unexpected exception while processing the file (a bug: please report)",
    "undecodable_frames": "no frame's JPEG decoded back after encoding (see the warnings)",
}


@dataclasses.dataclass
class VideoResult:
    """One video, ready to serialize (ok) or skipped (reason, message).

    jpegs: JPEG bytes per frame; frame_times: seconds [num_frames]; pcm: int16
    little-endian mono bytes at the config's sample rate; timings: CPU seconds in
    "decode", "convert", "resample" (see `media.DecodedVideo`) and "jpeg" (encoding
    and decoding back once: a frame whose JPEG does not decode back is dropped with
    a warning, `keep_decodable`).
    """

    item: VideoItem
    ok: bool
    reason: str = ""
    message: str = ""
    jpegs: List[bytes] = dataclasses.field(default_factory=list)
    frame_times: List[float] = dataclasses.field(default_factory=list)
    pcm: bytes = b""
    audio_start: float = 0.0
    warnings: List[str] = dataclasses.field(default_factory=list)
    timings: Dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def audio_samples(self) -> int:
        return len(self.pcm) // 2


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """uint8 [H, W, 3] RGB -> JPEG bytes (PIL / libjpeg-turbo, 4:2:0)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def decodes_back(jpeg: bytes, shape) -> Optional[str]:
    """None when `jpeg` decodes (PIL, the whole scan) to an image of `shape`'s height and
    width ([H, W, 3]); else why not. The builder never writes a frame that fails this."""
    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            image.load()
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return f"{type(e).__name__}: {e}"
    if (height, width) != tuple(shape[:2]):
        return f"decodes to {height}x{width}, encoded {shape[0]}x{shape[1]}"
    return None


def keep_decodable(jpegs: List[bytes], frames, times) -> tuple:
    """(jpegs, times, warnings): the frames whose JPEG decodes back to their frame's size;
    one warning per dropped frame naming its index, time and why."""
    kept, kept_times, warnings = [], [], []
    for i, (jpeg, frame, t) in enumerate(zip(jpegs, frames, times)):
        problem = decodes_back(jpeg, np.shape(frame))
        if problem:
            warnings.append(f"frame {i} at {float(t):.3f} s dropped: its JPEG does not decode "
                            f"back ({problem})")
        else:
            kept.append(jpeg)
            kept_times.append(float(t))
    return kept, kept_times, warnings


def to_pcm16(audio: np.ndarray) -> bytes:
    """float [samples] in [-1, 1] -> int16 little-endian bytes (x 32768, rounded, clipped),
    the inverse of `l3.records.parse_example`'s / 32768."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2").tobytes()


def process_video(item: VideoItem, settings: Dict[str, float], threads: int = 0) -> VideoResult:
    """Decodes one video into a `VideoResult`; never raises for bad input."""
    try:
        decoded = media.decode_video(
            item.path, max_seconds=settings["max_seconds"], fps=settings["fps"],
            resize_smaller_side=int(settings["resize_smaller_side"]),
            sample_rate=int(settings["sample_rate"]),
            min_audio_seconds=settings["min_audio_seconds"], threads=threads)
    except media.MediaError as e:
        return VideoResult(item=item, ok=False, reason=e.reason, message=e.message)
    except Exception as e:  # noqa: BLE001 (bad input must never stop the job)
        return VideoResult(item=item, ok=False, reason="internal_error",
                           message=f"{type(e).__name__}: {e} | {traceback.format_exc(limit=3)}")
    t0 = time.process_time()
    jpegs = [encode_jpeg(f, settings["jpeg_quality"]) for f in decoded.frames]
    jpegs, times, dropped = keep_decodable(jpegs, decoded.frames, decoded.frame_times)
    timings = dict(decoded.timings, jpeg=time.process_time() - t0)
    if not jpegs:
        return VideoResult(item=item, ok=False, reason="undecodable_frames",
                           message="; ".join(dropped[:3]))
    return VideoResult(item=item, ok=True, jpegs=jpegs, frame_times=times,
                       pcm=to_pcm16(decoded.audio), audio_start=decoded.audio_start,
                       warnings=list(decoded.warnings) + dropped, timings=timings)


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _kill_workers(ex: concurrent.futures.ProcessPoolExecutor) -> None:
    """Kills an executor's processes (a worker stuck in FFmpeg cannot be interrupted)."""
    for process in list((getattr(ex, "_processes", None) or {}).values()):
        process.kill()


def _isolated(item: VideoItem, settings, ctx, fn, timeout: Optional[float]) -> VideoResult:
    """Runs one video in a fresh single process, to tell a crashing or hanging file from
    the others that were in flight with it."""
    ex = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
    try:
        return ex.submit(fn, item, settings, 1).result(timeout=timeout)
    except BrokenProcessPool:
        return VideoResult(item=item, ok=False, reason="crashed",
                           message="the decoding process died on this file")
    except concurrent.futures.TimeoutError:
        _kill_workers(ex)
        return VideoResult(item=item, ok=False, reason="timeout",
                           message=f"decoding took longer than {timeout:g} s")
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def map_videos(items: Iterable[VideoItem], settings: Dict[str, float], workers: int, *,
               timeout: Optional[float] = None, fn=None) -> Iterator[VideoResult]:
    """`fn` (default `process_video`) over `items` in `workers` processes (0: inline, no
    timeout); results in input order.

    A worker that dies, or a video that takes longer than `timeout` seconds,
    breaks the pool: the videos in flight are then rerun one per fresh process
    (skipped as `crashed` / `timeout` if they fail alone) and the pool restarts.
    """
    fn = fn or process_video
    if workers <= 0:
        for item in items:
            yield fn(item, settings)
        return
    ctx = _mp_context()
    source = iter(items)
    window = 4 * workers
    pending = collections.deque()
    ex = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
    try:
        def fill():
            while len(pending) < window:
                item = next(source, None)
                if item is None:
                    return
                pending.append((item, ex.submit(fn, item, settings, 1)))

        fill()
        while pending:
            item, future = pending.popleft()
            try:
                # FIFO: the oldest task is running (or done) while we wait for it.
                result = future.result(timeout=timeout)
            except (BrokenProcessPool, concurrent.futures.TimeoutError) as e:
                in_flight = [item] + [it for it, _ in pending]
                pending.clear()
                _kill_workers(ex)
                ex.shutdown(wait=True, cancel_futures=True)
                what = "hung" if isinstance(e, concurrent.futures.TimeoutError) else "died"
                log.warning("a decoding process %s; retrying %d videos one by one", what,
                            len(in_flight))
                for it in in_flight:
                    yield _isolated(it, settings, ctx, fn, timeout)
                ex = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)
                fill()
                continue
            yield result
            fill()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
