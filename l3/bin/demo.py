"""l3-demo: the whole chain on the bundled synthetic corpus, on one CPU.

  l3-demo --work_dir=demo_work

generates the corpus, builds TFRecords, trains the small preset, exports the
encoders, measures AVC accuracy on held-out videos, runs the linear-SVM
protocol and the NMI / unit analyses (trained vs untrained), and prints a
summary table beside the paper's numbers. Re-running reuses every finished
stage's output (corpus, shards, checkpoints).

  l3-demo --work_dir=demo_work --input_repr=mel128

trains a log-mel preset (small-mel128) on the same corpus and shards, in its
own train_mel128/, export_mel128/, ... folders, and prints its transfer
numbers beside those of every front end already run in work_dir.
"""

import logging

from absl import flags

from l3.core import constants
from l3.demo import run as demo
from l3.core import cli

FLAGS = flags.FLAGS
_D = demo.DemoConfig()
flags.DEFINE_string("work_dir", _D.work_dir, "Where everything is written.")
flags.DEFINE_string("corpus_dir", None, "Corpus location (default: work_dir/corpus).")
flags.DEFINE_integer("train_steps", _D.train_steps, "Training steps of the small preset.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size.")
flags.DEFINE_integer("num_classes", None, "Corpus classes (1-10; default: the corpus default).")
flags.DEFINE_integer("workers", _D.workers, "Processes for corpus generation and decoding.")
flags.DEFINE_integer("seed", _D.seed, "Seed of everything (corpus, training, evaluation pairs).")
flags.DEFINE_string("analyses", _D.analyses, "Analyses to run (comma list).")
flags.DEFINE_enum("input_repr", _D.input_repr, list(constants.INPUT_REPRS),
                  "Audio front end of the trained preset (linear: the paper's spectrogram).")


def main(argv):
    del argv
    cli.check_output_dir("work_dir")
    cli.check_output_dir("corpus_dir")
    # SavedModel writing logs every asset and fingerprint at INFO; keep the console readable.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    config = demo.DemoConfig(work_dir=FLAGS.work_dir, corpus_dir=FLAGS.corpus_dir,
                             train_steps=FLAGS.train_steps, batch_size=FLAGS.batch_size,
                             num_classes=FLAGS.num_classes, workers=FLAGS.workers,
                             seed=FLAGS.seed, analyses=FLAGS.analyses, input_repr=FLAGS.input_repr)
    demo.run_demo(config)


def run():
    cli.run(main, "l3-demo")


if __name__ == "__main__":
    run()
