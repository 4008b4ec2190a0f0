"""Videos -> TFRecord shards of pre-decoded frames and audio (the `l3-build-tfrecords` library).

Layout of `output_dir`:

  {split}-{index:05d}-of-{count:05d}.tfrecord   one record per written video
  _shard_stats/{shard}.json                     per-shard stats and skip list
  summary.json, skipped.jsonl, warnings.jsonl   re-aggregated from every sidecar

Sharding: the videos of each split, sorted by id (`inputs.enumerate_videos`),
go round-robin to `num_shards` shards (video i -> shard i % N); a process
writes all N shards, or only `shard_index`. So cluster jobs write disjoint
shards whose union is byte-for-byte the single-machine build.

Resume: a shard is written to a hidden temp file and renamed; its sidecar is
renamed last and marks it finished. A rerun skips finished shards (checking
that they were built with the same settings) and redoes the rest.

Processes: videos are decoded in `workers` processes (forkserver/spawn, no
TensorFlow imported there: frames are JPEG-encoded with PIL and audio turned
into int16 in the worker); the parent builds the `tf.train.Example`s with
`l3.records` and writes them in input order. A worker that crashes on a file
(a segfault in FFmpeg) is isolated: the videos it had in flight are retried
one per fresh process, and the culprit is skipped with reason `crashed`; a
video that hangs longer than `video_timeout` is killed and skipped (`timeout`).
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import glob
import io
import json
import logging
import multiprocessing
import os
import socket
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from l3 import media
from tfrecords import inputs
from tfrecords.inputs import VideoItem

log = logging.getLogger(__name__)

STATS_DIR = "_shard_stats"
SUMMARY = "summary.json"
SKIPPED = "skipped.jsonl"
WARNINGS = "warnings.jsonl"

# Skip reasons beyond `media.REASONS`.
BUILDER_REASONS = {
    "crashed": "the decoding process died on this file (e.g. a segfault in FFmpeg)",
    "timeout": "decoding took longer than the per-video timeout (a hang in FFmpeg?)",
    "internal_error": "an unexpected exception while processing the file (a bug: please report)",
}


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything `build` needs. Fields in `content_settings()` change the records'
    bytes; a resumed build must use the same ones."""

    output_dir: str
    num_shards: int = 16
    shard_index: Optional[int] = None  # None: all shards
    workers: int = os.cpu_count() or 1  # 0: decode in this process
    max_seconds: float = 10.0
    fps: float = media.DEFAULT_FPS
    resize_smaller_side: int = 256
    sample_rate: int = 48000
    min_audio_seconds: float = 1.0
    jpeg_quality: int = 90
    overwrite: bool = False
    progress: bool = True
    video_timeout: Optional[float] = 600.0  # seconds per video (workers > 0 only)

    def content_settings(self) -> Dict[str, float]:
        return {"max_seconds": self.max_seconds, "fps": self.fps,
                "resize_smaller_side": self.resize_smaller_side, "sample_rate": self.sample_rate,
                "min_audio_seconds": self.min_audio_seconds, "jpeg_quality": self.jpeg_quality,
                "num_shards": self.num_shards}

    def shards(self) -> List[int]:
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.shard_index is None:
            return list(range(self.num_shards))
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index {self.shard_index} not in [0, {self.num_shards})")
        return [self.shard_index]


# ----------------------------------------------------------------------------
# Worker side (no TensorFlow).


