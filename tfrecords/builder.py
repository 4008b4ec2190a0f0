"""Videos -> TFRecord shards of pre-decoded frames and audio (the `l3-build-tfrecords` library).

The output layout and the sidecars are described in `shards`; decoding in
worker processes in `workers`; the inputs in `inputs`. This module plans and
runs a build.

Sharding: the videos of each split, sorted by id (`inputs.enumerate_videos`),
go round-robin to `num_shards` shards (video i -> shard i % N); a process
writes all N shards, or only `shard_index`. So cluster jobs write disjoint
shards whose union is byte-for-byte the single-machine build.

Resume: a shard's sidecar marks it finished. A rerun skips finished shards
(checking that they were built with the same settings) and redoes the rest.

Concurrent builders on one output folder (two at once, or a rerun while the
first still runs) split the shards: each shard is written by the builder
that holds its lock (`claims`); the others skip it, saying who holds it.
"""

import collections
import contextlib
import dataclasses
import logging
import os
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from l3.core import errors
from l3 import media

from . import boxes, claims as claims_lib, inputs, shards, workers
from .inputs import VideoItem

log = logging.getLogger(__name__)


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
    boxes: Optional[str] = None  # a box file to carry into output_dir/boxes.json (`boxes`)

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


def _check_settings(sidecar: dict, config: BuildConfig, name: str) -> None:
    if sidecar.get("settings") != config.content_settings():
        raise errors.UsageError(
            f"{name} in {config.output_dir} was built with {sidecar.get('settings')}, not "
            f"{config.content_settings()}: use another --output_dir or --overwrite")


def _plan(items: Sequence[VideoItem], config: BuildConfig):
    """[(split, shard index, shard name, its videos)] for the shards this process owns."""
    # l3.records imports TensorFlow, which the decoding workers (that may import this
    # module as the forkserver's __main__) must not pay for.
    from l3.records.schema import shard_name  # noqa: PLC0415
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
       shards_held (being written by another builder: skipped),
       videos_seen, videos_written}.
    """
    os.makedirs(os.path.join(config.output_dir, shards.STATS_DIR), exist_ok=True)
    plan = _plan(items, config)
    todo, own = [], {"shards": len(plan), "shards_built": 0, "shards_resumed": 0,
                     "shards_held": 0, "videos_seen": 0, "videos_written": 0}
    for split, index, name, videos in plan:
        sidecar = None if config.overwrite else shards.load_finished(config.output_dir, name)
        if sidecar is None:
            todo.append((split, index, name, videos))
            continue
        _check_settings(sidecar, config, name)
        own["shards_resumed"] += 1
        own["videos_seen"] += sidecar["videos_seen"]
        own["videos_written"] += sidecar["videos_written"]
    if own["shards_resumed"]:
        log.info("%d of %d shards already finished; skipping them", own["shards_resumed"], len(plan))

    total = sum(len(v) for *_, v in todo)
    with tqdm(total=total, unit="video", disable=not config.progress, dynamic_ncols=True) as bar:
        claims = claims_lib.Claims(
            config.output_dir, overwrite=config.overwrite, own=own,
            on_skip=lambda n: _shrink(bar, n),
            check_settings=lambda sidecar, name: _check_settings(sidecar, config, name))
        results = workers.map_videos(claims.videos(todo), config.content_settings(),
                                     config.workers, timeout=config.video_timeout)
        with contextlib.closing(results), contextlib.closing(claims):
            _write_claimed(results, claims, config, own, bar)
    if claims.held_by_others:
        log.warning("%d shard(s) left to the builders writing them: %s",
                    len(claims.held_by_others), ", ".join(claims.held_by_others))
    summary = shards.summarize(config.output_dir, config.num_shards)
    if config.boxes:
        own["boxes"] = boxes.write_boxes_sidecar(config.boxes, config.output_dir, items)
    return {"summary": summary, "this_run": own}


def _shrink(bar, n: int) -> None:
    bar.total -= n
    bar.refresh()


def _write_claimed(results, claims: claims_lib.Claims, config: BuildConfig, own: dict,
                   bar) -> None:
    """Writes each result into its claimed shard (`claims.queue`, in stream order) and
    finishes every claimed shard once its videos are in, empty ones included."""
    counts = {"written": 0, "skipped": 0}
    for result in results:
        while claims.queue[0].remaining == 0:  # shards without videos come in order too
            _finish(claims, config, own)
        claim = claims.queue[0]
        if claim.writer is None:
            claim.writer = shards.ShardWriter(config.output_dir, claim.split, claim.index,
                                              claim.name, config.content_settings())
        claim.writer.add(result)
        claim.remaining -= 1
        _report(result, bar, counts)
        if claim.remaining == 0:
            _finish(claims, config, own)
    while claims.queue:  # the stream is exhausted: only shards without videos are left
        _finish(claims, config, own)


def _finish(claims: claims_lib.Claims, config: BuildConfig, own: dict) -> None:
    """Finishes the first claimed shard (renames it, writes its sidecar), then releases it."""
    claim = claims.queue[0]
    if claim.writer is None:
        claim.writer = shards.ShardWriter(config.output_dir, claim.split, claim.index,
                                          claim.name, config.content_settings())
    stats = claim.writer.finish()
    claims.queue.popleft()
    claims.release(claim.lock)
    own["shards_built"] += 1
    own["videos_seen"] += stats["videos_seen"]
    own["videos_written"] += stats["videos_written"]


def _report(result, bar, counts) -> None:
    """Logs a skipped or warned video and advances the progress bar.

    counts: {"written", "skipped"} of this run so far (for the progress bar), updated.
    """
    if not result.ok:
        counts["skipped"] += 1
        log.warning("skipped %s: %s (%s)", result.item.path, result.reason, result.message)
    else:
        counts["written"] += 1
        if result.warnings:
            log.warning("%s: %s", result.item.path, "; ".join(result.warnings))
    bar.set_postfix(written=counts["written"], skipped=counts["skipped"], refresh=False)
    bar.update(1)


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

