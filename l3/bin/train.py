"""l3-train: AVC training on one device, one host's GPUs or many hosts.

  l3-train --train_pattern='records/train-*.tfrecord' --eval_pattern='records/val-*.tfrecord' \
      --model_dir=runs/paper --preset=paper

Resumes from the latest checkpoint in --model_dir. Multi-host runs and the
tf.data service (--data_service_address): see launch/README.md. The logic lives in `l3.train`; this is only flags.
Rehearse a multi-GPU job on the CPU with --cpu_replicas (docs/rehearse.md).
Exit status: 0 done, 1 error, 2 usage or input error (a bad flag, TF_CONFIG,
another trainer holding --model_dir), 3 non-finite loss, 143 stopped by
SIGTERM (after saving a checkpoint; run the same command to resume).
"""

import dataclasses
import json
import logging as std_logging
import sys

from absl import flags
from absl import logging

from l3.core import constants, errors, fileio, presets
from l3.pairs import data_service
from l3.train import distribute, precision
from l3.train import loop as train_lib
from l3.train.config import TrainConfig
from l3.core import cli

_D = TrainConfig  # defaults live in one place

flags.DEFINE_string("train_pattern", None, "Glob of training TFRecord shards.", required=True)
flags.DEFINE_string("eval_pattern", None, "Glob of held-out shards for periodic AVC accuracy.")
flags.DEFINE_string("model_dir", None, "Checkpoints, summaries, train_config.json.", required=True)
flags.DEFINE_enum("preset", _D.preset, ["paper", "small"], "Model/data preset.")
flags.DEFINE_enum("input_repr", "linear", list(constants.INPUT_REPRS),
                  "Audio front end: the paper's linear spectrogram, or 128 / 256 log-mel bands "
                  "(the run's preset is then recorded as e.g. 'small-mel128').")
flags.DEFINE_integer("train_steps", None, "Steps to train (default: from --train_pairs).")
flags.DEFINE_integer("train_pairs", None,
                     "Pairs to train on, rounded up to whole global batches "
                     "(default: 60M for paper, 600k for small).")
flags.DEFINE_enum("strategy", _D.strategy, list(distribute.STRATEGIES), "Distribution strategy.")
flags.DEFINE_enum("cluster", _D.cluster, list(distribute.CLUSTERS),
                  "Cluster description for multi_worker: TF_CONFIG or Slurm variables.")
flags.DEFINE_integer("global_batch_size", None, "Global batch (default: the preset's; paper 256).")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: the preset's; paper 1e-4).")
flags.DEFINE_float("weight_decay", None,
                   "L2 weight decay wd: the loss adds 0.5 * wd * sum ||kernel||^2 "
                   "(gradient wd * w; default: the preset's, 1e-5).")
flags.DEFINE_enum("mixed_precision", _D.mixed_precision, list(precision.MIXED_PRECISION),
                  "Compute precision; fp16 uses dynamic loss scaling.")
flags.DEFINE_bool("jit_compile", _D.jit_compile, "XLA-compile the forward/backward pass.")
flags.DEFINE_bool("sync_batch_norm", _D.sync_batch_norm,
                  "Batch statistics over the global batch instead of per replica.")
flags.DEFINE_integer("bn_group_size", _D.bn_group_size,
                     "Batch-norm statistics in training over groups of this many pairs of a "
                     "replica's batch ('ghost' batch norm; 0: the replica's whole batch). "
                     "Default: the preset's (paper 16, the pairs one GPU's batch norm saw in "
                     "the paper; small 0).")
flags.DEFINE_integer("cpu_replicas", _D.cpu_replicas,
                     "Rehearse on the CPU: split it into this many logical devices and train "
                     "on them as replicas (Mirrored; with launch/local_multiworker.py, this "
                     "many replicas per worker). See docs/rehearse.md.")
