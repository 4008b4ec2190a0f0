"""Strategies, cluster roles and per-worker input for the training loop.

One loop (`l3.train`) serves three set-ups:

* `one_device`: one GPU, or the CPU;
* `mirrored`: all GPUs of one host (`tf.distribute.MirroredStrategy`);
* `multi_worker`: several hosts (`MultiWorkerMirroredStrategy`), the cluster
  described by `TF_CONFIG` (the local launcher, Kubernetes) or by Slurm's
  variables (`SlurmClusterResolver`, one task per node).

`auto` picks `multi_worker` when a cluster of more than one task is
described, else `mirrored` with more than one GPU, else `one_device`.

Roles follow TensorFlow's multi-worker convention: the chief is task
`chief:0` or, without one, `worker:0`; only the chief writes the real
checkpoints and summaries, the others write to a temporary directory that
is removed (they must still take part in saving).

Also here: `WorkerInput`, this worker's checkpointable input, and
`RunCheckpoints`, the checkpoint layout of a run (the chief's model state,
each worker's input position).
"""

import contextlib
import os
import re
import tempfile
from typing import Callable, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from l3.core import temps
from l3.train import devices

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
CHECKPOINT_PREFIX = "ckpt"          # model_dir/ckpt-<step>
INPUT_STATE_DIR = "input_state"     # model_dir/input_state/worker-<i>/ckpt-<step>
CLUSTERS = ("auto", "tf_config", "slurm")
# Not from the paper: SlurmClusterResolver's default first port.
SLURM_PORT_BASE = 8888


def _slurm_tasks() -> int:
    return int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1")))


def cluster_resolver(kind: str = "auto"):
    """The cluster this process belongs to, or None for a single process.

    Args:
      kind: "tf_config" (the `TF_CONFIG` variable), "slurm" (Slurm's
        variables; run one task per node with `srun`) or "auto" (TF_CONFIG if
        set, else Slurm if the job step has more than one task, else None).
    """
    if kind not in CLUSTERS:
        raise ValueError(f"cluster must be one of {CLUSTERS}, got {kind!r}")
    resolvers = tf.distribute.cluster_resolver
    if kind == "tf_config" or (kind == "auto" and os.environ.get("TF_CONFIG")):
        return resolvers.TFConfigClusterResolver()
    if kind == "slurm" or (kind == "auto" and _slurm_tasks() > 1):
        # Sets CUDA_VISIBLE_DEVICES for this task: must run before TF sees the GPUs.
        return resolvers.SlurmClusterResolver(port_base=SLURM_PORT_BASE)
    return None


def _cluster_tasks(resolver) -> int:
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, ())) for job in ("chief", "worker"))


def make_strategy(name: str = "auto", cluster: str = "auto",
                  cpu_replicas: Optional[int] = None) -> tf.distribute.Strategy:
    """Creates the strategy `name` (one of STRATEGIES); see the module docstring.

    Call it before any other TensorFlow op runs: MultiWorkerMirroredStrategy
    must configure collective ops first. `cpu_replicas=n` trains on n logical
    CPU devices instead of the GPUs (`l3.train.devices`): Mirrored over them,
    or n replicas per worker in a multi-worker cluster.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    resolver = cluster_resolver(cluster) if name in ("auto", "multi_worker") else None
    if cpu_replicas:
        if name == "one_device" and cpu_replicas > 1:
            raise ValueError(f"cpu_replicas={cpu_replicas} needs strategy auto, mirrored or "
                             "multi_worker, not one_device")
        multi = name == "multi_worker" or (resolver is not None and _cluster_tasks(resolver) > 1)
        if multi:
            resolver = resolver or tf.distribute.cluster_resolver.TFConfigClusterResolver()
        return devices.strategy_over_cpus(cpu_replicas, resolver if multi else None)
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if resolver is not None and _cluster_tasks(resolver) > 1:
            name = "multi_worker"
        else:
            name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                      else tf.distribute.experimental.CommunicationImplementation.AUTO)
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver or tf.distribute.cluster_resolver.TFConfigClusterResolver(),
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation))


def _task(strategy):
    """(task_type, task_id, cluster spec dict) of this process; (None, None, {}) if alone."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def is_chief(strategy) -> bool:
    """True for the task that writes checkpoints and summaries."""
    task_type, task_id, spec = _task(strategy)
    return (task_type in (None, "chief")
            or (task_type == "worker" and task_id == 0 and "chief" not in spec))


