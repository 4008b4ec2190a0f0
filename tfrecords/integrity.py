"""Shard integrity: TFRecord framing, both CRCs, the schema and the sidecar's counts.

Read in Python, record by record, independent of TensorFlow's reader:
the framing (uint64 length, masked crc32c of the length, data, masked crc32c
of the data), each record parsed against `l3.records.FEATURES` (plus: at
least one frame, one timestamp per frame, whole int16 samples), and the
record count and size compared with the builder's sidecar
(`_shard_stats/<shard>.json`, `shards.py`); with `deep`, every frame decoded
by TensorFlow's JPEG decoder (the one training uses), each one that fails
named by record, video id and frame index. Used by `l3-verify-tfrecords`.
"""

import dataclasses
import fnmatch
import json
import os
from typing import List, Optional

from l3.records.framing import FramingError, iter_records

from . import shards


@dataclasses.dataclass
class ShardReport:
    """What `verify_shard` found; `problems` empty means sound."""

    shard: str
    records: int = 0
    bytes: int = 0
    problems: List[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_example(data: bytes, deep: bool = False) -> Optional[str]:
    """None if `data` parses against the schema (and, with `deep`, every frame decodes as a
    JPEG), else what is wrong."""
    # TensorFlow (seconds to import) only once a shard is read; --help stays fast.
    import tensorflow as tf  # noqa: PLC0415
    from l3.records import schema as records  # noqa: PLC0415
    try:
        parsed = tf.io.parse_single_example(data, records.FEATURES)
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        return f"does not parse against the schema: {str(e).splitlines()[0][:200]}"
    frames = int(tf.shape(parsed[records.FRAMES])[0])
    times = int(tf.shape(parsed[records.FRAME_TIMES])[0])
    if frames == 0:
        return "has no frames"
    if frames != times:
        return f"has {frames} frames but {times} frame times"
    if len(parsed[records.AUDIO].numpy()) % 2:
        return "audio is not whole int16 samples"
    if deep:
        bad = undecodable_frames(parsed[records.FRAMES].numpy())
        if bad:
            video = parsed[records.VIDEO_ID].numpy().decode("utf-8", "replace")
            listed = ", ".join(f"{i} ({why})" for i, why in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            return (f"video {video!r}: {len(bad)} of {frames} frame(s) do not decode as JPEG: "
                    f"frame {listed}{more}")
    return None


def undecodable_frames(jpegs) -> List[tuple]:
    """[(frame index, why)] of the encoded frames `jpegs` (bytes [n]) that
    `tf.io.decode_jpeg` refuses."""
    import tensorflow as tf  # noqa: PLC0415
    bad = []
    for i, jpeg in enumerate(jpegs):
        try:
            tf.io.decode_jpeg(jpeg, channels=3)
        except tf.errors.InvalidArgumentError as e:
            bad.append((i, (e.message or str(e)).splitlines()[0][:80]))
    return bad


def verify_shard(path: str, deep: bool = False) -> ShardReport:
    """Framing, CRCs, schema and the sidecar's counts of one shard; with `deep`, every
    frame decoded too."""
    report = ShardReport(shard=path, bytes=os.path.getsize(path))
    try:
        for offset, data in iter_records(path):
            problem = check_example(data, deep)
            if problem:
                report.problems.append(f"record {report.records} (byte {offset}) {problem}")
            report.records += 1
    except FramingError as e:
        report.problems.append(f"{e} (record {report.records}; the rest of the shard is "
                               f"unreadable: {report.bytes - e.offset} bytes)")
    except OSError as e:
        report.problems.append(f"cannot read: {e.strerror or e}")
    folder, name = os.path.split(path)
    sidecar = shards.stats_path(folder, name)
    if os.path.exists(sidecar):
        with open(sidecar, encoding="utf-8") as f:
            stats = json.load(f)
        if stats.get("videos_written") != report.records:
            report.problems.append(f"{report.records} records but its sidecar says "
                                   f"{stats.get('videos_written')}")
        if stats.get("bytes") not in (None, report.bytes):
            report.problems.append(f"{report.bytes} bytes but its sidecar says {stats['bytes']}")
    else:
        report.problems.append(f"no sidecar ({sidecar}): the build of this shard did not finish")
    return report


def missing_shards(pattern: str, paths: List[str]) -> List[str]:
    """Shards matching `pattern` that sidecars list as finished but whose file is not there."""
    folder, name_pattern = os.path.split(pattern)
    stats_dir = os.path.join(folder, shards.STATS_DIR)
    if not os.path.isdir(stats_dir):
        return []
    present = {os.path.basename(p) for p in paths}
    listed = [n[:-len(".json")] for n in os.listdir(stats_dir) if n.endswith(".json")]
    return sorted(os.path.join(folder, n) for n in listed
                  if fnmatch.fnmatch(n, name_pattern) and n not in present)