@dataclasses.dataclass
class VideoResult:
    """One video, ready to serialize (ok) or skipped (reason, message).

    jpegs: JPEG bytes per frame; frame_times: seconds [num_frames]; pcm: int16
    little-endian mono bytes at the config's sample rate; timings: CPU seconds in
    "decode", "convert", "resample" (see `media.DecodedVideo`) and "jpeg".
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
    from PIL import Image  # noqa: PLC0415 (only the workers need it)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


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
    timings = dict(decoded.timings, jpeg=time.process_time() - t0)
    return VideoResult(item=item, ok=True, jpegs=jpegs,
                       frame_times=[float(t) for t in decoded.frame_times],
                       pcm=to_pcm16(decoded.audio), audio_start=decoded.audio_start,
                       warnings=list(decoded.warnings), timings=timings)


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


# ----------------------------------------------------------------------------
# Parent side: shards, sidecars, summary.


def shard_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, name)


def stats_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, STATS_DIR, name + ".json")


def _write_json_atomic(path: str, obj, lines: bool = False) -> None:
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        if lines:
            for row in obj:
                f.write(json.dumps(row, sort_keys=True) + "\n")
        else:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")
    os.replace(tmp, path)


def _load_finished(output_dir: str, name: str) -> Optional[dict]:
    """The sidecar of a finished shard, or None if the shard must be (re)built."""
    sidecar = stats_path(output_dir, name)
    if not (os.path.exists(sidecar) and os.path.exists(shard_path(output_dir, name))):
        return None
    try:
        with open(sidecar, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


class _ShardWriter:
    """Writes one shard to a hidden temp file; `finish` renames it and its sidecar into place."""

    def __init__(self, config: BuildConfig, split: str, index: int, name: str):
        from l3 import records  # noqa: PLC0415 (TensorFlow stays out of the workers)
        import tensorflow as tf  # noqa: PLC0415
        self.records = records
        self.config, self.split, self.index, self.name = config, split, index, name
        for stale in glob.glob(os.path.join(config.output_dir, f".{name}.tmp-*")):
            os.remove(stale)  # left by a killed run
        self.tmp = os.path.join(config.output_dir, f".{name}.tmp-{os.getpid()}")
        self.writer = tf.io.TFRecordWriter(self.tmp)
        self.stats = {"shard": name, "split": split, "index": index, "count": config.num_shards,
                      "settings": config.content_settings(), "videos_seen": 0,
                      "videos_written": 0, "audio_seconds": 0.0, "frames": 0, "bytes": 0,
                      "skipped": [], "warnings": [],
                      "timings": {"decode": 0.0, "convert": 0.0, "resample": 0.0, "jpeg": 0.0,
                                  "write": 0.0}}

    def add(self, result: VideoResult) -> None:
        stats, item = self.stats, result.item
        stats["videos_seen"] += 1
        entry = {"path": item.path, "video_id": item.video_id, "split": item.split}
        if not result.ok:
            stats["skipped"].append(dict(entry, reason=result.reason, message=result.message))
            return
        t0 = time.process_time()
        example = self.records.make_example(
            video_id=_text(item.video_id), frames=result.jpegs, frame_times=result.frame_times,
            audio=np.frombuffer(result.pcm, "<i2"), audio_start=result.audio_start,
            sample_rate=int(self.config.sample_rate), label=_text(item.label), split=item.split,
            source=_text(item.path))
        self.writer.write(example.SerializeToString(deterministic=True))
        for key, value in result.timings.items():
            stats["timings"][key] = stats["timings"].get(key, 0.0) + value
        stats["timings"]["write"] += time.process_time() - t0
        stats["videos_written"] += 1
        stats["frames"] += len(result.jpegs)
        stats["audio_seconds"] += result.audio_samples / self.config.sample_rate
        if result.warnings:
            stats["warnings"].append(dict(entry, warnings=result.warnings))

    def finish(self) -> dict:
        self.writer.close()
        self.stats["bytes"] = os.path.getsize(self.tmp)
        self.stats["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.stats["host"] = socket.gethostname()
        os.replace(self.tmp, shard_path(self.config.output_dir, self.name))
        _write_json_atomic(stats_path(self.config.output_dir, self.name), self.stats)
        return self.stats


def _text(name: str) -> str:
    """A file name as valid UTF-8 (undecodable bytes, kept by os.walk as surrogates,
    become U+FFFD) so that the Example can hold it."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _check_settings(sidecar: dict, config: BuildConfig, name: str) -> None:
    if sidecar.get("settings") != config.content_settings():
        raise ValueError(
            f"{name} in {config.output_dir} was built with {sidecar.get('settings')}, not "
            f"{config.content_settings()}: use another --output_dir or --overwrite")


def _plan(items: Sequence[VideoItem], config: BuildConfig):
    """[(split, shard index, shard name, its videos)] for the shards this process owns."""
    from l3.records import shard_name  # noqa: PLC0415
    by_split: Dict[str, List[VideoItem]] = collections.defaultdict(list)
    for item in sorted(items, key=lambda it: (it.split, it.video_id)):
        by_split[item.split or "train"].append(item)
    plan = []
    for split in sorted(by_split):
        videos = by_split[split]
        for index in config.shards():
            plan.append((split, index, shard_name(split, index, config.num_shards),
                         videos[index::config.num_shards]))
    return plan


