"""l3-embed: audio, image and video files to L3 embeddings (.npz with timestamps).

  l3-embed --export_dir=runs/l3/export --input=/data/clips --output_dir=/data/l3_embeddings
  l3-embed --export_dir=... --input=files.txt --input=extra.mp4 --output_dir=... --hop_size=0.5
  l3-embed --export_dir=... --input=... --output_dir=... --center --audio_feature=conv4_2_pooled

`--input` (repeatable): a file, a folder (searched recursively for media
files), or a list file (.txt/.lst/.list, one path a line). Outputs mirror
the inputs' paths under `--output_dir` as `<name>.<ext>[_<suffix>].npz`;
unreadable files are skipped and listed in `<output_dir>/skipped.json`;
existing outputs are kept unless `--overwrite`. Array names, windows and the
timestamp convention (window centres, seconds): l3/embeddings/files.py and
l3/embeddings/timeline.py. Defaults keep the tool's original behaviour
(`--nocenter`: windows from the first sample); `--center` gives openl3's.
"""

from absl import flags, logging

from l3.core import cli
from l3.embeddings import files, runner, tool

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "An l3-export directory.")
flags.DEFINE_multi_string("input", None, "A file, folder or list file (repeatable).")
flags.DEFINE_string("output_dir", None, "Where to write the .npz files and skipped.json.")
flags.DEFINE_float("hop_size", files.DEFAULT_HOP_SIZE, "Seconds between 1 s audio windows.")
flags.DEFINE_bool("center", False, "Centre window k on k * hop_size (openl3's center=True: "
                  "half a window of zeros before the start, the end padded); default: windows "
                  "start at the first sample and only whole windows are taken.")
flags.DEFINE_float("fps", files.DEFAULT_FPS, "Video frames embedded per second.")
flags.DEFINE_enum("audio_feature", "embedding", list(runner.FEATURES),
                  "Audio encoder output to store.")
flags.DEFINE_enum("image_feature", "embedding", list(runner.FEATURES),
                  "Vision encoder output to store (images and video frames).")
flags.DEFINE_string("suffix", None, "Appended to output names: <name>.<ext>_<suffix>.npz.")
flags.DEFINE_enum("kind", None, list(files.KINDS), "Treat every input as this kind "
                  "(default: by file extension).")
flags.DEFINE_float("max_seconds", None, "Embed only the first seconds of each file.")
flags.DEFINE_integer("batch_size", tool.DEFAULT_BATCH_SIZE,
                     "Encoder batch size (windows or frames; batches span files).")
flags.DEFINE_integer("workers", 2, "Decoding threads running ahead of the encoder.")
flags.DEFINE_bool("overwrite", False, "Recompute outputs that already exist (default: resume).")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["export_dir", "input", "output_dir"])


def main(argv):
    del argv
    cli.check_exists("export_dir", kind="dir")
    cli.check_output_dir("output_dir")
    logging.set_verbosity(logging.INFO)
    options = files.Options(hop_size=FLAGS.hop_size, center=FLAGS.center, fps=FLAGS.fps,
                            audio_feature=FLAGS.audio_feature, image_feature=FLAGS.image_feature,
                            batch_size=FLAGS.batch_size, max_seconds=FLAGS.max_seconds,
                            workers=FLAGS.workers)
    summary = tool.embed_files(FLAGS.export_dir, FLAGS.input, FLAGS.output_dir, options=options,
                               suffix=FLAGS.suffix, overwrite=FLAGS.overwrite, kind=FLAGS.kind,
                               progress=FLAGS.progress)
    print(f"embedded {summary['embedded']} files, kept {summary['existing']} existing, "
          f"skipped {summary['skipped']} (listed in {FLAGS.output_dir}/{tool.SKIPPED_JSON}) "
          f"in {summary['seconds']:.1f} s")


def run():
    cli.run(main, "l3-embed")


if __name__ == "__main__":
    run()
