"""What a training checkpoint holds and costs, with default flags (issue 21).

    .venv/bin/python benchmarks/bench_checkpoint.py [--work_dir=/tmp/bench_checkpoint]

Writes small synthetic shards (16 videos of 10 s, 4 fps, 256x455 frames, 2 shards),
trains each preset 2 steps on one device with a checkpoint at every step, and prints
per preset: the checkpoint's bytes (all its files), the input state's bytes (the
stream's position: int64 [6 + 3 lanes] and the bad-frame count), the model and
optimizer tensors' bytes, and the median seconds of a checkpoint write.
"""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/bench_checkpoint", "Scratch folder (emptied first).")
flags.DEFINE_list("presets", ["small", "paper"], "Presets to measure.")


def main(argv):
    del argv
    from l3.train import loop as train  # noqa: PLC0415 (TensorFlow after flags)
    from tests.fixtures.records import write_synthetic_shards  # noqa: PLC0415
    shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
    write_synthetic_shards(os.path.join(FLAGS.work_dir, "shards"), num_videos=16, seconds=10.0,
                           fps=4.0, num_shards=2, frame_size=(256, 455))
    out = {"machine": machine_info()}
    for preset in FLAGS.presets:
        summary = train.train(train.TrainConfig(
            train_pattern=os.path.join(FLAGS.work_dir, "shards", "*.tfrecord"),
            model_dir=os.path.join(FLAGS.work_dir, preset), preset=preset,
            global_batch_size=64 if preset == "small" else 16, strategy="one_device",
            train_steps=2, checkpoint_every=1, log_every=1))
        out[preset] = {**summary["checkpoint_sizes"],
                       "write_seconds_median": summary["checkpoint_write_seconds"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    app.run(main)
