"""l3-localize: where in the frame is the thing that sounds (sound-source localization).

  l3-localize --export_dir=demo_work/export \\
      --data_pattern='demo_work/tfrecords/test-*.tfrecord' \\
      --boxes=demo_work/corpus/objects.json --output_dir=demo_work/localization
  l3-localize --export_dir=... --data_pattern='vggsound/test-*.tfrecord' --boxes=vggss.json ...

For each annotated frame of the held-out records (`--frames_per_video` per video) and
the 1 s of audio centred on it, makes a heatmap from the export's network conditioned
on that sound (`--method`: fusion_map, the fusion head applied to each conv4_2 cell;
gradcam, Grad-CAM of the correspondence log-odds on conv4_2; both on conv4_2 made
`--shifts` times finer by running the network on the frame moved in steps of
16 / shifts pixels and interleaving the maps: the small preset's 4 x 4 map becomes
16 x 16), and scores it against the true boxes (or masks, `--gt=mask`) with EZ-VSL's
cIoU: cIoU@0.5 and the AUC of the success rate over thresholds 0..1 in steps of 0.05.
Beside it: the same heatmap with another video's sound, an untrained network, the
network's unconditioned activation map and a centre prior; and, when the box file
describes them, the same numbers per case (clean, distractor visible, off-screen
sound, silent gap, unrelated sound).

--duets (default on) asks the question a single centred object cannot: each frame is put
beside a frame of another label, with the sound of one, and the heatmap should light the
sounding frame (`l3.eval.localization_duet`): the same rows, scored against the sounding
frame (cIoU@0.5, AUC) and its object's box (AUC), and a figure localization_duet.png.

Instead of records, --media_dir reads a folder in the layout of the VGG-SS and
Flickr-SoundNet test sets as EZ-VSL reads them: frames/<id>.jpg (the annotated frame)
and audio/<id>.wav (the 1 s centred on the frame's time, or on the audio's middle), for
the ids of the box file (l3-boxes, vggss.json, or Flickr-SoundNet's Annotations/ folder):

  l3-localize --export_dir=... --media_dir=/data/vggss_test --boxes=vggss.json --output_dir=out
  l3-localize --export_dir=... --media_dir=/data/Flickr-SoundNet \
      --boxes=/data/Flickr-SoundNet/Annotations --output_dir=out

--boxes: an l3-boxes file (format in `l3.eval.localization_io`; the demo corpus writes
objects.json, `l3-build-tfrecords --boxes` copies one beside the shards), VGG-SS's
annotation list (vggss.json: the middle frame of each clip), or Flickr-SoundNet's folder
of <id>.xml annotations (3 annotators' boxes on a 256 x 256 image; the truth is their
consensus map, as EZ-VSL scores it).

Writes output_dir/localization.json (every number, each item's cIoUs) and
output_dir/localization.png (heatmaps on frames with the true boxes).
"""

from absl import flags

from l3.core import cli, errors
from l3.eval import localization, localization_data, localization_run

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "An l3-export directory (needs its avc.keras).")
flags.DEFINE_string("data_pattern", None, "Glob of held-out TFRecord shards.")
flags.DEFINE_string("media_dir", None, "Instead of records: a folder with frames/<id>.jpg and "
                    "audio/<id>.wav (the VGG-SS / Flickr-SoundNet test layout).")
flags.DEFINE_string("boxes", None, "Box file: l3-boxes JSON or VGG-SS's vggss.json; or "
                    "Flickr-SoundNet's Annotations/ folder of <id>.xml files.")
flags.DEFINE_string("output_dir", None, "Where to write localization.json and the figure.")
flags.DEFINE_enum("method", localization.METHODS[0], list(localization.METHODS),
                  "Heatmap of the trained row (the other one is reported beside it).")
flags.DEFINE_integer("shifts", localization.DENSE_SHIFTS, "conv4_2 made this many times finer per "
                     "axis (shift-and-stitch, shifts^2 passes of the vision network; 1: the plain map).")
flags.DEFINE_integer("frames_per_video", 1, "Annotated frames per video (each with its 1 s).")
flags.DEFINE_enum("view", "squeeze", list(localization_data.VIEWS),
                  "squeeze: whole frame resized to the input (the literature's); "
                  "center_crop: the network's evaluation crop.")
flags.DEFINE_enum("gt", "box", list(localization_data.GT_KINDS), "Ground truth: boxes or masks.")
flags.DEFINE_float("tolerance", 0.1, "Seconds between a record's frame and an annotated frame.")
flags.DEFINE_integer("max_items", 0, "At most this many frames (0: all).")
flags.DEFINE_bool("untrained", True, "Also score an untrained network of the same preset.")
flags.DEFINE_bool("duets", True, "Also score two-source scenes: each frame beside a frame of "
                  "another label, the sound of one (truth: the sounding frame).")
flags.DEFINE_integer("seed", 0, "Seed: untrained network, the other-sound permutation.")
flags.DEFINE_integer("figure_items", 6, "Rows of the figure (0: no figure).")
flags.DEFINE_integer("batch_size", 32, "Inference batch size.")
flags.DEFINE_bool("progress", True, "Show a progress bar while the heatmaps are made.")
flags.mark_flags_as_required(["export_dir", "boxes", "output_dir"])
flags.mark_flags_as_mutual_exclusive(["data_pattern", "media_dir"], required=True)


def main(argv):
    del argv
    cli.check_exists("export_dir", kind="dir")
    cli.check_matches("data_pattern")
    cli.check_exists("media_dir", kind="dir")
    cli.check_exists("boxes", kind="file")
    cli.check_output_dir("output_dir")
    if FLAGS.shifts < 1:
        raise errors.UsageError(f"--shifts={FLAGS.shifts} must be >= 1")
    if FLAGS.frames_per_video < 1:
        raise errors.UsageError(f"--frames_per_video={FLAGS.frames_per_video} must be >= 1")
    result = localization_run.evaluate_localization(
        FLAGS.export_dir, FLAGS.data_pattern, FLAGS.boxes, FLAGS.output_dir,
        media_dir=FLAGS.media_dir, method=FLAGS.method, shifts=FLAGS.shifts,
        frames_per_video=FLAGS.frames_per_video, view=FLAGS.view,
        gt=FLAGS.gt, tolerance=FLAGS.tolerance, max_items=FLAGS.max_items or None,
        untrained=FLAGS.untrained, duets=FLAGS.duets, seed=FLAGS.seed, batch_size=FLAGS.batch_size,
        figure_items=FLAGS.figure_items, log=print, progress=FLAGS.progress)
    print(localization_run.format_table(result))
    print(f"wrote {FLAGS.output_dir}/{localization_run.RESULTS_JSON}")


def run():
    cli.run(main, "l3-localize")


if __name__ == "__main__":
    run()
