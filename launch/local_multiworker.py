"""Runs N training workers on this machine under MultiWorkerMirroredStrategy.

The way to try multi-worker training on one host (CPU or GPUs): each worker
is a separate process with its own TF_CONFIG, talking to the others over
free localhost ports, exactly as on a real cluster.

  python launch/local_multiworker.py --num_workers=2 --worker_log_dir=/tmp/mw_logs -- \\
      --train_pattern='records/train-*.tfrecord' --model_dir=/tmp/mw_run \\
      --preset=small --global_batch_size=16 --train_steps=100

Everything after `--` goes to every worker (`python -m l3.bin.train
--strategy=multi_worker ...`). The launcher waits for all workers; if one
fails, it stops the others and exits with the failed worker's status.
SIGTERM and SIGINT are passed on to the workers (which save a checkpoint and
stop). With GPUs, `--gpus_per_worker=k` gives worker i the GPUs i*k..i*k+k-1.

`--data_service_workers=N` also starts a tf.data service beside the trainers:
an `l3-data-service` dispatcher on a free localhost port and N input
workers (`l3.pairs.local_service`), waits until all N have registered, passes
`--data_service_address=grpc://localhost:<port>` to every trainer, and stops
the service when the trainers are done (logs: dispatcher.log and
input-worker-<i>.log beside the trainers', or in a temporary directory).

A clean finish reads as one: the chief hosts the coordination service and
may leave first, so a worker still running its last RPCs logs
`BaseCollectiveExecutor::StartAbort UNAVAILABLE ... Connection refused`.
Worker output passes through the launcher, which drops those lines once the
worker has finished training (its "weights sha256" line), counts them, and
ends with "all N workers finished normally".
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional, Sequence

from absl import app
from absl import flags

from l3.pairs.local_service import LocalDataService

flags.DEFINE_integer("num_workers", 2, "Worker processes to start.")
flags.DEFINE_string("module", "l3.bin.train", "Python module each worker runs.")
flags.DEFINE_string("worker_log_dir", None, "Write worker-<i>.log here (default: this terminal).")
flags.DEFINE_integer("gpus_per_worker", None, "GPUs per worker (default: hide none).")
flags.DEFINE_integer("threads_per_worker", None,
                     "TF intra-op threads per worker (CPU runs: cores / workers).")
flags.DEFINE_integer("data_service_workers", 0,
                     "Start a tf.data service dispatcher and this many input workers, and "
                     "send the trainers' input through it (0: each trainer reads its own).")
flags.DEFINE_float("grace_seconds", 30.0, "After a failure or a signal, wait this long "
                   "before killing the remaining workers.")

FLAGS = flags.FLAGS


def free_ports(n: int) -> List[int]:
    """n distinct ports that were free a moment ago (bound to port 0, then released)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(worker_addresses: Sequence[str], index: int) -> str:
    """TF_CONFIG for worker `index` (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": list(worker_addresses)},
                       "task": {"type": "worker", "index": int(index)}})


def worker_env(index: int, addresses: Sequence[str], *, gpus_per_worker: Optional[int] = None,
               threads: Optional[int] = None) -> dict:
    env = dict(os.environ, TF_CONFIG=tf_config(addresses, index))
    if gpus_per_worker is not None:
        first = index * gpus_per_worker
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(first + g) for g in range(gpus_per_worker))
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = str(threads)
    return env


# After a worker's last training line, these mean the chief (and its coordination service)
# has already left: expected shutdown noise, not a crash.
FINISHED = re.compile(r"(completed|preempted) at step \d+ after .*weights sha256")
SHUTDOWN_NOISE = re.compile(r"StartAbort|UNAVAILABLE|Connection refused|coordination service|"
                            r"Failed to send RPC|failed to connect to all addresses|"
                            r"^\s*(Additional GRPC error information|:\{|\[type\.googleapis)")


class Relay(threading.Thread):
    """Copies one worker's output (stdout + stderr) to `out`, dropping shutdown noise."""

    def __init__(self, stream, out):
        super().__init__(daemon=True)
        self.stream, self.out = stream, out
        self.finished, self.dropped = False, 0

    def run(self):
        for line in iter(self.stream.readline, ""):
            if self.finished and SHUTDOWN_NOISE.search(line):
                self.dropped += 1
                continue
            self.finished = self.finished or bool(FINISHED.search(line))
            self.out.write(line)
            self.out.flush()
        self.stream.close()


def launch(num_workers: int, worker_args: Sequence[str], *, module: str = "l3.bin.train",
           log_dir: Optional[str] = None, gpus_per_worker: Optional[int] = None,
           threads: Optional[int] = None, grace_seconds: float = 30.0) -> int:
    """Starts the workers, waits, returns 0 or the first failing worker's status."""
    addresses = [f"localhost:{port}" for port in free_ports(num_workers)]
    command = [sys.executable, "-m", module, "--strategy=multi_worker", *worker_args]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    procs, logs, relays = [], [], []
    for i in range(num_workers):
        out = open(os.path.join(log_dir, f"worker-{i}.log"), "w") if log_dir else None
        logs.append(out)
        procs.append(subprocess.Popen(
            command, env=worker_env(i, addresses, gpus_per_worker=gpus_per_worker,
                                    threads=threads),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"))
        relays.append(Relay(procs[-1].stdout, out or sys.stdout))
        relays[-1].start()
    print(f"started {num_workers} workers on {', '.join(addresses)}"
          + (f"; logs in {log_dir}" if log_dir else ""), flush=True)

    def forward(signum, frame):
        del frame
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    status, deadline = 0, None
    try:
        while any(p.poll() is None for p in procs):
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed and not status:
                status = failed[0]
                print(f"a worker exited with status {status}; stopping the others", flush=True)
                forward(signal.SIGTERM, None)
                deadline = time.time() + grace_seconds
            if deadline is not None and time.time() > deadline:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for relay in relays:
            relay.join(timeout=10)
        for out in logs:
            if out:
                out.close()
    if not status:
        status = next((p.returncode for p in procs if p.returncode), 0)
    print(f"workers exited with {[p.returncode for p in procs]}", flush=True)
    dropped = sum(r.dropped for r in relays)
    if not status:
        print(f"all {num_workers} workers finished normally"
              + (f" ({dropped} lines of expected coordination-service shutdown noise dropped)"
                 if dropped else ""), flush=True)
    return 128 - status if status < 0 else status  # killed by signal k: 128 + k


@contextlib.contextmanager
def data_service(num_workers: int, log_dir: Optional[str]):
    """A local tf.data service with `num_workers` input workers; yields its address (None if 0)."""
    if not num_workers:
        yield None
        return
    with contextlib.ExitStack() as stack:
        if not log_dir:
            log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="l3-data-service-"))
        service = stack.enter_context(LocalDataService(num_workers, log_dir, host="localhost"))
        service.wait_for_workers(num_workers)
        print(f"tf.data service at {service.address} with {num_workers} input worker(s)",
              flush=True)
        yield service.address


def main(argv):
    worker_args = argv[1:]
    with data_service(FLAGS.data_service_workers, FLAGS.worker_log_dir) as address:
        if address:
            worker_args = [*worker_args, f"--data_service_address={address}"]
        return launch(FLAGS.num_workers, worker_args, module=FLAGS.module,
                      log_dir=FLAGS.worker_log_dir, gpus_per_worker=FLAGS.gpus_per_worker,
                      threads=FLAGS.threads_per_worker, grace_seconds=FLAGS.grace_seconds)


if __name__ == "__main__":
    app.run(main)
