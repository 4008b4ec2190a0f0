"""The training run's configuration (`l3-train`'s flags) and its record in the run folder.

`TrainConfig` is what `l3.train.train` takes; `resolved()` fills in the
preset's defaults; `write_config` records it as `model_dir/train_config.json`
(read back by `l3.train.run_dir`), refusing to resume a run of another preset.
"""

import dataclasses
import json
import math
import os
from typing import Optional

import keras
import tensorflow as tf

from l3.core import constants as C
from l3.pairs import data_service
from l3.train import distribute
from l3.core import errors
from l3.core import fileio
from l3.core import presets as presets_lib
from l3.train.precision import MIXED_PRECISION
from l3.train.run_dir import TRAIN_CONFIG_JSON

# Default length when neither train_steps nor train_pairs is given: the
# paper's 60M pairs (section 2.2); `small` is a 100x shorter run (presets.py).
DEFAULT_TRAIN_PAIRS = {"paper": C.TRAIN_PAIRS, "small": C.TRAIN_PAIRS // 100}


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs. `None` fields take the preset's value.

    Attributes (the `l3-train` flags of the same names):
      train_pattern: glob of training TFRecord shards.
      model_dir: checkpoints, summaries and `train_config.json` go here; a
        run resumes from its latest checkpoint.
      eval_pattern: held-out shards for periodic AVC accuracy (optional).
      train_steps / train_pairs: run length (steps wins; pairs are rounded
        up to whole global batches). Default: DEFAULT_TRAIN_PAIRS.
      strategy / cluster: see `l3.train.distribute`.
      mixed_precision: "none", "bf16" or "fp16" (dynamic loss scaling).
      deterministic: TensorFlow op determinism (GPU kernels; CPU steps are
        deterministic already). The input is exact either way: a checkpoint
        keeps its position (`l3.pairs.stream`).
      pairs_per_video: training pairs drawn per record read (default:
        `l3.pairs.DEFAULT_PAIRS_PER_VIDEO`).
      data_service_address: "grpc://host:port" of a tf.data service
        dispatcher: the training pipeline runs on its input workers
        (`l3.train.inputs`; resume semantics there). Evaluation stays local.
      data_service_timeout_s: how long to wait for the dispatcher to answer.
      steps_per_loop: steps per `tf.function` call (`Trainer.make_loop_function`);
        logging, summaries, evaluation, checkpoints and the SIGTERM and NaN
        checks happen between loops. None: `l3.train.GPU_STEPS_PER_LOOP` with GPUs, else 1.
      bn_group_size: batch-norm statistics in training over groups of this
        many pairs of a replica's batch ("ghost" batch norm); 0: the replica's
        whole batch. Default: the preset's (paper 16, the pairs of one GPU in
        the paper; small: the whole batch); 0 with `sync_batch_norm`.
      cpu_replicas: train on this many logical CPU devices (`l3.train.devices`):
        Mirrored over them, or this many replicas per worker in a multi-worker
        job; a rehearsal of a multi-GPU job on a CPU (docs/rehearse.md).
      on_damaged_shard: "skip" (the rest of a damaged shard, with a warning)
        or "stop" (at once, naming the shard and byte offset); `l3.records.shard_reader`.
        Frames that are not whole JPEGs (not JPEG, or cut short) are never drawn, reported, and stop the run
        under "stop". Default: skip; held-out evaluation skips unless told to stop.
    """

    train_pattern: str
    model_dir: str
    preset: str = "paper"
    eval_pattern: Optional[str] = None
    train_steps: Optional[int] = None
    train_pairs: Optional[int] = None
    global_batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    weight_decay: Optional[float] = None
    strategy: str = "auto"
    cluster: str = "auto"
    mixed_precision: str = "none"
    jit_compile: bool = False
    sync_batch_norm: bool = False
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    eval_every: int = 5000
    eval_pairs: int = 2048
    eval_batch_size: int = 64
    eval_seed: int = 0
    log_every: int = 100
    pairs_per_video: Optional[int] = None
    steps_per_loop: Optional[int] = None
    data_service_address: Optional[str] = None
    data_service_timeout_s: float = 30.0
    on_damaged_shard: Optional[str] = None
    bn_group_size: Optional[int] = None
    cpu_replicas: Optional[int] = None

    def resolved(self) -> "TrainConfig":
        """A copy with the preset's defaults filled in and `train_steps` computed.

        Raises ValueError for values no run can take (`l3-train` reports it as
        a usage error before anything starts).
        """
        preset = presets_lib.get_preset(self.preset)
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {sorted(MIXED_PRECISION)}, "
                             f"got {self.mixed_precision!r}")
        for name in ("steps_per_loop", "pairs_per_video", "cpu_replicas"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.data_service_address:
            data_service.parse_address(self.data_service_address)
        if (self.cpu_replicas or 1) > 1 and self.strategy == "one_device":
            raise ValueError(f"cpu_replicas={self.cpu_replicas} needs --strategy=auto, mirrored "
                             "or multi_worker, not one_device")
        group = self.bn_group_size
        if group is not None and group < 0:
            raise ValueError(f"bn_group_size must be >= 0, got {group}")
        if self.sync_batch_norm and group:
            raise ValueError(f"sync_batch_norm (statistics of the global batch) and "
                             f"bn_group_size={group} (groups within a replica) exclude each other")
        if group is None:
            group = 0 if self.sync_batch_norm else (preset.bn_group_size or 0)
        batch = self.global_batch_size or preset.global_batch_size
        steps = self.train_steps
        if steps is None:
            pairs = self.train_pairs or DEFAULT_TRAIN_PAIRS.get(preset.name, C.TRAIN_PAIRS)
            steps = math.ceil(pairs / batch)
        return dataclasses.replace(
            self, global_batch_size=batch, train_steps=int(steps), bn_group_size=group,
            learning_rate=preset.learning_rate if self.learning_rate is None else self.learning_rate,
            weight_decay=preset.weight_decay if self.weight_decay is None else self.weight_decay)


def write_config(config: TrainConfig, strategy) -> None:
    """Writes `config` (resolved) and the run's shape to `model_dir/train_config.json`.

    Raises `errors.UsageError` if the folder holds a run of another preset.
    """
    path = os.path.join(config.model_dir, TRAIN_CONFIG_JSON)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            old = json.load(f)
        if old.get("preset") != config.preset:
            raise errors.UsageError(f"{config.model_dir} holds a {old.get('preset')!r} run; "
                             f"cannot resume it as {config.preset!r}")
    record = dataclasses.asdict(config)
    record.update(num_replicas=strategy.num_replicas_in_sync,
                  num_workers=distribute.num_workers(strategy),
                  tensorflow=tf.__version__, keras=keras.__version__)
    fileio.write_json(path, record)
