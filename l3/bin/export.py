"""l3-export: a training checkpoint to SavedModel encoders (and .keras files).

  l3-export --model_dir=runs/l3 --output_dir=runs/l3/export
  l3-export --model_dir=runs/l3 --output_dir=runs/l3/export --formats=savedmodel,keras,onnx,litert

writes `audio_encoder/`, `vision_encoder/`, `avc/` (SavedModels, signature
`serving_default`), `*.keras`, with --formats also `*.onnx` and `*.tflite`,
and `export.json` (see l3/export/writer.py).
"""

import logging

from absl import flags

from l3.core import constants, errors, presets
from l3.export import writer as export
from l3.core import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training directory (l3-train --model_dir).")
flags.DEFINE_string("output_dir", None, "Where to write the export directory.")
flags.DEFINE_string("checkpoint", None, "A specific checkpoint prefix (default: the latest in model_dir).")
flags.DEFINE_string("preset", None, "Preset name, if model_dir has no train_config.json.")
flags.DEFINE_enum("input_repr", None, list(constants.INPUT_REPRS),
                  "Front end of --preset (default: linear, or the preset name's suffix).")
flags.DEFINE_list("formats", list(export.DEFAULT_FORMATS),
                  f"Artifacts to write, any of {','.join(export.FORMATS)}.")
flags.mark_flags_as_required(["model_dir", "output_dir"])


def main(argv):
    del argv
    cli.check_exists("model_dir", kind="dir")
    cli.check_output_dir("output_dir")
    # SavedModel writing logs every asset and fingerprint at INFO; keep the console readable.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    try:
        formats = export.check_formats(FLAGS.formats)
        preset = presets.get_preset(FLAGS.preset, FLAGS.input_repr) if FLAGS.preset else None
    except ValueError as e:
        raise errors.UsageError(str(e))
    if FLAGS.input_repr and not FLAGS.preset:
        raise errors.UsageError("--input_repr needs --preset (a run's train_config.json names its own)")
    info = export.export_checkpoint(FLAGS.model_dir, FLAGS.output_dir, preset=preset,
                                    checkpoint=FLAGS.checkpoint, formats=formats)
    print(f"exported step {info['step']} of {info['source_checkpoint']} ({info['preset']} preset, "
          f"{info['input_repr']} front end) to {FLAGS.output_dir} as {','.join(info['formats'])}")
    for name, sig in info["signatures"].items():
        print(f"  {name:15s} {sig['inputs']} -> {sig['outputs']}")


def run():
    cli.run(main, "l3-export")


if __name__ == "__main__":
    run()
