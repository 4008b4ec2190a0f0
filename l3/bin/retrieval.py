"""l3-retrieval: cross-modal retrieval (image -> audio, audio -> image) for an export.

  l3-retrieval --export_dir=demo_work/export \\
      --data_pattern='demo_work/tfrecords/test-*.tfrecord' --output_json=retrieval.json

Takes `--max_items` held-out items (a frame and the 1 s of audio centred on it,
`--items_per_video` per video), embeds them with the export's trained towers and
with an untrained network of the same preset, and ranks, for every frame, all N
clips (and for every clip all N frames) by the fusion head's P(corresponds) and,
second scorer, by the cosine of the embeddings (`l3.eval.retrieval`). Prints and
writes, per direction and row (trained, untrained, trained_cosine,
untrained_cosine, chance): R@1, R@5, R@10, median and mean rank of the true
partner (the same moment of the same video) and, when every record has a label,
class-level P@1/5/10 and mAP.

output_json: {"image_to_audio": {row: {"R@1", "R@5", "R@10", "median_rank",
"mean_rank", ["P@1", "P@5", "P@10", "mAP"]}}, "audio_to_image": {...},
"num_items", "num_videos", "class_level", "seconds": {...}, ...}.
"""

from absl import flags

from l3.core import cli, errors
from l3.core import fileio
from l3.eval import retrieval

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "An l3-export directory (needs its avc.keras).")
flags.DEFINE_string("data_pattern", None, "Glob of held-out TFRecord shards.")
flags.DEFINE_string("output_json", None, "Write every number here.")
flags.DEFINE_integer("max_items", 1000, "Read at most this many items (0: all).")
flags.DEFINE_integer("items_per_video", 1, "Frames (each with its centred 1 s of audio) per video.")
flags.DEFINE_list("scorers", list(retrieval.SCORERS), "Scorers: fusion (P(corresponds)), cosine.")
flags.DEFINE_bool("untrained", True, "Also score an untrained network of the same preset.")
flags.DEFINE_integer("seed", 0, "Seed of the untrained network's initialisation.")
flags.DEFINE_integer("batch_size", 64, "Inference batch size.")
flags.DEFINE_bool("progress", True, "Show a progress bar while the towers embed the items.")
flags.mark_flags_as_required(["export_dir", "data_pattern"])


def main(argv):
    del argv
    cli.check_exists("export_dir", kind="dir")
    cli.check_matches("data_pattern")
    if FLAGS.items_per_video < 1:
        raise errors.UsageError(f"--items_per_video={FLAGS.items_per_video} must be >= 1")
    result = retrieval.evaluate_retrieval(
        FLAGS.export_dir, FLAGS.data_pattern, max_items=FLAGS.max_items or None,
        items_per_video=FLAGS.items_per_video, scorers=FLAGS.scorers, untrained=FLAGS.untrained,
        seed=FLAGS.seed, batch_size=FLAGS.batch_size, log=print,
        progress=FLAGS.progress)
    print(retrieval.format_table(result))
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, result)
        print(f"wrote {FLAGS.output_json}")


def run():
    cli.run(main, "l3-retrieval")


if __name__ == "__main__":
    run()
