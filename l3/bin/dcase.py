"""l3-dcase: DCASE 2013 scene classification with the paper's protocol (section 3.3, Table 2b).

  l3-dcase --data_dir=/data/dcase2013/scenes_development --export_dir=runs/l3/export \
      --test_dir=/data/dcase2013/scenes_test --output_json=runs/l3/dcase.json

`--data_dir` (and `--test_dir`) hold `scenes_stereo/<class><NN>.wav` (or the
wav files directly). Always: the 5-fold CV of the development set; with
`--test_dir`: train on development, test on test. 60 subclips per 30 s
clip; protocol in l3/eval/transfer/protocol.py and in the JSON.
"""

from absl import flags

from l3.bin import _audio_transfer_flags as transfer_flags
from l3.core import cli
from l3.eval.transfer import dcase

FLAGS = flags.FLAGS
flags.DEFINE_string("test_dir", None, "DCASE 2013 test set (same layout): train on the "
                    "development set, test on this.")
flags.DEFINE_integer("num_folds", dcase.NUM_FOLDS, "Folds of the development-set CV.")


def main(argv):
    del argv
    cli.check_exists("test_dir", kind="dir")
    transfer_flags.run_and_report(dcase.run, dcase.format_table, test_dir=FLAGS.test_dir,
                                  num_folds=FLAGS.num_folds)


def run():
    cli.run(main, "l3-dcase")


if __name__ == "__main__":
    run()
