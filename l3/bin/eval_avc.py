"""l3-eval-avc: AVC accuracy of a checkpoint or an exported `avc` SavedModel.

  l3-eval-avc --data_pattern='records/test-*.tfrecord' --model_dir=runs/paper
  l3-eval-avc --data_pattern='records/test-*.tfrecord' --export_dir=exports/paper

Scores the same fixed held-out pairs (for --seed and --num_pairs) whatever
the model, and prints accuracy, accuracy on positives and negatives and,
where the records carry labels, per-class accuracy.
"""


from absl import flags

from l3.eval import avc as evaluate
from l3.core import fileio
from l3.core import cli

flags.DEFINE_string("data_pattern", None, "Glob of held-out TFRecord shards.", required=True)
flags.DEFINE_string("model_dir", None, "A training run (its latest checkpoint).")
flags.DEFINE_string("checkpoint", None, "A specific checkpoint in --model_dir (default: latest).")
flags.DEFINE_string("export_dir", None, "An l3-export directory, or its avc/ SavedModel.")
flags.DEFINE_enum("preset", None, ["paper", "small"],
                  "Preset (default: from train_config.json or export.json).")
flags.DEFINE_integer("num_pairs", evaluate.DEFAULT_NUM_PAIRS, "Held-out pairs to score.")
flags.DEFINE_integer("seed", evaluate.DEFAULT_SEED, "Seed that fixes the held-out pairs.")
flags.DEFINE_integer("batch_size", 64, "Pairs per batch.")
flags.DEFINE_string("output_json", None, "Write every number here.")
flags.mark_flags_as_mutual_exclusive(["model_dir", "export_dir"], required=True)

FLAGS = flags.FLAGS


def main(argv):
    del argv
    cli.check_matches("data_pattern")
    cli.check_exists("model_dir", kind="dir")
    cli.check_exists("export_dir", kind="dir")
    result = evaluate.evaluate_avc(FLAGS.data_pattern, model_dir=FLAGS.model_dir,
                                   export_dir=FLAGS.export_dir, checkpoint=FLAGS.checkpoint,
                                   preset=FLAGS.preset, num_pairs=FLAGS.num_pairs,
                                   seed=FLAGS.seed, batch_size=FLAGS.batch_size)
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, result)
    pos, neg = result["accuracy_positive"], result["accuracy_negative"]
    print(f"AVC accuracy {result['accuracy']:.4f} on {result['num_pairs']} pairs "
          f"(positives {pos if pos is None else f'{pos:.4f}'}, "
          f"negatives {neg if neg is None else f'{neg:.4f}'}) -- {result['source']}")
    for name, v in result.get("per_class", {}).items():
        print(f"  {name:40s} {v['accuracy']:.4f}  ({v['num_pairs']} pairs)")


def run():
    cli.run(main, "l3-eval-avc")


if __name__ == "__main__":
    run()
