"""The cluster description is input too: TF_CONFIG and Slurm's variables, checked up front.

`check_environment` runs before TensorFlow starts a cluster (before
`distribute.make_strategy`) and before anything is written: a TF_CONFIG that
is not JSON, lacks its task, names an index outside its job, or places this
task on another machine would otherwise end in a traceback from deep inside
TensorFlow, or in a worker waiting forever for peers. Each problem is one
`ClusterConfigError` (a `UsageError`: `l3-train: error: TF_CONFIG: ...`, exit 2).

TF_CONFIG, as MultiWorkerMirroredStrategy reads it:

  {"cluster": {"chief": ["host:port"], "worker": ["host:port", ...]},
   "task": {"type": "worker", "index": 0}}

jobs `chief` (at most one task) and `worker` only (no parameter servers or
evaluators in this trainer); this task's address must be one this machine
can listen on. Slurm: SLURM_PROCID, SLURM_STEP_NUM_TASKS (or SLURM_NTASKS),
SLURM_STEP_NODELIST and SLURM_STEP_TASKS_PER_NODE, consistent, with this
host in the node list.
"""

import json
import os
import socket
from typing import Mapping, Optional

from l3.core import errors

JOBS = ("chief", "worker")


class ClusterConfigError(errors.UsageError):
    """TF_CONFIG or the Slurm variables describe no cluster this process can join."""


def _fail(source: str, message: str):
    raise ClusterConfigError(f"{source}: {message}")


def check_environment(strategy: str, cluster: str,
                      environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Checks the variables `distribute.cluster_resolver(cluster)` would read, when
    `strategy` ("auto" or "multi_worker") reads them at all.

    Returns the source that will describe the cluster ("tf_config", "slurm")
    or None (a single process). Raises ClusterConfigError.
    """
    environ = os.environ if environ is None else environ
    if strategy not in ("auto", "multi_worker"):
        return None
    text = environ.get("TF_CONFIG")
    if cluster == "tf_config" or (cluster == "auto" and text):
        if not text:
            if strategy == "multi_worker":
                _fail("TF_CONFIG", "not set, and --cluster=tf_config reads the cluster from it")
            return None
        check_tf_config(text)
        return "tf_config"
    if cluster == "slurm" or (cluster == "auto" and _slurm_task_count(environ) > 1):
        check_slurm(environ)
        return "slurm"
    return None


def check_tf_config(text: str) -> dict:
    """The parsed TF_CONFIG, or ClusterConfigError saying what is wrong with it."""
    try:
        config = json.loads(text)
    except ValueError as e:
        _fail("TF_CONFIG", f"not JSON ({e}): {text[:80]!r}")
    if not isinstance(config, dict):
        _fail("TF_CONFIG", f"must be a JSON object with \"cluster\" and \"task\", got {text[:80]!r}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        _fail("TF_CONFIG", "no \"cluster\" (expected {\"worker\": [\"host:port\", ...]})")
    for job, addresses in cluster.items():
        if job not in JOBS:
            _fail("TF_CONFIG", f"job {job!r} is not one l3-train runs (MultiWorkerMirroredStrategy "
                  f"has only {' and '.join(JOBS)} tasks)")
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            _fail("TF_CONFIG", f"job {job!r} must be a list of \"host:port\" strings")
        for address in addresses:
            _split_address(address, job)
    if len(cluster.get("chief", [])) > 1:
        _fail("TF_CONFIG", f"{len(cluster['chief'])} chief tasks; a cluster has at most one")
    everyone = [a for job in JOBS for a in cluster.get(job, [])]
    if len(set(everyone)) != len(everyone):
        _fail("TF_CONFIG", "an address appears twice in the cluster")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        _fail("TF_CONFIG", "no \"task\" with \"type\" and \"index\" (expected e.g. "
              "{\"type\": \"worker\", \"index\": 0}): which member of the cluster is this?")
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        _fail("TF_CONFIG", f"task type {kind!r} is not a job of the cluster "
              f"(jobs: {', '.join(sorted(cluster))})")
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    if not isinstance(index, int) or isinstance(index, bool):
        _fail("TF_CONFIG", f"task index {task['index']!r} is not a number")
    tasks = len(cluster[kind])
    if not 0 <= index < tasks:
        _fail("TF_CONFIG", f"task index {index} is out of range: job {kind!r} has {tasks} "
              f"task(s), indices 0..{tasks - 1}")
    address = cluster[kind][index]
    host, _ = _split_address(address, kind)
    problem = not_this_host(host)
    if problem:
        alone = " (the only task of the cluster)" if len(everyone) == 1 else ""
        _fail("TF_CONFIG", f"this task, {kind} {index}{alone}, is at {address}, which is not "
              f"this machine: {problem}")
    return config


def _split_address(address: str, job: str):
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail("TF_CONFIG", f"address {address!r} of job {job!r} is not \"host:port\"")
    return host.strip("[]"), int(port)


def not_this_host(host: str) -> Optional[str]:
    """None if this machine can listen on `host` (a name or address), else why not."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as e:
        return f"{host} does not resolve ({e.strerror or e})"
    for family, _, _, _, sockaddr in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((sockaddr[0], 0))
            return None
        except OSError:
            continue
    return f"{host} ({', '.join(sorted({i[4][0] for i in infos}))}) is not an address of this host"


def _slurm_int(environ, name: str) -> Optional[int]:
    value = environ.get(name)
    if value is None:
        return None
    if not value.strip().isdigit():
        _fail("Slurm", f"{name}={value!r} is not a number")
    return int(value)


def _slurm_task_count(environ) -> int:
    tasks = _slurm_int(environ, "SLURM_STEP_NUM_TASKS")
    if tasks is None:
        tasks = _slurm_int(environ, "SLURM_NTASKS")
    return 1 if tasks is None else tasks


def check_slurm(environ: Mapping[str, str]) -> None:
    """Raises ClusterConfigError unless the Slurm variables describe a job step this task is in."""
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as slurm  # noqa: PLC0415

    for name in ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST",
                 "SLURM_STEP_TASKS_PER_NODE"):
        if not environ.get(name):
            _fail("Slurm", f"{name} is not set: run one task per node with srun inside an "
                  "allocation (launch/slurm_train.sbatch)")
    rank, tasks = _slurm_int(environ, "SLURM_PROCID"), _slurm_int(environ, "SLURM_STEP_NUM_TASKS")
    if tasks < 1 or not 0 <= rank < tasks:
        _fail("Slurm", f"SLURM_PROCID={rank} is out of range for SLURM_STEP_NUM_TASKS={tasks}")
    try:
        hosts = slurm.expand_hostlist(environ["SLURM_STEP_NODELIST"])
        per_node = slurm.expand_tasks_per_node(environ["SLURM_STEP_TASKS_PER_NODE"])
    except (ValueError, IndexError) as e:
        _fail("Slurm", f"cannot read SLURM_STEP_NODELIST / SLURM_STEP_TASKS_PER_NODE: {e}")
    if len(per_node) != len(hosts) or sum(per_node) != tasks:
        _fail("Slurm", f"SLURM_STEP_TASKS_PER_NODE={environ['SLURM_STEP_TASKS_PER_NODE']!r} on "
              f"{len(hosts)} node(s) does not add up to SLURM_STEP_NUM_TASKS={tasks}")
    me = socket.gethostname()
    if me not in hosts and me.split(".")[0] not in hosts:
        _fail("Slurm", f"this host, {me}, is not in SLURM_STEP_NODELIST "
              f"({environ['SLURM_STEP_NODELIST']})")
