"""Two trainers on one --model_dir (issue 24, item 4): the second refuses, naming the
first's host and pid; the lock of a dead trainer (SIGKILL) is taken over, saying so.

The holder is a real process holding `l3.train.lock.RunLock`; the refusing side is
`l3.train.train` itself, which must write nothing."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from l3.train import lock
from l3.train import loop as train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from l3.train.lock import RunLock
RunLock(sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(model_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, ROOT, str(model_dir)],
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_trainer_refuses_and_a_dead_ones_lock_is_taken_over(tmp_path, caplog):
    model_dir = tmp_path / "run"
    holder = _holder(model_dir)
    try:
        recorded = json.loads((model_dir / lock.LOCK_FILE).read_text())
        assert (recorded["host"], recorded["pid"]) == (socket.gethostname(), holder.pid)
        config = train.TrainConfig(train_pattern="unused", model_dir=str(model_dir),
                                   preset="small", global_batch_size=4, train_steps=1,
                                   strategy="one_device")
        with pytest.raises(lock.RunLockedError) as info:
            train.train(config)
        assert str(info.value).startswith(
            f"--model_dir={model_dir} is in use by another trainer (host "
            f"{socket.gethostname()}, pid {holder.pid}, since ")
        assert os.listdir(model_dir) == [lock.LOCK_FILE]  # nothing written
        assert json.loads((model_dir / lock.LOCK_FILE).read_text()) == recorded  # untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing: its lock file is still there, naming it.
    assert json.loads((model_dir / lock.LOCK_FILE).read_text())["pid"] == holder.pid
    with caplog.at_level("WARNING"), lock.RunLock(str(model_dir)) as mine:
        assert mine.took_over["pid"] == holder.pid
        assert json.loads((model_dir / lock.LOCK_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(lock.RunLockedError, match=f"pid {os.getpid()},"):
            lock.RunLock(str(model_dir)).acquire()  # a second holder, even in-process
    assert f"taking over the lock of a trainer that is gone (host {socket.gethostname()}, " \
           f"pid {holder.pid}" in caplog.text
    assert not (model_dir / lock.LOCK_FILE).exists()  # released: removed
    with lock.RunLock(str(model_dir)) as again:  # and free again, with nothing to take over
        assert again.took_over is None
