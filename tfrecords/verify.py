r"""l3-verify-tfrecords: read every shard, check framing, CRCs, schema and sidecar counts.

  l3-verify-tfrecords --data_pattern='/data/records/*.tfrecord'
  l3-verify-tfrecords --data_pattern='/data/records/train-*.tfrecord' --output_json=verify.json
  l3-verify-tfrecords --data_pattern='/data/records/*.tfrecord' --deep   # decode every frame

Prints one line per bad shard, naming it and what is wrong (truncated, a CRC
mismatch at byte N, a record that does not parse, counts that differ from
the builder's sidecar, a shard a sidecar lists but that is missing; with
--deep, each record holding a frame that does not decode as a JPEG, with its
video id and frame indices), then a total. Exit status 0 when every shard is sound, 1 when any is not, 2 for bad
flags. The checks are in `l3_tfrecords.integrity`. Also runs as
`python -m l3_tfrecords.verify`.
"""

import glob

from absl import flags
from tqdm import tqdm

from l3.core import fileio
from l3.core import cli

from . import integrity

FLAGS = flags.FLAGS
flags.DEFINE_string("data_pattern", None, "Glob of TFRecord shards (e.g. records/*.tfrecord).")
flags.DEFINE_string("output_json", None, "Write every shard's report here.")
flags.DEFINE_bool("deep", False, "Also decode every frame (TensorFlow's JPEG decoder, as "
                  "training does) and name the records and frames that do not decode; about "
                  "1 ms per frame.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
    del argv
    cli.check_matches("data_pattern")
    paths = sorted(glob.glob(FLAGS.data_pattern))
    reports = [integrity.verify_shard(p, FLAGS.deep)
               for p in tqdm(paths, desc="shards", unit="shard", disable=not FLAGS.progress)]
    for path in integrity.missing_shards(FLAGS.data_pattern, paths):
        reports.append(integrity.ShardReport(shard=path, problems=["missing: its sidecar says "
                                                                   "it was built"]))
    bad = [r for r in reports if not r.ok]
    for r in bad:
        print(f"BAD {r.shard}: " + "; ".join(r.problems))
    print(f"{len(reports) - len(bad)} of {len(reports)} shards sound, {len(bad)} bad; "
          f"{sum(r.records for r in reports)} records read")
    if FLAGS.output_json:
        fileio.write_json(FLAGS.output_json, {"shards": [vars(r) for r in reports],
                                              "bad": [r.shard for r in bad]})
    return 1 if bad else 0


def run():
    flags.mark_flags_as_required(["data_pattern"])
    cli.run(main, "l3-verify-tfrecords")


if __name__ == "__main__":
    run()
