"""l3-imagenet-probe: linear classification on frozen L3 vision features (section 3.4).

  l3-imagenet-probe --export_dir=runs/l3/export --data_dir=~/tensorflow_datasets \
      --manual_dir=/data/ILSVRC2012_tars --output_json=runs/l3/imagenet.json

The paper's "Ours random" row (same architecture, random weights):

  l3-imagenet-probe --random_trunk --preset=paper --data_dir=... --output_json=...

Smoke run: --epochs=1 --max_train_examples=2048 --max_eval_examples=1024.
`--manual_dir` holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar; the
TFDS dataset is prepared from them under `--data_dir` on the first run (hours,
about 150 GB). The protocol is in l3/eval/transfer/imagenet.py and in the JSON.
"""

from absl import app, flags

from l3.core import cli
from l3.eval.transfer import imagenet

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "An l3-export directory (its vision_encoder is probed).")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: TFDS's, ~/tensorflow_datasets).")
flags.DEFINE_string("manual_dir", None, "Directory with the ILSVRC 2012 tar files "
                    "(default: <data_dir>/downloads/manual); used only if not yet prepared.")
flags.DEFINE_string("output_json", None, "Where to write the results JSON.")
flags.DEFINE_integer("epochs", imagenet.DEFAULT_EPOCHS, "Training epochs of the linear layer.")
flags.DEFINE_integer("batch_size", imagenet.DEFAULT_BATCH_SIZE, "Batch size (train and eval).")
flags.DEFINE_float("learning_rate", imagenet.DEFAULT_LEARNING_RATE, "Adam's initial learning rate.")
flags.DEFINE_float("label_smoothing", imagenet.LABEL_SMOOTHING, "Label smoothing of the loss.")
flags.DEFINE_integer("max_train_examples", None, "Use only this many training images (smoke runs).")
flags.DEFINE_integer("max_eval_examples", None, "Evaluate on only this many validation images.")
flags.DEFINE_bool("random_trunk", False, "Probe the same architecture with random weights "
                  "(the paper's 'Ours random'); sized by --export_dir's preset or --preset.")
flags.DEFINE_string("preset", None, "Preset for --random_trunk without --export_dir.")
flags.DEFINE_integer("seed", 0, "Seed of shuffling, augmentation and initialisation.")


def main(argv):
    del argv
    cli.check_exists("export_dir", kind="dir")
    cli.check_exists("manual_dir", kind="dir")
    if FLAGS.export_dir is None and not (FLAGS.random_trunk and FLAGS.preset):
        raise app.UsageError("give --export_dir, or --random_trunk with --preset")
    config = imagenet.ProbeConfig(
        epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        label_smoothing=FLAGS.label_smoothing, max_train_examples=FLAGS.max_train_examples,
        max_eval_examples=FLAGS.max_eval_examples, seed=FLAGS.seed)
    result = imagenet.run_probe(
        export_dir=FLAGS.export_dir, data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
        output_json=FLAGS.output_json, config=config, random_trunk=FLAGS.random_trunk,
        preset_name=FLAGS.preset)
    print(imagenet.format_table(result))
    if FLAGS.output_json:
        print(f"results: {FLAGS.output_json}")


def run():
    cli.run(main, "l3-imagenet-probe")


if __name__ == "__main__":
    run()
