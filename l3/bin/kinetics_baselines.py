"""l3-kinetics-baselines: the supervised baselines of Table 1 beside L3 (section 3.2).

  l3-kinetics-baselines --train_pattern='data/ks/train-*.tfrecord' \
      --val_pattern='data/ks/val-*.tfrecord' --eval_pattern='data/ks/test-*.tfrecord' \
      --l3_export_dir=runs/l3_ks/export --output_json=runs/ks_baselines.json

trains a supervised vision and audio classifier on the labelled training
shards (K = the number of distinct labels there; 34 for Kinetics-Sounds),
then scores on the same fixed held-out pairs of --eval_pattern: the direct
combination (softmax dot product vs a threshold chosen on the validation
pairs), supervised pretraining (frozen supervised trunks + AVC fusion trained
on AVC) and, with --l3_export_dir, L3-Net itself. Without --val_pattern a
part of the training videos is held out (--val_fraction, chosen by a hash of
the video id) and copied into one shard: give Kinetics-Sounds' own validation
split as --val_pattern rather than copying 10 % of the training set. See
l3/eval/transfer/kinetics_baselines.py for the protocol; the JSON records it.

Smoke run: --preset=small --classifier_steps=100 --pretraining_steps=100
--num_eval_pairs=256.
"""

from absl import flags

from l3.eval import avc as evaluate
from l3.core import cli
from l3.eval.transfer import kinetics_baselines as kb

FLAGS = flags.FLAGS
flags.DEFINE_string("train_pattern", None, "Glob of labelled training TFRecord shards.")
flags.DEFINE_string("eval_pattern", None, "Glob of labelled held-out shards (the test pairs).")
flags.DEFINE_string("val_pattern", None, "Glob of validation shards for the direct combination's "
                    "threshold (default: hold out --val_fraction of the training shards).")
flags.DEFINE_string("output_json", None, "Where to write the results JSON.")
flags.DEFINE_string("l3_export_dir", None, "An l3-export directory: adds L3-Net's own row.")
flags.DEFINE_string("model_dir", None, "Optional: where to save the trained baseline models "
                    "(and the held-out split, when one is carved from the training shards).")
flags.DEFINE_enum("preset", "paper", ["paper", "small"], "Model and input preset.")
flags.DEFINE_integer("classifier_steps", kb.DEFAULT_CLASSIFIER_STEPS,
                     "Training steps of each supervised classifier.")
flags.DEFINE_integer("pretraining_steps", kb.DEFAULT_PRETRAINING_STEPS,
                     "AVC training steps of the supervised-pretraining fusion layers.")
flags.DEFINE_integer("batch_size", None, "Batch size (default: the preset's global batch).")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: the preset's).")
flags.DEFINE_float("val_fraction", kb.DEFAULT_VAL_FRACTION,
                   "Fraction of the training shards held out when --val_pattern is not given.")
flags.DEFINE_integer("num_val_pairs", evaluate.DEFAULT_NUM_PAIRS,
                     "Validation pairs (threshold choice).")
flags.DEFINE_integer("num_eval_pairs", evaluate.DEFAULT_NUM_PAIRS,
                     "Fixed held-out evaluation pairs.")
flags.DEFINE_integer("eval_seed", kb.BaselineConfig.eval_seed, "Seed of the fixed pairs (as l3-eval-avc).")
flags.DEFINE_integer("seed", 0, "Seed of training (shuffling, augmentation, initialisation).")
flags.DEFINE_integer("bn_batches", kb.DEFAULT_BN_BATCHES, "Training batches over which each "
                     "classifier's batch-norm statistics are re-estimated after training (0: off).")
flags.DEFINE_integer("log_every", 100, "Log the training loss every this many steps.")
flags.mark_flags_as_required(["train_pattern", "eval_pattern"])


def main(argv):
    del argv
    cli.check_matches("train_pattern")
    cli.check_matches("eval_pattern")
    cli.check_matches("val_pattern")
    cli.check_exists("l3_export_dir", kind="dir")
    cli.check_output_dir("model_dir")
    config = kb.BaselineConfig(
        preset=FLAGS.preset, classifier_steps=FLAGS.classifier_steps,
        pretraining_steps=FLAGS.pretraining_steps, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, val_fraction=FLAGS.val_fraction,
        num_val_pairs=FLAGS.num_val_pairs, num_eval_pairs=FLAGS.num_eval_pairs,
        eval_seed=FLAGS.eval_seed, seed=FLAGS.seed, log_every=FLAGS.log_every,
        bn_batches=FLAGS.bn_batches)
    result = kb.run_baselines(
        train_pattern=FLAGS.train_pattern, eval_pattern=FLAGS.eval_pattern,
        val_pattern=FLAGS.val_pattern, l3_export_dir=FLAGS.l3_export_dir,
        output_json=FLAGS.output_json, model_dir=FLAGS.model_dir, config=config)
    print(kb.format_table(result))
    if FLAGS.output_json:
        print(f"results: {FLAGS.output_json}")


def run():
    cli.run(main, "l3-kinetics-baselines")


if __name__ == "__main__":
    run()
