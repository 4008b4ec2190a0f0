"""Where the training loop's batches come from: this worker's own pipeline or the tf.data service.

* **Local** (the default): one `l3.pairs.make_dataset` pipeline per trainer
  worker, sharded by file (`l3.train.distribute.WorkerInput`). Its iterator is
  checkpointed, so a resumed run continues the exact input sequence.
* **Service** (`data_service_address`): the same pipeline definition runs on
  the tf.data service's input workers (`l3.pairs.data_service`, distributed epoch);
  every trainer reads one shared job. The service's iterator cannot be
  checkpointed. A run resumed at checkpoint step s reads a *new* job,
  `data_service.job_name(model_dir, s)`, whose pipeline seed is `seed + s`:
  model, optimizer and step are restored exactly; the input is a fresh
  stream, so the pairs the killed trainer took after step s (and whatever
  the old job still buffered) are never trained on, and no part of the old
  stream is replayed.

Evaluation always reads its fixed pairs locally (`eval_dataset`).
"""

from typing import Callable, Optional, Tuple

import tensorflow as tf
from absl import logging

from l3.pairs import data_service
from l3.train import distribute
from l3.pairs import evaluation
from l3.pairs import pipeline as pairs
from l3.core import presets as presets_lib


def default_dataset_fn(config, seed: int) -> Callable:
    """input_context -> per-replica training batches from `config.train_pattern`."""
    preset = presets_lib.get_preset(config.preset)
    options = pairs.PipelineOptions(batch_size=config.global_batch_size, seed=seed,
                                    deterministic=True if config.deterministic else None,
                                    pairs_per_video=config.pairs_per_video,
                                    on_damaged_shard=config.on_damaged_shard)

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
        for `default_dataset_fn`.

    Returns:
      (input, exact: whether its position is restored from the checkpoint,
      a phrase for the log saying where the input comes from).
    """
    make_input = dataset_fn or (lambda s: default_dataset_fn(config, s))
    if config.data_service_address:
        address = config.data_service_address
        seed = config.seed + start_step
        job = data_service.job_name(config.model_dir, start_step)
        if config.checkpoint_input:
            logging.info("input from the tf.data service: its position is not checkpointed")
        fn = data_service.service_dataset_fn(make_input(seed), address, job)
        worker_input = distribute.WorkerInput(strategy, fn, checkpointable=False)
        return worker_input, False, f"input: tf.data service {address}, job {job}, seed {seed}"
    exact = config.checkpoint_input and (
        latest is None
        or distribute.input_state_saved(config.model_dir, latest, start_step, strategy))
    seed = config.seed if latest is None or exact else config.seed + start_step
    worker_input = distribute.WorkerInput(strategy, make_input(seed),
                                          checkpointable=config.checkpoint_input)
    where = "input position restored" if latest and exact else f"input seed {seed}"
    return worker_input, exact, where
