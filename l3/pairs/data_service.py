"""The tf.data service: input workers on CPU machines that feed the trainers over gRPC.

TensorFlow's own engine (`tf.data.experimental.service`), not ours: one
dispatcher, any number of input workers, and trainers that read through
`distribute_dataset`. The whole training pipeline (`l3.pairs.make_dataset`,
the same sampling and augmentation) is serialised by the trainer and runs on
the workers; the trainer receives finished batches.

    dispatcher = start_dispatcher(port=5050, work_dir="/shared/l3/dispatcher")
    worker = start_worker("dispatcher-host:5050", port=5051)
    ds = distribute_dataset(make_dataset(...), "grpc://dispatcher-host:5050", job_name="run")

Processing mode: a *distributed epoch* (`ShardingPolicy.DYNAMIC`). The
dispatcher hands out the pipeline's source, the shuffled and repeated list of
shard files, one file at a time to whichever worker asks; each worker reads,
samples and augments only its files. Why not parallel epochs (every worker
runs the whole pipeline): every worker would run the *same* seeded
definition, so with a fixed seed they produce the same pairs, and every pair
would reach the trainers once per worker (WORKSPACE_NOTES.md). With dynamic
sharding a lost worker costs only the files it was reading (training goes
on with the others), and a new worker simply starts asking for files.

All trainers of a run read one shared job (`job_name`): each batch goes to
exactly one trainer, first come, first served.
"""

import hashlib
import os
import re
from typing import Optional, Tuple

import grpc  # a TensorFlow dependency; used only to probe the dispatcher
import tensorflow as tf

SERVICE = tf.data.experimental.service
DEFAULT_DISPATCHER_PORT = 5050
PROCESSING_MODE = SERVICE.ShardingPolicy.DYNAMIC  # "distributed_epoch": see the module docstring
CONNECT_TIMEOUT_S = 30.0
# Not TensorFlow's default ("AUTO", snappy on the worker): decoded float pixels
# and samples barely compress, and compressing cost 3.5-9x in throughput here
# (benchmarks/bench_data_service.py, "transport only" rows).
COMPRESSION = None
_ADDRESS = re.compile(r"^(?:(?P<protocol>[a-z+]+)://)?(?P<host>\[[0-9a-fA-F:]+\]|[^:/\s]+):(?P<port>\d+)$")


class DataServiceError(ConnectionError):
    """The tf.data service cannot be used (bad address, dispatcher unreachable)."""


def parse_address(address: str, what: str = "--data_service_address") -> Tuple[str, str]:
    """"grpc://host:port" or "host:port" -> ("grpc", "host:port"); ValueError naming `what`."""
    match = _ADDRESS.match(address or "")
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{what}={address!r}: expected grpc://host:port")
    protocol = match["protocol"] or "grpc"
    if protocol != "grpc":
        raise ValueError(f"{what}={address!r}: only the grpc protocol is supported")
    return protocol, f"{match['host']}:{match['port']}"


def check_dispatcher(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raises DataServiceError unless a gRPC server answers at `address` within `timeout_s`.

    The tf.data client itself retries an unreachable dispatcher for a long
    time without saying so; this turns that into one clear error, early.
    """
    _, target = parse_address(address)
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise DataServiceError(
            f"no tf.data service dispatcher answers at {address} (waited {timeout_s:g} s): "
            f"start one with `l3-data-service --role=dispatcher --port={target.rsplit(':', 1)[1]}` "
            f"or fix --data_service_address") from None
    finally:
        channel.close()


def job_name(model_dir: str, start_step: int) -> str:
    """The service job of a run's trainers: one per (run directory, starting step).

    Every trainer of a run computes the same name (they resume from the same
    checkpoint), so they share one job; a resumed run starts a new job.
    """
    where = model_dir if "://" in model_dir else os.path.abspath(model_dir)
    return f"l3-{hashlib.sha256(where.encode()).hexdigest()[:12]}-step{int(start_step)}"


def distribute_dataset(dataset: tf.data.Dataset, address: str, job: str,
                       compression: Optional[str] = COMPRESSION) -> tf.data.Dataset:
    """`dataset`, produced by the service's workers (distributed epoch, shared job `job`).

    `compression`: "AUTO" (TensorFlow's choice) or None (send raw tensors).
    """
    parse_address(address)
    return dataset.apply(SERVICE.distribute(processing_mode=PROCESSING_MODE, service=address,
                                            job_name=job, compression=compression))


def service_dataset_fn(dataset_fn, address: str, job: str):
    """Wraps `dataset_fn(input_context)` so its dataset comes from the service.

    Every trainer registers the *same* definition (one input pipeline, the
    per-replica batch of the whole run): the service, not file sharding per
    trainer, splits the work, and identical definitions share one job.
    """
    def fn(input_context):
        whole = tf.distribute.InputContext(
            num_input_pipelines=1, input_pipeline_id=0,
            num_replicas_in_sync=input_context.num_replicas_in_sync)
        return distribute_dataset(dataset_fn(whole), address, job)
    return fn


# --- servers (run by `l3-data-service`) --------------------------------------------------

def start_dispatcher(port: int = DEFAULT_DISPATCHER_PORT,
                     work_dir: Optional[str] = None) -> SERVICE.DispatchServer:
    """Starts a dispatcher on `port` (all interfaces).

    With `work_dir`, it journals its state there (fault-tolerant mode): a
    dispatcher restarted with the same `work_dir` and port recovers its
    datasets, jobs and split positions, and the workers re-register.
    """
    if work_dir:
        tf.io.gfile.makedirs(work_dir)
    return SERVICE.DispatchServer(SERVICE.DispatcherConfig(
        port=port, work_dir=work_dir or None, fault_tolerant_mode=bool(work_dir)))


def start_worker(dispatcher_address: str, port: int = 0,
                 worker_address: Optional[str] = None) -> SERVICE.WorkerServer:
    """Starts an input worker on `port` (0: any free one) registered with the dispatcher.

    `worker_address` is what trainers dial ("host:%port%", `%port%` replaced
    by the bound port); TensorFlow's default, "localhost:%port%", only works
    when trainers and worker share a host.
    """
    _, target = parse_address(dispatcher_address, "--dispatcher_address")
    return SERVICE.WorkerServer(SERVICE.WorkerConfig(
        dispatcher_address=target, port=port, worker_address=worker_address or None))


def num_workers(dispatcher: SERVICE.DispatchServer) -> int:
    """Workers registered with `dispatcher` (running in this process)."""
    # No public API reports this; DispatchServer._num_workers is what TF's own tests use.
    return int(dispatcher._num_workers())  # pylint: disable=protected-access
