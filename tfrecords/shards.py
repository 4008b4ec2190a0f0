"""Shards, their sidecars and the output-wide summary (parent side of the builder).

Layout of `output_dir`:

  {split}-{index:05d}-of-{count:05d}.tfrecord   one record per written video
  _shard_stats/{shard}.json                     per-shard stats and skip list
  summary.json, skipped.jsonl, warnings.jsonl   re-aggregated from every sidecar

A shard is written to a hidden temp file (`l3.core.temps`: removed on SIGTERM or
SIGINT, swept by a later run after a SIGKILL) and renamed; its sidecar is
written (atomically, `l3.core.fileio`) last and marks it finished. While a
builder writes a shard it holds the shard's lock (`claims`).
"""

import collections
import contextlib
import glob
import json
import logging
import os
import socket
import time
from typing import Dict, Optional, Sequence

import numpy as np

from l3.core import errors, fileio, temps
from l3 import media

from .workers import BUILDER_REASONS, VideoResult

log = logging.getLogger(__name__)

STATS_DIR = "_shard_stats"
SUMMARY = "summary.json"
SKIPPED = "skipped.jsonl"
WARNINGS = "warnings.jsonl"


def shard_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, name)


def stats_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, STATS_DIR, name + ".json")


def load_finished(output_dir: str, name: str) -> Optional[dict]:
    """The sidecar of a finished shard, or None if the shard must be (re)built."""
    sidecar = stats_path(output_dir, name)
    if not (os.path.exists(sidecar) and os.path.exists(shard_path(output_dir, name))):
        return None
    try:
        with open(sidecar, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


class ShardWriter:
    """Writes one shard to a hidden temp file; `finish` renames it and its sidecar into place.

    settings: the build's content settings (`BuildConfig.content_settings()`,
    with num_shards and sample_rate), stored in the sidecar.
    """

    def __init__(self, output_dir: str, split: str, index: int, name: str,
                 settings: Dict[str, float]):
        # TensorFlow (imported by l3.records) is imported here, not at the top: the decoding
        # workers import this package and must stay free of it (seconds and ~0.5 GB each).
        from l3.records import schema as records  # noqa: PLC0415
        import tensorflow as tf  # noqa: PLC0415
        self.records, self.tf_errors = records, tf.errors
        self.output_dir, self.split, self.index, self.name = output_dir, split, index, name
        self.sample_rate = int(settings["sample_rate"])
        _remove_legacy_temps(output_dir, name)
        self.tmp = temps.new_name(shard_path(output_dir, name))
        self.writer = tf.io.TFRecordWriter(self.tmp)
        self.stats = {"shard": name, "split": split, "index": index,
                      "count": int(settings["num_shards"]), "settings": dict(settings),
                      "videos_seen": 0,
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
            sample_rate=self.sample_rate, label=_text(item.label), split=item.split,
            source=_text(item.path))
        try:
            self.writer.write(example.SerializeToString(deterministic=True))
        except self.tf_errors.OpError as e:
            raise self._failed(e) from None
        for key, value in result.timings.items():
            stats["timings"][key] = stats["timings"].get(key, 0.0) + value
        stats["timings"]["write"] += time.process_time() - t0
        stats["videos_written"] += 1
        stats["frames"] += len(result.jpegs)
        stats["audio_seconds"] += result.audio_samples / self.sample_rate
        if result.warnings:
            stats["warnings"].append(dict(entry, warnings=result.warnings))

    def finish(self) -> dict:
        try:
            self.writer.close()
        except self.tf_errors.OpError as e:
            raise self._failed(e) from None
        self.stats["bytes"] = os.path.getsize(self.tmp)
        self.stats["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.stats["host"] = socket.gethostname()
        self.stats["pid"] = os.getpid()
        os.replace(self.tmp, shard_path(self.output_dir, self.name))
        temps.forget(self.tmp)
        fileio.write_json(stats_path(self.output_dir, self.name), self.stats, indent=1,
                          sort_keys=True)
        return self.stats

    def abort(self) -> None:
        """Closes and removes the temp file (a failed write, or any error while building)."""
        with contextlib.suppress(Exception):
            self.writer.close()
        temps.discard(self.tmp)

    def _failed(self, e: Exception) -> Exception:
        """Aborts; a full disk or permission error becomes a one-line `WriteError`."""
        self.abort()
        if errors.is_write_failure(e):
            return errors.write_error(shard_path(self.output_dir, self.name), e)
        return e


def _remove_legacy_temps(output_dir: str, name: str) -> None:
    """Removes `.{name}.tmp-<pid>` files of builders before `l3.core.temps` names (a killed
    run's) whose pid is not running; the caller holds the shard's lock."""
    for stale in glob.glob(os.path.join(output_dir, f".{name}.tmp-*")):
        pid = stale.rsplit("-", 1)[1]
        if pid.isdigit() and not temps.pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)


def _text(name: str) -> str:
    """A file name as valid UTF-8 (undecodable bytes, kept by os.walk as surrogates,
    become U+FFFD) so that the Example can hold it."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")



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
    fileio.write_json(os.path.join(output_dir, SUMMARY), summary, indent=1, sort_keys=True)
    fileio.write_jsonl(os.path.join(output_dir, SKIPPED),
                       [dict(row, shard=s["shard"]) for s in sidecars for row in s["skipped"]])
    fileio.write_jsonl(os.path.join(output_dir, WARNINGS),
                       [dict(row, shard=s["shard"]) for s in sidecars for row in s["warnings"]])
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
