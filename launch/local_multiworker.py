"""Runs N training workers on this machine under MultiWorkerMirroredStrategy.

The way to try multi-worker training on one host (CPU or GPUs): each worker
is a separate process with its own TF_CONFIG, talking to the others over
free localhost ports, exactly as on a real cluster.

  python launch/local_multiworker.py --num_workers=2 --worker_log_dir=/tmp/mw_logs -- \\
      --train_pattern='records/train-*.tfrecord' --model_dir=/tmp/mw_run \\
      --preset=small --global_batch_size=16 --train_steps=100

Everything after `--` goes to every worker (`python -m l3.bin.train
--strategy=multi_worker ...`). The launcher waits for all workers. If one
fails or dies (kill -9, out of memory), it prints one line naming it
("worker 1 (pid 4242) was killed by SIGKILL: stopping the job ..."), asks the
others to stop and kills them after --grace_seconds (they wait in a collective
that the dead worker will never join), and exits with that worker's status
(128 + k for signal k). SIGTERM and SIGINT to the launcher are passed on to the
workers, which all save a checkpoint at the same step and stop; the launcher
then says so and exits 143. Either way, the same command resumes from the last
checkpoint. With GPUs, `--gpus_per_worker=k` gives worker i the GPUs
i*k..i*k+k-1; `--cpu_replicas=k` after `--` rehearses k replicas per worker on
the CPU (docs/rehearse.md).

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
PREEMPTED = re.compile(r"preempted at step (\d+) after .*weights sha256")
PREEMPTED_EXIT = 143  # l3-train's status after saving on SIGTERM (128 + SIGTERM)
SHUTDOWN_NOISE = re.compile(r"StartAbort|UNAVAILABLE|Connection refused|coordination service|"
                            r"Failed to send RPC|failed to connect to all addresses|"
                            r"^\s*(Additional GRPC error information|:\{|\[type\.googleapis)")


class Relay(threading.Thread):
    """Copies one worker's output (stdout + stderr) to `out`, dropping shutdown noise;
    notes the step at which the worker stopped when preempted (`stopped_at`)."""

    def __init__(self, stream, out):
        super().__init__(daemon=True)
        self.stream, self.out = stream, out
        self.finished, self.dropped, self.stopped_at = False, 0, None

    def run(self):
        for line in iter(self.stream.readline, ""):
            if self.finished and SHUTDOWN_NOISE.search(line):
                self.dropped += 1
                continue
            preempted = PREEMPTED.search(line)
            if preempted:
                self.stopped_at = int(preempted.group(1))
            self.finished = self.finished or bool(FINISHED.search(line))
            self.out.write(line)
            self.out.flush()
        self.stream.close()


def describe_exit(index: int, pid: int, returncode: int) -> str:
    """'worker 1 (pid 123) was killed by SIGKILL' / '... exited with status 3'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker {index} (pid {pid}) was killed by {name}"
    return f"worker {index} (pid {pid}) exited with status {returncode}"


def _cause(failed):
    """The (index, process) that stopped the job: one killed by a signal (its peers then
    fail in their collectives, often within the same poll), else the first that failed."""
    return min(failed, key=lambda item: (item[1].returncode >= 0, item[0]))


def launch(num_workers: int, worker_args: Sequence[str], *, module: str = "l3.bin.train",
           log_dir: Optional[str] = None, gpus_per_worker: Optional[int] = None,
           threads: Optional[int] = None, grace_seconds: float = 30.0) -> int:
    """Starts the workers, waits, returns 0, 143 when stopped by a signal (every worker
    saved a checkpoint), or the first failing worker's status (128 + k if killed by k).

    A worker that fails or dies stops the job: the launcher prints one line naming it,
    asks the others to stop (SIGTERM) and kills them after `grace_seconds` (peers of a
    dead worker wait in a collective that can never finish).
    """
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
    print(f"started {num_workers} workers on {', '.join(addresses)} (pids "
          f"{', '.join(str(p.pid) for p in procs)})"
          + (f"; logs in {log_dir}" if log_dir else ""), flush=True)

    signalled = []

    def forward(signum, frame):  # SIGTERM / SIGINT to the launcher: every worker saves, stops
        del frame
        signalled.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    status, deadline = 0, None
    try:
        while any(p.poll() is None for p in procs):
            failed = [(i, p) for i, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed and not status and not signalled:
                i, p = _cause(failed)
                status = 128 - p.returncode if p.returncode < 0 else p.returncode
                print(f"{describe_exit(i, p.pid, p.returncode)}: stopping the job (the other "
                      f"workers are asked to stop, and killed after {grace_seconds:g} s)",
                      flush=True)
                for q in procs:
                    if q.poll() is None:
                        q.send_signal(signal.SIGTERM)
                deadline = time.time() + grace_seconds
            if signalled and deadline is None:  # saving a checkpoint may take a while
                deadline = time.time() + max(grace_seconds, 120.0)
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
    codes = [p.returncode for p in procs]
    if not status and not signalled and any(codes):  # all ended between two polls
        i, p = _cause([(i, p) for i, p in enumerate(procs) if p.returncode])
        status = 128 - p.returncode if p.returncode < 0 else p.returncode
        print(f"{describe_exit(i, p.pid, p.returncode)}: the job stopped", flush=True)
    print(f"workers exited with {codes}", flush=True)
    dropped = sum(r.dropped for r in relays)
    if signalled and not status:
        steps = sorted({r.stopped_at for r in relays if r.stopped_at is not None})
        name = signal.Signals(signalled[0]).name
        if all(c == PREEMPTED_EXIT for c in codes) and len(steps) == 1:
            print(f"stopped by {name}: all {num_workers} workers saved a checkpoint at step "
                  f"{steps[0]}; run the same command to resume", flush=True)
            return PREEMPTED_EXIT
        bad = [describe_exit(i, p.pid, p.returncode) for i, p in enumerate(procs)
               if p.returncode != PREEMPTED_EXIT]
        print(f"stopped by {name}, but not cleanly: "
              + ("; ".join(bad) if bad else f"the workers stopped at steps {steps}"), flush=True)
        return next((c if c > 0 else 128 - c for c in codes if c != PREEMPTED_EXIT),
                    PREEMPTED_EXIT)
    if not status:
        print(f"all {num_workers} workers finished normally"
              + (f" ({dropped} lines of expected coordination-service shutdown noise dropped)"
                 if dropped else ""), flush=True)
    return status


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
