"""Temporary files of a run: tagged names, removed on SIGTERM/SIGINT, swept after a SIGKILL.

Everything the project writes under a final name is first written under a
temporary sibling name and renamed into place (`l3.core.fileio`, the export
folder, shards). Those temporaries are named

    .<final name>.tmp.l3-<host tag>-<pid>-<8 hex>      e.g. .export.tmp.l3-3fa2b1c0-4242-9c1e07aa

(host tag: the first 8 hex digits of sha1(hostname)), and registered here for
as long as they exist. Three things follow:

* **Signals** (`install_signal_cleanup`, done by `l3.core.cli.run` for every
  console script): SIGTERM, SIGINT and SIGHUP remove this process's registered
  temporaries, print one line (`l3-export: stopped by SIGTERM; removed 1
  temporary file`), and the process then dies of the same signal, as it
  would have without the handler (exit status 128 + signal in a shell).
  Handlers another part of the program installed (the trainer's SIGTERM
  checkpointing, `nohup`'s ignored SIGHUP) are left alone. `deferred_signals()`
  holds a signal back while a few renames must happen together.
* **SIGKILL** cannot be caught, so a later run cleans up: the first time a
  process makes a temporary in a folder, it removes the temporaries there of
  runs that are gone (`sweep`): names of this form, from this host, whose pid
  is no longer running (or is running a process started after the file was
  last written, i.e. a reused pid), last modified before this process started.
  It says so in one log line. Temporaries of other hosts are never touched
  (their pids mean nothing here).
* **At exit**, anything still registered (a bug's leak) is removed.

A dict operation is atomic with respect to Python signal handlers (they run
between bytecodes of the main thread), so the registry needs no lock.
"""

import atexit
import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from typing import Dict, Iterator, List, Optional, Tuple

log = logging.getLogger("l3.temps")

HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
RUN_STARTED = time.time()  # "older than this run": files last written before this moment
NAME = re.compile(r"^\.(?P<final>.+)\.tmp\.l3-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}$")
SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")

_live: Dict[str, Tuple[int, str]] = {}  # path -> (owner pid, "file" or "dir")
_swept = set()                           # folders swept by this process
_state = {"prog": None, "critical": 0, "pending": None}


def temp_path(final_path: str) -> str:
    """A fresh tagged name beside `final_path` (absolute; nothing is created or registered)."""
    folder, base = os.path.split(os.path.abspath(os.fspath(final_path)))
    return os.path.join(folder, f".{base}.tmp.l3-{HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}")


def register(path: str, kind: str = "file") -> str:
    """Registers `path` (a temporary this process writes; `kind` "file" or "dir"); returns it.

    Sweeps the folder of stale temporaries first (once per folder and process).
    """
    sweep(os.path.dirname(path))
    _live[path] = (os.getpid(), kind)
    return path


def new_name(final_path: str, kind: str = "file") -> str:
    """A registered tagged name beside `final_path` for a file or folder the caller creates."""
    return register(temp_path(final_path), kind)


def new_file(final_path: str) -> Tuple[int, str]:
    """Creates (O_EXCL, mode 0600) and registers a temporary file beside `final_path`: (fd, path)."""
    path = new_name(final_path)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
    except BaseException:
        forget(path)
        raise


def new_dir(final_path: str, folder: Optional[str] = None) -> str:
    """Creates and registers a temporary folder beside `final_path` (or in `folder`)."""
    if folder is not None:
        final_path = os.path.join(folder, os.path.basename(os.fspath(final_path)))
    path = new_name(final_path, "dir")
    try:
        os.mkdir(path)
    except BaseException:
        forget(path)
        raise
    return path


def forget(path: str) -> None:
    """Unregisters `path` (renamed into place, or removed by the caller)."""
    _live.pop(path, None)


def discard(path: str) -> None:
    """Removes the temporary `path` (file or folder, if it exists) and unregisters it."""
    _remove(path)
    forget(path)


