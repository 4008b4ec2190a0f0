"""Where the training loop's batches come from: this worker's own stream or the tf.data service.

* **Local** (the default): one training stream per trainer worker
  (`l3.pairs.stream`, sharded by file, `l3.train.distribute.WorkerInput`). The
  stream is a pure function of its seed and position; a checkpoint keeps the
  position after the last step's batches (a few hundred bytes per worker),
  and a resumed run rebuilds the stream there: it trains on exactly the pairs
  an uninterrupted run would. A checkpoint without an input position (one
  written by a service-fed run, or one whose files have changed since) starts
  a new stream seeded by `seed + start step`, and says so.
* **Service** (`data_service_address`): the same stream definition runs on
  the tf.data service's input workers (`l3.pairs.data_service`, distributed
  epoch); every trainer reads one shared job. The service's iterator has no
  position. A run resumed at checkpoint step s reads a *new* job,
  `data_service.job_name(model_dir, s)`, whose pipeline seed is `seed + s`:
  model, optimizer and step are restored exactly; the input is a fresh
  stream, so the pairs the killed trainer took after step s (and whatever
  the old job still buffered) are never trained on, and no part of the old
  stream is replayed.
* **A `dataset_fn` of the caller's** (tests, notebooks): its iterator has no
  position either; a resume re-seeds it with `seed + start step`.

Evaluation always reads its fixed pairs locally (`eval_dataset`).
"""

import dataclasses
from typing import Callable, Optional, Tuple

import tensorflow as tf
from absl import logging

from l3.pairs import data_service
from l3.train import distribute
from l3.pairs import evaluation
from l3.pairs import pipeline as pairs
from l3.pairs import stream as stream_lib
from l3.core import presets as presets_lib


def pipeline_options(config, seed: int) -> pairs.PipelineOptions:
    """The training stream's options for `config` and `seed`."""
    return pairs.PipelineOptions(batch_size=config.global_batch_size, seed=seed,
                                 pairs_per_video=config.pairs_per_video,
                                 on_damaged_shard=config.on_damaged_shard,
                                 include_position=True)


def default_dataset_fn(config, seed: int) -> Callable:
    """input_context -> per-replica training batches from `config.train_pattern` (no
    stream state: what the tf.data service runs)."""
    preset = presets_lib.get_preset(config.preset)
    options = dataclasses.replace(pipeline_options(config, seed), include_position=False)

    def dataset_fn(input_context):
        return pairs.make_dataset(config.train_pattern, preset, training=True, options=options,
                                  input_context=input_context)
    return dataset_fn


def eval_dataset(config) -> tf.data.Dataset:
    """The fixed held-out pairs of `config.eval_pattern` (image, waveform, label) batches."""
    return evaluation.evaluation_pairs(
        config.eval_pattern, presets_lib.get_preset(config.preset), num_pairs=config.eval_pairs,
        seed=config.eval_seed, batch_size=config.eval_batch_size,
        on_damaged_shard=config.on_damaged_shard or "skip")


def training_input(config, strategy, dataset_fn: Optional[Callable], latest: Optional[str],
                   start_step: int) -> Tuple[distribute.WorkerInput, bool, str]:
    """This worker's training input for a run starting at `start_step` (checkpoint `latest`).

    Args:
      config: the resolved `TrainConfig`.
      dataset_fn: `dataset_fn(seed)` -> (input_context -> dataset), or None
        for the training stream.

    Returns:
      (input, exact: whether it continues the checkpoint's stream, a phrase for
      the log saying where the input comes from).
    """
    if config.data_service_address:
        address = config.data_service_address
        seed = config.seed + start_step
        job = data_service.job_name(config.model_dir, start_step)
        make_input = dataset_fn or (lambda s: default_dataset_fn(config, s))
        fn = data_service.service_dataset_fn(make_input(seed), address, job)
        worker_input = distribute.WorkerInput(strategy, fn, service=True)
        return worker_input, False, f"input: tf.data service {address}, job {job}, seed {seed}"
    if dataset_fn is not None:
        seed = config.seed + start_step
        return (distribute.WorkerInput(strategy, dataset_fn(seed)), False,
                f"input: the caller's dataset_fn, seed {seed}")
    preset = presets_lib.get_preset(config.preset)
    context = distribute.input_context(strategy)
    files = pairs.resolve_files(config.train_pattern)
    saved = (distribute.saved_input_state(config.model_dir, latest, start_step, strategy)
             if latest else None)
    if saved is not None:  # continue the checkpoint's stream, if it is still this one
        position = stream_lib.StreamPosition.from_vector(saved[0])
        stream = stream_lib.stream_for(files, preset, pipeline_options(config, position.seed),
                                       context)
        if stream.accepts(position):
            worker_input = distribute.WorkerInput(
                strategy, lambda _: stream.dataset(position), stream_state=True,
                start_position=position.vector(), bad_frames=saved[1])
            return worker_input, True, (f"input position restored (epoch {position.epoch}, "
                                        f"block {position.block}, {position.consumed} draws in)")
        logging.warning("the checkpoint's input position belongs to another stream (the "
                        "training files or options changed): a new stream")
    seed = config.seed if latest is None else config.seed + start_step
    stream = stream_lib.stream_for(files, preset, pipeline_options(config, seed), context)
    position = stream.start()
    worker_input = distribute.WorkerInput(strategy, lambda _: stream.dataset(position),
                                          stream_state=True, start_position=position.vector())
    return worker_input, False, f"input seed {seed}"
