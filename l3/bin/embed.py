"""l3-embed: audio, image and video files to L3 embeddings (.npz with timestamps).

  l3-embed --export_dir=runs/l3/export --input=/data/clips --output_dir=/data/l3_embeddings
  l3-embed --export_dir=... --input=files.txt --input=extra.mp4 --output_dir=... --hop_s=0.5

`--input` (repeatable): a file, a folder (searched recursively for media
files), or a list file (.txt/.lst/.list, one path a line). Outputs mirror
the inputs' paths under `--output_dir` as `<name>.<ext>.npz`; unreadable
files are skipped and listed in `<output_dir>/skipped.json`; existing
outputs are kept unless `--overwrite`. Array names, windows and timestamp
convention (window centres, seconds): l3/embed.py.
"""

from absl import app, flags, logging

from l3 import embed

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "An l3-export directory.")
flags.DEFINE_multi_string("input", None, "A file, folder or list file (repeatable).")
flags.DEFINE_string("output_dir", None, "Where to write the .npz files and skipped.json.")
flags.DEFINE_float("hop_s", embed.DEFAULT_HOP_S, "Hop between the 1 s audio windows, seconds.")
flags.DEFINE_float("fps", embed.DEFAULT_FPS, "Video frames embedded per second.")
flags.DEFINE_enum("feature", "embedding", ["embedding", "conv4_2_pooled"],
                  "Which encoder output to store.")
flags.DEFINE_enum("kind", None, list(embed.KINDS), "Treat every input as this kind "
                  "(default: by file extension).")
flags.DEFINE_float("max_seconds", None, "Embed only the first seconds of each file.")
flags.DEFINE_integer("batch_size", 64, "Encoder batch size (windows or frames).")
flags.DEFINE_integer("workers", 2, "Decoding threads running ahead of the encoder.")
flags.DEFINE_bool("overwrite", False, "Recompute outputs that already exist (default: resume).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["export_dir", "input", "output_dir"])


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    summary = embed.embed_files(FLAGS.export_dir, FLAGS.input, FLAGS.output_dir, hop_s=FLAGS.hop_s,
                                fps=FLAGS.fps, feature=FLAGS.feature, batch_size=FLAGS.batch_size,
                                overwrite=FLAGS.overwrite, workers=FLAGS.workers,
                                max_seconds=FLAGS.max_seconds, kind=FLAGS.kind,
                                progress=FLAGS.progress)
    print(f"embedded {summary['embedded']} files, kept {summary['existing']} existing, "
          f"skipped {summary['skipped']} (listed in {FLAGS.output_dir}/{embed.SKIPPED_JSON}) "
          f"in {summary['seconds']:.1f} s")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