def num_workers(strategy) -> int:
    """Processes taking part in training (1 unless multi-worker)."""
    _, _, spec = _task(strategy)
    return max(1, sum(len(spec.get(job, ())) for job in ("chief", "worker")))


def worker_index(strategy) -> int:
    """This process's index among the workers, chief first (TF's `id_in_cluster`)."""
    task_type, task_id, spec = _task(strategy)
    if task_type in (None, "chief"):
        return 0
    return task_id + (1 if "chief" in spec else 0)


def describe(strategy) -> str:
    """One line for the log: strategy, replicas, workers, this task."""
    task_type, task_id, _ = _task(strategy)
    task = f", task {task_type}:{task_id}" if task_type else ""
    return (f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s) on "
            f"{num_workers(strategy)} worker(s){task}{' (chief)' if is_chief(strategy) else ''}")


@contextlib.contextmanager
def chief_or_temporary_dir(directory: str, strategy):
    """Yields `directory` on the chief, a temporary directory removed afterwards elsewhere.

    TensorFlow's multi-worker pattern: every worker takes part in writing
    (saving may involve collective ops), only the chief's copy is kept.
    """
    if is_chief(strategy):
        yield directory
        return
    # A registered temporary (l3.core.temps): removed on SIGTERM/SIGINT, and a SIGKILLed
    # worker's is swept by the next save in the same TMPDIR.
    tmp = temps.new_dir(f"l3-worker{worker_index(strategy)}", folder=tempfile.gettempdir())
    try:
        yield tmp
    finally:
        temps.discard(tmp)


def input_context(strategy) -> tf.distribute.InputContext:
    """The context `distribute_datasets_from_function` would give this worker's pipeline."""
    return tf.distribute.InputContext(num_input_pipelines=num_workers(strategy),
                                      input_pipeline_id=worker_index(strategy),
                                      num_replicas_in_sync=strategy.num_replicas_in_sync)


class WorkerInput:
    """This worker's training input: one tf.data pipeline feeding its local replicas.

    `dataset_fn(input_context)` returns per-replica batches, sharded by input
    pipeline (one pipeline per worker), exactly as for
    `strategy.distribute_datasets_from_function`. Each step takes one batch per
    local replica from a plain iterator (local replica r gets the r-th); the
    copy to the accelerator happens inside the step.

    With `stream_state=True` each element ends with the training stream's state
    (`l3.pairs.stream`: {"position": int64 [P], "bad_frames": int32 []}); the
    step strips it and keeps the position after the step's last batch in
    `position` and the frames found not whole JPEGs in `bad_frames`. Those two
    variables (`state`) are all a checkpoint holds of the input: the stream is
    rebuilt from the position on resume. They are local to this worker
    (created outside the strategy's scope). With `service=True` the standard
    distributed iterator is used (the tf.data service's input has no position).
    """

    def __init__(self, strategy, dataset_fn: Callable, *, stream_state: bool = False,
                 start_position=None, bad_frames: int = 0, service: bool = False):
        self._strategy = strategy
        self._local_replicas = len(strategy.extended.worker_devices)
        self.stream_state = stream_state and not service
        self.state = None
        self.position = self.bad_frames = None
        if service:
            self.iterator = None
            self._distributed = iter(strategy.distribute_datasets_from_function(dataset_fn))
            return
        self._distributed = None
        self.iterator = iter(dataset_fn(input_context(strategy)))
        if self.stream_state:
            self.position = tf.Variable(start_position, dtype=tf.int64, trainable=False,
                                        name="input_position")
            self.bad_frames = tf.Variable(bad_frames, dtype=tf.int64, trainable=False,
                                          name="input_bad_frames")
            self.state = tf.train.Checkpoint(position=self.position, bad_frames=self.bad_frames)

    def next(self):
        """The next step's batch, one per replica (call inside a tf.function)."""
        if self._distributed is not None:
            return next(self._distributed)
        batches = [next(self.iterator) for _ in range(self._local_replicas)]
        if self.stream_state:
            states = [batch[-1] for batch in batches]
            batches = [batch[:-1] for batch in batches]
            self.position.assign(states[-1]["position"])
            self.bad_frames.assign_add(tf.cast(tf.add_n([s["bad_frames"] for s in states]),
                                               tf.int64))
        n = self._local_replicas
        return self._strategy.experimental_distribute_values_from_function(
            lambda ctx: batches[ctx.replica_id_in_sync_group % n])


