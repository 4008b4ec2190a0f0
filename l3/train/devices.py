"""CPU replicas: rehearse a multi-device job on the host CPU (`l3-train --cpu_replicas=N`).

`split_cpu(n)` splits the host CPU into n logical devices
(`tf.config.set_logical_device_configuration`), which must happen before
TensorFlow initialises its devices. `strategy_over_cpus` then trains on them:

* one process: `MirroredStrategy` over CPU:0..n-1 (RING all-reduce, as
  MirroredStrategy does over CPUs), n replicas;
* a multi-worker cluster (TF_CONFIG / Slurm; `launch/local_multiworker.py`):
  `MultiWorkerMirroredStrategy` with n CPU replicas per worker. TensorFlow
  gives a worker without GPUs a single CPU replica
  (`CollectiveAllReduceExtended._initialize_local_devices`); here that one
  private method is replaced while the strategy is built, so that the
  collectives span CPU:0..n-1 of every worker: 4 workers x 4 replicas are the
  paper's 16 replicas, with the same all-reduces a 16-GPU job runs.

The devices share the host's cores: a rehearsal measures what the job does
(replicas, collectives, checkpoints, preemption), not how fast GPUs do it.
"""

import contextlib
from typing import List

import tensorflow as tf
from tensorflow.python.distribute import collective_all_reduce_strategy as _collective


def split_cpu(n: int) -> List[str]:
    """Splits the host CPU into `n` logical devices; returns the names of the first n.

    Call before TensorFlow runs any op (and, multi-worker, before the strategy
    configures its collectives). If the CPU was already split into at least n
    logical devices in this process, those are used. Raises ValueError otherwise.
    """
    if n < 1:
        raise ValueError(f"cpu_replicas must be >= 1, got {n}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or ()) < n:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
        except RuntimeError:
            have = len(tf.config.list_logical_devices("CPU"))
            raise ValueError(f"cpu_replicas={n}: TensorFlow already started with {have} CPU "
                             "device(s) in this process; split the CPU before it runs any op "
                             "(l3-train does)") from None
    # Named, not listed: listing would start TensorFlow's runtime, after which a
    # multi-worker strategy can no longer configure its collectives.
    return [f"/device:CPU:{i}" for i in range(n)]


@contextlib.contextmanager
def _cpu_replicas_per_worker(n: int):
    """While active, MultiWorkerMirroredStrategy gives each worker CPU:0..n-1 as replicas."""
    extended = _collective.CollectiveAllReduceExtended
    original = extended._initialize_local_devices

    def cpu_devices(self, cluster_resolver, worker_device):
        del self, cluster_resolver
        return tuple(f"{worker_device}/device:CPU:{i}" for i in range(n)), "CPU"

    extended._initialize_local_devices = cpu_devices
    try:
        yield
    finally:
        extended._initialize_local_devices = original


_KEY_SPACING = 1 << 16  # collective group keys per strategy
_made = [0]  # MirroredStrategy objects made over CPU devices in this process


def _fresh_mirrored(names) -> tf.distribute.MirroredStrategy:
    """MirroredStrategy over `names` whose collective group keys no earlier one used.

    Every MirroredStrategy numbers its collectives from the same first key; two
    of them over CPU devices in one process (two runs in a notebook, tests) would
    reuse keys the runtime has registered with other shapes ("Shape mismatch in
    the collective instance"). TensorFlow's own tests space them with the
    class's `_collective_key_base`; so does this.
    """
    cls = tf.distribute.MirroredStrategy
    saved = cls._collective_key_base
    cls._collective_key_base = _made[0] * _KEY_SPACING
    try:
        return cls(names)
    finally:
        cls._collective_key_base = saved
        _made[0] += 1


def strategy_over_cpus(n: int, resolver=None) -> tf.distribute.Strategy:
    """n CPU replicas (after `split_cpu(n)`): Mirrored in one process, or, given a
    multi-task `resolver`, MultiWorkerMirrored with n replicas on every worker."""
    names = split_cpu(n)
    if resolver is None:
        return _fresh_mirrored(names)
    with _cpu_replicas_per_worker(n):
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver,
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING))