def build(items: Sequence[VideoItem], config: BuildConfig) -> dict:
    """Builds this process's shards (all, or `config.shard_index`) and re-aggregates the summary.

    Args:
      items: the whole input (every process of a cluster build passes the same).
    Returns:
      {"summary": the output_dir-wide summary (also in summary.json),
       "this_run": counts for the shards this process owns, including
       previously finished ones: shards, shards_built, shards_resumed,
       videos_seen, videos_written}.
    """
    from tqdm import tqdm  # noqa: PLC0415
    os.makedirs(os.path.join(config.output_dir, STATS_DIR), exist_ok=True)
    plan = _plan(items, config)
    todo, own = [], {"shards": len(plan), "shards_built": 0, "shards_resumed": 0,
                     "videos_seen": 0, "videos_written": 0}
    for split, index, name, videos in plan:
        sidecar = None if config.overwrite else _load_finished(config.output_dir, name)
        if sidecar is None:
            todo.append((split, index, name, videos))
            continue
        _check_settings(sidecar, config, name)
        own["shards_resumed"] += 1
        own["videos_seen"] += sidecar["videos_seen"]
        own["videos_written"] += sidecar["videos_written"]
    if own["shards_resumed"]:
        log.info("%d of %d shards already finished; skipping them", own["shards_resumed"], len(plan))

    stream = (item for _, _, _, videos in todo for item in videos)
    results = map_videos(stream, config.content_settings(), config.workers,
                         timeout=config.video_timeout)
    total = sum(len(v) for *_, v in todo)
    with tqdm(total=total, unit="video", disable=not config.progress, dynamic_ncols=True) as bar, \
            contextlib.closing(results):
        written = skipped = 0
        for split, index, name, videos in todo:
            writer = _ShardWriter(config, split, index, name)
            for _ in videos:
                result = next(results)
                writer.add(result)
                if not result.ok:
                    skipped += 1
                    log.warning("skipped %s: %s (%s)", result.item.path, result.reason,
                                result.message)
                else:
                    written += 1
                    if result.warnings:
                        log.warning("%s: %s", result.item.path, "; ".join(result.warnings))
                bar.set_postfix(written=written, skipped=skipped, refresh=False)
                bar.update(1)
            stats = writer.finish()
            own["shards_built"] += 1
            own["videos_seen"] += stats["videos_seen"]
            own["videos_written"] += stats["videos_written"]
    return {"summary": summarize(config.output_dir, config.num_shards), "this_run": own}


def build_from_input(input_path: str, config: BuildConfig, *, split: str = "train",
                     label_from_parent_dir: bool = False, video_root: Optional[str] = None,
                     kinetics_path_pattern: str = inputs.DEFAULT_KINETICS_PATTERN,
                     labels: Optional[Sequence[str]] = None) -> dict:
    """`build` on a folder, list file or Kinetics CSV (see `inputs.enumerate_videos`)."""
    items = inputs.enumerate_videos(input_path, split=split,
                                    label_from_parent_dir=label_from_parent_dir,
                                    video_root=video_root,
                                    kinetics_path_pattern=kinetics_path_pattern, labels=labels)
    log.info("%s: %d videos", input_path, len(items))
    return build(items, config)


def summarize(output_dir: str, num_shards: Optional[int] = None) -> dict:
    """Re-aggregates every shard sidecar under `output_dir` (whoever wrote it) into
    summary.json, skipped.jsonl and warnings.jsonl; returns the summary.

    Sidecars of another shard count than `num_shards` (if given) are ignored.
    """
    sidecars = []
    for path in sorted(glob.glob(os.path.join(output_dir, STATS_DIR, "*.json"))):
        with open(path, encoding="utf-8") as f:
            stats = json.load(f)
        if num_shards is not None and stats["count"] != num_shards:
            log.warning("ignoring %s: built with %d shards, not %d", path, stats["count"], num_shards)
            continue
        sidecars.append(stats)
    sidecars.sort(key=lambda s: (s["split"], s["index"]))
    summary = _totals(sidecars)
    summary["splits"] = {}
    for split in sorted({s["split"] for s in sidecars}):
        mine = [s for s in sidecars if s["split"] == split]
        count = mine[0]["count"]
        done = {s["index"] for s in mine}
        summary["splits"][split] = dict(_totals(mine), shards_expected=count,
                                        shards_missing=[i for i in range(count) if i not in done])
    summary["complete"] = all(not v["shards_missing"] for v in summary["splits"].values())
    summary["settings"] = sidecars[0]["settings"] if sidecars else {}
    summary["reasons"] = dict(media.REASONS, **BUILDER_REASONS)
    _write_json_atomic(os.path.join(output_dir, SUMMARY), summary)
    _write_json_atomic(os.path.join(output_dir, SKIPPED),
                       [dict(row, shard=s["shard"]) for s in sidecars for row in s["skipped"]],
                       lines=True)
    _write_json_atomic(os.path.join(output_dir, WARNINGS),
                       [dict(row, shard=s["shard"]) for s in sidecars for row in s["warnings"]],
                       lines=True)
    return summary


def _totals(sidecars: Sequence[dict]) -> dict:
    reasons = collections.Counter(row["reason"] for s in sidecars for row in s["skipped"])
    timings = collections.Counter()
    for s in sidecars:
        timings.update(s.get("timings", {}))
    return {
        "shards": len(sidecars),
        "videos_seen": sum(s["videos_seen"] for s in sidecars),
        "videos_written": sum(s["videos_written"] for s in sidecars),
        "videos_skipped": sum(len(s["skipped"]) for s in sidecars),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "videos_with_warnings": sum(len(s["warnings"]) for s in sidecars),
        "audio_seconds": round(sum(s["audio_seconds"] for s in sidecars), 3),
        "frames": sum(s["frames"] for s in sidecars),
        "bytes": sum(s["bytes"] for s in sidecars),
        "cpu_seconds": {k: round(v, 3) for k, v in sorted(timings.items())},
    }