flags.DEFINE_integer("seed", _D.seed, "Seed for initialisation and the input pipeline.")
flags.DEFINE_bool("deterministic", _D.deterministic,
                  "TensorFlow op determinism, for bitwise-reproducible GPU steps (CPU steps "
                  "are already; the input resumes exactly from a checkpoint either way).")
flags.DEFINE_integer("checkpoint_every", _D.checkpoint_every, "Steps between checkpoints.")
flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints, "Checkpoints kept.")
flags.DEFINE_integer("eval_every", _D.eval_every, "Steps between held-out evaluations.")
flags.DEFINE_integer("eval_pairs", _D.eval_pairs, "Held-out pairs per evaluation.")
flags.DEFINE_integer("eval_batch_size", _D.eval_batch_size, "Batch size for evaluation.")
flags.DEFINE_integer("log_every", _D.log_every, "Steps between console lines and summaries.")
flags.DEFINE_integer("pairs_per_video", _D.pairs_per_video,
                     "Training pairs drawn per record read (default: l3.pairs.DEFAULT_PAIRS_PER_VIDEO, 16; "
                     "1 = one pair per record read, as before).")
flags.DEFINE_integer("steps_per_loop", _D.steps_per_loop,
                     "Training steps per tf.function call; logging, summaries, evaluation, "
                     "checkpoints and the SIGTERM/NaN checks happen between calls "
                     f"(default: {train_lib.GPU_STEPS_PER_LOOP} with GPUs, else 1).")
flags.DEFINE_string("data_service_address", None,
                    "grpc://host:port of a tf.data service dispatcher (l3-data-service): "
                    "the training pipeline runs on its input workers; evaluation stays local.")
flags.DEFINE_float("data_service_timeout_s", _D.data_service_timeout_s,
                   "Seconds to wait for the dispatcher to answer before giving up.")
flags.DEFINE_enum("on_damaged_shard", _D.on_damaged_shard, ["skip", "stop"],
                  "A shard cut short or failing a CRC: skip its rest with a warning naming it "
                  "(a long job goes on), or stop at once naming the file and byte offset. "
                  "Frames that are not whole JPEGs (not JPEG, or cut short) are never drawn; "
                  "stop also stops on them, with one line naming the record.")
flags.DEFINE_string("output_json", None, "Write the run's summary here (chief only).")

FLAGS = flags.FLAGS
PREEMPTED_EXIT = 143  # 128 + SIGTERM: schedulers restart the job, which resumes
NON_FINITE_EXIT = 3


def main(argv):
    del argv
    std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)  # saver chatter
    cli.check_matches("train_pattern")
    cli.check_matches("eval_pattern")
    cli.check_output_dir("model_dir")
    config = TrainConfig(**{
        field: getattr(FLAGS, field) for field in TrainConfig.__dataclass_fields__
        if field in FLAGS})
    config = dataclasses.replace(config, preset=presets.preset_key(FLAGS.preset, FLAGS.input_repr))
    try:  # the config's own checks (address, loop length, K), before anything starts
        config.resolved()
    except ValueError as e:
        raise errors.UsageError(str(e)) from None
    try:
        summary = train_lib.train(config)
    except train_lib.NonFiniteLossError as e:
        logging.error("%s", e)
        sys.exit(NON_FINITE_EXIT)
    except data_service.DataServiceError as e:  # dispatcher unreachable: exit 1, one line
        cli.fail("l3-train", str(e), 1)
    if FLAGS.output_json and summary["is_chief"]:
        fileio.write_json(FLAGS.output_json, summary)
    if summary["is_chief"]:
        print(json.dumps({k: summary[k] for k in ("step", "stopped", "loss", "accuracy",
                                                  "eval_accuracy", "pairs_per_second",
                                                  "checkpoint")}))
    if summary["stopped"] == "preempted":
        sys.exit(PREEMPTED_EXIT)


def run():
    cli.run(main, "l3-train")


if __name__ == "__main__":
    run()