def live() -> List[str]:
    """This process's registered temporaries."""
    return [p for p, (pid, _) in list(_live.items()) if pid == os.getpid()]


def cleanup() -> int:
    """Removes every temporary this process registered; returns how many existed."""
    removed = 0
    for path in live():
        removed += _remove(path)
        forget(path)
    return removed


def _remove(path: str) -> bool:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            return not os.path.exists(path)
        os.remove(path)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def temporary(final_path: str, kind: str = "file") -> Iterator[str]:
    """A registered temporary name beside `final_path`, removed if the block raises.

    The block creates it (for `kind="dir"` it is created here) and renames it
    into place; it is unregistered when the block ends either way.
    """
    path = new_dir(final_path) if kind == "dir" else new_name(final_path)
    try:
        yield path
    except BaseException:
        discard(path)
        raise
    forget(path)


# --- stale temporaries of killed runs ---------------------------------------------------

def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a zombie counts; another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _started_at(pid: int) -> Optional[float]:
    """When process `pid` started (Linux /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def is_stale(path: str) -> bool:
    """True if `path` is a temporary of this form left by a run on this host that is gone."""
    match = NAME.match(os.path.basename(path))
    if not match or match["host"] != HOST_TAG:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        mtime = os.lstat(path).st_mtime
    except OSError:
        return False
    if mtime >= RUN_STARTED:
        return False
    if pid_alive(pid):
        started = _started_at(pid)  # a reused pid: that process began after the file's last write
        return started is not None and started > mtime + 1.0
    return True


def sweep(folder: str) -> List[str]:
    """Removes the stale temporaries in `folder` (once per folder and process); returns their
    names and says so in one log line."""
    folder = os.path.abspath(folder or ".")
    if folder in _swept:
        return []
    _swept.add(folder)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    removed = [n for n in names if is_stale(os.path.join(folder, n))
               and _remove(os.path.join(folder, n))]
    if removed:
        shown = ", ".join(removed[:3]) + (f" and {len(removed) - 3} more" if len(removed) > 3 else "")
        log.warning("removed %d temporary file%s left in %s by runs that were killed: %s",
                    len(removed), "" if len(removed) == 1 else "s", folder, shown)
    return removed


# --- signals ------------------------------------------------------------------------------

def install_signal_cleanup(prog: Optional[str] = None) -> List[str]:
    """SIGTERM, SIGINT and SIGHUP remove this process's temporaries, then kill it as before.

    Installed only over the default disposition (a handler someone else set, or
    an ignored signal, stays); only from the main thread. `prog` prefixes the
    one line printed. Returns the names of the signals handled.
    """
    _state["prog"] = prog
    if threading.current_thread() is not threading.main_thread():
        return []
    installed = []
    for name in SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        current = signal.getsignal(signum)
        if current in (signal.SIG_DFL, signal.default_int_handler) or current is _handle:
            signal.signal(signum, _handle)
            installed.append(name)
    return installed


def _handle(signum, frame) -> None:
    del frame
    if _state["critical"]:
        _state["pending"] = signum
        return
    removed = cleanup()
    name = signal.Signals(signum).name
    prog = _state["prog"] or os.path.basename(sys.argv[0] or "python")
    plural = "" if removed == 1 else "s"
    with contextlib.suppress(OSError):
        os.write(2, f"{prog}: stopped by {name}; removed {removed} temporary file{plural}\n".encode())
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of it, as without the handler
    time.sleep(5)  # the signal is delivered at once; never return into the interrupted code
    os._exit(128 + signum)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Holds a handled signal back until the block ends (renames that must happen together)."""
    _state["critical"] += 1
    try:
        yield
    finally:
        _state["critical"] -= 1
        pending = _state["pending"]
        if not _state["critical"] and pending is not None:
            _state["pending"] = None
            _handle(pending, None)


@atexit.register
def _at_exit() -> None:
    cleanup()
