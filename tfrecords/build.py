r"""l3-build-tfrecords: videos (folder, list file or Kinetics CSV) -> TFRecord shards.

One machine, all cores:

  l3-build-tfrecords --input=/data/videos --output_dir=/data/records \
      --num_shards=64 --workers=16 --label_from_parent_dir

Kinetics(-Sounds) from the official CSVs and a downloaded tree:

  l3-build-tfrecords --input=kinetics400/train.csv --video_root=/data/kinetics \
      --kinetics_path_pattern='{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4' \
      --kinetics_sounds_only --output_dir=/data/ks_records --num_shards=64

Cluster array job (task i of 64 writes shard i of every split; any job re-aggregates
summary.json from the shards finished so far; rerunning skips finished shards):

  l3-build-tfrecords --input=... --output_dir=... --num_shards=64 --shard_index=$SLURM_ARRAY_TASK_ID

Two builders on one --output_dir (or a rerun while one still runs) split the shards:
a shard another live builder is writing (its lock `.<shard>.lock` names the host and
pid) is skipped with one line; the lock of a builder that died is taken over.

Exit status 0 when this process's shards hold at least one video (or are being
written by another builder), 1 otherwise.
The logic lives in `l3_tfrecords.builder` (the `tfrecords/` folder); this file is flags only.
Also runs as `python -m l3_tfrecords.build`.
"""

import logging
import os

from absl import app, flags

from l3.core import kinetics_sounds
from l3 import media
from l3.core import cli
from l3.eval import localization_io

from . import builder, inputs, shards

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "A folder (searched recursively), a text file with one video "
                    "path per line, or a Kinetics CSV (label,youtube_id,time_start,time_end,split); "
                    "the kind is detected.")
flags.DEFINE_string("output_dir", None, "Where shards, _shard_stats/ and summary.json go.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Decoding processes (0: decode in this process).")
flags.DEFINE_integer("num_shards", 16, "Shards per split; video i of a split (sorted by id) goes "
                     "to shard i % num_shards.")
flags.DEFINE_integer("shard_index", None, "Write only this shard (of every split); default: all.")
flags.DEFINE_string("split", "train", "Split of folder and list inputs (CSV rows carry their own).")
flags.DEFINE_bool("label_from_parent_dir", False, "Folder/list inputs: a video's label is its "
                  "parent folder's name (<label>/<video> layout).")
flags.DEFINE_string("video_root", None, "CSV: root of the downloaded clips; list: base of relative "
                    "paths (default: the list/CSV file's folder).")
flags.DEFINE_string("kinetics_path_pattern", inputs.DEFAULT_KINETICS_PATTERN,
                    "CSV: clip path under --video_root; fields split, label, label_ (spaces as "
                    "underscores), youtube_id, time_start, time_end; glob wildcards allowed.")
flags.DEFINE_bool("kinetics_sounds_only", False, "Keep only the Kinetics-Sounds classes "
                  "(l3/core/kinetics_sounds.py; released or paper names).")
flags.DEFINE_float("max_seconds", 10.0, "Decode the first this many seconds (paper 3.1: 10 s).")
flags.DEFINE_float("fps", media.DEFAULT_FPS, "Frames kept per second (not in the paper; see "
                   "l3/media/__init__.py for why 4).")
flags.DEFINE_integer("resize_smaller_side", 256, "Frames' smaller side (paper 2.2: 256).")
flags.DEFINE_float("min_audio_seconds", 1.0, "Skip videos with less audio (one AVC clip is 1 s).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames.")
flags.DEFINE_float("video_timeout", 600.0, "Kill and skip a video whose decoding takes longer "
                   "(seconds; with --workers > 0).")
flags.DEFINE_string("boxes", None, "A box file (l3-boxes JSON, e.g. the demo corpus's objects.json, "
                    "or VGG-SS's vggss.json) to copy, for the videos written, into "
                    "output_dir/boxes.json (read by l3-localize).")
flags.DEFINE_bool("overwrite", False, "Rebuild this process's shards even if finished.")
flags.DEFINE_bool("summarize_only", False, "Only re-aggregate summary.json from the shards' "
                  "sidecars (e.g. after a cluster build).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    if not FLAGS.summarize_only and not FLAGS.input:
        raise app.UsageError("--input is required (unless --summarize_only)")
    cli.check_output_dir("output_dir")
    if FLAGS.summarize_only:
        cli.check_exists("output_dir", kind="dir")
        count = FLAGS.num_shards if FLAGS["num_shards"].present else None
        summary = shards.summarize(FLAGS.output_dir, count)
        _print(summary)
        return 0 if summary["videos_written"] else 1
    config = builder.BuildConfig(
        output_dir=FLAGS.output_dir, num_shards=FLAGS.num_shards, shard_index=FLAGS.shard_index,
        workers=FLAGS.workers, max_seconds=FLAGS.max_seconds, fps=FLAGS.fps,
        resize_smaller_side=FLAGS.resize_smaller_side, min_audio_seconds=FLAGS.min_audio_seconds,
        jpeg_quality=FLAGS.jpeg_quality, overwrite=FLAGS.overwrite, progress=FLAGS.progress,
        video_timeout=FLAGS.video_timeout, boxes=FLAGS.boxes)
    cli.check_exists("input")
    if FLAGS.boxes:
        cli.check_exists("boxes", kind="file")
        localization_io.read_truth(FLAGS.boxes)   # a bad box file stops before any decoding
    cli.check_exists("video_root", kind="dir")
    labels = None
    if FLAGS.kinetics_sounds_only:
        labels = kinetics_sounds.kinetics_classes() + kinetics_sounds.PAPER_CLASSES
    result = builder.build_from_input(
        FLAGS.input, config, split=FLAGS.split, label_from_parent_dir=FLAGS.label_from_parent_dir,
        video_root=FLAGS.video_root, kinetics_path_pattern=FLAGS.kinetics_path_pattern,
        labels=labels)
    _print(result["summary"], result["this_run"])
    this_run = result["this_run"]
    return 0 if this_run["videos_written"] or this_run["shards_held"] else 1


def _print(summary: dict, this_run: dict = None) -> None:
    if this_run is not None:
        held = (f", {this_run['shards_held']} being written by another builder"
                if this_run.get("shards_held") else "")
        print(f"this process: {this_run['shards']} shards ({this_run['shards_built']} built, "
              f"{this_run['shards_resumed']} already finished{held}), "
              f"{this_run['videos_written']} of {this_run['videos_seen']} videos written")
    print(f"{FLAGS.output_dir}: {summary['videos_written']} of {summary['videos_seen']} videos "
          f"written in {summary['shards']} shards, {summary['audio_seconds']:.0f} s of audio, "
          f"{summary['frames']} frames, {summary['bytes'] / 1e6:.1f} MB"
          + ("" if summary["complete"] else " (some shards not built yet)"))
    for reason, count in summary["skipped_by_reason"].items():
        print(f"  skipped {count:6d}  {reason}")
    if summary["videos_with_warnings"]:
        print(f"  {summary['videos_with_warnings']} videos kept with warnings (warnings.jsonl)")


def run():
    flags.mark_flags_as_required(["output_dir"])
    cli.run(main, "l3-build-tfrecords")


if __name__ == "__main__":
    run()
