"""l3-esc50: ESC-50 (or ESC-10) with the paper's linear-SVM protocol (section 3.3, Table 2a).

  l3-esc50 --data_dir=/data/ESC-50-master --export_dir=runs/l3/export \
      --output_json=runs/l3/esc50.json --cache_dir=runs/l3/features

`--data_dir` holds `audio/*.wav` and `meta/esc50.csv`. 5-fold
leave-one-fold-out, 10 subclips per clip, conv4_2_pooled features, z-score
and one-vs-all linear SVMs with C chosen by CV inside the training folds.
`--esc10` for the ESC-10 subset; `--random_encoder --preset=paper` for the
paper's "Ours random" row. The protocol is in l3/eval/transfer/protocol.py
and in the JSON's `protocol`.
"""

from absl import flags

from l3.bin import _audio_transfer_flags as transfer_flags
from l3.core import cli
from l3.eval.transfer import esc50

FLAGS = flags.FLAGS
flags.DEFINE_bool("esc10", False, "Evaluate on the ESC-10 subset (clips flagged esc10).")


def main(argv):
    del argv
    transfer_flags.run_and_report(esc50.run, esc50.format_table, esc10=FLAGS.esc10)


def run():
    cli.run(main, "l3-esc50")


if __name__ == "__main__":
    run()
