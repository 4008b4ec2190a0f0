"""AVC training (section 2.2): set-up, resume and the outer loop of `l3-train`.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy (docs/DESIGN.md), so
the loop is explicit and the same for one device, MirroredStrategy and
MultiWorkerMirroredStrategy. Its parts:

* `l3.train.step.Trainer`: model, optimiser and the distributed step, whose
  outputs are named (`StepOutputs`: cross_entropy, l2, correct,
  stop_requests, nonfinite);
* `l3.train.controller.Controller`: `steps_per_loop` steps per tf.function
  call, and between calls the actions of `l3.train.actions` (NaN stop,
  preemption, log, checkpoint, evaluation), in the manner of orbit;
* this module: what a run sets up around them (seeds, the run folder and
  its lock, the strategy, resume, the input) and the summary it returns.

Choices, and why (the step's own are in `l3.train.step`):

* **Checkpoints** (`tf.train.CheckpointManager`, `model_dir/ckpt-<step>`)
  hold `model`, `optimizer`, `step` and, single-worker, the input's
  *position* (`l3.pairs.stream`: a few hundred bytes, never its buffers), so
  a resumed run continues the exact input sequence. In multi-worker runs each
  worker's input position is its own: it goes to
  `model_dir/input_state/worker-<i>/` (written by that worker), while the
  model checkpoint is written by the chief only. Saved every
  `checkpoint_every` steps, at the end, and on SIGTERM (all workers stop at
  the same step: the request travels with the step's all-reduce).
* **Non-finite values** in the loss, the gradients or the BN statistics
  (checked every step, agreed by all workers) stop the run
  (`NonFiniteLossError`) before anything is saved, so the last checkpoint is
  the last good state.
* **Input**: one training stream per worker (`l3.train.distribute.WorkerInput`),
  sharded as `distribute_datasets_from_function` would, read through a plain
  iterator: each batch carries the stream's position, which the step keeps.
  The price: batches are copied to the accelerators inside the step rather
  than prefetched there. With `data_service_address` the same stream runs on
  tf.data service workers instead (`l3.train.inputs` states what a resume
  then sees).
* **One trainer per run folder**: `model_dir/trainer.lock` names the host and
  pid of the trainer that holds it (`l3.train.lock`); a second trainer
  refuses to start, a lock left by a dead process is taken over.
* **Determinism**: initialisation is seeded and the input is a function of
  seed and position, so on the CPU a run stopped at any checkpoint and
  resumed ends with the same weights as an uninterrupted one (tested).
  `deterministic=True` adds TensorFlow's op determinism, which GPUs need for
  the same guarantee (some GPU kernels are otherwise nondeterministic).
"""

import contextlib
import os
import statistics
import time
from typing import Callable, Dict, Optional

from absl import logging
import keras
import tensorflow as tf

from l3.core import presets as presets_lib
from l3.model import network as model_lib
from l3.pairs import data_service
from l3.pairs import evaluation
from l3.pairs import pipeline as pairs
from l3.pairs import sampling
from l3.records import shard_reader
from l3.train import actions as actions_lib
from l3.train import cluster as cluster_lib
from l3.train import distribute
from l3.train import lock as lock_lib
from l3.train import inputs as train_input
from l3.train.actions import NonFiniteLossError
from l3.train.config import TrainConfig, write_config
from l3.train.controller import GPU_STEPS_PER_LOOP, Controller, default_steps_per_loop
from l3.train.step import JITTER_STREAM, STEP_OUTPUTS, StepOutputs, Trainer
from l3.train.utils import Progress, SigtermFlag, format_duration

__all__ = ["GPU_STEPS_PER_LOOP", "JITTER_STREAM", "NonFiniteLossError", "STEP_OUTPUTS",
           "StepOutputs", "TrainConfig", "Trainer", "train"]