# --- Checkpoints of a run: the chief's model state, each worker's input position ---

INPUT_KEY = "input"   # checkpoint key of WorkerInput.state


def checkpoint_step(path: str) -> int:
    """The training step stored in checkpoint `path`."""
    return int(tf.train.load_variable(path, "step/.ATTRIBUTES/VARIABLE_VALUE"))


def resumable_checkpoint(model_dir: str, workers: int = 1) -> Optional[str]:
    """The checkpoint a (re)started run resumes from: the newest in `model_dir`; in a
    multi-worker run, the newest whose step every worker's input position was also
    saved for (input_state/worker-<i>/ckpt-<step>). The chief saves the model first,
    then each worker its position: a job killed in between has a newest model
    checkpoint that some worker holds no position for, and resuming there would
    re-seed that worker's input (not the uninterrupted run's pairs). When no worker
    saved any position (inputs not checkpointed: the tf.data service, a caller's
    dataset), the newest; when some did but no step has them all (killed during
    the first save), None: the job starts afresh, as an uninterrupted one did.
    Every worker reads the same files and so picks the same step. `workers`: the
    job's worker count (`num_workers(strategy)`)."""
    latest = tf.train.latest_checkpoint(model_dir)
    if latest is None or workers == 1:
        return latest
    state = tf.train.get_checkpoint_state(model_dir)
    paths = [os.path.join(model_dir, os.path.basename(p))
             for p in (state.all_model_checkpoint_paths if state else [latest])]
    steps = {int(p.rsplit("-", 1)[1]): p for p in paths if re.search(r"-\d+$", p)}
    for step in sorted(steps, reverse=True):
        everyone = all(tf.io.gfile.exists(os.path.join(
            model_dir, INPUT_STATE_DIR, f"worker-{i}", f"{CHECKPOINT_PREFIX}-{step}.index"))
            for i in range(workers))
        if everyone and tf.io.gfile.exists(steps[step] + ".index"):
            if steps[step] != latest:
                logging.warning("%s lacks some worker's input position (the job was killed "
                                "while saving it): resuming from %s", latest, steps[step])
            return steps[step]
    if tf.io.gfile.glob(os.path.join(model_dir, INPUT_STATE_DIR, "worker-*",
                                     f"{CHECKPOINT_PREFIX}-*.index")):
        logging.warning("no checkpoint in %s has every worker's input position (the job was "
                        "killed during its first save): starting afresh", model_dir)
        return None
    return latest


def input_state_dir(model_dir: str, strategy) -> str:
    """Where this worker keeps its input position in a multi-worker run."""
    return os.path.join(model_dir, INPUT_STATE_DIR, f"worker-{worker_index(strategy)}")


def saved_input_state(model_dir: str, checkpoint: str, step: int, strategy):
    """This worker's input state saved with `checkpoint` (step `step`): (position
    int64 [P], bad_frames int) or None (none saved: the input then starts afresh)."""
    path = checkpoint
    if num_workers(strategy) > 1:
        path = os.path.join(input_state_dir(model_dir, strategy), f"{CHECKPOINT_PREFIX}-{step}")
        if not tf.io.gfile.exists(path + ".index"):
            return None
    names = dict(tf.train.list_variables(path))
    key = f"{INPUT_KEY}/position/.ATTRIBUTES/VARIABLE_VALUE"
    if key not in names:
        return None
    bad = tf.train.load_variable(path, f"{INPUT_KEY}/bad_frames/.ATTRIBUTES/VARIABLE_VALUE")
    return tf.train.load_variable(path, key), int(bad)


_UNFINISHED_SAVE = re.compile(rf"^({CHECKPOINT_PREFIX}-\d+_temp|checkpoint\.tmp[0-9a-f]+)$")


