"""Exclusive lock files that name their holder: one writer per shard (or per folder).

    lock = OwnerLock("out/.train-00000-of-00004.tfrecord.lock")
    holder = lock.try_acquire()     # None: ours now; else {"host", "pid", "started"} of the holder
    ...
    lock.release()                  # removes the file

The lock is `fcntl.flock` on the file, which the kernel drops when the holder
dies however it dies (SIGKILL included), so a lock file a dead process left
is simply taken over (`took_over` then holds the dead holder's record, for a
log line). The file holds the holder's host, pid and start time as JSON, so a
process that finds the lock held can say whose it is. The holder removes the
file when it releases; a process that opened the file just before that
re-checks the inode and tries again on the new file.

Where the file system has no flock (some network mounts: ENOLCK, EOPNOTSUPP)
the lock falls back to the file's contents: a holder on this host whose pid
is no longer running is dead, and its lock is taken over; a holder on
another host is taken to be alive (its pid means nothing here). That
fallback is best effort: two processes taking over the same dead holder's
file at the same instant can both believe they hold it.
"""

import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Optional

_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def describe(holder: dict) -> str:
    """"host h, pid 42, since 2026-12-03T10:00:00" for a holder record."""
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"
            + (f", since {holder['started']}" if holder.get("started") else ""))


def read_holder(fd: int) -> dict:
    """The holder record (JSON) in an open lock file, {} if unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace")
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive_here(holder: dict) -> bool:
    """Without flock: is the holder alive, as far as this host can tell?"""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


class OwnerLock:
    """An exclusive lock on `path` (created if missing) holding this process's host and pid."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self._fd: Optional[int] = None
        self.took_over: Optional[dict] = None  # the record of a dead holder we replaced

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> Optional[dict]:
        """Takes the lock if free (or left by a dead holder): returns None. If a live
        process holds it, returns that holder's record ({} if unreadable) and holds nothing."""
        for _ in range(20):  # retried only when the file is replaced under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_holder(fd)
                os.close(fd)
                return holder
            except OSError as e:
                if e.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                holder = read_holder(fd)
                if holder and holder.get("pid") != os.getpid() and _alive_here(holder):
                    os.close(fd)
                    return holder
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder released (removed) it while we opened it: try the new one
                os.close(fd)
                continue
            previous = read_holder(fd)
            self.took_over = previous or None
            me = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(me) + "\n").encode())
            self._fd = fd
            return None
        raise OSError(errno.EAGAIN, f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        """Removes the file (while still holding it) and drops the lock; idempotent."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OwnerLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