def _train(config: TrainConfig, strategy, dataset_fn, sigterm) -> Dict:
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    preset = presets_lib.get_preset(config.preset)
    chief = distribute.is_chief(strategy)
    say = logging.info if chief else logging.debug  # progress: the chief's console only
    logging.info("%s", distribute.describe(strategy))
    if chief:
        tf.io.gfile.makedirs(config.model_dir)
        write_config(config, strategy)

    trainer = Trainer(preset, strategy, global_batch_size=config.global_batch_size,
                      learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                      mixed_precision=config.mixed_precision, jit_compile=config.jit_compile,
                      sync_batch_norm=config.sync_batch_norm,
                      bn_group_size=config.bn_group_size, seed=config.seed)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

    # Resume? And can this worker's input position be restored (else re-seed the input)?
    latest = distribute.resumable_checkpoint(config.model_dir, distribute.num_workers(strategy))
    start_step = distribute.checkpoint_step(latest) if latest else 0
    worker_input, _, input_source = train_input.training_input(
        config, strategy, dataset_fn, latest, start_step)
    checkpoints = distribute.RunCheckpoints(
        config.model_dir, strategy, model=trainer.model, optimizer=trainer.optimizer,
        step=step_var, input_state=worker_input.state, keep=config.keep_checkpoints)
    if latest:
        checkpoints.restore(latest)
        logging.info("resumed from %s (step %d), restored weights digest %s; %s", latest,
                     start_step, model_lib.weights_digest(trainer.model), input_source)
    else:
        say("starting a new run in %s; %s", config.model_dir, input_source)

    steps_per_loop = default_steps_per_loop(config.steps_per_loop)
    train_writer = eval_writer = tf.summary.create_noop_writer()
    if chief:
        train_writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "train"))
        if config.eval_pattern:
            eval_writer = tf.summary.create_file_writer(os.path.join(config.model_dir, "eval"))

    def save(step):
        step_var.assign(step)
        return checkpoints.save(step)

    total = config.train_steps
    say("training %s preset to step %d: global batch %d, lr %g, wd %g, %s precision, "
        "%d step(s) per loop, batch-norm groups of %s", preset.name, total,
        config.global_batch_size, config.learning_rate, config.weight_decay,
        config.mixed_precision, steps_per_loop,
        "the global batch" if config.sync_batch_norm else
        config.bn_group_size or "a replica's batch")
    progress = Progress(global_batch_size=config.global_batch_size, train_steps=total,
                        learning_rate=config.learning_rate, writer=train_writer, say=say)
    saver = actions_lib.SaveCheckpoints(save, config.model_dir, config.checkpoint_every,
                                        saved_step=start_step, path=latest, say=say)
    preemption = actions_lib.Preemption(sigterm)
    evaluate = actions_lib.Evaluate(
        _evaluator(config, trainer, strategy) if config.eval_pattern and chief else None,
        config.eval_every if config.eval_pattern else None, eval_writer, say=say)
    controller = Controller(
        trainer.make_loop_function(worker_input.next), start_step=start_step, total_steps=total,
        steps_per_loop=steps_per_loop, stop_requested=preemption.requested,
        actions=[actions_lib.StopOnNonFinite(saver), preemption,
                 actions_lib.LogProgress(progress, config.log_every), saver, evaluate])
    begin = time.time()
    state = controller.run()
    train_writer.flush()
    eval_writer.flush()
    digest = model_lib.weights_digest(trainer.model)
    stopped = state.stopped or "completed"
    logging.info("%s at step %d after %s; weights sha256 %s", stopped, state.step,
                 format_duration(time.time() - begin), digest)
    return {"step": state.step, "start_step": start_step, "train_steps": total,
            "stopped": stopped, **progress.last, "eval_accuracy": evaluate.accuracy,
            "checkpoint": saver.path, "weights_sha256": digest,
            "bad_frames": (int(worker_input.bad_frames.numpy())
                           if worker_input.bad_frames is not None else None),
            "checkpoint_write_seconds": (statistics.median(saver.seconds)
                                         if saver.seconds else None),
            "checkpoint_sizes": distribute.checkpoint_sizes(saver.path) if chief else None,
            "num_replicas": strategy.num_replicas_in_sync,
            "num_workers": distribute.num_workers(strategy), "is_chief": chief,
            "model_dir": config.model_dir}


def _evaluator(config: TrainConfig, trainer: Trainer, strategy) -> Callable[[int], dict]:
    """step -> AVC metrics of the fixed held-out pairs, on this worker's first device."""
    predict = trainer.make_predict_function(config.jit_compile)

    def evaluate(step):
        del step
        with tf.device(distribute.first_local_device(strategy)):
            return evaluation.evaluate_pairs(predict, train_input.eval_dataset(config))
    return evaluate


def train(config: TrainConfig, *, strategy: Optional[tf.distribute.Strategy] = None,
          dataset_fn: Optional[Callable[[int], Callable]] = None) -> Dict:
    """Trains (or resumes) the AVC model; returns a summary dict.

    Args:
      config: the run; `None` fields take the preset's values.
      strategy: overrides `config.strategy` (tests, notebooks).
      dataset_fn: overrides the input: `dataset_fn(seed)` returns a function
        input_context -> dataset of per-replica (image, waveform, label)
        (through the service too, with `config.data_service_address`).

    Returns:
      {"step", "start_step", "train_steps", "stopped" ("completed" or
      "preempted"), "loss", "accuracy" (last log window), "eval_accuracy"
      (last, or None), "pairs_per_second", "checkpoint", "weights_sha256",
      "bad_frames" (frames found not whole JPEGs and never drawn, over the whole run and
      its resumes; None with another input),
      "checkpoint_write_seconds" (median of this run's saves, or None),
      "checkpoint_sizes" (chief: `distribute.checkpoint_sizes` of the last
      checkpoint: its bytes, the input position's, the model and optimizer's),
      "num_replicas", "num_workers", "is_chief", "model_dir"}.

    Raises:
      NonFiniteLossError: the loss became NaN/Inf (nothing saved after it).
      cluster.ClusterConfigError: TF_CONFIG or the Slurm variables are wrong.
      lock.RunLockedError: another live trainer holds `model_dir`.
      data_service.DataServiceError: the dispatcher did not answer in time.
      errors.DamagedShardError: a damaged shard with `on_damaged_shard="stop"`.
    """
    config = config.resolved()
    if strategy is None:  # TF_CONFIG / Slurm: one line now, not a traceback from the cluster
        cluster_lib.check_environment(config.strategy, config.cluster)
    if config.data_service_address:  # fail early and clearly, not in a silent retry loop
        data_service.check_dispatcher(config.data_service_address, config.data_service_timeout_s)
    strategy = strategy or distribute.make_strategy(config.strategy, config.cluster,
                                                    config.cpu_replicas)
    # The chief locks the run folder (a second trainer on it refuses), before writing to it.
    lock = lock_lib.RunLock(config.model_dir) if distribute.is_chief(strategy) else None
    # After the strategy: with a multi-worker cluster TF installs its own SIGTERM
    # handler (coordination service), which would swallow the signal.
    with lock or contextlib.nullcontext(), SigtermFlag() as sigterm:
        try:
            return _train(config, strategy, dataset_fn, sigterm)
        except tf.errors.DataLossError as e:  # --on_damaged_shard=stop: name the shard
            patterns = [p for p in (config.train_pattern, config.eval_pattern) if p]
            raise shard_reader.damaged_shard_error(pairs.resolve_files(patterns), e) from None
        except tf.errors.InvalidArgumentError as e:  # stop at frames that are not whole JPEGs
            raise (sampling.bad_frames_error(e) or e) from None
