"""A tf.data service on this machine: an `l3-data-service` dispatcher and input workers as subprocesses.

For the local launcher (`launch/local_multiworker.py --data_service_workers=N`),
the service benchmark and the tests:

    with LocalDataService(num_workers=2, log_dir="/tmp/svc") as service:
        service.wait_for_workers(2)
        ... l3-train --data_service_address=service.address ...
        service.kill_worker(1)        # SIGKILL one input worker

Every process is stopped on exit (SIGTERM, then SIGKILL after `grace_s`),
also when the body raised. Imports no TensorFlow (the launcher stays light).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

_REGISTERED = re.compile(r"(\d+) worker\(s\) registered")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on `host` (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalDataService:
    """A dispatcher on `host`:`port` and `num_workers` input workers, each logging to `log_dir`."""

    def __init__(self, num_workers: int, log_dir: str, *, host: str = "127.0.0.1",
                 port: Optional[int] = None, work_dir: Optional[str] = None,
                 env: Optional[dict] = None, report_every_s: float = 0.5, grace_s: float = 10.0):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.num_workers, self.log_dir, self.host = num_workers, log_dir, host
        self.port = port or free_port(host)
        self.work_dir, self.report_every_s, self.grace_s = work_dir, report_every_s, grace_s
        self.env = dict(os.environ if env is None else env)
        self.dispatcher: Optional[subprocess.Popen] = None
        self.workers: List[subprocess.Popen] = []
        self._dispatcher_log_start = 0
        self._logs = []

    @property
    def address(self) -> str:
        """What trainers pass as --data_service_address."""
        return f"grpc://{self.host}:{self.port}"

    @property
    def dispatcher_log(self) -> str:
        return os.path.join(self.log_dir, "dispatcher.log")

    def _spawn(self, log_name: str, args: List[str]) -> subprocess.Popen:
        os.makedirs(self.log_dir, exist_ok=True)
        log = open(os.path.join(self.log_dir, log_name), "a")
        self._logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "l3.bin.data_service", *args],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_dispatcher(self) -> subprocess.Popen:
        """Starts (or, after `stop_dispatcher`, restarts) the dispatcher on the same port."""
        args = ["--role=dispatcher", f"--port={self.port}", f"--report_every_s={self.report_every_s}"]
        if self.work_dir:
            args.append(f"--work_dir={self.work_dir}")
        # `registered_workers` reads this dispatcher's reports, not an earlier one's.
        log = self.dispatcher_log
        self._dispatcher_log_start = os.path.getsize(log) if os.path.exists(log) else 0
        self.dispatcher = self._spawn("dispatcher.log", args)
        return self.dispatcher

    def start_worker(self) -> int:
        """Starts one more input worker (any free port); returns its index."""
        index = len(self.workers)
        self.workers.append(self._spawn(f"input-worker-{index}.log", [
            "--role=worker", f"--dispatcher_address={self.host}:{self.port}",
            f"--worker_address={self.host}:%port%"]))
        return index

    def start(self) -> "LocalDataService":
        self.start_dispatcher()
        for _ in range(self.num_workers):
            self.start_worker()
        return self

    def registered_workers(self) -> int:
        """Workers the dispatcher last reported (-1 before its first report)."""
        try:
            with open(self.dispatcher_log) as f:
                f.seek(self._dispatcher_log_start)
                counts = _REGISTERED.findall(f.read())
        except FileNotFoundError:
            return -1
        return int(counts[-1]) if counts else -1

    def wait_for_workers(self, n: int, timeout_s: float = 180.0, at_least: bool = False) -> None:
        """Blocks until the dispatcher reports `n` registered workers (RuntimeError on timeout).

        `at_least`: `n` or more. A dispatcher restarted on its journal also
        lists the workers that died before the restart, until their heartbeat
        timeout runs out.
        """
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            count = self.registered_workers()
            if count == n or (at_least and count > n):
                return
            for proc in [self.dispatcher, *self.workers]:
                if proc is not None and proc.poll() is not None and proc.returncode != -9:
                    raise RuntimeError(f"a tf.data service process exited with {proc.returncode}; "
                                       f"see {self.log_dir}")
            time.sleep(0.2)
        wanted = f"{n} or more" if at_least else str(n)
        raise RuntimeError(f"the dispatcher at {self.address} reported "
                           f"{self.registered_workers()} workers, not {wanted}, within {timeout_s:g} s")

    def kill_worker(self, index: int) -> None:
        """SIGKILL input worker `index` (no chance to say goodbye) and reap it."""
        self.workers[index].send_signal(signal.SIGKILL)
        self.workers[index].wait()

    def stop_dispatcher(self) -> None:
        _stop([self.dispatcher], self.grace_s)

    def stop(self) -> None:
        """Stops every process (workers first), then closes the logs."""
        _stop(self.workers, self.grace_s)
        _stop([self.dispatcher], self.grace_s)
        for log in self._logs:
            log.close()
        self._logs = []

    def __enter__(self) -> "LocalDataService":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


def _stop(procs, grace_s: float) -> None:
    live = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        p.terminate()
    deadline = time.time() + grace_s
    for p in live:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
