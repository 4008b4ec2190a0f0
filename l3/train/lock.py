"""One trainer per run folder: an exclusive lock file in `model_dir` naming its holder.

Two trainers on one `--model_dir` (a mis-typed launcher, a job started twice)
would overwrite each other's checkpoints. The chief of a run holds
`model_dir/trainer.lock` for as long as it trains:

* the file holds the holder's host, pid and start time (JSON), so the second
  trainer refuses with one line naming them (`RunLockedError`, exit 2);
* the lock itself is `fcntl.flock` on that file, which the kernel releases
  when the holder dies however it dies (SIGKILL included): a lock file left
  by a dead process is taken over, saying so in the log;
* the file is removed when the holder finishes; a trainer that waited on a
  file removed under it tries again on the new one (inode check).

Folders on remote file systems (`gs://...`) are not locked (no flock there);
that is said in the log.
"""

import datetime
import fcntl
import json
import os
import socket
from typing import Optional

from absl import logging

from l3.core import errors, locks

LOCK_FILE = "trainer.lock"


class RunLockedError(errors.UsageError):
    """Another live trainer holds the run folder's lock; the message names its host and pid."""


class RunLock:
    """`with RunLock(model_dir):` holds model_dir/trainer.lock, or raises `RunLockedError`."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LOCK_FILE)
        self._fd: Optional[int] = None
        self.took_over: Optional[dict] = None  # the dead holder whose lock was taken over

    def acquire(self) -> "RunLock":
        if "://" in self.model_dir:
            logging.info("%s is not a local folder: not locked against a second trainer",
                         self.model_dir)
            return self
        os.makedirs(self.model_dir, exist_ok=True)
        for _ in range(10):  # retried only if the file was replaced while we waited
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = locks.read_holder(fd)
                os.close(fd)
                raise RunLockedError(
                    f"--model_dir={self.model_dir} is in use by another trainer ({locks.describe(holder)}; "
                    f"{self.path}): stop it first, or train into another folder") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder finished and removed the file while we opened it
                os.close(fd)
                continue
            previous = locks.read_holder(fd)
            if previous:
                self.took_over = previous
                logging.warning("taking over the lock of a trainer that is gone (%s; %s)",
                                locks.describe(previous), self.path)
            me = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
            self._fd = fd
            try:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, (json.dumps(me) + "\n").encode())
                os.fsync(fd)
            except OSError as e:  # a full disk: one line naming the file, nothing left
                self.release()
                raise errors.write_error(self.path, e) from None
            return self
        raise RunLockedError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # while still holding it: a waiter re-checks the inode
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
