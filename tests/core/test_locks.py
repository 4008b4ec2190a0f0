"""l3.core.locks: one holder at a time, named; a dead holder's lock is taken over.

The holder is a real second process (flock is per open file, so a lock taken in this
process would not show what another process sees); it is SIGKILLed to leave a stale file.
"""

import json
import os
import signal
import socket
import subprocess
import sys

from l3.core import locks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HOLDER = """
import sys, time
from l3.core import locks
lock = locks.OwnerLock(sys.argv[1])
assert lock.try_acquire() is None
print("held", flush=True)
time.sleep(60)
"""


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    path = tmp_path / ".shard.lock"
    holder = _holder(path)
    try:
        lock = locks.OwnerLock(path)
        found = lock.try_acquire()
        assert found is not None and not lock.held
        assert found["pid"] == holder.pid and found["host"] == socket.gethostname()
        assert locks.describe(found).startswith(f"host {socket.gethostname()}, pid {holder.pid}, since ")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert path.exists()  # a SIGKILLed holder leaves its file; the kernel dropped its flock
    assert lock.try_acquire() is None and lock.held
    assert lock.took_over["pid"] == holder.pid
    assert json.loads(path.read_text())["pid"] == os.getpid()
    # While held here, a second opener (another open file description) is refused.
    other = locks.OwnerLock(path)
    assert other.try_acquire()["pid"] == os.getpid() and not other.held
    lock.release()
    assert not path.exists() and not lock.held
    assert other.try_acquire() is None and other.took_over is None  # a fresh file: nobody's
    other.release()


def test_a_released_file_replaced_under_a_waiter_is_retried(tmp_path, monkeypatch):
    """The holder removes the file between the waiter's open and its flock: the waiter must
    not keep a lock on the removed inode (two holders), but lock the new file."""
    path = tmp_path / ".x.lock"
    first = locks.OwnerLock(path)
    assert first.try_acquire() is None
    real_flock = locks.fcntl.flock
    calls = []

    def flock(fd, op):
        calls.append(op)
        if len(calls) == 1:  # the waiter opened the old file; the holder releases now
            first.release()
        return real_flock(fd, op)
    monkeypatch.setattr(locks.fcntl, "flock", flock)
    second = locks.OwnerLock(path)
    assert second.try_acquire() is None
    assert os.stat(path).st_ino == os.fstat(second._fd).st_ino  # the file on disk is the held one
    assert len([c for c in calls if c & locks.fcntl.LOCK_EX]) == 2
    second.release()
