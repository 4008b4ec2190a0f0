"""l3-analyze: what the networks learnt (section 3.5) for an exported model.

  l3-analyze --export_dir=demo_work/export \\
      --data_pattern='demo_work/tfrecords/test-*.tfrecord' --output_dir=demo_work/analysis

Reads labelled held-out videos (one centre frame and the 1 s of audio around it
per video), embeds them with the export's encoders and with an untrained
network of the same architecture, and writes under --output_dir:

  analysis.json          every number (layout below)
  summary.png            NMI and unit-preference counts beside the paper's
  vision_units.png       top-5 frames of the most class-selective vision units (Fig. 3)
  vision_heatmaps.png    their conv4_2 channel over the frames (Fig. 4)
  audio_units.png        frames of the top-5 audio clips of audio units (Fig. 7)
  audio_heatmaps.png     conv4_2 channel over the log-spectrograms (Fig. 9)
  tsne.png               t-SNE of both embeddings, trained vs untrained (Fig. 10)
  projector/             TensorBoard projector (tensorboard --logdir <output_dir>/projector)
  localization.json/.png with --boxes: sound-source localization (as l3-localize)

analysis.json:
  nmi.{vision,audio}.{trained,untrained,random_assignment}    Table 4
  nmi.num_clusters, nmi.protocol
  unit_preference.{vision,audio}.{trained,untrained}.{top5_4,top5_3}   3.5.3, class counts
      (+ top5_4_classes: names, top5_4_units, dead_units; .chance: shuffled labels)
  selected_units.{vision,audio}: the units drawn, their class and top items
  retrieval.{image_to_audio,audio_to_image}.{trained,untrained,chance,...}.{R@1,R@5,R@10,
      median_rank,...}          as l3-retrieval (--retrieval_items_per_video per video)
  localization.rows.{trained,untrained,unconditioned,center_prior,...}.{cIoU@0.5,AUC,...},
      localization.by_case      as l3-localize (with --boxes)
  data (items, classes, counts), paper (the paper's numbers), figures, timings_s

and prints the numbers beside the paper's. On a 2-core CPU the small preset
takes about a minute for 2000 items; the paper preset wants a GPU.
"""

from absl import flags

from l3.eval.analysis import run as run_lib
from l3.core import cli, errors

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "An l3-export output directory.")
flags.DEFINE_string("data_pattern", None,
                    "Glob of labelled TFRecord shards of held-out videos (e.g. test-*.tfrecord).")
flags.DEFINE_string("output_dir", None, "Where to write analysis.json and the figures.")
flags.DEFINE_list("analyses", list(run_lib.ANALYSES),
                  f"Comma-separated subset of {','.join(run_lib.ANALYSES)} (by default "
                  "localization runs only with --boxes).")
flags.DEFINE_string("boxes", None, "Box file for the localization analysis (l3-boxes JSON, "
                    "e.g. the demo corpus's objects.json, or VGG-SS's vggss.json).")
flags.DEFINE_integer("retrieval_items_per_video", 1, "Items per video for retrieval.")
flags.DEFINE_integer("localization_frames_per_video", 1, "Annotated frames per video.")
flags.DEFINE_integer("num_clusters", 64, "k of k-means (Table 4: 64); capped at the item count.")
flags.DEFINE_integer("max_items", 2000, "Read at most this many items (0: all).")
flags.DEFINE_integer("items_per_video", 1, "Frames (each with its 1 s of audio) per video.")
flags.DEFINE_integer("num_figure_units", 6, "Units (rows) in the unit and heatmap figures.")
flags.DEFINE_integer("batch_size", 32, "Inference batch size.")
flags.DEFINE_integer("seed", 0, "Seed: k-means, t-SNE, tie-breaking, untrained network init.")
flags.mark_flags_as_required(["export_dir", "data_pattern", "output_dir"])


def main(argv):
    del argv
    cli.check_exists("export_dir", kind="dir")
    cli.check_matches("data_pattern")
    cli.check_output_dir("output_dir")
    cli.check_exists("boxes", kind="file")
    analyses = FLAGS.analyses
    if not FLAGS["analyses"].present and not FLAGS.boxes:
        analyses = [a for a in analyses if a != "localization"]
    elif "localization" in analyses and not FLAGS.boxes:
        raise errors.UsageError("--analyses=localization needs --boxes")
    results = run_lib.analyze(
        FLAGS.export_dir, FLAGS.data_pattern, FLAGS.output_dir, analyses=analyses,
        boxes=FLAGS.boxes, retrieval_items_per_video=FLAGS.retrieval_items_per_video,
        localization_frames_per_video=FLAGS.localization_frames_per_video,
        num_items=FLAGS.max_items or None, clusters=FLAGS.num_clusters, seed=FLAGS.seed,
        items_per_video=FLAGS.items_per_video, num_figure_units=FLAGS.num_figure_units,
        batch_size=FLAGS.batch_size, log=print)
    print(run_lib.format_table(results))
    print(f"wrote {FLAGS.output_dir}/{run_lib.RESULTS_JSON}")


def run():
    cli.run(main, "l3-analyze")


if __name__ == "__main__":
    run()