def remove_unfinished_saves(directory: str) -> List[str]:
    """Removes what a save killed midway left in `directory` (TensorFlow's
    `ckpt-<n>_temp/` shard folder, a `checkpoint.tmp<hex>` index) and returns the
    names. Call it only while this run holds the folder (the model_dir lock): no
    save of another process can be under way. The `checkpoint` index names
    only finished checkpoints, so nothing removed was ever restorable."""
    if not tf.io.gfile.isdir(directory):
        return []
    removed = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(directory)
                     if _UNFINISHED_SAVE.match(n.rstrip("/")))
    for name in removed:
        path = os.path.join(directory, name)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
    if removed:
        logging.info("removed what a killed checkpoint save left in %s: %s", directory,
                     ", ".join(removed))
    return removed


def checkpoint_sizes(path: Optional[str]) -> Optional[dict]:
    """Bytes of checkpoint `path` (all its files), of its input state (the `input/`
    tensors: the stream's position) and of the model and optimizer tensors; None
    without a checkpoint."""
    if not path or not tf.io.gfile.exists(path + ".index"):
        return None
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    tensors = {name: int(np.prod(shape, dtype=np.int64)) * dtypes[name].size  # no tensor read
               for name, shape in reader.get_variable_to_shape_map().items()
               if name.startswith((INPUT_KEY + "/", "model/", "optimizer/"))}
    return {"checkpoint_bytes": sum(tf.io.gfile.stat(f).length
                                    for f in tf.io.gfile.glob(path + ".*")),
            "input_state_bytes": sum(v for n, v in tensors.items()
                                     if n.startswith(INPUT_KEY + "/")),
            "model_optimizer_bytes": sum(v for n, v in tensors.items()
                                         if n.startswith(("model/", "optimizer/")))}


class RunCheckpoints:
    """Model checkpoints in model_dir (written by the chief) and per-worker input state.

    Single worker: one checkpoint with model, optimizer, step and the input's
    state (`WorkerInput.state`: its position, a few hundred bytes).
    Multi-worker: the chief's model checkpoint (model, optimizer, step) and,
    from every worker, its own input state in input_state/worker-<i>/, with the
    same step numbers.
    """

    def __init__(self, model_dir, strategy, *, model, optimizer, step, input_state, keep):
        self.model_dir, self.strategy = model_dir, strategy
        if is_chief(strategy):
            remove_unfinished_saves(model_dir)
        if num_workers(strategy) > 1:
            remove_unfinished_saves(input_state_dir(model_dir, strategy))
        self._trained = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
        multi_worker = num_workers(strategy) > 1
        extra = {INPUT_KEY: input_state} if input_state is not None and not multi_worker else {}
        self.state = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, **extra)
        self.input_state = self.input_manager = None
        if input_state is not None and multi_worker:
            self.input_state = tf.train.Checkpoint(**{INPUT_KEY: input_state})
            self.input_manager = tf.train.CheckpointManager(
                self.input_state, input_state_dir(model_dir, strategy), max_to_keep=keep,
                checkpoint_name=CHECKPOINT_PREFIX)
        self.manager = (tf.train.CheckpointManager(self.state, model_dir, max_to_keep=keep,
                                                   checkpoint_name=CHECKPOINT_PREFIX)
                        if is_chief(strategy) else None)

    def restore(self, path: str):
        """Restores model, optimizer and step (the input was rebuilt from its saved position)."""
        self._trained.restore(path).assert_existing_objects_matched().expect_partial()

    def save(self, step: int) -> str:
        """Saves on every worker (the non-chiefs to a removed temporary dir); returns the path."""
        if self.manager is not None:
            path = self.manager.save(checkpoint_number=step)
        else:
            with chief_or_temporary_dir(self.model_dir, self.strategy) as tmp:
                tf.train.CheckpointManager(self.state, tmp, max_to_keep=1).save(
                    checkpoint_number=step)
            path = os.path.join(self.model_dir, f"{CHECKPOINT_PREFIX}-{step}")
        if self.input_manager is not None:
            self.input_manager.save(checkpoint_number=step)
        return path


def first_local_device(strategy) -> str:
    """The first device this worker computes on (for single-device work like evaluation)."""
    return strategy.extended.worker_devices[0]
