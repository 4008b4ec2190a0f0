"""l3-dcase: DCASE 2013 scene classification with the paper's protocol (section 3.3, Table 2b).

  l3-dcase --data_dir=/data/dcase2013/scenes_development --export_dir=runs/l3/export \
      --test_dir=/data/dcase2013/scenes_test --output_json=runs/l3/dcase.json

`--data_dir` (and `--test_dir`) hold `scenes_stereo/<class><NN>.wav` (or the
wav files directly). Always: the 5-fold CV of the development set; with
`--test_dir`: train on development, test on test. 60 subclips per 30 s
clip; protocol in l3/transfer/audio_protocol.py and in the JSON.
"""

from absl import app, flags, logging

from l3 import constants as C
from l3.bin import _audio_transfer_flags as transfer_flags
from l3.transfer import audio_protocol, dcase

FLAGS = flags.FLAGS
flags.DEFINE_string("test_dir", None, "DCASE 2013 test set (same layout): train on the "
                    "development set, test on this.")
flags.DEFINE_integer("num_folds", dcase.NUM_FOLDS, "Folds of the development-set CV.")


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    with transfer_flags.blas_limits():
        result = dcase.run(FLAGS.data_dir, transfer_flags.encoder(), test_dir=FLAGS.test_dir,
                           num_folds=FLAGS.num_folds,
                           **transfer_flags.common_kwargs(C.DCASE_SUBCLIPS))
    print(dcase.format_table(result))
    if FLAGS.output_json:
        audio_protocol.write_json(result, FLAGS.output_json)
        print(f"wrote {FLAGS.output_json}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
